"""Metric throughput on one restoration trajectory: our batched PSNR/SSIM (`progressive_ir.metrics`) versus a
per-frame scikit-image loop, measured side by side in one run, with the largest disagreement between the two.

    python bench/metrics_speed.py                   # CPU, 9 x 3 x 768 x 1360, writes bench/results/metrics_speed_cpu.json
    python bench/metrics_speed.py --device cuda     # ours on the GPU (scikit-image always runs on the CPU)
"""
from __future__ import annotations
import argparse, os, statistics, sys, time
from pathlib import Path

import numpy as np
import torch


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize(device)


def timed(fn, device, repeats):
    "Median wall time of `repeats` calls of `fn` (after one untimed warm-up call), and the last result."
    out = fn(); sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); out = fn(); sync(device); times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def make_trajectory(frames, size, seed=0):
    "A clean sample image at `size` (width, height) and a `frames`-long trajectory of fading noise towards it."
    from progressive_ir.core import resize_center_crop
    from progressive_ir.sources import sample_image
    clean = resize_center_crop(sample_image("motorcycle"), size)
    g = torch.Generator().manual_seed(seed)
    sigmas = np.linspace(0.2, 0.0, frames)
    traj = torch.stack([(clean + float(s) * torch.randn(clean.shape, generator=g)).clamp(0, 1) for s in sigmas])
    return traj, clean


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (where our metrics run)")
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--width", type=int, default=1360)
    p.add_argument("--height", type=int, default=768)
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported) for our metrics")
    p.add_argument("--skimage-repeats", type=int, default=1, help="timed repeats of the scikit-image loop")
    p.add_argument("--out", default=None, help="output JSON (default bench/results/metrics_speed_<device>.json)")
    a = p.parse_args(argv)

    from progressive_ir.core import env_info, get_device, write_json
    from progressive_ir.metrics import psnr, ssim
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    device = get_device(a.device)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    traj, clean = make_trajectory(a.frames, (a.width, a.height))
    target = clean.expand_as(traj)
    x, y = traj.to(device), target.contiguous().to(device)

    ours = {}
    ours["psnr"] = timed(lambda: psnr(x, y), device, a.repeats)
    ours["ssim"] = timed(lambda: ssim(x, y), device, a.repeats)

    # the per-frame loop a user would write with scikit-image (float64 arrays, as the reference in our tests)
    # (tensor -> float64 HWC array inside the loop, since that is part of the work a user of tensors has to do)
    as_array = lambda t: t.double().permute(1, 2, 0).numpy()
    sk_kw = dict(data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1)
    sk = {}
    sk["psnr"] = timed(lambda: [peak_signal_noise_ratio(as_array(clean), as_array(f), data_range=1.0) for f in traj],
                       torch.device("cpu"), a.skimage_repeats)
    sk["ssim"] = timed(lambda: [structural_similarity(as_array(f), as_array(clean), **sk_kw) for f in traj],
                       torch.device("cpu"), a.skimage_repeats)

    results = {}
    for m in ("psnr", "ssim"):
        o_t, o_all, o_val = ours[m]
        s_t, s_all, s_val = sk[m]
        o_val = o_val.cpu().numpy(); s_val = np.asarray(s_val)
        finite = np.isfinite(o_val) & np.isfinite(s_val)
        results[m] = dict(ours_s=round(o_t, 4), ours_runs_s=[round(t, 4) for t in o_all],
                          skimage_loop_s=round(s_t, 4), skimage_runs_s=[round(t, 4) for t in s_all],
                          speedup_vs_skimage=round(s_t / o_t, 2), ours_frames_per_s=round(a.frames / o_t, 2),
                          skimage_frames_per_s=round(a.frames / s_t, 2),
                          max_abs_diff=float(np.abs(o_val[finite] - s_val[finite]).max()) if finite.any() else None,
                          same_infinite_frames=bool((np.isinf(o_val) == np.isinf(s_val)).all()))
    record = dict(
        benchmark="metrics_speed",
        what="PSNR/SSIM of a T x 3 x H x W trajectory against its clean target: progressive_ir.metrics (batched, torch, "
             "float64) versus a per-frame scikit-image loop (float64 arrays; SSIM with gaussian_weights=True, sigma=1.5, "
             "use_sample_covariance=False), measured side by side in one process",
        command="python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
        settings=dict(device=str(device), frames=a.frames, width=a.width, height=a.height, repeats=a.repeats,
                      skimage_repeats=a.skimage_repeats, warmup_calls=1, dtype_in="float32", compute_dtype="float64",
                      image="sample 'motorcycle' resized to width x height, Gaussian noise fading 0.2 -> 0 over the frames"),
        results=results, env=env_info(),
        machine_load=dict(loadavg_1_5_15_before=load_before, loadavg_1_5_15_after=os.getloadavg() if hasattr(os, "getloadavg") else None,
                          note="the CPU is shared with other jobs when the load average exceeds its core count; both sides "
                               "of the comparison ran in the same process under the same load"))
    out = Path(a.out) if a.out else Path(__file__).resolve().parent / "results" / f"metrics_speed_{device.type}.json"
    write_json(record, out)
    for m, r in results.items():
        print(f"{m}: ours {r['ours_s']:.3f} s, scikit-image loop {r['skimage_loop_s']:.3f} s, x{r['speedup_vs_skimage']}, "
              f"max |diff| {r['max_abs_diff']:.2e}")
    print(f"wrote {out}")
    return record


if __name__ == "__main__":
    main()
