"""Speed and memory of PromptIR: the paper (official) and lightweight configurations, side by side.

Training step (forward, forward+backward; L1 loss) at 128 x 128, batch 8 (the official patch size and batch per GPU):
the paper network fully trainable, the lightweight one with its backbone frozen (paper B's fine-tuning regime).
Inference at 1280 x 720, batch 1: fp32, bf16/fp16 autocast, channels_last, optionally torch.compile. Every reduced-
precision or re-laid-out output is compared with the same model's strict fp32 output (TF32 off) on the same input.
Weights are random (speed does not depend on them); all figures come from this one run, so ratios are like for like.

    python bench/promptir_speed.py --device cpu --small --threads 1   # CPU: batch 2 at 64x64, inference at 256x256
    python bench/promptir_speed.py --device cuda                      # GPU: every config, precision and layout
    python bench/promptir_speed.py --device cuda --configs paper --amp bf16 --compile --skip-train \
        --out bench/results/promptir_speed_cuda_compile.json          # GPU goal: >= 10 fps at 1280x720 (H100),
                                                                      # bf16 + channels_last + torch.compile
Each torch.compile takes minutes; restrict --configs/--amp when compiling (a device command may run 10 minutes).

Writes bench/results/promptir_speed_<cpu|cuda>.json (or --out) with core.env_info(), the command, the settings and
the figures.
"""
from __future__ import annotations
import argparse, copy, os, resource, sys, time
from pathlib import Path

import torch
import torch.nn.functional as F

from progressive_ir.core import env_info, get_device, write_json
from progressive_ir.promptir import PromptIR, PromptIRConfig, freeze_backbone, to_channels_last, param_table

AMP = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CONFIGS = {"paper": PromptIRConfig.paper, "lightweight": PromptIRConfig.lightweight, "tiny": PromptIRConfig.tiny}
# Largest accepted ||y - y_fp32|| / ||y_fp32 - x|| (error relative to the network's residual, i.e. what it adds to the
# input): bf16 keeps 8 mantissa bits, fp16 11; fp32 variants differ from strict fp32 by TF32 convolutions and
# summation order only.
TOLERANCE = {"fp32": 1e-2, "bf16": 5e-2, "fp16": 1e-2}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (default)")
    p.add_argument("--small", action="store_true", help="CPU sizes: train batch 2 at 64x64, inference at 256x256")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd inference (channels_last)")
    p.add_argument("--compile-mode", default="default", help="torch.compile mode (e.g. max-autotune-no-cudagraphs)")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend (inductor; 'eager' only traces with dynamo: a quick check of the path)")
    p.add_argument("--compile-amp", default=None,
                   help="comma list of the precisions to compile (default: every one of --amp)")
    p.add_argument("--compiled-only", action="store_true",
                   help="time only the torch.compile'd modes (the strict fp32 reference is still computed)")
    p.add_argument("--configs", default="paper,lightweight",
                   help="comma list of: paper, lightweight, tiny (tiny: a very small network, for dry runs)")
    p.add_argument("--amp", default=None, help="comma list of fp32,bf16,fp16 (default: fp32,bf16 on CPU; all on CUDA)")
    p.add_argument("--train-size", type=int, default=None, help="training patch side (default 128; --small 64)")
    p.add_argument("--train-batch", type=int, default=None, help="training batch (default 8; --small 2)")
    p.add_argument("--infer-size", default=None, help="inference WIDTHxHEIGHT (default 1280x720; --small 256x256)")
    p.add_argument("--warmup", type=int, default=None, help="untimed iterations first (default 3; --small 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed iterations (default 10; --small 3)")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-infer", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON path (default bench/results/promptir_speed_<device type>.json)")
    a = p.parse_args(argv)
    small = a.small
    a.train_size = a.train_size or (64 if small else 128)
    a.train_batch = a.train_batch or (2 if small else 8)
    a.infer_size = tuple(int(v) for v in (a.infer_size or ("256x256" if small else "1280x720")).lower().split("x"))
    a.warmup = a.warmup if a.warmup is not None else (1 if small else 3)
    a.repeats = a.repeats or (3 if small else 10)
    a.argv = list(sys.argv[1:] if argv is None else argv)
    return a


def sync(dev):
    if dev.type == "cuda": torch.cuda.synchronize(dev)


def reset_peak(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev); torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(dev)
        return torch.cuda.memory_allocated(dev)
    return None


def peak_mb(dev, base):
    "Peak allocated CUDA memory above `base` during the measurement (None on CPU: not measured)."
    return round((torch.cuda.max_memory_allocated(dev) - base) / 2**20, 1) if dev.type == "cuda" else None


def timed(fn, dev, warmup, repeats):
    "Median and min seconds of `fn()` over `repeats` runs after `warmup` runs."
    for _ in range(warmup): fn()
    sync(dev); times = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); sync(dev); times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2], times[0]


def build(name, dev, seed):
    torch.manual_seed(seed)
    cfg = CONFIGS[name]()
    return PromptIR(cfg).to(dev)


def autocast(dev, amp):
    return torch.autocast(device_type=dev.type, dtype=AMP[amp] or torch.bfloat16, enabled=AMP[amp] is not None)


