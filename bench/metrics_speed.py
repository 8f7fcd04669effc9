"""Speed of the evaluation paths against what a user would otherwise call, measured side by side in one run:

- PSNR and SSIM of a T x 3 x H x W trajectory against its clean target: `progressive_ir.metrics` batched over
  pairs (a target per frame) and called frame by frame, against a per-frame scikit-image loop that converts each
  frame and its target to float64 arrays; and with the target `expand`ed over the frames (one target, as
  `trajectory_metrics` passes it), against the same loop with the target converted once (SSIM with
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False); with the largest disagreement;
- the CRF round trip of a clip: `degradations.crf_compress` on `uint8` frames and on float frames versus the ffmpeg
  command line doing the same encoding and decoding (two `ffmpeg` runs on raw files), with a check that the
  decoded bytes are the same.

Every case runs once per round, in turn (the order reversed every other round), after one untimed warm-up call;
the JSON holds each case's median wall and CPU seconds (this process plus its children, i.e. ffmpeg) and our
medians divided by the peer's (below 1: we take less), with the device named and the machine's load recorded.

    python bench/metrics_speed.py                 # full run, writes bench/results/metrics_speed_<device>.json
    python bench/metrics_speed.py --quick         # a short check on small frames (written to --out)
    python bench/metrics_speed.py --device cuda   # our metrics on the GPU (scikit-image and ffmpeg on the CPU)
"""
from __future__ import annotations
import argparse, subprocess, sys, tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tools.measure import LoadMonitor, alternating, ratio  # noqa: E402

PEERS = dict(ours_batched="skimage_loop", ours_per_frame="skimage_loop",  # a target per frame, converted with it
             ours_shared_target="skimage_loop_shared_target")  # one target for all frames, converted once
QUICK = dict(sizes=["680x384"], rounds=2, crf_frames=3, crf_size="320x180", preset="veryfast")
GOALS = dict(psnr=1.0, ssim=1.0, crf=1.2)  # issue 17: at most the peer's time (PSNR, SSIM), 1.2x for the CRF round trip


def make_trajectory(frames, size, seed=0):
    "A clean sample image at `size` (width, height) and a `frames`-long trajectory of fading noise towards it."
    from progressive_ir.core import resize_center_crop
    from progressive_ir.sources import sample_image
    clean = resize_center_crop(sample_image("motorcycle"), size)
    g = torch.Generator().manual_seed(seed)
    sigmas = np.linspace(0.2, 0.0, frames)
    noisy = [(clean + float(s) * torch.randn(clean.shape, generator=g)).clamp(0, 1) for s in sigmas]
    return torch.stack(noisy), clean


def metric_cases(traj, clean, device):
    "The PSNR and SSIM cases: ours (three ways) and the scikit-image loop a user would write."
    from progressive_ir.metrics import psnr, ssim
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    x, target = traj.to(device), clean.to(device)
    stacked = target.expand_as(x).contiguous()  # the target repeated in memory, as a batch of pairs
    shared = target.expand_as(x)  # one target in memory, as `trajectory_metrics` passes it

    def as_array(t):  # tensor -> float64 HWC array inside the loop: part of the work for a user of tensors
        return t.double().permute(1, 2, 0).numpy()

    sk_kw = dict(data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1)
    ref = as_array(clean)
    cases = {}
    for name, fn in (("psnr", psnr), ("ssim", ssim)):
        cases[name] = {
            "ours_batched": lambda fn=fn: fn(x, stacked),
            "ours_shared_target": lambda fn=fn: fn(x, shared),
            "ours_per_frame": lambda fn=fn: torch.stack([fn(f, target) for f in x]),
        }
    def skimage_psnr():  # the target converted once (the last frame is the target: inf, as ours)
        with np.errstate(divide="ignore"):
            return [peak_signal_noise_ratio(ref, as_array(f), data_range=1.0) for f in traj]

    def skimage_psnr_pairs():  # a target per frame: converted with its frame
        with np.errstate(divide="ignore"):
            return [peak_signal_noise_ratio(as_array(clean), as_array(f), data_range=1.0) for f in traj]

    cases["psnr"]["skimage_loop"] = skimage_psnr_pairs
    cases["psnr"]["skimage_loop_shared_target"] = skimage_psnr
    cases["ssim"]["skimage_loop"] = lambda: [structural_similarity(as_array(f), as_array(clean), **sk_kw)
                                             for f in traj]
    cases["ssim"]["skimage_loop_shared_target"] = lambda: [structural_similarity(as_array(f), ref, **sk_kw)
                                                           for f in traj]
    return cases


