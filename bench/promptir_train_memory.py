#!/usr/bin/env python
"""Peak training memory and training throughput of PromptIR under three recipes (paper B, Sec. 4.2 and Table 2):

- full_fp32:            the paper network, every parameter trained (the 6 never-called convs frozen), fp32;
- paper_lightweight:    paper B's lightweight network (shallow prompt stored at half size, deep PIM FFN 1.5),
                        backbone frozen (requires_grad=False), fp16 autocast with loss scaling;
- ours_*:               the same lightweight network and freezing, plus activation checkpointing of the frozen
                        transformer blocks (`train.checkpoint_blocks`; `_all` also of the trainable prompt-interaction
                        blocks), in bf16 or fp16 autocast.

On a CPU, fp16 recipes run in bf16 by default (`--cpu-fp16-as`; recorded as `precision_run`): the activations kept
are 2 bytes either way, and CPU fp16 kernels are emulated (a single step of the paper network took over 6 CPU
minutes here).

Each case runs in a fresh subprocess on 128 x 128 patches, batch 8 (the official PromptIR recipe) and, for the
lightweight variants (and the full model, for reference), on whole 1280 x 720 frames, batch 1. The step is the one
`train.fit` runs (autocast forward, L1 loss in fp32, backward with GradScaler for fp16, AdamW lr 2e-4), on a
synthetic batch already on the device (so data loading is not measured); weights are random (cost does not depend
on them).

Memory: on a GPU the peak of torch.cuda.max_memory_allocated over the case (weights, gradients, AdamW state,
activations, workspace), from a fresh process. On a CPU two figures: (1) `computed_bytes` = parameters + gradients +
AdamW state of the trainable parameters + the activations autograd keeps for backward (measured exactly with
saved_tensors_hooks, `train.training_memory`): a lower bound of the peak; (2) `rss_delta_bytes` = the process's
peak resident set size (ru_maxrss) minus its RSS before the model was built: the real peak, noisier (allocator
caching, libraries). `computed_bytes` is also reported on a GPU.

Usage (one command runs everything and writes bench/results/promptir_train_memory_<device>.json):
    python bench/promptir_train_memory.py                 # GPU if there is one
    python bench/promptir_train_memory.py --device cpu --small
    python bench/promptir_train_memory.py --device cpu --tiny --out /tmp/x.json   # dry run: tiny networks, not a result
The JSON is rewritten after every case, so a run stopped part-way keeps the cases already measured.
"""
from __future__ import annotations
import argparse, json, os, re, resource, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {
    "full_fp32": dict(config="paper", freeze=False, precision="no", checkpoint=None),
    "paper_lightweight_fp16": dict(config="lightweight", freeze=True, precision="fp16", checkpoint=None),
    "ours_ckpt_frozen_bf16": dict(config="lightweight", freeze=True, precision="bf16", checkpoint="frozen"),
    "ours_ckpt_frozen_fp16": dict(config="lightweight", freeze=True, precision="fp16", checkpoint="frozen"),
    "ours_ckpt_all_bf16": dict(config="lightweight", freeze=True, precision="bf16", checkpoint="all"),
}
OURS = "ours_ckpt_frozen_bf16"  # the recipe the goals are checked on (the others are reported beside it)
GOALS = dict(paper_reduction=2.66, ours_reduction=5.0, ours_patch_gib=5.1, ours_speedup=2.0, frame_gib=24.0)


def network_config(name: str, tiny: bool = False):
    "The PromptIR configuration of a recipe: 'paper' or 'lightweight'; with `tiny`, the same two built on the tiny network."
    from progressive_ir.promptir import PromptIRConfig
    if not tiny:
        return PromptIRConfig.paper() if name == "paper" else PromptIRConfig.lightweight()
    return PromptIRConfig.tiny() if name == "paper" else PromptIRConfig.tiny().to_lightweight()


