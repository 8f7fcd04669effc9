#!/usr/bin/env python
"""The GPU suite: every GPU figure the project claims, from one prepared command, in 8 minutes on one H100/H200.

GPU time comes in short slices on a fresh machine without network, so this one command turns such a slice into
every figure at once. Each part runs in its own process under its own time budget (the suite kills the process
tree when the budget is spent), writes `<out-dir>/<part>.json` as soon as it ends, and a part that fails or runs
out of time is recorded as such while the others still run. The parts, in the order they run:

  promptir_infer    PromptIR (the paper network) at 1280x720: fp32, bf16 autocast, channels_last; frames/s, peak
                    memory, max |difference| from strict fp32           (bench/promptir_speed.py)
  promptir_train    training memory and images/s at 128x128 batch 8: full fp32, paper B's lightweight recipe (fp16),
                    ours; the two lightweight recipes on whole 1280x720 frames, batch 1 (bench/promptir_train_memory.py)
  metrics           batched PSNR/SSIM on the GPU against the CPU path and a scikit-image loop (bench/metrics_speed.py)
  cogvideo          CogVideoX1.5-5B-I2V architecture, random bf16 weights built on the GPU: one LoRA step (rank 128,
                    9 x 768 x 1360, gradient checkpointing), sampling seconds/step extrapolated to 50 steps, VAE
                    decode tiled and untiled             (bench/cogvideo_lora.py + progressive_ir.cogvideo)
  exp04             experiment 04 shortened: CRF-36 pairs of the Big Buck Bunny clip, a short stand-in starting model,
                    then the `full` regime for the time left: a first PSNR gain on the validation frames (resumable)
  promptir_compile  torch.compile'd PromptIR at 1280x720 (bf16, channels_last): frames/s against the goal of 10

Commands (see bench/README.md):
    python bench/gpu_suite.py --commit <sha>     # on the GPU machine (installs the wheels in .whl/ that are missing)
    python bench/gpu_suite.py --dry-run          # the same code path on the CPU at tiny sizes (CI; not results)

Writes bench/results/gpu_suite/<part>.json and summary.json on a GPU (runs/gpu_suite/dry-run/ for a dry run);
logs, scratch files and experiment 04's checkpoints go under runs/gpu_suite/<gpu|tiny>/.
"""
from __future__ import annotations
import argparse, importlib.metadata, importlib.util, json, os, platform, signal, subprocess, sys, time, traceback
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
ORDER = ("promptir_infer", "promptir_train", "metrics", "cogvideo", "exp04", "promptir_compile")
TOTAL_BUDGET_S = 480          # the whole suite, setup included: 8 minutes
MIN_START_S = 10              # a part is not started with less time than this left
KILL_GRACE_S = 10             # seconds between SIGTERM and SIGKILL of a part's process group
LOG_TAIL_LINES = 30


# ---------------------------------------------------------------------------------------------------------------------
# The parts: what each measures, its budget, its settings on a GPU and the overrides of a tiny (CPU) run
# ---------------------------------------------------------------------------------------------------------------------

PROMPTIR_INFER = dict(config="paper", size="1280x720", amp=["fp32", "bf16"], warmup=2, repeats=5)
PROMPTIR_COMPILE = dict(config="paper", size="1280x720", amp=["fp32", "bf16"], compile_amp=["bf16"], warmup=2,
                        repeats=5, compile_mode="default", compile_backend="inductor", goal_fps=10.0,
                        anchors_fps=dict(official_fp32=2.6, official_compiled=5.2))
PROMPTIR_TRAIN = dict(recipes=["full_fp32", "paper_lightweight_fp16", "ours_ckpt_frozen_bf16"],
                      frame_recipes=["paper_lightweight_fp16", "ours_ckpt_frozen_bf16"], warmup=2, steps=5, tiny=False,
                      anchors_gib=dict(official_full_fp32=25.7, official_paper_recipe=8.6,
                                       official_paper_recipe_720p_frame=57.9))
METRICS = dict(frames=9, width=1360, height=768, repeats=3, cpu_repeats=1)
COGVIDEO = dict(preset="full-random", width=1360, height=768, frames=9, rank=128, alpha=64, warmup=1, repeats=3,
                gradient_checkpointing=True, scheduler="dpm", guidance=6.0, sample_steps=[2, 6], extrapolate_to=50,
                decode_tiling=[False, True],
                goals=dict(train_peak_gib=16, train_s_per_step=1.4, trajectory_50_s=40),
                anchors=dict(diffusers_peft_train_gib=15.4, diffusers_peft_train_s=1.43, diffusers_trajectory_50_s=44))
EXP04 = dict(video="bigbuckbunny", size=None, max_frames=None, crf=36, val_fraction=0.2, model="paper",
             start_images=["astronaut", "chelsea", "coffee", "rocket", "motorcycle", "hubble"], start_size=None,
             start_steps=100, start_patch=128, start_batch_size=8, start_repeats=40, start_lr=2e-4,
             regimes=["full"], precision=dict(full="no", lightweight="fp16", ours="bf16"), max_steps=1500, lr=2e-4,
             warmup_epochs=0.25, patch=128, batch_size=8, repeats=16, first_chunk_steps=50, chunk_steps=300,
             eval_reserve_s=25, load_threads=8, seed=0)

