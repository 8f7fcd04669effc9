#!/usr/bin/env python
"""CPU-scale CogVideoX study: does a small CogVideoX, trained for minutes on the embedded progressions, restore the
validation videos better than the untrained model? The basis of the `cpu` profile values of experiments 05-07.

    python bench/cogvideo_cpu_profile.py --manifest runs/smoke/data/progressions      # the data of experiment 01
    python bench/cogvideo_cpu_profile.py --manifest ... --steps 1500 --lr 2e-3 --tag lr2e-3

What it does, as experiments 05 and 06 would under the `cpu` profile: the tiny pipeline with the fitted tiny VAE
(tests/fixtures/cogvideo_tiny_vae, or `--vae`), the progression videos (tasks resolution, blur, lowlight) cached as
latents, one LoRA trained with `train.fit` + `cogvideo.make_lora_step` (uniform prompts), and the validation videos
restored from their degraded first frame by the untrained and the trained model. Every frame of both trajectories,
and of the VAE round trip of the true progression, is scored against the clean target and against its VAE round trip
(`cogvideo.round_trip_curves`). The random transformer and the tiny VAE bound what this can show: numbers are results
at this scale only.

Costs are process CPU seconds (the machine is shared with other jobs; wall time is not a measure), one thread.
Writes bench/results/cogvideo_cpu_profile[_TAG].json and the curves PNG beside it.
"""
import argparse, sys, tempfile, time
from pathlib import Path

import torch

from progressive_ir import cogvideo
from progressive_ir.core import env_info, write_json
from progressive_ir.progressions import ProgressionVideoDataset
from progressive_ir.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["resolution", "blur", "lowlight"]


class Clock:
    "Process CPU seconds per phase."
    def __init__(self):
        self.phases = {}

    def __call__(self, name):
        clock = self
        class _Phase:
            def __enter__(self):
                self.t0 = time.process_time()
            def __exit__(self, *exc):
                clock.phases[name] = clock.phases.get(name, 0.0) + time.process_time() - self.t0
        return _Phase()


def trajectories(pipe, data, a):
    "The trajectory of every validation video, from its degraded first frame and prompt."
    return {data[i]["id"]: cogvideo.restore_trajectory(pipe, data[i]["frames"][0], data[i]["prompt"],
                                                       steps=a.sampling_steps, guidance=a.guidance, seed=0)
            for i in range(len(data))}


def title(a, pipe, train_s, n_val):
    "The figure's title: the model, its training and the data."
    c = pipe.transformer.config
    return (f"{a.preset} CogVideoX ({c.num_attention_heads}x{c.attention_head_dim} wide, {c.num_layers} layers), "
            f"LoRA r{a.rank}, {a.steps} steps at {a.size[0]}x{a.size[1]} ({train_s:.0f} CPU-s); {n_val} val videos")


