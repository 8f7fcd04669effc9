"""Bad inputs to the PromptIR loaders, savers and inference (progressive_ir.promptir).

Each case checks the error type, that the message names the file or parameter (and never passes on torch's
advice to load with weights_only=False), and that nothing is left half-done: no model half-loaded, no folder
half-written, no code from a file run.
"""
import argparse
import json
import pickle
from pathlib import Path

import pytest
import torch

import progressive_ir.promptir as promptir
from progressive_ir.promptir import (CONFIG_NAME, WEIGHTS_NAME, PartialLoadWarning, PromptIR, PromptIRConfig,
                                     from_pretrained, load_official_checkpoint, load_restorer, read_checkpoint,
                                     restore, save_pretrained)

RAW_TEXT = ("weights_only", "PytorchStreamReader", "SafetensorError", "UnpicklingError:", "Traceback")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return PromptIR(PromptIRConfig.tiny()).eval()


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(model, weights):
    return all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def _clean(message):
    return not any(t in message for t in RAW_TEXT)


class WritesAMarker:
    "Unpickling this object would create the file `path`."
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('code ran')",))


# ---------------------------------------------------------------- checkpoint files: damaged or not checkpoints

@pytest.fixture
def lightning_ckpt(tmp_path, tiny):
    path = tmp_path / "tiny.ckpt"
    torch.save({"epoch": 1, "state_dict": {f"net.{k}": v for k, v in tiny.state_dict().items()}}, path)
    return path


@pytest.mark.parametrize("share", [0.0, 0.01, 0.3, 0.5, 0.9, 0.999])
def test_truncated_ckpt_names_the_file(tmp_path, tiny, lightning_ckpt, share):
    data = lightning_ckpt.read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[:int(len(data) * share)])
    before = _weights(tiny)
    with pytest.raises(ValueError) as e:
        load_official_checkpoint(tiny, cut)
    msg = str(e.value)
    assert str(cut) in msg and ("truncated" in msg or "empty" in msg) and _clean(msg), msg
    assert _same(tiny, before)


def test_truncated_legacy_pth_names_the_file(tmp_path, tiny):
    path = tmp_path / "legacy.pth"
    torch.save(tiny.state_dict(), path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as e:
        read_checkpoint(path)
    assert str(path) in str(e.value) and "cannot read this checkpoint" in str(e.value) and _clean(str(e.value))


@pytest.mark.parametrize("name", ["garbage.pth", "garbage.ckpt", "garbage.safetensors"])
def test_garbage_bytes_name_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(ValueError) as e:
        read_checkpoint(path)
    assert str(path) in str(e.value) and _clean(str(e.value))


def test_garbage_behind_a_zip_signature(tmp_path):
    path = tmp_path / "fake.pth"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    with pytest.raises(ValueError, match="truncated") as e:
        read_checkpoint(path)
    assert str(path) in str(e.value) and _clean(str(e.value))


@pytest.mark.parametrize("cut", [4, 8, 100, -4])
def test_truncated_safetensors_names_the_file(tmp_path, tiny, cut):
    from safetensors.torch import save_file
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(ValueError) as e:
        read_checkpoint(path)
    msg = str(e.value)
    assert str(path) in msg and _clean(msg), msg
    assert "truncated" in msg or "not a checkpoint" in msg, msg


def test_empty_and_text_files_are_not_checkpoints(tmp_path):
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "notes.pth").write_text("my weights are elsewhere\n")
    with pytest.raises(ValueError, match="empty.ckpt: not a checkpoint .the file is empty"):
        read_checkpoint(tmp_path / "empty.ckpt")
    with pytest.raises(ValueError, match="notes.pth: not a checkpoint"):
        read_checkpoint(tmp_path / "notes.pth")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.ckpt: no such checkpoint file"):
        read_checkpoint(tmp_path / "nothere.ckpt")
    with pytest.raises(ValueError, match="a folder, not a checkpoint file"):
        read_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="nothere: no such checkpoint file or model folder"):
        load_restorer(tmp_path / "nothere")


def test_checkpoint_without_a_state_dict(tmp_path):
    torch.save({"epoch": 3, "global_step": 10}, tmp_path / "meta.ckpt")
    torch.save({"state_dict": {"a": torch.ones(1), "b": 3}}, tmp_path / "mixed.ckpt")
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="meta.ckpt: no state_dict found .* found \\['epoch', 'global_step'\\]"):
        read_checkpoint(tmp_path / "meta.ckpt")
    with pytest.raises(ValueError, match="mixed.ckpt: its lightning state_dict holds values that are not tensors"):
        read_checkpoint(tmp_path / "mixed.ckpt")
    with pytest.raises(ValueError, match="list.pth: no state_dict found .*found list"):
        read_checkpoint(tmp_path / "list.pth")


# ---------------------------------------------------------------- loading never runs code