PARTS = {
    "promptir_infer": dict(budget_s=40, modules=("torch", "pandas"), settings=PROMPTIR_INFER,
                           tiny=dict(config="tiny", size="64x48", warmup=0, repeats=1)),
    "promptir_train": dict(budget_s=70, modules=("torch", "psutil"), settings=PROMPTIR_TRAIN,
                           tiny=dict(recipes=["full_fp32"], frame_recipes=["ours_ckpt_frozen_bf16"], warmup=0,
                                     steps=1, tiny=True)),
    "metrics": dict(budget_s=35, modules=("torch", "skimage"), settings=METRICS,
                    tiny=dict(frames=3, width=64, height=48, repeats=1, cpu_repeats=1)),
    "cogvideo": dict(budget_s=120, modules=("torch", "diffusers", "peft", "transformers", "accelerate"),
                     settings=COGVIDEO,
                     tiny=dict(preset="tiny", width=64, height=48, rank=4, alpha=4, warmup=1, repeats=1,
                               sample_steps=[1, 2])),
    "exp04": dict(budget_s=100, modules=("torch", "accelerate", "imageio_ffmpeg", "skimage", "pandas"), settings=EXP04,
                  tiny=dict(size=[128, 72], max_frames=10, model="tiny", start_size=[64, 64], start_steps=2,
                            start_patch=32, start_batch_size=2, start_repeats=1, start_lr=1e-3, max_steps=4, lr=1e-3,
                            patch=32, batch_size=2, repeats=1, first_chunk_steps=2, chunk_steps=2, eval_reserve_s=5,
                            load_threads=2,
                            start_images=["astronaut", "chelsea"])),
    "promptir_compile": dict(budget_s=100, modules=("torch", "pandas"), settings=PROMPTIR_COMPILE,
                             tiny=dict(config="tiny", size="64x48", warmup=0, repeats=1, compile_backend="eager")),
}
TINY_BUDGET_S = 120           # per part in a dry run (a loaded 2-core CI machine); the parts take seconds there
TINY_TOTAL_BUDGET_S = 900


def settings_of(part: str, tiny: bool, overrides: dict | None = None) -> dict:
    "The settings of `part` on a GPU, with the tiny overrides for a dry run, then the user's `--set` overrides."
    s = json.loads(json.dumps(PARTS[part]["settings"]))
    if tiny: s.update(PARTS[part]["tiny"])
    for key, value in (overrides or {}).items():
        if key not in s: raise ValueError(f"--set {part}.{key}: unknown setting; {part} has {sorted(s)}")
        s[key] = value
    return s


# ---------------------------------------------------------------------------------------------------------------------
# Setup: the wheels the GPU machine lacks (carried in .whl/, see bench/fetch_wheels.sh)
# ---------------------------------------------------------------------------------------------------------------------

def _dist_name(wheel: Path) -> str:
    "The normalised distribution name of a wheel file (`imageio_ffmpeg-0.6.0-...whl` -> `imageio-ffmpeg`)."
    return wheel.name.split("-")[0].replace("_", "-").lower()


def _installed(dist: str) -> bool:
    try: importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError: return False
    return True


def install_wheels(wheel_dir: Path, target: Path) -> dict:
    "Install every wheel of `wheel_dir` whose distribution is missing here into `target` (no index, no deps)."
    wheels = sorted(wheel_dir.glob("*.whl")) if wheel_dir.is_dir() else []
    missing = [w for w in wheels if not _installed(_dist_name(w))]
    rec = dict(wheel_dir=str(wheel_dir), wheels=len(wheels), already_installed=len(wheels) - len(missing),
               installed=[w.name for w in missing], target=str(target) if missing else None)
    if not missing: return dict(rec, status="ok")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
           "--disable-pip-version-check", "--target", str(target), *map(str, missing)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    rec.update(command=" ".join(cmd), status="ok" if p.returncode == 0 else "failed")
    if p.returncode != 0: rec["error"] = p.stderr.strip()[-2000:]
    return rec


def missing_modules(modules) -> list:
    "The modules of `modules` that cannot be imported here (looked up, not imported)."
    return [m for m in modules if importlib.util.find_spec(m) is None]


# ---------------------------------------------------------------------------------------------------------------------
# Provenance: GPU name, torch/CUDA versions, commit
# ---------------------------------------------------------------------------------------------------------------------

def nvidia_smi() -> dict | None:
    "GPU name, driver and memory from nvidia-smi, without touching CUDA from this process (None without a GPU)."
    try:
        q = "name,driver_version,memory.total"
        p = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True, text=True,
                           timeout=20)
    except (OSError, subprocess.TimeoutExpired): return None
    if p.returncode != 0 or not p.stdout.strip(): return None
    name, driver, memory = [v.strip() for v in p.stdout.strip().splitlines()[0].split(",")]
    return dict(name=name, driver=driver, memory_total=memory)


def light_env() -> dict:
    "The environment as the parent sees it (no CUDA context): Python, platform, torch version, GPU via nvidia-smi."
    def version(dist):
        try: return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError: return None
    return dict(python=platform.python_version(), platform=platform.platform(), cpu_count=os.cpu_count(),
                torch=version("torch"), diffusers=version("diffusers"), gpu=nvidia_smi())


def device_env(device: str) -> dict:
    "The environment as a part sees it: `core.env_info()` plus torch, CUDA and cuDNN versions and the GPU's properties."
    import torch
    from progressive_ir.core import env_info
    env = dict(env_info(), torch=torch.__version__, cuda=torch.version.cuda,
               cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   gpu_capability=f"{props.major}.{props.minor}", gpu_multiprocessors=props.multi_processor_count)
    return env