def bench_train(name, amp, channels_last, a, dev):
    "Forward and forward+backward of one training batch; the lightweight network with its backbone frozen."
    model = build(name, dev, a.seed).train()
    if name == "lightweight": freeze_backbone(model)
    if channels_last: to_channels_last(model)
    g = torch.Generator(device="cpu").manual_seed(a.seed)
    x = torch.rand(a.train_batch, 3, a.train_size, a.train_size, generator=g).to(dev)
    y = torch.rand(x.shape, generator=g).to(dev)
    if channels_last: x, y = x.contiguous(memory_format=torch.channels_last), y.contiguous(memory_format=torch.channels_last)

    def fwd():
        with autocast(dev, amp): return F.l1_loss(model(x).float(), y)

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        fwd().backward()

    base = reset_peak(dev)
    t_fwd, _ = timed(fwd, dev, a.warmup, a.repeats)
    mem_fwd = peak_mb(dev, base)
    base = reset_peak(dev)
    t_step, t_step_min = timed(fwd_bwd, dev, a.warmup, a.repeats)
    mem_step = peak_mb(dev, base)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return dict(config=name, amp=amp, channels_last=channels_last, batch=a.train_batch, size=a.train_size,
                trainable_params=trainable, forward_ms=round(1e3 * t_fwd, 2), forward_backward_ms=round(1e3 * t_step, 2),
                forward_backward_min_ms=round(1e3 * t_step_min, 2), peak_forward_mb=mem_fwd, peak_forward_backward_mb=mem_step)


def reference_output(model, x, dev):
    "The model's output in strict fp32 (TF32 off), contiguous layout."
    prev = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.inference_mode(): return model(x).float()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev


