#!/usr/bin/env python
"""Fit the tiny CogVideoX VAE as an autoencoder of the sample progressions: the fixture of the overfit check.

    python bench/cogvideo_tiny_vae.py                 # writes tests/fixtures/cogvideo_tiny_vae/ and the JSON below

The tiny preset's random VAE is nearly blind to image content (see nbs/10_cogvideo.ipynb, "The tiny VAE"). This
script fits it for a few minutes on one CPU core with the project's training loop (`train.fit` with
`cogvideo.make_vae_step`) on progression videos of the embedded sample images (every task and strength, 9 frames at
64 x 48, random 32 x 32 crops), and records what that costs and what it gives: process CPU seconds (the machine is
shared, so wall time is not a measure), the round-trip PSNR of the random and the fitted VAE per task, and how far
apart the round trips of a progression's first and last frame are (the random VAE erases the progression).

Writes tests/fixtures/cogvideo_tiny_vae/ (diffusers folder, safetensors) and bench/results/cogvideo_tiny_vae.json.
"""
import argparse, math, sys, tempfile, time
from pathlib import Path

import torch

from progressive_ir import cogvideo
from progressive_ir.core import env_info, write_json
from progressive_ir.metrics import psnr
from progressive_ir.progressions import make_progression
from progressive_ir.sources import sample_images
from progressive_ir.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]


def progressions(size, tasks=("resolution", "blur", "lowlight"), strengths=("mild", "severe")):
    "One progression per sample image, task and strength."
    return [dict(frames=make_progression(img, t, s, frames=9, size=size), id=f"{n}-{t}-{s}", task=t)
            for n, img in sample_images().items() for t in tasks for s in strengths]


def round_trip_stats(pipe, items):
    "Mean round-trip PSNR per task, and the PSNR between the decoded first and last frame."
    out = {}
    for it in items:
        rt = cogvideo.vae_round_trip(pipe, it["frames"])
        out.setdefault(it["task"], []).append((psnr(rt, it["frames"]).mean().item(), psnr(rt[0], rt[-1]).item()))
    return {t: dict(round_trip_psnr=sum(a for a, _ in v) / len(v), first_vs_last_psnr=sum(b for _, b in v) / len(v))
            for t, v in out.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--crop", type=int, default=32)
    p.add_argument("--kl-weight", type=float, default=1e-4)
    p.add_argument("--size", default="64x48")
    p.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "cogvideo_tiny_vae"))
    p.add_argument("--json", default=str(ROOT / "bench" / "results" / "cogvideo_tiny_vae.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    size = tuple(int(v) for v in a.size.split("x"))
    items = progressions(size)
    pipe = cogvideo.load_pipeline(preset="tiny")
    before = round_trip_stats(pipe, items)
    data = items * math.ceil(a.steps * a.batch / len(items))  # one long epoch: one checkpoint at its end
    cfg = TrainConfig(out_dir=tempfile.mkdtemp(), max_steps=a.steps, lr=a.lr, weight_decay=0.0, schedule="cosine",
                      log_every=50, progress=False, seed=0)
    t0 = time.process_time()
    res = fit(pipe.vae, data, cogvideo.make_vae_step(kl_weight=a.kl_weight, crop=a.crop), cfg, batch_size=a.batch)
    cpu_s = time.process_time() - t0
    vae = res["model"].eval()
    cogvideo.save_vae(vae, a.out)
    fitted = cogvideo.load_pipeline(preset="tiny", vae=a.out)
    after = round_trip_stats(fitted, items)
    mean, logvar = cogvideo.encode_video(fitted.vae, items[0]["frames"])
    record = dict(benchmark="cogvideo_tiny_vae", command=" ".join(["python", "bench/cogvideo_tiny_vae.py", *(argv or sys.argv[1:])]),
                  settings=dict(steps=a.steps, lr=a.lr, schedule="cosine", batch=a.batch, crop=a.crop,
                                kl_weight=a.kl_weight, size=list(size), videos=len(items), frames=9,
                                data="sample images x (resolution, blur, lowlight) x (mild, severe)"),
                  env=env_info(), cpu_seconds=cpu_s, threads=torch.get_num_threads(),
                  losses=[dict(step=r["step"], loss=r["loss"], l1=r["l1"], kl=r["kl"]) for r in res["history"]
                          if r.get("kind") == "train"],
                  random_vae=before, fitted_vae=after,
                  fitted_posterior=dict(mean_std=mean.std().item(), std_mean=logvar.mul(0.5).exp().mean().item()),
                  output=str(Path(a.out).relative_to(ROOT)) if Path(a.out).is_relative_to(ROOT) else a.out)
    write_json(record, a.json)
    print({k: record[k] for k in ("cpu_seconds", "random_vae", "fitted_vae", "fitted_posterior")})


if __name__ == "__main__":
    main()