def current_commit(given: str | None) -> str | None:
    "`given` (`--commit`), else the checkout's git commit (`core.git_commit`), else None (a tree without .git)."
    from progressive_ir.core import git_commit
    return given or git_commit()


# ---------------------------------------------------------------------------------------------------------------------
# Child side: one part, in its own process
# ---------------------------------------------------------------------------------------------------------------------

def _bench_module(name: str):
    "A script of bench/ imported as a module (its functions are reused, not copied)."
    if str(BENCH) not in sys.path: sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


class PartContext:
    "What a part function gets: device, tiny flag, deadline, a scratch folder, and `record` to save figures so far."
    def __init__(self, spec: dict):
        self.spec, self.device, self.tiny = spec, spec["device"], spec["tiny"]
        self.deadline = spec["deadline"]
        self.scratch = Path(spec["scratch"])
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.figures = {}

    def left_s(self) -> float:
        "Seconds left before the part's budget is spent."
        return self.deadline - time.time()

    def record(self, **figures):
        "Add `figures` to the part's JSON now (status 'running'), so a part stopped later keeps them."
        self.figures.update(figures)
        write_part(self.spec, status="running", figures=self.figures)


def write_part(spec: dict, status: str, figures: dict, **extra) -> dict:
    "Write the part's JSON document (atomically) from the child's side."
    from progressive_ir.core import write_json
    doc = dict(part=spec["part"], status=status, device=spec["device"], tiny=spec["tiny"], commit=spec["commit"],
               command=spec["suite_command"], part_command=spec["part_command"], budget_s=spec["budget_s"],
               settings=spec["settings"], env=spec.get("env"), figures=figures, **extra)
    write_json(doc, spec["out_json"])
    return doc


def _promptir_speed_argv(s: dict, ctx, compiled: bool) -> list:
    "Arguments of bench/promptir_speed.py for the inference parts."
    argv = ["--device", ctx.device, "--configs", s["config"], "--skip-train", "--infer-size", s["size"],
            "--amp", ",".join(s["amp"]), "--warmup", str(s["warmup"]), "--repeats", str(s["repeats"])]
    if compiled:
        argv += ["--compile", "--compiled-only", "--compile-amp", ",".join(s["compile_amp"]),
                 "--compile-mode", s["compile_mode"], "--compile-backend", s["compile_backend"]]
    if ctx.tiny: argv += ["--threads", "1"]
    return argv


def _inference_rows(raw: dict) -> list:
    "The measured inference modes of a promptir_speed JSON, with the figures the suite reports."
    keep = ("config", "amp", "channels_last", "compile", "width", "height", "fps", "ms", "peak_mb", "max_abs_diff",
            "rel_err_vs_fp32", "within_tolerance", "compile_s", "error")
    return [{k: r[k] for k in keep if k in r} for r in raw["inference"]]


def part_promptir_infer(s: dict, ctx, compiled: bool = False) -> dict:
    "PromptIR 720p inference through bench/promptir_speed.py; `compiled`: the torch.compile'd modes only."
    ps = _bench_module("promptir_speed")
    raw_path = ctx.scratch / "promptir_speed.json"
    argv = _promptir_speed_argv(s, ctx, compiled) + ["--out", str(raw_path)]
    ps.main(argv)
    raw = json.loads(raw_path.read_text())
    rows = _inference_rows(raw)
    ok = [r for r in rows if "fps" in r]
    headline = "; ".join(f"{r['amp']}{' cl' if r['channels_last'] else ''}{' compile' if r['compile'] else ''} "
                         f"{r['fps']:.2f} fps" for r in ok)
    figures = dict(script_command="python bench/promptir_speed.py " + " ".join(argv), inference=rows,
                   all_within_tolerance=raw["checks"]["all_within_tolerance"], headline=headline)
    if compiled:
        best = max((r["fps"] for r in ok), default=None)
        figures.update(goal_fps=s["goal_fps"], goal_met=best is not None and best >= s["goal_fps"],
                       anchors_fps=s["anchors_fps"])
    return figures


def part_promptir_compile(s: dict, ctx) -> dict:
    "torch.compile'd PromptIR at 720p (bf16, channels_last) against the 10 fps goal."
    return part_promptir_infer(s, ctx, compiled=True)


def part_promptir_train(s: dict, ctx) -> dict:
    "PromptIR training memory and speed through bench/promptir_train_memory.py (one fresh process per case)."
    ptm = _bench_module("promptir_train_memory")
    raw_path = ctx.scratch / "promptir_train_memory.json"
    argv = ["--device", ctx.device, "--recipes", ",".join(s["recipes"]),
            "--frame-recipes", ",".join(s["frame_recipes"]), "--warmup", str(s["warmup"]),
            "--steps", str(s["steps"]), "--out", str(raw_path)]
    if s["tiny"]: argv.append("--tiny")
    ptm.main(argv)
    raw = json.loads(raw_path.read_text())
    keep = ("recipe", "batch", "height", "width", "status", "precision_run", "images_per_s", "seconds_per_step",
            "peak_bytes", "computed_bytes", "trainable", "error")
    cases = [{k: r[k] for k in keep if k in r} for r in raw["results"]]
    summary = raw["summary"]
    headline = "; ".join(f"{n} {v['memory_gib']} GiB x{v['memory_reduction']}" for n, v in summary.items()
                         if isinstance(v, dict) and "memory_gib" in v)
    return dict(script_command="python bench/promptir_train_memory.py " + " ".join(argv), cases=cases,
                summary=summary, memory_note=raw["memory_note"], anchors_gib=s["anchors_gib"], headline=headline)