def agreement(ours, peer) -> dict:
    "Largest |ours - scikit-image| over the finite values, and whether both give inf on the same frames."
    o, p = ours.cpu().numpy(), np.asarray(peer)
    finite = np.isfinite(o) & np.isfinite(p)
    return dict(max_abs_diff=float(np.abs(o[finite] - p[finite]).max()) if finite.any() else None,
                same_infinite_frames=bool((np.isinf(o) == np.isinf(p)).all()))


def crf_cases(clip8, crf, preset, folder):
    "The CRF round-trip cases: ours on uint8 and on float frames, and the ffmpeg command line on raw files."
    from progressive_ir.core import ffmpeg_exe, from_uint8_hwc
    from progressive_ir.degradations import crf_compress
    T, H, W, _ = clip8.shape
    clip = from_uint8_hwc(clip8)
    raw_in, video, raw_out = folder / "in.rgb", folder / "cli.mp4", folder / "out.rgb"
    clip8.tofile(raw_in)  # the command line's input file exists before the timing, as a user's would
    ff, quiet = ffmpeg_exe(), ["-hide_banner", "-loglevel", "error", "-y"]
    encode = [ff, *quiet, "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", "25", "-i", str(raw_in),
              "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", preset, "-crf", f"{float(crf):g}", str(video)]
    decode = [ff, *quiet, "-i", str(video), "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24",
              str(raw_out)]

    def cli():
        subprocess.run(encode, check=True)
        subprocess.run(decode, check=True)
        return raw_out

    return {"ours_uint8": lambda: crf_compress(clip8, crf=crf, preset=preset),
            "ours_float": lambda: crf_compress(clip, crf=crf, preset=preset),
            "ffmpeg_cli": cli}


def sample_clip(frames, size):
    "`frames` frames of the embedded Big Buck Bunny clip (from frame 40) at `size`, as uint8 `[T,H,W,3]`."
    from progressive_ir.core import read_video, resize_center_crop, to_uint8_hwc
    from progressive_ir.sources import sample_videos
    clip = read_video(sample_videos()["bigbuckbunny"], start=40, max_frames=frames)
    return to_uint8_hwc(resize_center_crop(clip, size))


def measure_metrics(sizes, frames, rounds, device):
    "PSNR and SSIM timings, ratios and agreement for each trajectory size."
    out = {}
    for size in sizes:
        traj, clean = make_trajectory(frames, size)
        key = f"{frames}x3x{size[1]}x{size[0]}"
        for metric, cases in metric_cases(traj, clean, device).items():
            timings, last = alternating(cases, rounds, device)
            out.setdefault(metric, {})[key] = dict(
                cases=timings,
                ratio_vs_peer={n: dict(peer=peer, **ratio(timings, n, peer)) for n, peer in PEERS.items()},
                agreement={n: agreement(last[n], last["skimage_loop"]) for n in PEERS})
            worst = max(r["wall"] for r in out[metric][key]["ratio_vs_peer"].values())
            print(f"{metric} {key}: worst ratio to the scikit-image loop {worst} (wall)", flush=True)
    return out


def measure_crf(frames, size, crf, preset, rounds):
    "CRF round-trip timings, ratios and the byte check against the ffmpeg command line."
    clip8 = sample_clip(frames, size)
    with tempfile.TemporaryDirectory(prefix="crf_bench_") as d:
        timings, last = alternating(crf_cases(clip8, crf, preset, Path(d)), rounds)
        cli_bytes = np.fromfile(last["ffmpeg_cli"], np.uint8).reshape(clip8.shape)
    same = bool(np.array_equal(last["ours_uint8"], cli_bytes))
    same_float = bool(torch.equal((last["ours_float"] * 255).round().to(torch.uint8).permute(0, 2, 3, 1),
                                  torch.from_numpy(cli_bytes)))
    res = dict(clip=f"{frames}x{size[1]}x{size[0]}", cases=timings,
               ratio_vs_ffmpeg_cli={n: ratio(timings, n, "ffmpeg_cli") for n in ("ours_uint8", "ours_float")},
               same_bytes_as_cli=dict(ours_uint8=same, ours_float=same_float))
    print(f"crf {res['clip']}: ratio to the ffmpeg CLI {res['ratio_vs_ffmpeg_cli']}; same bytes {same}", flush=True)
    return res


