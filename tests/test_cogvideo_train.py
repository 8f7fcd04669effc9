"""CogVideoX LoRA training on the shared loop (`train.fit` + `cogvideo.make_lora_step`): loss recorded, resume, LoRA export.

This lives in tests/ because it joins two layer-4 modules (train and cogvideo) that may not import each other."""
import math
import torch
import pytest

from progressive_ir import cogvideo
from progressive_ir.train import TrainConfig, fit


def _toy_progressions(n=3, size=(32, 32), frames=9):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        clean = torch.rand(3, size[1], size[0], generator=g)
        w = torch.linspace(0, 1, frames)[:, None, None, None]
        out.append(dict(frames=(w * clean + (1 - w) * 0.5), prompt="the image becomes sharper", id=f"v{i}", task="blur"))
    return out


def _train(tmp_path, name, cache, stop_after=None, resume=None):
    pipe = cogvideo.load_pipeline(preset="tiny")
    model = cogvideo.prepare_lora_training(pipe, rank=4, alpha=4)
    data = cogvideo.LatentDataset(cache, "train")
    cfg = TrainConfig(out_dir=str(tmp_path / name), max_steps=4, lr=1e-3, betas=(0.9, 0.95), checkpoint_every=2, log_every=1,
                      stop_after=stop_after, resume=resume, progress=False, seed=0)
    evals = []
    def eval_fn(m, acc, step, epoch):
        evals.append(step)
        return dict(val=1.0)
    torch.manual_seed(0)  # the step draws noise from the global RNG; fit restores its state on resume
    res = fit(model, data, cogvideo.make_lora_step(pipe), cfg, eval_fn=eval_fn, batch_size=1)
    return pipe, res, evals


def _lora(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def test_train_resume_and_export(tmp_path):
    cache = tmp_path / "cache"
    cogvideo.build_latent_cache(cogvideo.load_pipeline(preset="tiny"), _toy_progressions(), cache, "train", progress=False)
    # uninterrupted reference run
    pipe_a, res_a, _ = _train(tmp_path, "a", cache)
    assert res_a["finished"] and res_a["steps"] == 4
    losses = [r["loss"] for r in res_a["history"] if r.get("kind") == "train"]
    assert len(losses) == 4 and all(math.isfinite(l) for l in losses)
    # interrupted after 2 steps, then resumed from the latest checkpoint
    _, res_b1, _ = _train(tmp_path, "b", cache, stop_after=2)
    assert not res_b1["finished"] and res_b1["steps"] == 2
    pipe_b, res_b, _ = _train(tmp_path, "b", cache, resume="latest")
    assert res_b["finished"] and res_b["steps"] == 4
    la, lb = _lora(pipe_a.transformer), _lora(pipe_b.transformer)
    assert la.keys() == lb.keys() and all(torch.allclose(la[k], lb[k], atol=1e-6) for k in la)
    # the trained LoRA loads into a fresh pipeline with the pipeline's own loader
    cogvideo.save_lora(pipe_b.transformer, tmp_path / "lora")
    fresh = cogvideo.load_pipeline(preset="tiny")
    fresh.load_lora_weights(str(tmp_path / "lora"), adapter_name="restore")
    lf = {n.replace(".restore", ".default"): p for n, p in fresh.transformer.named_parameters() if "lora_" in n}
    assert all(torch.equal(lb[k].float(), lf[k].float()) for k in lb)
    traj = cogvideo.restore_trajectory(fresh, torch.rand(3, 32, 32), "the image becomes sharper", steps=2)
    assert traj.shape == (9, 3, 32, 32)