def part_metrics(s: dict, ctx) -> dict:
    "Batched PSNR/SSIM throughput on the device and on the CPU path, through bench/metrics_speed.py."
    ms = _bench_module("metrics_speed")
    key = f"{s['frames']}x3x{s['height']}x{s['width']}"
    runs = {}
    for dev in dict.fromkeys([ctx.device, "cpu"]):
        raw_path = ctx.scratch / f"metrics_speed_{dev.replace(':', '')}.json"
        rounds = s["repeats"] if dev == ctx.device else s["cpu_repeats"]
        argv = ["--device", dev, "--frames", str(s["frames"]), "--sizes", f"{s['width']}x{s['height']}",
                "--rounds", str(rounds), "--crf-frames", "1", "--crf-size", "64x48", "--preset", "ultrafast",
                "--out", str(raw_path)]
        ms.main(argv)
        raw = json.loads(raw_path.read_text())
        runs[dev] = dict(script_command="python bench/metrics_speed.py " + " ".join(argv),
                         psnr=raw["psnr"][key], ssim=raw["ssim"][key], checks=raw["checks"])
        ctx.record(runs=runs)

    def per_s(dev, metric, case):
        return round(s["frames"] / runs[dev][metric]["cases"][case]["wall_s"], 2)

    fps = {dev: {m: per_s(dev, m, "ours_batched") for m in ("psnr", "ssim")} for dev in runs}
    skimage = {m: per_s("cpu", m, "skimage_loop") for m in ("psnr", "ssim")}
    speedup = {m: round(fps[ctx.device][m] / fps["cpu"][m], 2) for m in ("psnr", "ssim")}
    headline = (f"SSIM {fps[ctx.device]['ssim']} frames/s on {ctx.device} vs {fps['cpu']['ssim']} on the CPU path "
                f"vs {skimage['ssim']} scikit-image")
    return dict(runs=runs, frames_per_s=fps, skimage_frames_per_s=skimage, speedup_device_vs_cpu=speedup,
                headline=headline)


def _cogvideo_args(s: dict, dtype, steps: int, infer_warmup: int) -> SimpleNamespace:
    "The argument object bench/cogvideo_lora.py's functions read."
    return SimpleNamespace(size=(s["width"], s["height"]), frames=s["frames"], warmup=s["warmup"], repeats=s["repeats"],
                           dtype=dtype, steps=steps, guidance=s["guidance"], infer_warmup=infer_warmup,
                           infer_repeats=1)


def _cogvideo_train(pipe, s, ctx, dev, dtype, cl) -> dict:
    "One LoRA step at the paper's size, timed over a few steps (bench/cogvideo_lora.bench_train)."
    from progressive_ir import cogvideo
    cogvideo.prepare_lora_training(pipe, rank=s["rank"], alpha=s["alpha"],
                                   gradient_checkpointing=s["gradient_checkpointing"])
    res = cl.bench_train(pipe, _cogvideo_args(s, dtype, 0, 0), dev, s["gradient_checkpointing"])
    pipe.transformer.disable_gradient_checkpointing()
    pipe.transformer.eval()
    pipe.transformer.requires_grad_(False)
    return res


def _cogvideo_sampling(pipe, s, ctx, dev, dtype, cl) -> dict:
    "Trajectories of two step counts; their difference gives seconds/step, extrapolated to `extrapolate_to` steps."
    from progressive_ir import cogvideo
    cogvideo.set_memory_options(pipe, dev, offload=False, vae_tiling=False)
    k1, k2 = s["sample_steps"]
    short = cl.bench_inference(pipe, _cogvideo_args(s, dtype, k1, 1), dev, f"{k1} steps")
    ctx.record(sampling=dict(runs=[short]))
    long = cl.bench_inference(pipe, _cogvideo_args(s, dtype, k2, 0), dev, f"{k2} steps")
    out = dict(runs=[short, long], lora="rank-%d LoRA attached (unfused), as after training" % s["rank"])
    if short.get("status") == "ok" and long.get("status") == "ok":
        per_step = (long["s_per_trajectory"] - short["s_per_trajectory"]) / (k2 - k1)
        if per_step <= 0:  # timing noise larger than the steps' cost (tiny models): nothing to extrapolate
            return dict(out, s_per_step=None, extrapolated_trajectory_s=None,
                        warning=f"t({k2} steps) <= t({k1} steps): too noisy to extrapolate")
        fixed = short["s_per_trajectory"] - k1 * per_step
        n = s["extrapolate_to"]
        out.update(s_per_step=per_step, fixed_s=fixed, extrapolated_steps=n,
                   extrapolated_trajectory_s=fixed + n * per_step,
                   method=f"seconds/step = (t({k2} steps) - t({k1} steps)) / {k2 - k1}; fixed cost (image encode, VAE "
                          f"decode, set-up) = t({k1}) - {k1} x seconds/step; {n}-step trajectory = fixed + {n} x "
                          "seconds/step (classifier-free guidance: two transformer passes per step)")
    return out


