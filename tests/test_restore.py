"""End-to-end tests of `progressive_ir.restore` on CPU with the tiny models and the embedded data: an image of odd
size through the tiny CogVideoX + LoRA, a short clip and a folder of frames through a tiny PromptIR, in the API and
through `python -m progressive_ir.restore` (the integrator switches the latter to `progressive-ir restore`)."""
import argparse, csv, json, os, shutil, subprocess, sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from progressive_ir import cogvideo, core, promptir, restore
from progressive_ir.prompts import uniform_prompt
from progressive_ir.core import load_image, read_video, save_image, video_info, write_json, write_video
from progressive_ir.sources import sample_image, sample_videos

FPS = 29.97  # carphone's rate, kept by the restored video


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    "A LoRA in experiment 05's layout (tiny preset), a tiny PromptIR folder, a 97x61 image and an 8-frame clip."
    root = tmp_path_factory.mktemp("restore")
    pipe = cogvideo.load_pipeline(preset="tiny", device="cpu")
    cogvideo.add_lora(pipe.transformer, rank=4, alpha=8)
    lora = cogvideo.save_lora(pipe.transformer, root / "train" / "uniform" / "lora")
    params = dict(model=None, preset="tiny", seed=0, data=dict(train_size=[64, 48]))
    write_json(dict(params=params), root / "train" / "run.json")
    torch.manual_seed(0)
    model = promptir.PromptIR(promptir.PromptIRConfig.tiny())
    promptir.save_pretrained(model, root / "promptir")
    image = root / "photo.png"
    save_image(sample_image("chelsea")[:, 100:161, 150:247], image)  # 97 x 61
    clean = read_video(sample_videos(["carphone"])["carphone"], max_frames=8)
    write_video(clean, root / "clean.mkv", fps=FPS, lossless=True)
    noisy = (clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    write_video(noisy, root / "clip.mkv", fps=FPS, lossless=True)
    return dict(root=root, lora=lora, promptir=root / "promptir", image=image, clip=root / "clip.mkv",
                clean=root / "clean.mkv", model=model.eval(), noisy=noisy)


def test_image_end_to_end(data):
    out = data["root"] / "restored"
    recs = restore.restore_image([data["image"]], "blur", data["lora"], out, steps=2, guidance=3.0, seed=7,
                                 progress=False)
    r = recs[0]
    assert r["status"] == "restored"
    assert sorted(p.name for p in out.iterdir()) == ["photo.json", "photo_restored.png", "photo_strip.png",
                                                     "photo_trajectory.gif", "photo_trajectory.mp4"]
    assert load_image(out / "photo_restored.png").shape == (3, 61, 97)
    info = video_info(out / "photo_trajectory.mp4")
    assert (info["frames"], info["fps"]) == (9, 5.0)
    with Image.open(out / "photo_trajectory.gif") as gif:
        assert gif.n_frames == 9
    saved = json.loads((out / "photo.json").read_text())
    assert saved["base_model"]["preset"] == "tiny" and saved["base_model"]["source"].startswith("recorded:")
    lora = saved["lora"]
    assert (lora["path"], lora["rank"], lora["alpha"]) == (str(data["lora"].resolve()), 4, 8)
    assert saved["prompt"] == dict(text=uniform_prompt("blur"), source="uniform", caption=None, note=None)
    assert (saved["seed"], saved["steps"], saved["guidance"], saved["frames"]) == (7, 2, 3.0, 9)
    assert saved["sizes"]["input"] == [97, 61] and saved["sizes"]["output"] == [97, 61]
    assert saved["sizes"]["work_size"] == [64, 48]  # the LoRA's training size, from its run
    assert saved["sizes"]["canvas"][0] % 16 == 0 and saved["sizes"]["canvas"][1] % 16 == 0
    for key in ("commit", "device", "seconds", "versions", "label"):
        assert key in saved, key
    again = restore.restore_image([data["image"]], "blur", data["lora"], out, steps=2, guidance=3.0, seed=7,
                                  progress=False)
    assert again[0]["status"] == "skipped"


def test_image_work_size_and_scene_prompt(data):
    lp = restore.open_lora_pipeline(data["lora"])
    out = data["root"] / "restored-work"
    r = restore.restore_image({"cat": load_image(data["image"])}, "blur", lp, out, steps=1, scene=True,
                              output_size="work", work_size=(128, 96), progress=False)[0]
    assert r["sizes"]["output"] == r["sizes"]["content"] and r["sizes"]["canvas"] == [144, 96]
    assert r["prompt"]["source"] == "offline-heuristic" and "offline fallback" in r["prompt"]["note"]


def test_video_end_to_end(data):
    out = data["root"] / "out" / "clip_restored.mkv"
    r = restore.restore_video(data["clip"], data["promptir"], out=out, reference=data["clean"], batch_size=3,
                              progress=False)
    info = video_info(out)
    assert (info["frames"], info["fps"], info["width"], info["height"]) == (8, FPS, 176, 144)
    expected = promptir.restore(data["model"], read_video(data["clip"]))
    assert (read_video(out) - expected).abs().max() <= 1 / 255 + 1e-6  # lossless: what promptir.restore gives
    saved = json.loads((out.parent / "clip_restored.mkv.json").read_text())
    assert saved["output"]["codec"] == "ffv1" and saved["output"]["frames"] == 8
    assert saved["checkpoint"]["complete"] is True and saved["checkpoint"]["warning"] is None
    scores = json.loads((out.parent / "clip_restored.mkv.metrics.json").read_text())
    assert len(scores["frames"]) == 8 and set(scores["mean"]) == set(restore.SCORE_KEYS)
    rows = list(csv.DictReader(open(out.parent / "clip_restored.mkv.metrics.csv")))
    assert [row["frame"] for row in rows][-1] == "mean" and len(rows) == 9
    assert r["scores"]["mean"]["psnr_in"] == pytest.approx(scores["mean"]["psnr_in"])
    assert restore.restore_video(data["clip"], data["promptir"], out=out, reference=data["clean"],
                                 batch_size=3, progress=False)["status"] == "skipped"


def test_video_streams_in_batches(data, monkeypatch):
    "The clip is never decoded whole (core.read_video unused) and PromptIR sees at most batch_size frames."
    seen = []
    real = promptir.restore
    def whole_clip(*a, **kw):
        raise AssertionError("the clip was decoded whole")
    monkeypatch.setattr(core, "read_video", whole_clip)
    def spy(model, x, **kw):
        seen.append(len(x))
        return real(model, x, **kw)
    monkeypatch.setattr(promptir, "restore", spy)
    out = data["root"] / "stream.mp4"
    r = restore.restore_video(data["clip"], data["promptir"], out=out, batch_size=3, crf=30, progress=False)
    assert seen == [3, 3, 2]
    assert r["output"]["pix_fmt"] == "yuv420p" and video_info(out)["frames"] == 8


def test_folder_of_frames(data):
    frames = data["root"] / "frames"
    for i, f in enumerate(data["noisy"][:3, :, :61, :97]):
        save_image(f, frames / f"f{i:03d}.png")
    r = restore.restore_video(frames, data["promptir"], progress=False)
    out = data["root"] / "frames_restored"
    assert sorted(p.name for p in out.iterdir()) == ["f000.png", "f001.png", "f002.png"]
    assert load_image(out / "f001.png").shape == (3, 61, 97)
    assert r["output"]["kind"] == "folder" and r["input"]["frames"] == 3


EXE = shutil.which("progressive-ir") or str(Path(sys.executable).parent / "progressive-ir")


def run_module(*args):
    "The `progressive-ir restore` subcommand, as a user runs it."
    env = {**os.environ, "PYTHONPATH": str(Path(restore.__file__).parents[1])}
    return subprocess.run([EXE, "restore", *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def test_cli_image_form(data):
    out = data["root"] / "cli-images"
    p = run_module(data["image"], "--lora", data["lora"], "--task", "blur", "--steps", "1", "--out", out, "--quiet")
    assert p.returncode == 0, p.stderr
    assert "photo: restored in" in p.stdout and "note: random weights (preset 'tiny')" in p.stdout
    assert (out / "photo_restored.png").is_file() and (out / "photo.json").is_file()


def test_cli_video_form(data):
    out = data["root"] / "cli.mkv"
    p = run_module(data["clip"], "--promptir", data["promptir"], "--reference", data["clean"], "--out", out,
                   "--batch-size", "4", "--quiet")
    assert p.returncode == 0, p.stderr
    assert "8 frames restored" in p.stdout and "mean vs reference: input PSNR" in p.stdout
    assert video_info(out)["frames"] == 8


def test_help_documents_every_flag(capsys):
    parser = argparse.ArgumentParser(prog="progressive-ir")
    sub = restore.add_restore_parser(parser.add_subparsers(dest="command"))
    undocumented = [a.option_strings or a.dest for a in sub._actions if not a.help]
    assert undocumented == []
    with pytest.raises(SystemExit) as e:
        restore.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for name in (*restore.IMAGE_FLAGS, *restore.VIDEO_FLAGS, "lora", "promptir", "out", "device", "overwrite"):
        assert f"--{name.replace('_', '-')}" in text, name
