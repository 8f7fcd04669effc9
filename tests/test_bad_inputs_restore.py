"""Bad input to `progressive_ir.restore` (issue 12 item 4, issue 13): every case asserts the error type, that the
message names the file or the parameter/flag, and that nothing half-written is left behind."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from progressive_ir import cogvideo, promptir, restore
from progressive_ir.core import read_video, save_image, write_json, write_video
from progressive_ir.sources import sample_image, sample_videos


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    "A tiny LoRA with its training run, a tiny PromptIR folder, a 97x61 image and a 4-frame clip."
    root = tmp_path_factory.mktemp("bad-restore")
    pipe = cogvideo.load_pipeline(preset="tiny", device="cpu")
    cogvideo.add_lora(pipe.transformer, rank=4, alpha=4)
    lora = cogvideo.save_lora(pipe.transformer, root / "train" / "uniform" / "lora")
    write_json(dict(params=dict(model=None, preset="tiny", data=dict(train_size=[64, 48]))), root / "train" / "run.json")
    torch.manual_seed(0)
    promptir.save_pretrained(promptir.PromptIR(promptir.PromptIRConfig.tiny()), root / "promptir")
    save_image(sample_image("chelsea")[:, :61, :97], root / "photo.png")
    clip = read_video(sample_videos(["carphone"])["carphone"], max_frames=4)
    write_video(clip, root / "clip.mkv", fps=25, lossless=True)
    return dict(root=root, lora=lora, pipe=pipe, promptir=root / "promptir", image=root / "photo.png",
                clip=root / "clip.mkv", frames=clip)


def leftovers(folder):
    "Files and folders under `folder` (hidden temporaries included)."
    return sorted(p.name for p in Path(folder).rglob("*")) if Path(folder).exists() else []


def cli(capsys, *args):
    code = restore.main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    return code, err


# --- unreadable or unsupported files name themselves -----------------------------------------------------------

def test_unreadable_image_names_itself(data, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="broken.png: not a readable image"):
        restore.restore_image([bad], "blur", data["lora"], out, steps=1, progress=False)
    assert leftovers(out) == []


def test_missing_image_names_itself(data, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.jpg: no such image file"):
        restore.restore_image([tmp_path / "nothere.jpg"], "blur", data["lora"], tmp_path / "out", progress=False)


def test_unreadable_video_names_itself(data, tmp_path):
    bad = tmp_path / "movie.mp4"
    bad.write_text("not a video")
    with pytest.raises(ValueError, match="movie.mp4: not a readable video"):
        restore.restore_video(bad, data["promptir"], progress=False)
    assert leftovers(tmp_path) == ["movie.mp4"]


def test_image_given_to_the_video_form(data, tmp_path):
    with pytest.raises(ValueError, match="photo.png: an image"):
        restore.restore_video(data["image"], data["promptir"], out=tmp_path / "x.mkv", progress=False)
    assert leftovers(tmp_path) == []


def test_empty_frame_folder(data, tmp_path):
    (tmp_path / "frames").mkdir()
    with pytest.raises(FileNotFoundError, match="frames: no image files"):
        restore.restore_video(tmp_path / "frames", data["promptir"], progress=False)


def test_unsupported_output_suffix(data, tmp_path):
    with pytest.raises(ValueError, match="out: .*clip.avi must end in .mkv or .mp4"):
        restore.restore_video(data["clip"], data["promptir"], out=tmp_path / "clip.avi", progress=False)
    assert leftovers(tmp_path) == []


def test_reference_of_another_length(data, tmp_path):
    short = tmp_path / "short.mkv"
    write_video(data["frames"][:2], short, fps=25, lossless=True)
    with pytest.raises(ValueError, match="reference: .*short.mkv has 2 frames, the input 4"):
        restore.restore_video(data["clip"], data["promptir"], out=tmp_path / "o.mkv", reference=short,
                              progress=False)
    assert leftovers(tmp_path) == ["short.mkv"]


# --- LoRAs and checkpoints ---------------------------------------------------------------------------------------

def fake_5b_lora(folder):
    "A LoRA with the layer shapes of CogVideoX1.5-5B-I2V (width 3072), recording that base model."
    tensors = {}
    for m in ("to_q", "to_k", "to_v", "to_out.0"):
        key = f"transformer.transformer_blocks.0.attn1.{m}"
        tensors[f"{key}.lora_A.weight"] = torch.zeros(4, 3072)
        tensors[f"{key}.lora_B.weight"] = torch.zeros(3072, 4)
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / restore.LORA_WEIGHTS), metadata={"base_model": cogvideo.COGVIDEOX15_I2V})
    return folder


def test_lora_of_another_base_model_names_both(data, tmp_path):
    lora = fake_5b_lora(tmp_path / "lora5b")
    with pytest.warns(restore.BaseModelWarning), pytest.raises(ValueError) as e:
        restore.restore_image([data["image"]], "blur", lora, tmp_path / "out", preset="tiny", progress=False)
    msg = str(e.value)
    assert str(lora) in msg and "made for THUDM/CogVideoX1.5-5B-I2V" in msg and "preset 'tiny'" in msg
    assert leftovers(tmp_path / "out") == []


def narrow_lora(folder):
    "A real LoRA made on a narrower tiny transformer (attention width 16), as another tool saves it: no lora.json."
    from diffusers import CogVideoXTransformer3DModel
    transformer = CogVideoXTransformer3DModel(**{**cogvideo.TINY_TRANSFORMER, "attention_head_dim": 8})
    cogvideo.add_lora(transformer, rank=4, alpha=4)
    folder = cogvideo.save_lora(transformer, folder)
    (folder / cogvideo.LORA_RECORD).unlink()  # cogvideo.load_lora would check the base it records
    return folder


def test_lora_fit_check_is_what_names_the_models(data, tmp_path, monkeypatch):
    "restore's check names both models before loading; without it, cogvideo.load_lora's layer check still refuses."
    lora = narrow_lora(tmp_path / "narrow")
    with pytest.raises(ValueError, match="made for another base model .*attention width 16.*preset 'tiny'"):
        restore.open_lora_pipeline(lora, preset="tiny")
    monkeypatch.setattr(restore, "check_lora_fits", lambda *a, **k: None)
    with pytest.raises(ValueError, match="is for a layer of width 16, but .* has 32"):  # not diffusers' RuntimeError
        restore.open_lora_pipeline(lora, preset="tiny")


def test_lora_without_base_model_needs_one(data, tmp_path):
    lora = narrow_lora(tmp_path / "lonely")
    with pytest.raises(ValueError, match="lonely: this LoRA does not record its base model; name it with --model"):
        restore.open_lora_pipeline(lora)


def test_lora_folder_without_weights(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=f"empty: no {restore.LORA_WEIGHTS} here"):
        restore.lora_record(tmp_path / "empty")


def test_truncated_lora_names_itself(data, tmp_path):
    folder = tmp_path / "cut"
    folder.mkdir()
    weights = Path(data["lora"]) / restore.LORA_WEIGHTS
    (folder / restore.LORA_WEIGHTS).write_bytes(weights.read_bytes()[:300])
    with pytest.raises(ValueError, match="cut/pytorch_lora_weights.safetensors: cannot read this LoRA file"):
        restore.lora_record(folder)


def test_checkpoint_that_loads_nothing_is_an_error(data, tmp_path):
    ckpt = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"generator.conv.weight": torch.zeros(8, 3, 3, 3)}}, ckpt)
    with pytest.raises(ValueError, match="other.ckpt: only 0 of the model's"):
        restore.restore_video(data["clip"], ckpt, out=tmp_path / "o.mkv", progress=False)
    assert leftovers(tmp_path) == ["other.ckpt"]


def test_missing_checkpoint(data, tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.ckpt: no such checkpoint"):
        restore.restore_video(data["clip"], tmp_path / "gone.ckpt", out=tmp_path / "o.mkv", progress=False)


def test_partial_checkpoint_warns_loudly_and_records_it(data, tmp_path, monkeypatch, capsys):
    "A Restormer-like partial load (promptir reports complete=False): a warning, a WARNING line, the record."
    real = promptir.load_restorer
    def partial(*a, **kw):
        model, info = real(data["promptir"])
        return model, dict(info, complete=False, counts=dict(info["counts"], loaded=10))
    monkeypatch.setattr(promptir, "load_restorer", partial)
    out = tmp_path / "o.mkv"
    with pytest.warns(restore.RestoreWarning, match="NOT a trained PromptIR restoration"):
        rec = restore.restore_video(data["clip"], data["promptir"], out=out, progress=False)
    saved = json.loads((tmp_path / "o.mkv.json").read_text())
    assert saved["checkpoint"]["complete"] is False and "filled 10 of" in saved["checkpoint"]["warning"]
    assert restore._video_lines(rec)[-2].startswith("WARNING: ")


# --- existing outputs, interruptions, reruns --------------------------------------------------------------------

def test_existing_image_output_is_refused(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo_restored.png").write_bytes(b"someone else's")
    with pytest.raises(FileExistsError, match="photo_restored.png: exists already .*--overwrite"):
        restore.restore_image([data["image"]], "blur", data["lora"], out, steps=1, progress=False)
    assert (out / "photo_restored.png").read_bytes() == b"someone else's"
    assert leftovers(out) == ["photo_restored.png"]


def test_existing_video_output_is_refused_then_replaced(data, tmp_path):
    out = tmp_path / "clip_restored.mkv"
    out.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="clip_restored.mkv: exists already"):
        restore.restore_video(data["clip"], data["promptir"], out=out, progress=False)
    assert out.read_bytes() == b"old"
    r = restore.restore_video(data["clip"], data["promptir"], out=out, overwrite=True, progress=False)
    assert r["status"] == "restored" and read_video(out).shape[0] == 4


def test_folder_output_with_other_files_is_not_deleted(data, tmp_path):
    frames = tmp_path / "frames"
    save_image(data["frames"][0], frames / "0000.png")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="out: .*mine holds other files"):
        restore.restore_video(frames, data["promptir"], out=out, overwrite=True, progress=False)
    assert (out / "thesis.tex").read_text() == "precious"


def test_interrupted_video_leaves_nothing_and_rerun_completes(data, tmp_path, monkeypatch):
    real = promptir.restore
    calls = []
    def dies_on_second_batch(model, x, **kw):
        calls.append(len(x))
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the clip
        return real(model, x, **kw)
    monkeypatch.setattr(promptir, "restore", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        restore.restore_video(data["clip"], data["promptir"], out=tmp_path / "o.mkv", reference=data["clip"],
                              batch_size=2, progress=False)
    assert leftovers(tmp_path) == []  # no video, no scores, no record, no temporary file
    monkeypatch.setattr(promptir, "restore", real)
    first = restore.restore_video(data["clip"], data["promptir"], out=tmp_path / "o.mkv", batch_size=2,
                                  progress=False)
    second = restore.restore_video(data["clip"], data["promptir"], out=tmp_path / "o.mkv", batch_size=2,
                                   progress=False)
    assert (first["status"], second["status"]) == ("restored", "skipped")


def test_interrupted_image_leaves_nothing_and_rerun_skips(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    def dies(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(restore, "save_strip", dies)  # after the png and the mp4 are staged
    with pytest.raises(KeyboardInterrupt):
        restore.restore_image([data["image"]], "blur", data["lora"], out, steps=1, progress=False)
    assert leftovers(out) == []
    monkeypatch.undo()
    args = [data["image"], "--lora", data["lora"], "--task", "blur", "--steps", "1", "--out", out, "--quiet"]
    assert restore.main([str(a) for a in args]) == 0
    assert restore.main([str(a) for a in args]) == 0
    said = capsys.readouterr().out
    assert "photo: restored in" in said and "photo: skipped, already restored with these settings" in said


# --- the command line: one line naming the flag, exit code 2 ---------------------------------------------------

def test_cli_frames_names_flag_and_accepted_values(data, tmp_path, capsys):
    code, err = cli(capsys, data["image"], "--lora", data["lora"], "--task", "blur", "--frames", "10",
                    "--out", tmp_path / "out", "--quiet")
    assert code == 2 and err == ("progressive-ir restore: error: --frames: this model generates 9 frames "
                                 "(8k + 1, up to the 9 it was built for); got 10")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("args, flag", [
    (["--promptir", "P", "--steps", "3"], "--steps: applies to the --lora form only"),
    (["--lora", "L", "--crf", "20", "--task", "blur"], "--crf: applies to the --promptir form only"),
    (["--lora", "L"], "--task: required with --lora"),
    (["--promptir", "P", "--batch-size", "0"], "--batch-size: expected an integer >= 1"),
    (["--promptir", "P", "--tile", "32", "--overlap", "32"], "--overlap: must be smaller than the tile"),
    (["--promptir", "P", "--crf", "60"], "--crf: expected an integer 0..51"),
])
def test_cli_bad_values_name_their_flag(data, tmp_path, capsys, monkeypatch, args, flag):
    names = {"P": data["promptir"], "L": data["lora"]}
    argv = [data["clip"] if "--promptir" in args else data["image"], *[names.get(a, a) for a in args]]
    monkeypatch.chdir(tmp_path)  # a default output would land here
    code, err = cli(capsys, *argv)
    assert code == 2 and flag in err, err
    assert leftovers(tmp_path) == []


def test_cli_out_with_several_inputs(data, tmp_path, capsys):
    code, err = cli(capsys, data["clip"], data["clip"], "--promptir", data["promptir"], "--out", tmp_path / "x.mkv")
    assert code == 2 and "--out: names one output" in err
    assert leftovers(tmp_path) == []


def test_cli_missing_input_names_it(data, tmp_path, capsys):
    code, err = cli(capsys, tmp_path / "nope.mp4", "--promptir", data["promptir"])
    assert code == 2 and "nope.mp4: no such video file or folder of frames" in err