def _cogvideo_decode(pipe, s, dev, dtype, tiling: bool) -> dict:
    "Seconds and peak memory of decoding one random latent video of the paper's size, VAE tiling on or off."
    import torch
    from progressive_ir import cogvideo
    cogvideo.set_memory_options(pipe, dev, offload=False, vae_tiling=tiling)
    vae = pipe.vae
    frames = cogvideo.latent_frames(s["frames"], pipe.vae_scale_factor_temporal)
    sp = pipe.vae_scale_factor_spatial
    shape = (1, vae.config.latent_channels, frames, s["height"] // sp, s["width"] // sp)
    z = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dev, vae.dtype)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    res = dict(tiling=tiling, latent_shape=list(shape))
    try:
        with torch.no_grad():
            vae.decode(z[:, :, :1, :8, :8]).sample  # warm-up on a small latent: kernels, allocator
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
            before = torch.cuda.memory_allocated(dev) if dev.type == "cuda" else None
            sync()
            t0 = time.perf_counter()
            out = vae.decode(z).sample
            sync()
            res.update(status="ok", seconds=time.perf_counter() - t0, frames_out=list(out.shape))
        if dev.type == "cuda":
            peak = torch.cuda.max_memory_allocated(dev)
            res.update(peak_gib=peak / 2**30, peak_above_resident_gib=(peak - before) / 2**30)
    except torch.cuda.OutOfMemoryError as e:
        res.update(status="out_of_memory", error=str(e).splitlines()[0])
    return res


def part_cogvideo(s: dict, ctx) -> dict:
    "CogVideoX1.5-5B-I2V (random weights): LoRA step, sampling seconds/step, VAE decode tiled and untiled."
    import torch
    cl = _bench_module("cogvideo_lora")
    from progressive_ir import cogvideo
    dev = torch.device(ctx.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    t0 = time.perf_counter()
    pipe = cogvideo.load_pipeline(preset=s["preset"], dtype=dtype, device=dev, scheduler=s["scheduler"],
                                  vae_tiling=False)
    params = {k: sum(p.numel() for p in getattr(pipe, k).parameters()) for k in ("transformer", "vae", "text_encoder")}
    ctx.record(build_s=time.perf_counter() - t0, parameters=params, dtype=str(dtype).replace("torch.", ""))
    ctx.record(train=_cogvideo_train(pipe, s, ctx, dev, dtype, cl))
    ctx.record(sampling=_cogvideo_sampling(pipe, s, ctx, dev, dtype, cl))
    decode = []
    for tiling in s["decode_tiling"]:
        decode.append(_cogvideo_decode(pipe, s, dev, dtype, tiling))
        ctx.record(vae_decode=decode)
    train, sampling = ctx.figures["train"], ctx.figures["sampling"]
    goals = s["goals"]
    within = lambda value, goal: value is not None and value <= goal
    trajectory_s = sampling.get("extrapolated_trajectory_s")
    checks = dict(train_peak_le_goal=within(train.get("peak_gib"), goals["train_peak_gib"]),
                  train_step_le_goal=within(train.get("s_per_step"), goals["train_s_per_step"]),
                  trajectory_le_goal=within(trajectory_s, goals["trajectory_50_s"]))
    nan = float("nan")
    headline = (f"LoRA step {train.get('s_per_step', nan):.2f} s, {train.get('peak_gib', nan):.1f} GiB; "
                f"{s['extrapolate_to']}-step trajectory ~{trajectory_s if trajectory_s is not None else nan:.1f} s")
    return dict(ctx.figures, goals=goals, anchors=s["anchors"], checks=checks if dev.type == "cuda" else None,
                headline=headline)


def _load_pairs(dataset, threads: int) -> list:
    "Every item of a PairDataset, read once into memory (PNG decoding in threads)."
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max(1, threads)) as pool: return list(pool.map(dataset.__getitem__, range(len(dataset))))


def _exp04_data(s: dict, work: Path):
    "CRF pairs of the sample clip (a resumable build), loaded into memory: (train pairs, val pairs, manifest)."
    from progressive_ir.progressions import PairDataset, build_crf_pairs
    from progressive_ir.sources import sample_videos
    manifest = build_crf_pairs(work / f"crf_pairs_{s['crf']}", sample_videos([s["video"]]), crf=s["crf"],
                               size=s["size"], max_frames=s["max_frames"], val_fraction=s["val_fraction"],
                               seed=s["seed"])
    train = _load_pairs(PairDataset(manifest, "train"), s["load_threads"])
    val = _load_pairs(PairDataset(manifest, "val"), s["load_threads"])
    return train, val, manifest


def _exp04_start(s: dict, work: Path):
    "The stand-in starting model of experiment 04 (trained on the all-in-one sample pairs; resumable)."
    from progressive_ir.promptir import PromptIRConfig
    from progressive_ir.sources import sample_images
    from progressive_ir.train import TrainConfig, allinone_pairs, starting_model
    config = PromptIRConfig.paper() if s["model"] == "paper" else PromptIRConfig.tiny()
    cfg = TrainConfig(work / "start", max_steps=s["start_steps"], lr=s["start_lr"], warmup_epochs=0, resume="latest",
                      seed=s["seed"], progress=False)
    pairs = allinone_pairs(sample_images(s["start_images"]), size=s["start_size"], seed=s["seed"])
    return starting_model(None, config, pairs, cfg, patch=s["start_patch"], batch_size=s["start_batch_size"],
                          repeats=s["start_repeats"])  # long epochs: a checkpoint is written at each epoch's end


def _fit_until(model, data, cfg_kwargs: dict, batch_size: int, deadline: float, first: int, most: int) -> dict:
    "Train in chunks (each resumes from the last checkpoint): `first` steps, then as many as fit before `deadline`."
    from progressive_ir.train import TrainConfig, fit, l1_step
    chunk = first
    while True:
        t0 = time.time()
        res = fit(model, data, l1_step, TrainConfig(**cfg_kwargs, stop_after=chunk, resume="latest"),
                  batch_size=batch_size)
        model = res["model"]
        steps_per_s = chunk / max(time.time() - t0, 1e-6)  # set-up and checkpoint included
        chunk = min(most, int(0.8 * (deadline - time.time()) * steps_per_s))
        if res["finished"] or chunk < 1: return res


