"""Bad input to the CogVideoX entry points: each case checks the error type, that the message names the file or the
parameter, and that nothing half-written (or half-loaded) is left behind."""
from pathlib import Path

import pytest
import torch

from progressive_ir import cogvideo


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return cogvideo.load_pipeline(preset="tiny")


def fresh():
    return cogvideo.load_pipeline(preset="tiny")


def adapters(p):
    return list(getattr(p.transformer, "peft_config", None) or {})


def toy(n=2, size=(32, 32), frames=9):
    g = torch.Generator().manual_seed(0)
    return [dict(frames=torch.rand(frames, 3, size[1], size[0], generator=g), prompt="the image becomes sharper",
                 id=f"v{i}", task="blur") for i in range(n)]


def lora_of(p, path, **kw):
    cogvideo.add_lora(p.transformer, rank=2, alpha=2, **kw)
    return cogvideo.save_lora(p, path)


def wide_pipeline():
    "The tiny pipeline with a 3-head transformer: another base model."
    from diffusers import CogVideoXTransformer3DModel
    p = cogvideo.build_random_pipeline("tiny")
    p.transformer = CogVideoXTransformer3DModel(**{**cogvideo.TINY_TRANSFORMER, "num_attention_heads": 3})
    p.transformer._progressive_ir_base = "wide-tiny"
    return p


# LoRA made for another base model ------------------------------------------------------------------------------------

def test_lora_for_another_base_names_both_models(tmp_path):
    lora = lora_of(wide_pipeline(), tmp_path / "wide")
    p = fresh()
    with pytest.raises(ValueError) as e:
        cogvideo.load_lora(p, lora)
    msg = str(e.value)
    assert str(lora) in msg and "'wide-tiny'" in msg and "'preset:tiny (seed 0)'" in msg
    assert "3 heads" in msg and "2 heads" in msg
    assert adapters(p) == []


def test_lora_without_record_for_another_base_names_the_file(tmp_path):
    lora = lora_of(wide_pipeline(), tmp_path / "wide")
    (lora / cogvideo.LORA_RECORD).unlink()  # a diffusers-style LoRA folder: only the shapes can tell
    p = fresh()
    with pytest.raises(ValueError, match="a LoRA for another base model") as e:
        cogvideo.load_lora(p, lora)
    assert cogvideo.LORA_WEIGHTS in str(e.value)
    assert adapters(p) == []


def test_lora_for_other_weights_of_the_same_architecture_warns(tmp_path):
    lora = lora_of(cogvideo.load_pipeline(preset="tiny", seed=1), tmp_path / "seed1")
    p = fresh()
    with pytest.warns(UserWarning, match="same architecture but other weights"):
        cogvideo.load_lora(p, lora)
    assert adapters(p) == ["restore"]


# damaged LoRA folders -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("record", [True, False])
def test_truncated_lora_file_names_it(tmp_path, record):
    lora = lora_of(fresh(), tmp_path / "lora")
    if not record:
        (lora / cogvideo.LORA_RECORD).unlink()
    w = lora / cogvideo.LORA_WEIGHTS
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    p = fresh()
    with pytest.raises(ValueError, match="damaged or truncated") as e:
        cogvideo.load_lora(p, lora)
    assert str(w) in str(e.value)
    assert adapters(p) == []


def test_lora_file_with_garbage_bytes_names_it(tmp_path):
    lora = lora_of(fresh(), tmp_path / "lora")
    w = lora / cogvideo.LORA_WEIGHTS
    data = bytearray(w.read_bytes())
    data[-64:] = b"\xff" * 64
    w.write_bytes(bytes(data))
    p = fresh()
    with pytest.raises(ValueError, match="sha256 differs") as e:
        cogvideo.load_lora(p, lora)
    assert str(w) in str(e.value)
    assert adapters(p) == []


def test_damaged_lora_record_names_it(tmp_path):
    lora = lora_of(fresh(), tmp_path / "lora")
    (lora / cogvideo.LORA_RECORD).write_text('{"base": ')
    with pytest.raises(ValueError, match="not valid JSON") as e:
        cogvideo.load_lora(fresh(), lora)
    assert str(lora / cogvideo.LORA_RECORD) in str(e.value)


def test_missing_lora_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no LoRA weights here") as e:
        cogvideo.load_lora(fresh(), tmp_path / "nothing")
    assert str(tmp_path / "nothing") in str(e.value)