def summary(rows):
    "Mean PSNR/SSIM over videos vs the clean target's round trip: last frame, all frames; per label."
    import pandas as pd
    df = pd.DataFrame(rows)
    df = df[df.reference == "VAE round trip of the clean target"]
    last = df[df.frame == df.frame.max()].groupby("label")[["psnr", "ssim"]].mean()
    every = df.groupby("label")[["psnr", "ssim"]].mean()
    return {lab: dict(last_psnr=last.loc[lab, "psnr"], last_ssim=last.loc[lab, "ssim"],
                      mean_psnr=every.loc[lab, "psnr"], mean_ssim=every.loc[lab, "ssim"]) for lab in every.index}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True, help="a progression dataset (experiment 01's)")
    p.add_argument("--preset", default="tiny", help="tiny or small (the transformer 4x as wide)")
    p.add_argument("--vae", default=str(ROOT / "tests" / "fixtures" / "cogvideo_tiny_vae"))
    p.add_argument("--size", type=int, nargs=2, default=[272, 160], help="training and evaluation size (W H)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=16)
    p.add_argument("--targets", default="all-linear", help="'all-linear' or comma-separated name suffixes")
    p.add_argument("--image-dropout", type=float, default=0.05)
    p.add_argument("--sampling-steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--val-limit", type=int, default=None)
    p.add_argument("--heads", type=int, default=None, help="a wider transformer than the tiny preset's 2 heads")
    p.add_argument("--head-dim", type=int, default=None, help="... and its head width (tiny: 16)")
    p.add_argument("--layers", type=int, default=None, help="... and its depth (tiny: 2)")
    p.add_argument("--tag", default="")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    clock, work = Clock(), Path(tempfile.mkdtemp())
    targets = a.targets if a.targets == "all-linear" else tuple(a.targets.split(","))
    with clock("load"):
        pipe = cogvideo.load_pipeline(preset=a.preset, vae=a.vae, vae_slicing=False)
        if a.heads or a.head_dim or a.layers:  # a wider/deeper random transformer on the same VAE and text encoder
            from diffusers import CogVideoXTransformer3DModel
            tcfg = dict(cogvideo.PRESETS[a.preset][0], num_attention_heads=a.heads or 2, attention_head_dim=a.head_dim or 16,
                        num_layers=a.layers or 2)
            torch.manual_seed(0)
            pipe.transformer = CogVideoXTransformer3DModel(**tcfg).eval()
        data = {s: ProgressionVideoDataset(a.manifest, s, "uniform", size=a.size, tasks=TASKS) for s in ("train", "val")}
    with clock("cache"):
        cogvideo.build_latent_cache(pipe, data["train"], work / "cache", "train", progress=False)
    val = data["val"]
    if a.val_limit:
        val = torch.utils.data.Subset(val, range(min(a.val_limit, len(val))))
    with clock("restore_untrained"):
        untrained = trajectories(pipe, val, a)
    model = cogvideo.prepare_lora_training(pipe, rank=a.rank, alpha=a.alpha, targets=targets,
                                           gradient_checkpointing=False)
    cfg = TrainConfig(out_dir=str(work / "train"), max_steps=a.steps, lr=a.lr, weight_decay=0.0, schedule="cosine",
                      log_every=50, checkpoint_every=None, progress=False, seed=0, trainable_only=True)
    with clock("train"):
        res = fit(model, cogvideo.LatentDataset(work / "cache", "train"),
                  cogvideo.make_lora_step(pipe, image_dropout=a.image_dropout), cfg, batch_size=a.batch)
    pipe.transformer.eval()
    with clock("restore_trained"):
        trained = trajectories(pipe, val, a)
    with clock("curves"):
        rows = []
        for i in range(len(val)):
            item = val[i]
            trajs = {"trained": trained[item["id"]], "untrained": untrained[item["id"]]}
            rows += [dict(r, task=item["task"]) for r in cogvideo.round_trip_curves(pipe, item["frames"], trajs, item["id"])]
    stem = "cogvideo_cpu_profile" + (f"_{a.tag}" if a.tag else "")
    png = ROOT / "bench" / "results" / f"{stem}.png"
    cogvideo.plot_round_trip_curves(rows, path=png, title=title(a, pipe, clock.phases["train"], len(val)))
    losses = [dict(step=r["step"], loss=r["loss"]) for r in res["history"] if r.get("kind") == "train"]
    record = dict(benchmark="cogvideo_cpu_profile",
                  label="cpu scale: tiny random CogVideoX transformer + fitted tiny VAE; results at this scale only",
                  command=" ".join(["python", "bench/cogvideo_cpu_profile.py", *(argv if argv is not None else sys.argv[1:])]),
                  settings=dict(vars(a), train_videos=len(data["train"]), val_videos=len(val), tasks=TASKS,
                                prompt_type="uniform", schedule="cosine", optimizer="AdamW", weight_decay=0.0),
                  env=env_info(), threads=torch.get_num_threads(), cpu_seconds=clock.phases,
                  val_images=sorted({r["id"].split("-")[0] for r in rows}),
                  trainable_parameters=cogvideo.count_trainable(model), losses=losses,
                  transformer=dict(heads=pipe.transformer.config.num_attention_heads,
                                   head_dim=pipe.transformer.config.attention_head_dim,
                                   layers=pipe.transformer.config.num_layers),
                  summary_vs_round_trip_of_clean_target=summary(rows), curves_png=str(png.relative_to(ROOT)),
                  rows=rows)
    write_json(record, ROOT / "bench" / "results" / f"{stem}.json")
    print({k: record[k] for k in ("cpu_seconds", "summary_vs_round_trip_of_clean_target")})


if __name__ == "__main__":
    main()