@pytest.mark.parametrize("form", ["zip", "legacy", "raw pickle"])
def test_crafted_pickle_never_runs(tmp_path, tiny, form):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.ckpt"
    payload = {"state_dict": {"patch_embed.proj.weight": WritesAMarker(marker)}}
    if form == "raw pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=form == "zip")
    before = _weights(tiny)
    for load in (lambda: read_checkpoint(path), lambda: load_official_checkpoint(tiny, path),
                 lambda: load_restorer(path, device="cpu")):
        with pytest.raises(ValueError) as e:
            load()
        assert str(path) in str(e.value) and _clean(str(e.value)), str(e.value)
        assert not marker.exists()
    assert _same(tiny, before)
    if form == "zip":  # the refused object is named, and the one way to allow it
        assert "builtins.exec" in str(e.value) and "trust_pickle=True" in str(e.value)


def test_trust_pickle_is_the_explicit_escape_hatch(tmp_path, tiny):
    "A Lightning checkpoint whose hyper_parameters are a Namespace: refused by default, read with trust_pickle."
    path = tmp_path / "hparams.ckpt"
    sd = {f"net.{k}": v for k, v in tiny.state_dict().items()}
    torch.save({"state_dict": sd, "hyper_parameters": argparse.Namespace(lr=2e-4)}, path)
    with pytest.raises(ValueError, match="argparse.Namespace.*trust_pickle=True"):
        load_official_checkpoint(tiny, path)
    report = load_official_checkpoint(tiny, path, trust_pickle=True)
    assert report["complete"] and report["counts"]["loaded"] == len(sd)


# ---------------------------------------------------------------- checkpoints that do not fit the model

def test_checkpoint_matching_nothing_is_an_error(tmp_path, tiny):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"encoder.0.weight": torch.ones(4, 3), "head.bias": torch.ones(4)}}, path)
    before = _weights(tiny)
    with pytest.raises(ValueError) as e:
        load_official_checkpoint(tiny, path)
    msg = str(e.value)
    n = len(tiny.state_dict())
    assert f"{path}: only 0 of the model's {n} tensors match" in msg and "not a PromptIR/Restormer" in msg
    assert _same(tiny, before)
    with pytest.raises(ValueError, match="only 0 of the model's"):
        load_restorer(path, device="cpu")


def test_checkpoint_with_an_unknown_prefix(tmp_path, tiny):
    path = tmp_path / "wrapped.pth"
    torch.save({f"generator.{k}": v for k, v in tiny.state_dict().items()}, path)
    with pytest.raises(ValueError, match="prefix 'generator.'"):
        load_official_checkpoint(tiny, path)


def test_checkpoint_of_another_configuration(tmp_path, tiny):
    other = PromptIR(PromptIRConfig(dim=16, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2),
                                    prompt_dims=(8, 16, 24), prompt_lens=(3, 3, 3), prompt_sizes=(16, 8, 4),
                                    pim_heads=(2, 2, 2)))
    torch.save(other.state_dict(), tmp_path / "dim16.pth")
    with pytest.raises(ValueError, match="another configuration .dim 16."):
        load_official_checkpoint(tiny, tmp_path / "dim16.pth", strict=False)
    with pytest.raises(ValueError, match="does not match the model exactly"):
        load_official_checkpoint(tiny, tmp_path / "dim16.pth", min_loaded=0)


def test_partial_promptir_checkpoint_is_refused_or_warned(tmp_path, tiny):
    sd = {k: v for k, v in tiny.state_dict().items() if not k.startswith("prompt3.")}
    torch.save({"state_dict": sd}, tmp_path / "partial.ckpt")
    with pytest.raises(ValueError, match="missing.*prompt3.prompt_param.*strict=False"):
        load_official_checkpoint(tiny, tmp_path / "partial.ckpt")
    with pytest.warns(PartialLoadWarning, match="the others keep their initial values"):
        report = load_official_checkpoint(tiny, tmp_path / "partial.ckpt", strict=False)
    assert report["complete"] is False and report["counts"]["missing"] == 4


@pytest.mark.parametrize("value", [-0.1, 1.5, "half"])
def test_min_loaded_out_of_range(tmp_path, lightning_ckpt, tiny, value):
    with pytest.raises((ValueError, TypeError), match="min_loaded"):
        load_official_checkpoint(tiny, lightning_ckpt, min_loaded=value)


# ---------------------------------------------------------------- model folders

@pytest.fixture
def folder(tmp_path, tiny):
    return save_pretrained(tiny, tmp_path / "model")


def test_model_folder_missing_parts(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match="nowhere: no such model folder"):
        from_pretrained(tmp_path / "nowhere")
    (folder / CONFIG_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=f"{CONFIG_NAME}: missing"):
        from_pretrained(folder)
    with pytest.raises(FileNotFoundError, match=f"{CONFIG_NAME}: missing"):
        load_restorer(folder, device="cpu")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_model_safetensors(folder, damage):
    path = folder / WEIGHTS_NAME
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00\xff" * 500, "empty": b""}[damage])
    for load in (lambda: from_pretrained(folder), lambda: load_restorer(folder, device="cpu"),
                 lambda: load_restorer(path, device="cpu")):
        with pytest.raises(ValueError) as e:
            load()
        assert str(path) in str(e.value) and _clean(str(e.value)), str(e.value)