def run_case(recipe: str, shape: tuple, device: str, warmup: int, steps: int, cpu_fp16_as: str = "bf16",
             tiny: bool = False) -> dict:
    "One measurement, in this process: build, warm up, time `steps` steps; memory figures (see the module docstring)."
    import psutil, torch, torch.nn.functional as F
    from progressive_ir.promptir import PromptIR, freeze_backbone
    from progressive_ir.train import freeze_unused, checkpoint_blocks, training_memory, count_parameters
    r, (b, h, w) = RECIPES[recipe], shape
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.init(); torch.backends.cudnn.benchmark = True; torch.cuda.reset_peak_memory_stats(dev)
    rss0 = psutil.Process().memory_info().rss
    torch.manual_seed(0)
    cfg = network_config(r["config"], tiny)
    model = PromptIR(cfg).to(dev).train()
    freeze_backbone(model) if r["freeze"] else freeze_unused(model)
    ckpt = checkpoint_blocks(model, frozen_only=r["checkpoint"] == "frozen") if r["checkpoint"] else []
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=1e-4)
    ran = cpu_fp16_as if (dev.type == "cpu" and r["precision"] == "fp16") else r["precision"]
    amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(ran)
    scaler = torch.amp.GradScaler(dev.type, enabled=ran == "fp16")
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.rand(b, 3, h, w, device=dev, generator=g); y = torch.rand(b, 3, h, w, device=dev, generator=g)

    def step():
        with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = model(x)
        loss = F.l1_loss(out.float(), y)
        scaler.scale(loss).backward(); scaler.step(opt); scaler.update(); opt.zero_grad(set_to_none=True)
        return loss

    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    res = dict(recipe=recipe, **r, precision_run=ran, batch=b, height=h, width=w, checkpointed_blocks=len(ckpt), **count_parameters(model))
    try:
        for _ in range(warmup): step()
        sync(); t0 = time.perf_counter()
        for _ in range(steps): step()
        sync(); dt = time.perf_counter() - t0
        res.update(status="ok", seconds_per_step=dt / steps, images_per_s=b * steps / dt)
        if dev.type == "cuda":
            res.update(peak_bytes=torch.cuda.max_memory_allocated(dev), peak_reserved_bytes=torch.cuda.max_memory_reserved(dev))
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
            res.update(rss_delta_bytes=peak - rss0)
    except torch.OutOfMemoryError as e:
        res.update(status="out of memory", error=str(e).splitlines()[0])
        return res
    opt.zero_grad(set_to_none=True)
    if dev.type == "cuda": torch.cuda.empty_cache()
    mem = training_memory(model, dict(lq=x, gt=y), mixed_precision=ran)
    res.update(computed_bytes=mem["total"], computed=mem)
    return res


def gib(n): return None if n is None else round(n / 2**30, 3)