def bench_infer(name, modes, a, dev):
    "Inference time, fps, peak memory and agreement with strict fp32, for each (amp, channels_last, compile) mode."
    base_model = build(name, dev, a.seed).eval()
    W, H = a.infer_size
    x = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(a.seed)).to(dev)
    ref = reference_output(base_model, x, dev)
    residual = (ref - x).norm().item()
    rows = []
    for amp, cl, comp in modes:
        row = dict(config=name, amp=amp, channels_last=cl, compile=comp, width=W, height=H, batch=1)
        try:
            model = to_channels_last(copy.deepcopy(base_model)) if cl else base_model
            xin = x.contiguous(memory_format=torch.channels_last) if cl else x
            fn = model
            if comp:
                opts = dict(mode=a.compile_mode) if a.compile_backend == "inductor" else {}
                fn = torch.compile(model, backend=a.compile_backend, **opts)

            def run():
                with torch.inference_mode(), autocast(dev, amp): return fn(xin)

            if comp:
                t = time.perf_counter(); run(); sync(dev); row["compile_s"] = round(time.perf_counter() - t, 1)
            base = reset_peak(dev)
            t_med, t_min = timed(run, dev, a.warmup, a.repeats)
            row.update(ms=round(1e3 * t_med, 2), min_ms=round(1e3 * t_min, 2), fps=round(1 / t_med, 3), peak_mb=peak_mb(dev, base))
            y = run().float()
            err = (y - ref).norm().item() / max(residual, 1e-12)
            row.update(rel_err_vs_fp32=float(f"{err:.3g}"), max_abs_diff=float(f"{(y - ref).abs().max().item():.3g}"),
                       within_tolerance=bool(err <= TOLERANCE[amp]), tolerance=TOLERANCE[amp])
            del model, fn
        except Exception as e:  # an out-of-memory or a compile failure is a result too: record it and go on
            row["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
            if dev.type == "cuda": torch.cuda.empty_cache()
        rows.append(row)
        print(" ", row, flush=True)
    return rows


def ratios(train, infer):
    "Like-for-like ratios from this run: lightweight vs paper, and each inference mode vs fp32."
    out = {}
    key = lambda r: (r["amp"], r["channels_last"])
    t = {(r["config"],) + key(r): r for r in train}
    for (cfg, amp, cl), r in t.items():
        p = t.get(("paper", amp, cl))
        if cfg == "lightweight" and p:
            tag = f"train lightweight/paper {amp}{' cl' if cl else ''}"
            out[tag + " fwd+bwd time"] = round(r["forward_backward_ms"] / p["forward_backward_ms"], 3)
            if r["peak_forward_backward_mb"] and p["peak_forward_backward_mb"]:
                out[tag + " fwd+bwd peak memory"] = round(r["peak_forward_backward_mb"] / p["peak_forward_backward_mb"], 3)
    for cfg in {r["config"] for r in infer}:
        rows = [r for r in infer if r["config"] == cfg and "ms" in r]
        ref = next((r for r in rows if r["amp"] == "fp32" and not r["channels_last"] and not r["compile"]), None)
        for r in rows:
            if ref and r is not ref:
                mode = f"{r['amp']}{' +cl' if r['channels_last'] else ''}{' +compile' if r['compile'] else ''}"
                out[f"infer {cfg} speedup {mode} vs fp32"] = round(ref["ms"] / r["ms"], 3)
    return out


def main(argv=None):
    a = parse_args(argv)
    dev = get_device(a.device)
    if a.threads: torch.set_num_threads(a.threads)
    load_before = os.getloadavg()
    if dev.type == "cuda": torch.backends.cudnn.benchmark = True
    amps = (a.amp or ("fp32,bf16,fp16" if dev.type == "cuda" else "fp32,bf16")).split(",")
    for amp in amps:
        if amp not in AMP: raise SystemExit(f"--amp: expected fp32, bf16 or fp16, got {amp!r}")
    configs = a.configs.split(",")
    bad = [c for c in configs if c not in CONFIGS]
    if bad: raise SystemExit(f"--configs: expected some of {sorted(CONFIGS)}, got {bad}")
    compile_amps = a.compile_amp.split(",") if a.compile_amp else amps
    if not set(compile_amps) <= set(amps): raise SystemExit(f"--compile-amp: {compile_amps} must be among --amp {amps}")
    if a.compiled_only and not a.compile: raise SystemExit("--compiled-only: needs --compile")
    plain = [] if a.compiled_only else [(amp, cl, False) for amp in amps for cl in (False, True)]
    modes = plain + [(amp, True, True) for amp in compile_amps if a.compile]
    print(f"device {dev}; configs {configs}; amp {amps}; train {a.train_batch}x{a.train_size}^2; infer {a.infer_size}", flush=True)
    rows = ["Table 1: full model", "Table 1: PromptIR modules"]
    params = {c: {k: float(v) for k, v in param_table(build(c, torch.device("cpu"), 0)).loc[rows, "M (2^20)"].items()}
              for c in configs}
    t0 = time.time(); train, infer = [], []
    if not a.skip_train:
        for name in configs:
            for amp in amps:
                for cl in (False, True):
                    try: r = bench_train(name, amp, cl, a, dev)
                    except Exception as e:
                        r = dict(config=name, amp=amp, channels_last=cl, error=f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}")
                        if dev.type == "cuda": torch.cuda.empty_cache()
                    print(" ", r, flush=True); train.append(r)
    if not a.skip_infer:
        for name in configs: infer += bench_infer(name, modes, a, dev)
    ok = [r for r in infer if "ms" in r]
    goal = next((r for r in ok if r["config"] == "paper" and r["amp"] == "bf16" and r["channels_last"] and r["compile"]), None)
    result = dict(
        benchmark="promptir_speed", command=" ".join(["python", "bench/promptir_speed.py", *a.argv]), env=env_info(),
        settings=dict(device=str(dev), small=a.small, configs=configs, amp=amps, train_size=a.train_size, train_batch=a.train_batch,
                      infer_size=dict(width=a.infer_size[0], height=a.infer_size[1]), warmup=a.warmup, repeats=a.repeats,
                      compile=a.compile, compile_amp=compile_amps if a.compile else None, compiled_only=a.compiled_only,
                      threads=torch.get_num_threads(), compile_mode=a.compile_mode if a.compile else None,
                      compile_backend=a.compile_backend if a.compile else None, seed=a.seed,
                      cudnn_benchmark=dev.type == "cuda", tf32_default=dict(matmul=torch.backends.cuda.matmul.allow_tf32, cudnn=torch.backends.cudnn.allow_tf32),
                      weights="random (speed and memory do not depend on the values)",
                      train_regimes=dict(paper="all parameters trainable", lightweight="backbone frozen (freeze_backbone)"),
                      tolerance_rel_residual=TOLERANCE),
        params_M_2_20=params, train=train, inference=infer, ratios=ratios([r for r in train if "forward_ms" in r], ok),
        checks=dict(all_within_tolerance=all(r["within_tolerance"] for r in ok) if ok else None,
                    failures=[{k: r[k] for k in ("config", "amp", "channels_last", "compile", "rel_err_vs_fp32")} for r in ok if not r["within_tolerance"]],
                    goal_10fps_720p=(dict(mode="paper bf16 + channels_last + compile", fps=goal["fps"], met=goal["fps"] >= 10)
                                     if goal and a.infer_size == (1280, 720) else "not measured (needs --compile at 1280x720)")),
        notes=["peak memory is torch.cuda.max_memory_allocated above the model and inputs already resident; not measured on CPU (null)",
               "ms are medians over `repeats` timed runs after `warmup` untimed runs; fps = 1000 / ms at batch 1",
               f"load average (1, 5, 15 min) before {tuple(round(v, 2) for v in load_before)}, after "
               f"{tuple(round(v, 2) for v in os.getloadavg())}: CPU timings on a shared machine are inflated when it is high",
               f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (whole run)"],
        seconds=round(time.time() - t0, 1))
    out = Path(a.out) if a.out else Path(__file__).resolve().parent / "results" / f"promptir_speed_{dev.type}.json"
    write_json(result, out)
    print(f"wrote {out}; all within tolerance: {result['checks']['all_within_tolerance']}; goal: {result['checks']['goal_10fps_720p']}")
    return 0 if result["checks"]["all_within_tolerance"] in (True, None) else 1


if __name__ == "__main__":
    sys.exit(main())