def _delta(rows: list) -> dict:
    "Mean PSNR/SSIM of the restored and of the compressed frames, and the gains."
    import numpy as np
    psnr, psnr_in = np.mean([r["psnr"] for r in rows]), np.mean([r["psnr_in"] for r in rows])
    ssim, ssim_in = np.mean([r["ssim"] for r in rows]), np.mean([r["ssim_in"] for r in rows])
    return dict(psnr=float(psnr), psnr_compressed=float(psnr_in), delta_psnr=float(psnr - psnr_in),
                ssim=float(ssim), ssim_compressed=float(ssim_in), delta_ssim=float(ssim - ssim_in), frames=len(rows))


def part_exp04(s: dict, ctx) -> dict:
    "Experiment 04 shortened: CRF pairs, the stand-in, each regime for its share of the time; ΔPSNR on the val frames."
    import torch
    from progressive_ir.train import RandomPatches, evaluate_pairs, regime_model
    dev = torch.device(ctx.device)
    work = ctx.scratch
    t0 = time.time()
    train, val, manifest = _exp04_data(s, work)
    ctx.record(data=dict(manifest=str(manifest), train_frames=len(train), val_frames=len(val),
                         frame=list(val[0]["lq"].shape), seconds=time.time() - t0))
    t0 = time.time()
    start, start_info = _exp04_start(s, work)
    ctx.record(starting_model=dict(start_info, seconds=time.time() - t0))
    val_dev = [dict(lq=p["lq"].to(dev), gt=p["gt"].to(dev), id=p["id"]) for p in val]
    results = {"none": _delta(evaluate_pairs(start.to(dev), val_dev))}
    start.cpu()
    ctx.record(regimes=results)
    data = RandomPatches(train, s["patch"], flips=True, seed=s["seed"], repeats=s["repeats"])
    for i, regime in enumerate(s["regimes"]):
        share = (ctx.deadline - s["eval_reserve_s"] - time.time()) / (len(s["regimes"]) - i)
        model, notes = regime_model(start, regime)
        cfg = dict(out_dir=str(work / regime), max_steps=s["max_steps"], lr=s["lr"], warmup_epochs=s["warmup_epochs"],
                   mixed_precision=s["precision"][regime], seed=s["seed"], progress=False)
        res = _fit_until(model, data, cfg, s["batch_size"], time.time() + share, s["first_chunk_steps"],
                         s["chunk_steps"])
        rows = evaluate_pairs(res["model"].to(dev), val_dev)
        results[regime] = dict(_delta(rows), steps=res["steps"], finished=res["finished"], max_steps=s["max_steps"],
                               images_per_s=res["images_per_s"], train_time_s=res["train_time_s"],
                               peak_memory_gib=res["peak_memory"] / 2**30, memory_kind=res["memory_kind"],
                               precision=res["mixed_precision"], notes=notes)
        res["model"].cpu()
        ctx.record(regimes=results)
    label = ("dry run: tiny network, a few steps on small frames; not a result" if ctx.tiny else
             f"first look: stand-in trained {start_info.get('steps')} steps, each regime as many steps as the budget "
             "allowed (see steps/max_steps; a rerun on the same machine resumes); not the paper's 20 epochs")
    best = max((r for k, r in results.items() if k != "none"), key=lambda r: r["delta_psnr"], default=results["none"])
    headline = "; ".join(f"{k} ΔPSNR {r['delta_psnr']:+.3f} dB" + (f" ({r['steps']} steps)" if "steps" in r else "")
                         for k, r in results.items())
    return dict(ctx.figures, label=label, best_delta_psnr=best["delta_psnr"], headline=headline)


PART_FUNCTIONS = {"promptir_infer": part_promptir_infer, "promptir_train": part_promptir_train, "metrics": part_metrics,
                  "cogvideo": part_cogvideo, "exp04": part_exp04, "promptir_compile": part_promptir_compile}


def run_child(spec_path: str) -> int:
    "Entry of a part's process: run the part, write its JSON as it goes; exit 0 on success, 1 on an error."
    spec = json.loads(Path(spec_path).read_text())
    inject = spec.get("inject")
    ctx = None
    try:
        spec["env"] = device_env(spec["device"])
        ctx = PartContext(spec)
        write_part(spec, status="running", figures={})
        if inject == "fail": raise RuntimeError("injected failure (--inject fail:...)")
        if inject == "hang":
            while True: time.sleep(1)
        figures = PART_FUNCTIONS[spec["part"]](spec["settings"], ctx)
        write_part(spec, status="ok", figures=figures)
        return 0
    except (Exception, SystemExit) as e:  # the error is the part's result: record it; the suite goes on
        write_part(spec, status="failed", figures=ctx.figures if ctx else {}, error=f"{type(e).__name__}: {e}",
                   traceback=traceback.format_exc(limit=8))
        return 1


# ---------------------------------------------------------------------------------------------------------------------
# Parent side: the suite
# ---------------------------------------------------------------------------------------------------------------------

def _log_tail(path: Path, n: int = LOG_TAIL_LINES) -> list:
    try: return path.read_text(errors="replace").splitlines()[-n:]
    except OSError: return []