def test_interrupted_save_lora_leaves_no_folder(tmp_path, monkeypatch):
    from diffusers import CogVideoXImageToVideoPipeline
    p = fresh()
    cogvideo.add_lora(p.transformer, rank=2, alpha=2)
    def fail(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(CogVideoXImageToVideoPipeline, "save_lora_weights", fail)
    with pytest.raises(KeyboardInterrupt):
        cogvideo.save_lora(p, tmp_path / "lora")
    assert list(tmp_path.iterdir()) == []


def test_lora_targets_that_match_nothing_are_named(pipe):
    with pytest.raises(ValueError, match=r"targets: \['to_qkv'\] match no linear layer"):
        cogvideo.add_lora(fresh().transformer, rank=2, targets=("to_q", "to_qkv"))


# frame counts and sizes the model cannot take ------------------------------------------------------------------------

def test_frame_count_the_model_cannot_take(pipe, tmp_path):
    with pytest.raises(ValueError, match="frames: expected 8k \\+ 1 .* got 8"):
        cogvideo.restore_trajectory(pipe, torch.rand(3, 32, 32), "x", frames=8, steps=1)
    with pytest.raises(ValueError, match=r"dataset\[0\]\['frames'\] \(v0\): frames: expected 8k \+ 1"):
        cogvideo.build_latent_cache(pipe, toy(frames=8), tmp_path / "cache", "train", progress=False)
    assert not (tmp_path / "cache" / "train.jsonl").exists()
    assert not list((tmp_path / "cache").glob("video/*"))


def test_size_not_a_multiple_of_16(pipe, tmp_path):
    with pytest.raises(ValueError, match="image: width and height must be multiples of 16 .* got 40 x 32"):
        cogvideo.restore_trajectory(pipe, torch.rand(3, 32, 40), "x", steps=1)
    with pytest.raises(ValueError, match=r"dataset\[0\]\['frames'\] \(v0\): width and height must be multiples of 16"):
        cogvideo.build_latent_cache(pipe, toy(size=(40, 32)), tmp_path / "cache", "train", progress=False)
    assert not (tmp_path / "cache" / "train.jsonl").exists()
    assert not list((tmp_path / "cache").glob("video/*"))


# caches built from something else -------------------------------------------------------------------------------------

def test_cache_of_other_data_names_what_differs(pipe, tmp_path):
    cogvideo.build_latent_cache(pipe, toy(), tmp_path, "train", progress=False)
    before = (tmp_path / "train.jsonl").read_bytes()
    with pytest.raises(ValueError, match=r"train.jsonl: cached from other data \(content .*videos \(2 -> 1\)"):
        cogvideo.build_latent_cache(pipe, toy(n=1), tmp_path, "train", progress=False)
    assert (tmp_path / "train.jsonl").read_bytes() == before


def test_cache_of_other_encoders_names_them(tmp_path):
    cogvideo.build_latent_cache(fresh(), toy(), tmp_path, "train", progress=False)
    with pytest.raises(ValueError, match="built with other encoders .*text_encoder") as e:
        cogvideo.build_latent_cache(cogvideo.load_pipeline(preset="tiny", seed=1), toy(), tmp_path, "val",
                                    progress=False)
    assert str(tmp_path) in str(e.value)
    assert not (tmp_path / "val.jsonl").exists()


def test_merge_with_a_missing_shard_names_it(pipe, tmp_path):
    cogvideo.build_latent_cache(pipe, toy(), tmp_path, "train", shard=(0, 2), progress=False)
    with pytest.raises(FileNotFoundError, match=r"\['train.shard-1-of-2'\] are missing"):
        cogvideo.merge_latent_cache(tmp_path, "train", 2)
    assert not (tmp_path / "train.jsonl").exists()


def test_bad_shard_argument_is_named(tmp_path):
    with pytest.raises(ValueError, match="--shard: expected I/N"):
        cogvideo.cache_main(["--manifest", "m", "--preset", "tiny", "--cache", str(tmp_path), "--name", "x",
                             "--shard", "one"])
    with pytest.raises(ValueError, match="shard: expected 0 <= index < count"):
        cogvideo.cache_main(["--manifest", "m", "--preset", "tiny", "--cache", str(tmp_path), "--name", "x",
                             "--shard", "2/2"])
    assert list(tmp_path.iterdir()) == []


# VAE folders -----------------------------------------------------------------------------------------------------------

def test_vae_folder_without_weights(tmp_path):
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="is not a VAE folder") as e:
        cogvideo.load_pipeline(preset="tiny", vae=tmp_path / "vae")
    assert str(tmp_path / "vae") in str(e.value)


def test_truncated_vae_weights_name_the_file(pipe, tmp_path):
    cogvideo.save_vae(pipe.vae, tmp_path / "vae")
    w = tmp_path / "vae" / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(ValueError, match="damaged or truncated") as e:
        cogvideo.load_pipeline(preset="tiny", vae=tmp_path / "vae")
    assert str(w) in str(e.value)


def test_vae_that_does_not_fit_the_transformer(tmp_path):
    from diffusers import AutoencoderKLCogVideoX
    vae = AutoencoderKLCogVideoX(**{**cogvideo.TINY_VAE, "latent_channels": 8})
    cogvideo.save_vae(vae, tmp_path / "vae")
    with pytest.raises(ValueError, match="vae: 8 latent channels, but this transformer takes 4"):
        cogvideo.load_pipeline(preset="tiny", vae=tmp_path / "vae")


def test_step_settings_out_of_range(pipe):
    with pytest.raises(ValueError, match="objective: expected one of"):
        cogvideo.make_lora_step(pipe, objective="v")
    with pytest.raises(ValueError, match="image_dropout: expected a probability"):
        cogvideo.make_lora_step(pipe, image_dropout=1.5)
