#!/usr/bin/env python
"""CogVideoX1.5-5B-I2V LoRA benchmark: one training step and one whole restoration trajectory, peak memory and seconds.

    python bench/cogvideo_lora.py            # GPU: full CogVideoX1.5-5B-I2V architecture, bf16, random weights
    python bench/cogvideo_lora.py --tiny     # CPU smoke check of this script (tiny random model; not a result)

Training: one LoRA step (rank 128, alpha 64, `to_q/to_k/to_v/to_out.0`, AdamW, bf16 autocast) at 9 x 768 x 1360,
batch 1, from cached latents and text embeddings (random tensors of the cached shapes: the step reads a VAE posterior
and a T5 embedding from disk, so the VAE video encoder and T5 never run). The step itself encodes the noisy degraded
first frame with the VAE, as the recipe does. Measured with and without gradient checkpointing.
Inference: a whole 9-frame 1360 x 768 trajectory, 50 DPM/DDIM steps with classifier-free guidance, VAE decode included,
from cached prompt embeddings; measured on the GPU without tiling, with VAE tiling, and with model CPU offload + tiling.
The text encoder of the 'full-random' preset is a one-layer T5 of width 4096 (embeddings are precomputed), so T5-XXL's
memory (about 9.5 GB in bf16) and its single forward per prompt are not part of these figures.

Writes bench/results/cogvideo_lora_<device>.json (core.env_info(), the command, the settings, the measurements).
Goals (H100): training <= 16 GiB peak at <= 1.4 s/step; a whole trajectory, VAE decode included, <= 40 s.
"""
import os
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
import argparse, gc, re, sys, time, traceback
from pathlib import Path

import torch

from progressive_ir.core import env_info, write_json
from progressive_ir import cogvideo

GIB = 2 ** 30


def _slug(s):
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def _sync(dev):
    if dev.type == "cuda": torch.cuda.synchronize(dev)


def _reset_peak(dev):
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(dev)


def _peak(dev):
    if dev.type == "cuda": return dict(peak_gib=torch.cuda.max_memory_allocated(dev) / GIB,
                                       peak_reserved_gib=torch.cuda.max_memory_reserved(dev) / GIB, memory_kind="cuda_max_allocated")
    import resource
    return dict(peak_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, memory_kind="cpu_peak_rss_process")