def _kill_group(p: subprocess.Popen):
    "End a part's whole process group (it runs in its own session): SIGTERM, then SIGKILL after a grace period."
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5)):
        try: os.killpg(p.pid, sig)
        except ProcessLookupError: return
        try:
            p.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired: continue


def _child_env(site: Path | None, part: str) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    paths = [str(ROOT)] + ([str(site)] if site else []) + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    if part == "cogvideo": env.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    return env


def run_part(part: str, spec: dict, budget_s: float, log: Path, site: Path | None) -> dict:
    "Run one part in its own process group under `budget_s`; return its final JSON document (written to disk)."
    from progressive_ir.core import write_json
    spec_path = log.with_suffix(".spec.json")
    spec.update(deadline=time.time() + budget_s, budget_s=round(budget_s, 1))
    cmd = [sys.executable, "-u", str(Path(__file__).resolve()), "--child", str(spec_path)]
    spec["part_command"] = " ".join(["python", "bench/gpu_suite.py", "--child", str(spec_path)])
    write_json(spec, spec_path)
    t0 = time.time()
    with open(log, "w") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=_child_env(site, part),
                             start_new_session=True)
        try:
            rc, timed_out = p.wait(timeout=budget_s), False
        except subprocess.TimeoutExpired:
            _kill_group(p)
            rc, timed_out = p.returncode, True
    wall = time.time() - t0
    out_json = Path(spec["out_json"])
    doc = json.loads(out_json.read_text()) if out_json.is_file() else {}
    status = "timeout" if timed_out else doc.get("status", "failed") if rc == 0 else "failed"
    if status == "running": status = "failed"  # exited 0 without finishing: should not happen, but never call it ok
    base = {k: spec.get(k) for k in ("part", "device", "tiny", "commit", "settings", "budget_s")}
    doc = dict(base, command=spec["suite_command"], part_command=spec["part_command"], figures={}) | doc
    doc.update(status=status, returncode=rc, wall_s=round(wall, 1), log=str(log))
    if timed_out: doc["error"] = f"out of budget: stopped after {budget_s:.0f} s (figures above were measured before)"
    if status != "ok": doc["log_tail"] = _log_tail(log)
    if not doc.get("env"): doc["env"] = spec.get("light_env")
    write_json(doc, out_json)
    return doc


def skipped(part: str, spec: dict, reason: str) -> dict:
    "Record a part that was not started."
    from progressive_ir.core import write_json
    base = {k: spec.get(k) for k in ("part", "device", "tiny", "commit", "settings")}
    doc = dict(base, command=spec["suite_command"], env=spec["light_env"], status="skipped", error=reason,
               figures={}, wall_s=0.0)
    write_json(doc, spec["out_json"])
    return doc