@pytest.mark.parametrize("text, expected", [
    ('{"model": "PromptIR", "config": {"dim": 8', "not valid JSON"),
    ('["PromptIR"]', "expected {'model': 'PromptIR', 'config'"),
    ('{"model": "PromptIR"}', "expected {'model': 'PromptIR', 'config'"),
    ('{"model": "PromptIR", "config": {"dims": 8}}', "unknown keys \\['dims'\\]"),
    ('{"model": "PromptIR", "config": {"heads": 4}}', "heads: expected 4 values"),
    ('{"model": "PromptIR", "config": {"dim": "eight"}}', "not a valid PromptIR configuration"),
])
def test_damaged_config_json(folder, text, expected):
    (folder / CONFIG_NAME).write_text(text)
    with pytest.raises(ValueError, match=expected) as e:
        from_pretrained(folder)
    assert str(folder / CONFIG_NAME) in str(e.value)


def test_weights_of_another_model(folder):
    (folder / CONFIG_NAME).write_text(json.dumps(dict(model="PromptIR",
                                                      config=PromptIRConfig.tiny().to_lightweight().to_dict())))
    with pytest.raises(ValueError, match=f"{WEIGHTS_NAME} does not fit {CONFIG_NAME}"):
        from_pretrained(folder)


@pytest.mark.parametrize("step", ["weights", "config"])
def test_interrupted_save_leaves_no_half_folder(tmp_path, tiny, monkeypatch, step):
    import safetensors.torch

    def broken(*args, **kwargs):
        if step == "weights":
            Path(args[1]).write_bytes(b"half a file")
        raise KeyboardInterrupt("interrupted")
    monkeypatch.setattr(safetensors.torch if step == "weights" else promptir,
                        "save_file" if step == "weights" else "write_json", broken)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(tiny, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_the_old_folder(tmp_path, tiny, monkeypatch):
    folder = save_pretrained(tiny, tmp_path / "model")
    old = (folder / WEIGHTS_NAME).read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(promptir, "write_json", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        save_pretrained(PromptIR(PromptIRConfig.tiny()), folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (folder / WEIGHTS_NAME).read_bytes() == old
    assert from_pretrained(folder).config == tiny.config


def test_save_refuses_a_folder_with_other_files(tmp_path, tiny):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match="results: holds other files \\(\\['metrics.json'\\]\\)"):
        save_pretrained(tiny, tmp_path / "results")
    assert (tmp_path / "results" / "metrics.json").read_text() == "{}"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="afile: exists and is not a folder"):
        save_pretrained(tiny, tmp_path / "afile")


# ---------------------------------------------------------------- restore and configurations

@pytest.mark.parametrize("kwargs, name", [
    (dict(tile=20), "tile"), (dict(tile=(16, 12)), "tile"), (dict(tile=0), "tile"), (dict(tile="big"), "tile"),
    (dict(tile=16, overlap=16), "overlap"), (dict(tile=16, overlap=-1), "overlap"),
    (dict(tile=16, overlap=2.5), "overlap"), (dict(batch_size=0), "batch_size"), (dict(batch_size=1.5), "batch_size"),
    (dict(multiple=0), "multiple"), (dict(autocast="int8"), "autocast"),
])
def test_restore_bad_arguments(tiny, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}: "):
        restore(tiny, torch.rand(3, 20, 30), **kwargs)


@pytest.mark.parametrize("x", [torch.zeros(3, 8, 8, dtype=torch.uint8), torch.rand(8, 8), torch.rand(2, 8, 8),
                               [[0.5]]])
def test_restore_bad_frames(tiny, x):
    with pytest.raises(ValueError, match="^x: "):
        restore(tiny, x)


def test_gray_model_refuses_rgb(tiny):
    gray = PromptIR(PromptIRConfig(**{**PromptIRConfig.tiny().to_dict(), "channels": 1})).eval()
    assert restore(gray, torch.rand(1, 20, 30)).shape == (1, 20, 30)
    with pytest.raises(ValueError, match="the model restores 1-channel frames"):
        restore(gray, torch.rand(3, 20, 30))


@pytest.mark.parametrize("kwargs, name", [
    (dict(heads=4), "heads"), (dict(prompt_sizes="64"), "prompt_sizes"), (dict(layernorm="Batch"), "layernorm"),
    (dict(prompt_scales=(0.5, 1, 1.5)), "prompt_scales"), (dict(pim_ffn_expansion=(1, 1, -1)), "pim_ffn_expansion"),
    (dict(dim=0), "dim"),
])
def test_bad_configurations(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PromptIRConfig(**kwargs)


def test_bad_lightweight_arguments():
    with pytest.raises(ValueError, match="shallow_level"):
        PromptIRConfig.tiny().to_lightweight(shallow_level=4)
    with pytest.raises(ValueError, match="prompt_scales"):
        PromptIRConfig.lightweight(prompt_scale=0)
    with pytest.raises(ValueError, match="pim_ffn_expansion"):
        PromptIRConfig.lightweight(deep_ffn_expansion=0)