def goals(metrics, crf) -> dict:
    "Issue 17's targets, read from this run: worst wall ratio of each kind against its peer."
    worst = {m: max(r["wall"] for k in metrics[m].values() for n, r in k["ratio_vs_peer"].items()
                    if n != "ours_per_frame") for m in ("psnr", "ssim")}
    worst["crf"] = crf["ratio_vs_ffmpeg_cli"]["ours_uint8"]["wall"]
    return {m: dict(worst_wall_ratio=worst[m], goal=GOALS[m], met=worst[m] <= GOALS[m]) for m in GOALS}


def summary(metrics, crf) -> dict:
    "The ratios as one flat table (what the results page shows): ours / peer, by wall and by CPU time."
    rows = {}
    for m in ("psnr", "ssim"):
        for key, block in metrics[m].items():
            for name, r in block["ratio_vs_peer"].items():
                rows[f"{m} {key}: {name} / {r['peer']}"] = dict(wall=r["wall"], cpu=r["cpu"])
    for name, r in crf["ratio_vs_ffmpeg_cli"].items():
        rows[f"crf {crf['clip']}: {name} / ffmpeg CLI"] = dict(wall=r["wall"], cpu=r["cpu"])
    return rows


def checks(metrics, crf) -> dict:
    "The value checks of this run: agreement with scikit-image, the CRF bytes against the command line's."
    worst = max(a["max_abs_diff"] or 0.0 for m in ("psnr", "ssim") for b in metrics[m].values()
                for a in b["agreement"].values())
    return dict(max_abs_diff_vs_skimage=worst, within_1e_12=worst <= 1e-12, **{
        f"crf_{n}_same_bytes_as_cli": v for n, v in crf["same_bytes_as_cli"].items()})


def parse_size(text):
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (where our metrics run)")
    p.add_argument("--quick", action="store_true", help=f"a short check: {QUICK}")
    p.add_argument("--frames", type=int, default=9, help="frames of the trajectory")
    p.add_argument("--sizes", nargs="+", default=["1360x768", "680x384"], help="trajectory sizes, WxH")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (medians reported)")
    p.add_argument("--crf-frames", type=int, default=9)
    p.add_argument("--crf-size", default="1280x720", help="CRF clip size, WxH (Big Buck Bunny, from frame 40)")
    p.add_argument("--crf", type=float, default=36)
    p.add_argument("--preset", default="medium", help="x264 preset of the CRF round trip")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", default=None, help="output JSON (default bench/results/metrics_speed_<device>.json)")
    a = p.parse_args(argv)
    if a.quick:  # a setting given on the command line wins over the quick one
        for key, value in QUICK.items():
            if getattr(a, key) == p.get_default(key):
                setattr(a, key, value)

    from progressive_ir.core import env_info, get_device, write_json
    if a.threads:
        torch.set_num_threads(a.threads)
    device = get_device(a.device)
    sizes = [parse_size(s) for s in a.sizes]
    with LoadMonitor() as load:
        metrics = measure_metrics(sizes, a.frames, a.rounds, device)
        crf = measure_crf(a.crf_frames, parse_size(a.crf_size), a.crf, a.preset, a.rounds)
    env = env_info()
    record = dict(
        benchmark="metrics_speed", device=env.get("device", str(device)),
        what="PSNR/SSIM of a trajectory against its clean target (progressive_ir.metrics vs a per-frame "
             "scikit-image loop) and the CRF round trip of a clip (degradations.crf_compress vs the ffmpeg "
             "command line), side by side in one process: alternating rounds, medians, ratios ours / peer",
        command="python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
        settings=dict(device=str(device), quick=a.quick, frames=a.frames, sizes=a.sizes, rounds=a.rounds,
                      warmup_calls=1, torch_threads=torch.get_num_threads(), dtype_in="float32",
                      compute_dtype="float64",
                      image="sample 'motorcycle' resized to each size, Gaussian noise fading 0.2 -> 0 over the frames",
                      crf=dict(frames=a.crf_frames, size=a.crf_size, crf=a.crf, codec="libx264", preset=a.preset,
                               clip="bigbuckbunny from frame 40, resized")),
        goals=goals(metrics, crf), summary=summary(metrics, crf), checks=checks(metrics, crf),
        psnr=metrics["psnr"], ssim=metrics["ssim"], crf=crf,
        machine_load=load.record, env=env)
    out = Path(a.out) if a.out else Path(__file__).resolve().parent / "results" / f"metrics_speed_{device.type}.json"
    write_json(record, out)
    for m, g in record["goals"].items():
        print(f"{m}: worst ratio {g['worst_wall_ratio']} (goal <= {g['goal']}): {'met' if g['met'] else 'NOT met'}")
    print(f"wrote {out}")
    return record


if __name__ == "__main__":
    main()