def summary_table(docs: list) -> str:
    "A plain-text table: part, status, seconds used of the budget, the headline figures or the error."
    rows = [("part", "status", "s / budget", "figures")]
    for d in docs:
        used = f"{d.get('wall_s', 0):.0f} / {d.get('budget_s') or 0:.0f}"
        text = (d.get("figures") or {}).get("headline") if d["status"] == "ok" else d.get("error", "")
        rows.append((d["part"], d["status"], used, (text or "")[:140]))
    widths = [max(len(str(r[i])) for r in rows) for i in range(3)]
    lines = ["  ".join(str(r[i]).ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    return "\n".join([lines[0], "-" * len(lines[0])] + lines[1:])


def parse_key_values(items, what: str, convert) -> dict:
    "`['a=1', 'b=2']` -> {'a': convert('1'), ...} with an error naming `what` on a malformed item."
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key: raise SystemExit(f"{what}: expected KEY=VALUE, got {item!r}")
        out[key] = convert(value)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="gpu_suite.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="the CPU code path at tiny sizes (= --device cpu --tiny)")
    p.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto (default: cuda when there is one)")
    p.add_argument("--tiny", action="store_true", help="tiny networks and sizes (checks the code path; not results)")
    p.add_argument("--parts", default=",".join(ORDER),
                   help=f"comma list of parts, run in this order: {','.join(ORDER)}")
    p.add_argument("--budget", action="append", metavar="PART=SECONDS",
                   help="time budget of a part (repeatable); defaults: " +
                        ", ".join(f"{k}={v['budget_s']}" for k, v in PARTS.items()))
    p.add_argument("--total-budget", type=float, default=None,
                   help=f"wall-time budget of the whole suite in seconds (default {TOTAL_BUDGET_S}; dry run "
                        f"{TINY_TOTAL_BUDGET_S}); a part gets at most what is left")
    p.add_argument("--set", action="append", metavar="PART.KEY=JSON", dest="overrides",
                   help="override a part's setting, e.g. --set exp04.regimes='[\"full\",\"ours\"]' (value in JSON)")
    p.add_argument("--out-dir", default=None,
                   help="where <part>.json and summary.json go (default bench/results/gpu_suite; dry run: "
                        "runs/gpu_suite/dry-run)")
    p.add_argument("--work-dir", default=None, help="logs and scratch (default runs/gpu_suite/<gpu|tiny>)")
    p.add_argument("--wheels", default=str(ROOT / ".whl"),
                   help="folder of wheels to install when missing (default .whl; see bench/fetch_wheels.sh)")
    p.add_argument("--no-install", action="store_true", help="do not install wheels, even when modules are missing")
    p.add_argument("--commit", default=None, help="the commit to record (default: git rev-parse HEAD, if a checkout)")
    p.add_argument("--inject", action="append", metavar="fail:PART|hang:PART",
                   help="testing: make PART raise at its start (fail) or never end (hang)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.dry_run: a.device, a.tiny = "cpu", True
    a.parts = [x for x in a.parts.split(",") if x]
    unknown = [x for x in a.parts if x not in PARTS]
    if unknown: raise SystemExit(f"--parts: unknown {unknown}; expected some of {list(ORDER)}")
    a.budgets = parse_key_values(a.budget, "--budget", float)
    a.injections = {}
    for item in a.inject or []:
        kind, _, part = item.partition(":")
        if kind not in ("fail", "hang") or part not in PARTS:
            raise SystemExit(f"--inject: expected fail:PART or hang:PART with PART in {list(PARTS)}, got {item!r}")
        a.injections[part] = kind
    a.part_overrides = {}
    for key, value in parse_key_values(a.overrides, "--set", json.loads).items():
        part, _, name = key.partition(".")
        if part not in PARTS or not name:
            raise SystemExit(f"--set: expected PART.KEY=JSON with PART in {list(PARTS)}, got {key!r}")
        a.part_overrides.setdefault(part, {})[name] = value
    bad = [k for k in a.budgets if k not in PARTS]
    if bad: raise SystemExit(f"--budget: unknown part(s) {bad}; expected some of {list(PARTS)}")
    return a


def resolve_device(a) -> str:
    "The device string the parts use; a GPU run on a machine without CUDA is an error pointing to --dry-run."
    if a.device != "auto" and not a.device.startswith("cuda"): return a.device
    import torch
    if torch.cuda.is_available(): return "cuda" if a.device == "auto" else a.device
    if a.device == "auto" and a.tiny: return "cpu"
    raise SystemExit("gpu_suite: no CUDA GPU here; use --dry-run (or --device cpu --tiny) for the CPU check")


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.child: return run_child(a.child)
    t_start = time.time()
    command = " ".join(["python", "bench/gpu_suite.py", *(sys.argv[1:] if argv is None else argv)])
    tag = "tiny" if a.tiny else "gpu"
    work = Path(a.work_dir) if a.work_dir else ROOT / "runs" / "gpu_suite" / tag
    out_dir = Path(a.out_dir) if a.out_dir else (ROOT / "runs" / "gpu_suite" / "dry-run" if a.tiny else
                                                   ROOT / "bench" / "results" / "gpu_suite")
    (work / "logs").mkdir(parents=True, exist_ok=True)
    site = work / "site"
    if site.is_dir(): sys.path.insert(0, str(site))  # installed by an earlier run on this machine
    setup = dict(status="skipped", reason="--no-install") if a.no_install else install_wheels(Path(a.wheels), site)
    if setup.get("installed") and str(site) not in sys.path: sys.path.insert(0, str(site))
    site = site if site.is_dir() else None
    if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))
    from progressive_ir.core import write_json
    device = resolve_device(a)
    total = a.total_budget or (TINY_TOTAL_BUDGET_S if a.tiny else TOTAL_BUDGET_S)
    deadline = t_start + total
    commit = current_commit(a.commit)
    env = light_env()
    print(f"gpu suite: device {device}{' (tiny)' if a.tiny else ''}; parts {','.join(a.parts)}; "
          f"total budget {total:.0f} s; out {out_dir}; commit {commit}", flush=True)
    print(f"setup: {setup['status']}, installed {setup.get('installed') or 'nothing'}", flush=True)
    docs = []
    for part in [p for p in ORDER if p in a.parts]:
        spec = dict(part=part, device=device, tiny=a.tiny, commit=commit, suite_command=command, light_env=env,
                    settings=settings_of(part, a.tiny, a.part_overrides.get(part)), inject=a.injections.get(part),
                    out_json=str(out_dir / f"{part}.json"), scratch=str(work / part))
        budget = a.budgets.get(part, TINY_BUDGET_S if a.tiny else PARTS[part]["budget_s"])
        left = deadline - time.time()
        missing = missing_modules(PARTS[part]["modules"])
        if missing:
            doc = skipped(part, spec, f"missing module(s) {missing}: carry their wheels (bench/fetch_wheels.sh)")
        elif left < MIN_START_S:
            doc = skipped(part, spec, f"the suite's total budget ({total:.0f} s) was spent before this part")
        else:
            print(f"== {part} (budget {min(budget, left):.0f} s)", flush=True)
            doc = run_part(part, spec, min(budget, left), work / "logs" / f"{part}.log", site)
        docs.append(doc)
        print(f"   {part}: {doc['status']} in {doc.get('wall_s', 0):.0f} s -> {spec['out_json']}", flush=True)
    table = summary_table(docs)
    rows = [{k: d.get(k) for k in ("part", "status", "wall_s", "budget_s", "error")} |
            dict(headline=(d.get("figures") or {}).get("headline"), json=f"{d['part']}.json") for d in docs]
    summary = dict(suite="gpu_suite", command=command, commit=commit, device=device, tiny=a.tiny, env=env,
                   setup=setup, total_budget_s=total, wall_s=round(time.time() - t_start, 1),
                   table=table.splitlines(), parts=rows)
    write_json(summary, out_dir / "summary.json")
    print("\n" + table + f"\n\nwall {summary['wall_s']:.0f} s of {total:.0f}; wrote {out_dir}/summary.json", flush=True)
    return 0 if all(d["status"] == "ok" for d in docs) else 1


if __name__ == "__main__":
    sys.exit(main())