def _cached_batch(pipe, a, dev, dtype):
    "Random tensors with the shapes of one cached training sample (see cogvideo.LatentDataset)."
    W, H = a.size
    C = pipe.vae.config.latent_channels; s = pipe.vae_scale_factor_spatial
    F = cogvideo.latent_frames(a.frames, pipe.vae_scale_factor_temporal)
    cfg = pipe.transformer.config
    g = torch.Generator().manual_seed(0)
    return dict(mean=torch.randn(1, C, F, H // s, W // s, generator=g).to(dev, dtype),
                logvar=torch.full((1, C, F, H // s, W // s), -6.0).to(dev, dtype),
                image=torch.rand(1, 3, H, W, generator=g).to(dev),
                prompt_embeds=torch.randn(1, cfg.max_text_seq_length, cfg.text_embed_dim, generator=g).to(dev, dtype),
                id=["bench"])


def bench_train(pipe, a, dev, checkpointing):
    "Seconds per LoRA optimizer step and peak memory, with or without gradient checkpointing."
    from accelerate import Accelerator
    tr = pipe.transformer
    if checkpointing: tr.enable_gradient_checkpointing()
    else: tr.disable_gradient_checkpointing()
    tr.train()
    params = [p for p in tr.parameters() if p.requires_grad]
    acc = Accelerator(mixed_precision="bf16" if dev.type == "cuda" else "no", cpu=dev.type == "cpu")
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=1e-4)
    model, opt = acc.prepare(tr, opt)
    step = cogvideo.make_lora_step(pipe)
    batch = _cached_batch(pipe, a, dev, a.dtype)
    torch.manual_seed(0)
    times, losses = [], []
    try:
        for i in range(a.warmup + a.repeats):
            if i == a.warmup: _reset_peak(dev)
            _sync(dev); t0 = time.perf_counter()
            loss = step(model, batch, acc)["loss"]
            acc.backward(loss); opt.step(); opt.zero_grad(set_to_none=True)
            _sync(dev)
            if i >= a.warmup: times.append(time.perf_counter() - t0)
            losses.append(loss.item())
        res = dict(status="ok", s_per_step=sum(times) / len(times), step_times_s=times, loss=losses, **_peak(dev))
    except torch.cuda.OutOfMemoryError as e:
        res = dict(status="out_of_memory", error=str(e).splitlines()[0], **_peak(dev))
    finally:
        opt.zero_grad(set_to_none=True)
        acc.unwrap_model(model, keep_fp32_wrapper=False)  # removes the autocast wrapper from `forward` (tr stays in `pipe`)
        acc.free_memory(); del opt, model
        _reset_peak(dev)
    res.update(gradient_checkpointing=checkpointing, trainable_parameters=cogvideo.count_trainable(tr))
    return res


def bench_inference(pipe, a, dev, label):
    "Seconds and peak memory of one whole trajectory (sampling + VAE decode)."
    cfg = pipe.transformer.config
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(cfg.max_text_seq_length, cfg.text_embed_dim, generator=g)
    neg = torch.randn(cfg.max_text_seq_length, cfg.text_embed_dim, generator=g)
    image = torch.rand(3, a.size[1], a.size[0], generator=g)
    times = []
    try:
        for i in range(a.infer_warmup + a.infer_repeats):
            if i == a.infer_warmup: _reset_peak(dev)
            _sync(dev); t0 = time.perf_counter()
            steps = a.steps if i >= a.infer_warmup else 2  # warm-up: kernels and allocator, short
            traj = cogvideo.restore_trajectory(pipe, image, prompt_embeds=emb, negative_prompt_embeds=neg, frames=a.frames,
                                               steps=steps, guidance=a.guidance)
            _sync(dev)
            if i >= a.infer_warmup: times.append(time.perf_counter() - t0)
        res = dict(status="ok", s_per_trajectory=sum(times) / len(times), times_s=times, frames_out=list(traj.shape), **_peak(dev))
    except torch.cuda.OutOfMemoryError as e:
        res = dict(status="out_of_memory", error=str(e).splitlines()[0], **_peak(dev))
    _reset_peak(dev)
    return dict(mode=label, **res)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="CPU smoke check with the tiny random model (not a result)")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    p.add_argument("--size", default="1360x768", help="width x height")
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--rank", type=int, default=128)
    p.add_argument("--alpha", type=float, default=64)
    p.add_argument("--steps", type=int, default=50, help="sampling steps of a trajectory")
    p.add_argument("--guidance", type=float, default=6.0)
    p.add_argument("--sampler", default="dpm", choices=cogvideo.SAMPLERS)
    p.add_argument("--warmup", type=int, default=1); p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--infer-warmup", type=int, default=1, help="untimed 2-step trajectories before the timed ones")
    p.add_argument("--infer-repeats", type=int, default=1)
    p.add_argument("--skip-train", action="store_true"); p.add_argument("--skip-inference", action="store_true")
    p.add_argument("--no-offload", action="store_true", help="skip the model-CPU-offload inference run")
    p.add_argument("--out", default=None, help="result JSON (default bench/results/cogvideo_lora_<device>.json)")
    a = p.parse_args(argv)
    if a.tiny:
        a.size = "64x48" if a.size == "1360x768" else a.size
        a.steps, a.rank, a.alpha, a.repeats, a.warmup = min(a.steps, 4), min(a.rank, 4), min(a.alpha, 4), min(a.repeats, 2), min(a.warmup, 1)
        a.device = a.device or "cpu"
    a.size = tuple(int(v) for v in a.size.lower().split("x"))
    dev = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type != "cuda" and not a.tiny: sys.exit("bench/cogvideo_lora.py: the full benchmark needs a CUDA GPU; use --tiny for the CPU smoke check")
    a.dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    preset = "tiny" if a.tiny else "full-random"
    env = env_info()
    out = Path(a.out) if a.out else Path(__file__).parent / "results" / f"cogvideo_lora_{_slug(env['device'])}{'_tiny-smoke' if a.tiny else ''}.json"
    settings = dict(preset=preset, size=list(a.size), frames=a.frames, batch=1, rank=a.rank, alpha=a.alpha,
                    lora_targets=list(cogvideo.LORA_TARGETS), dtype=str(a.dtype).replace("torch.", ""),
                    mixed_precision="bf16" if dev.type == "cuda" else "no", optimizer="AdamW(betas=(0.9, 0.95))",
                    sampling_steps=a.steps, guidance=a.guidance, sampler=a.sampler, warmup=a.warmup, repeats=a.repeats,
                    infer_warmup=a.infer_warmup, infer_repeats=a.infer_repeats,
                    alloc_conf=os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
                    text_encoder="one-layer T5 of width 4096 (embeddings precomputed; T5-XXL not measured)" if not a.tiny else "tiny")
    record = dict(benchmark="cogvideo_lora", label="smoke check of the script (tiny random model): not a result" if a.tiny else
                  "CogVideoX1.5-5B-I2V architecture with random weights (speed and memory do not depend on the weights)",
                  command=" ".join(["python", "bench/cogvideo_lora.py", *(argv if argv is not None else sys.argv[1:])]),
                  settings=settings, env=env,
                  goals=dict(train_peak_gib=16, train_s_per_step=1.4, trajectory_s=40), train=[], inference=[])
    t0 = time.perf_counter()
    pipe = cogvideo.load_pipeline(preset=preset, dtype=a.dtype, device=dev, sampler=a.sampler, vae_tiling=False)
    record["build_s"] = time.perf_counter() - t0
    record["parameters"] = {k: sum(p.numel() for p in getattr(pipe, k).parameters()) for k in ("transformer", "vae", "text_encoder")}
    if not a.skip_train:
        cogvideo.prepare_lora_training(pipe, rank=a.rank, alpha=a.alpha, gradient_checkpointing=True)
        for ckpt in (True, False):
            r = bench_train(pipe, a, dev, ckpt); record["train"].append(r); print("train", {k: v for k, v in r.items() if k != "step_times_s"}, flush=True)
            write_json(record, out)
        pipe.transformer.disable_gradient_checkpointing(); pipe.transformer.eval()
        pipe.transformer.requires_grad_(False)
    if not a.skip_inference:
        modes = [("on_device", dict(offload=False, vae_tiling=False)), ("on_device+vae_tiling", dict(offload=False, vae_tiling=True))]
        if dev.type == "cuda" and not a.no_offload: modes.append(("offload+vae_tiling", dict(offload=True, vae_tiling=True)))
        for label, opts in modes:
            try:
                cogvideo.set_memory_options(pipe, dev, **opts)
                r = bench_inference(pipe, a, dev, label)
            except Exception as e:  # record and go on: one failing mode must not lose the others
                r = dict(mode=label, status="error", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=3))
            record["inference"].append(r); print("inference", r, flush=True)
            write_json(record, out)
    ok = lambda rs, k: [r[k] for r in rs if r.get("status") == "ok"]
    tr_ok = [r for r in record["train"] if r.get("status") == "ok" and r["gradient_checkpointing"]]
    record["summary"] = dict(
        train_gc_peak_gib=tr_ok[0]["peak_gib"] if tr_ok else None, train_gc_s_per_step=tr_ok[0]["s_per_step"] if tr_ok else None,
        best_trajectory_s=min(ok(record["inference"], "s_per_trajectory"), default=None),
        total_s=time.perf_counter() - t0)
    write_json(record, out)
    print("wrote", out)
    return record


if __name__ == "__main__":
    main()