def device_tag(device: str) -> str:
    "cpu, or a short slug of the GPU's name (h100, h200, a100, ...)."
    if device == "cpu": return "cpu"
    import torch
    m = re.search(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b", torch.cuda.get_device_name(0))
    return m.group(1).lower() if m else "cuda"


def summarize(results: list, device: str, patch_shape, frame_shape) -> dict:
    "Memory reductions and speed-ups against full_fp32 on patches, and the goals of the issue (GPU only)."
    key = "peak_bytes" if device != "cpu" else "computed_bytes"
    by = {(r["recipe"], (r["batch"], r["height"], r["width"])): r for r in results}
    full = by.get(("full_fp32", patch_shape), {})
    out = {"memory_measure": key}
    for name in RECIPES:
        r = by.get((name, patch_shape), {})
        if r.get("status") == "ok" and full.get("status") == "ok":
            out[name] = dict(memory_reduction=round(full[key] / r[key], 2), speedup=round(r["images_per_s"] / full["images_per_s"], 2),
                             memory_gib=gib(r[key]), images_per_s=round(r["images_per_s"], 2))
            if device == "cpu": out[name]["rss_reduction"] = round(full["rss_delta_bytes"] / max(r["rss_delta_bytes"], 1), 2)
        fr = by.get((name, frame_shape), {})
        if fr: out.setdefault(name, {})["frame"] = dict(status=fr["status"], memory_gib=gib(fr.get(key)), images_per_s=fr.get("images_per_s"))
    if device != "cpu" and OURS in out and "paper_lightweight_fp16" in out:
        o, p = out[OURS], out["paper_lightweight_fp16"]
        out["goals"] = dict(
            paper_reduction_ge_2_66=p.get("memory_reduction", 0) >= GOALS["paper_reduction"],
            ours_reduction_ge_5=o.get("memory_reduction", 0) >= GOALS["ours_reduction"],
            ours_patch_le_5_1_gib=(o.get("memory_gib") or 1e9) <= GOALS["ours_patch_gib"],
            ours_speedup_ge_2=o.get("speedup", 0) >= GOALS["ours_speedup"],
            ours_frame_720p_le_24_gb=o.get("frame", {}).get("status") == "ok" and (o["frame"]["memory_gib"] or 1e9) * 2**30 <= GOALS["frame_gib"] * 1e9)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto (GPU if there is one), cuda, cuda:N or cpu")
    ap.add_argument("--small", action="store_true", help="small sizes for a CPU: 64x64 patches batch 2, 160x96 frames batch 1")
    ap.add_argument("--tiny", action="store_true",
                    help="dry run: the tiny network (paper and lightweight variants), 32x32 patches batch 2, 80x48 frames; "
                         "checks the script, not a result")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps per case (default 3 on GPU, 0 with --small)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per case (default 10 on GPU, 1 with --small)")
    ap.add_argument("--recipes", default=None, help="comma-separated subset of " + ",".join(RECIPES) +
                    " (default: all; on a CPU all but ours_ckpt_frozen_fp16)")
    ap.add_argument("--cpu-fp16-as", default="bf16", choices=["bf16", "fp16"],
                    help="on a CPU, run fp16 recipes in this precision (default bf16: the same 2-byte activations; "
                         "CPU fp16 kernels are emulated, often 10x slower)")
    ap.add_argument("--frame-recipes", default=None,
                    help="comma-separated recipes also measured on whole frames (default: the same as --recipes)")
    ap.add_argument("--out", default=None, help="output JSON (default bench/results/promptir_train_memory_<device>.json)")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case, print its JSON
    a = ap.parse_args(argv)
    if a.case:
        c = json.loads(a.case)
        res = run_case(c["recipe"], tuple(c["shape"]), c["device"], c["warmup"], c["steps"], c["cpu_fp16_as"], c["tiny"])
        print("RESULT " + json.dumps(res))
        return
    import torch
    from progressive_ir.core import write_json
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    if device.startswith("cuda") and not torch.cuda.is_available(): sys.exit("--device: CUDA asked for, but not available here")
    small = a.small or a.tiny
    patch_shape, frame_shape = {"tiny": ((2, 32, 32), (1, 48, 80)), "small": ((2, 64, 64), (1, 96, 160)),
                                "full": ((8, 128, 128), (1, 720, 1280))}["tiny" if a.tiny else "small" if a.small else "full"]
    warmup = a.warmup if a.warmup is not None else (0 if small else 3)
    steps = a.steps if a.steps is not None else (1 if small else 10)
    default = [r for r in RECIPES if device != "cpu" or r != "ours_ckpt_frozen_fp16"]
    recipes = [r for r in a.recipes.split(",") if r] if a.recipes else default
    frame_recipes = [r for r in a.frame_recipes.split(",") if r] if a.frame_recipes is not None else recipes
    bad = [r for r in recipes + frame_recipes if r not in RECIPES]
    if bad: sys.exit(f"--recipes/--frame-recipes: unknown {bad}; expected some of {list(RECIPES)}")
    cases = [(r, patch_shape) for r in recipes] + [(r, frame_shape) for r in frame_recipes]
    tag = device_tag(device)
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / f"promptir_train_memory_{tag}.json"
    argv_given = argv if argv is not None else sys.argv[1:]
    results = []
    for recipe, shape in cases:
        case = json.dumps(dict(recipe=recipe, shape=shape, device=device, warmup=warmup, steps=steps,
                               cpu_fp16_as=a.cpu_fp16_as, tiny=a.tiny))
        t0 = time.time()
        p = subprocess.run([sys.executable, __file__, "--case", case], capture_output=True, text=True, cwd=ROOT)
        line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
        if line: r = json.loads(line[-1][7:])
        else:
            error = (p.stderr.strip().splitlines() or ["?"])[-1]
            r = dict(recipe=recipe, **RECIPES[recipe], batch=shape[0], height=shape[1], width=shape[2], status="failed",
                     error=error)
        r["wall_s"] = round(time.time() - t0, 1)
        results.append(r)
        mem = r.get("peak_bytes", r.get("computed_bytes"))
        print(f"{recipe:24s} {shape}  {r['status']:14s} mem {gib(mem)} GiB  "
              f"{r.get('images_per_s', float('nan')):.2f} img/s  ({r['wall_s']} s)", flush=True)
        settings = dict(patch=dict(batch=patch_shape[0], height=patch_shape[1], width=patch_shape[2]),
                        frame=dict(batch=frame_shape[0], height=frame_shape[1], width=frame_shape[2]),
                        tiny=a.tiny, warmup_steps=warmup, timed_steps=steps, recipes_run=recipes,
                        frame_recipes_run=frame_recipes, cpu_fp16_as=a.cpu_fp16_as if device == "cpu" else None)
        doc = document(results, device, tag, settings, "python bench/promptir_train_memory.py " + " ".join(argv_given),
                       complete=len(results) == len(cases))
        write_json(doc, out)  # after every case: a run stopped part-way keeps what it measured
    print(f"wrote {out}")
    print(json.dumps(doc["summary"], indent=1))


def document(results: list, device: str, tag: str, settings: dict, command: str, complete: bool) -> dict:
    "The JSON document of a run: environment, settings, every case measured so far, and the summary."
    import torch
    from progressive_ir.core import env_info
    patch_shape = tuple(settings["patch"][k] for k in ("batch", "height", "width"))
    frame_shape = tuple(settings["frame"][k] for k in ("batch", "height", "width"))
    gpu_note = ("GPU: peak torch.cuda.max_memory_allocated per case in a fresh process; computed_bytes = params + "
                "grads + AdamW state + activations saved for backward (saved_tensors_hooks), a lower bound")
    cpu_note = ("CPU: computed_bytes = params + grads + AdamW state + activations saved for backward (measured with "
                "saved_tensors_hooks; a lower bound of the peak); rss_delta_bytes = peak RSS (ru_maxrss) minus RSS "
                "before the model was built, in a fresh process per case. CPU throughput is not indicative of GPU "
                f"throughput. fp16 recipes ran in {settings['cpu_fp16_as']} on the CPU (precision_run): same 2-byte "
                "activations, but CPU fp16 kernels are emulated and far slower.")
    tf32 = dict(cudnn=torch.backends.cudnn.allow_tf32, matmul=torch.backends.cuda.matmul.allow_tf32)
    return dict(name="promptir_train_memory", command=command, device=tag, env=env_info(), complete=complete,
                settings=dict(settings, optimizer="AdamW lr 2e-4 wd 1e-4", loss="L1 (fp32)",
                              data="synthetic batch on the device; random weights", recipes=RECIPES, ours=OURS,
                              goals=GOALS, tf32=tf32),
                memory_note=gpu_note if device != "cpu" else cpu_note,
                results=results, summary=summarize(results, device, patch_shape, frame_shape))

if __name__ == "__main__":
    main()
