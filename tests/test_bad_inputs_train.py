"""Bad inputs of the training area (issues 13 and 14): damaged or crafted checkpoint files, bad `TrainConfig`
values, bad `fit` arguments, resume from a folder that is not a checkpoint, an official checkpoint that fits nothing.

Each case asserts the error type, that the message names the file or the parameter, and that nothing half-written is
left behind (the run folder byte-for-byte unchanged, or nothing created). A crafted pickle must never run: its
`__reduce__` would create a marker file, which must not exist afterwards.
"""
import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch

from progressive_ir.promptir import PromptIR, PromptIRConfig
from progressive_ir.train import (DamagedCheckpoint, RandomPatches, TinyRestorer, TrainConfig, fit, l1_step,
                                  latest_checkpoint, list_checkpoints, make_scheduler, noisy_pairs,
                                  starting_model, write_manifest)


class Exploit:
    "Unpickled, it creates `path` (what a malicious checkpoint would do instead)."
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def tiny_fit(out_dir, **kw):
    torch.manual_seed(0)
    model = TinyRestorer(dropout=0.1)
    data = RandomPatches(noisy_pairs(8), patch=8, seed=0)
    settings = dict(epochs=2, checkpoint_every=2, log_every=1, progress=False, cpu=True, lr=1e-2)
    return model, fit(model, data, l1_step, TrainConfig(out_dir, **dict(settings, **kw)), batch_size=2)


def snapshot(folder) -> dict:
    "Every path under `folder` with the SHA-256 of files (None for folders)."
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def interrupted(tmp_path):
    "A run stopped after 3 of 8 steps: checkpoints step_2 and step_3."
    out = tmp_path / "run"
    tiny_fit(out, stop_after=3)
    assert [p.name for p in list_checkpoints(out)] == ["step_2", "step_3"]
    return out, latest_checkpoint(out)


def refuse(out, error, match, **kw):
    "Resuming `out` must raise `error` matching `match` and leave every file of `out` as it was."
    before = snapshot(out)
    with pytest.raises(error, match=match):
        tiny_fit(out, **kw)
    assert snapshot(out) == before


# --- damaged checkpoint files --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "rng_state_0.json",
                                  "train_state.json"])
def test_truncated_file_is_named(interrupted, name):
    out, ckpt = interrupted
    data = (ckpt / name).read_bytes()
    (ckpt / name).write_bytes(data[: len(data) // 2])
    refuse(out, DamagedCheckpoint, rf"step_3 is damaged \({name}: \d+ bytes, the manifest says \d+",
           resume=str(ckpt))


def test_garbage_bytes_of_the_same_size_are_named(interrupted):
    out, ckpt = interrupted
    size = (ckpt / "optimizer.safetensors").stat().st_size
    (ckpt / "optimizer.safetensors").write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    refuse(out, DamagedCheckpoint, r"optimizer.safetensors: content differs from the manifest",
           resume=str(ckpt))


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors"])
def test_garbage_with_a_forged_manifest_is_refused_by_the_loader(interrupted, name):
    "Even when the manifest matches (rewritten by whoever damaged the file), the reader names the file."
    out, ckpt = interrupted
    (ckpt / name).write_bytes(b"\x00garbage" * 50)
    write_manifest(ckpt)
    refuse(out, DamagedCheckpoint, rf"{name}: not a readable safetensors file", resume=str(ckpt))


def test_a_failed_resume_leaves_the_model_unchanged(interrupted):
    "Everything is read and checked before the model is touched: a bad optimizer state changes no weight."
    out, ckpt = interrupted
    (ckpt / "optimizer.safetensors").write_bytes(b"\x00garbage" * 50)
    write_manifest(ckpt)
    torch.manual_seed(1)
    model = TinyRestorer(dropout=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(out, epochs=2, checkpoint_every=2, progress=False, cpu=True, resume=str(ckpt))
    with pytest.raises(DamagedCheckpoint, match="optimizer.safetensors"):
        fit(model, RandomPatches(noisy_pairs(8), patch=8, seed=0), l1_step, cfg, batch_size=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_damaged_rng_state_with_a_forged_manifest_is_refused(interrupted):
    out, ckpt = interrupted
    rng = json.loads((ckpt / "rng_state_0.json").read_text())
    rng["torch"] = rng["torch"][:-64]
    (ckpt / "rng_state_0.json").write_text(json.dumps(rng))
    write_manifest(ckpt)
    refuse(out, DamagedCheckpoint, r"rng_state_0.json: damaged random-generator states \(torch: expected",
           resume=str(ckpt))


def test_edited_loop_record_with_a_forged_manifest_is_refused(interrupted):
    out, ckpt = interrupted
    record = json.loads((ckpt / "train_state.json").read_text())
    record["loop"]["stepp"] = record["loop"].pop("step")
    (ckpt / "train_state.json").write_text(json.dumps(record))
    write_manifest(ckpt)
    refuse(out, DamagedCheckpoint, r"train_state.json: not a loop record", resume=str(ckpt))


def test_missing_rng_state_of_a_process_is_named(interrupted):
    out, ckpt = interrupted
    (ckpt / "rng_state_0.json").unlink()
    refuse(out, DamagedCheckpoint, r"rng_state_0.json: missing", resume=str(ckpt))


def test_latest_with_every_checkpoint_damaged_is_an_error(interrupted):
    out, _ = interrupted
    for ckpt in list_checkpoints(out):
        (ckpt / "model.safetensors").write_bytes(b"")
    refuse(out, DamagedCheckpoint, r"no intact checkpoint under .*step_3: model.safetensors: 0 bytes.*step_2",
           resume="latest")


# --- crafted pickles -----------------------------------------------------------------------------------------

def test_the_exploit_works_when_unpickled(tmp_path):
    "The crafted files below are real: plain unpickling creates the marker."
    pickle.loads(pickle.dumps(Exploit(tmp_path / "marker")))
    assert (tmp_path / "marker").exists()


def test_crafted_pickle_as_optimizer_state_never_runs(interrupted, tmp_path):
    out, ckpt = interrupted
    marker = tmp_path / "marker"
    (ckpt / "optimizer.safetensors").write_bytes(pickle.dumps({"state": Exploit(marker)}))
    write_manifest(ckpt)                                # a forger rewrites the manifest too
    refuse(out, DamagedCheckpoint, r"optimizer.safetensors: not a readable safetensors file", resume=str(ckpt))
    assert not marker.exists()


def test_legacy_accelerate_checkpoint_is_refused_unread(tmp_path):
    "A folder in Accelerate's pickle format (as older versions wrote) with crafted pickles: refused, nothing runs."
    out = tmp_path / "run"
    ckpt = out / "checkpoints" / "step_4"
    ckpt.mkdir(parents=True)
    marker = tmp_path / "marker"
    (ckpt / "train_state.json").write_text(json.dumps(dict(step=4, epoch=1, batch_in_epoch=0)))
    for name in ("custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl", "random_states_0.pkl"):
        (ckpt / name).write_bytes(pickle.dumps(Exploit(marker)))
    torch.save({"state": {}, "param_groups": [], "x": Exploit(marker)}, ckpt / "optimizer.bin")
    refuse(out, DamagedCheckpoint, r"no manifest.json; it holds \['custom_checkpoint_0.pkl', "
           r"'custom_checkpoint_1.pkl', 'optimizer.bin', 'random_states_0.pkl'\], written by an older version",
           resume=str(ckpt))
    refuse(out, DamagedCheckpoint, r"no intact checkpoint .*older version", resume="latest")
    assert not marker.exists()


# --- resume from the wrong place or with other settings ------------------------------------------------------

def test_resume_from_a_folder_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "some_folder").mkdir()
    (tmp_path / "some_folder" / "notes.txt").write_text("hello")
    out = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match=r"resume: .*some_folder is not a complete checkpoint folder"):
        tiny_fit(out, resume=str(tmp_path / "some_folder"))
    assert not out.exists()                              # nothing created
    with pytest.raises(FileNotFoundError, match=r"resume: .*missing is not a complete checkpoint folder"):
        tiny_fit(out, resume=str(tmp_path / "missing"))
    assert not out.exists()


def test_fresh_run_over_checkpoints_is_refused(interrupted):
    out, _ = interrupted
    refuse(out, ValueError, r"out_dir: .* already holds checkpoints; pass resume='latest'")


def test_resume_with_another_batch_size_is_refused(interrupted):
    out, _ = interrupted
    before = snapshot(out)
    torch.manual_seed(0)
    data = RandomPatches(noisy_pairs(8), patch=8, seed=0)
    cfg = TrainConfig(out, epochs=2, checkpoint_every=2, progress=False, cpu=True, resume="latest")
    with pytest.raises(ValueError, match=r"batch_size: 4, but .*step_3 was written with batch_size=2"):
        fit(TinyRestorer(dropout=0.1), data, l1_step, cfg, batch_size=4)
    assert snapshot(out) == before


def test_resume_into_another_model_is_refused(interrupted):
    out, ckpt = interrupted
    before = snapshot(out)
    data = RandomPatches(noisy_pairs(8), patch=8, seed=0)
    cfg = TrainConfig(out, epochs=2, progress=False, cpu=True, resume=str(ckpt))
    with pytest.raises(ValueError, match=r"model.safetensors: does not fit the model .*resume with the model"):
        fit(TinyRestorer(width=4), data, l1_step, cfg, batch_size=2)
    assert snapshot(out) == before


# --- bad configuration values and fit arguments --------------------------------------------------------------

BAD_CONFIG = [("epochs", 0), ("epochs", 1.5), ("max_steps", -1), ("lr", 0), ("lr", "1e-4"), ("lr", float("nan")),
              ("weight_decay", -0.1), ("betas", (0.9,)), ("betas", (1.0, 0.9)), ("warmup_epochs", -1),
              ("schedule", "linear"), ("mixed_precision", "fp8"), ("grad_accum", 0), ("max_grad_norm", 0),
              ("checkpoint_every", 0), ("keep_checkpoints", 0), ("resume", 5), ("eval_every_epochs", 0),
              ("eval_every_steps", 0), ("log_every", 0), ("seed", -1), ("seed", True), ("progress", "yes"),
              ("stop_after", 0), ("cpu", 1), ("trainable_only", None)]


@pytest.mark.parametrize("field,value", BAD_CONFIG)
def test_bad_config_value_names_the_field(tmp_path, field, value):
    with pytest.raises(ValueError, match=rf"^{field}: expected"):
        TrainConfig(tmp_path / "run", **{field: value})
    with pytest.raises(ValueError, match=rf"^{field}: expected"):     # the same through fit's dict form
        tiny_fit_dict(tmp_path / "run", **{field: value})
    assert not (tmp_path / "run").exists()


def tiny_fit_dict(out_dir, **kw):
    data = RandomPatches(noisy_pairs(8), patch=8, seed=0)
    settings = dict(dict(out_dir=str(out_dir), cpu=True, progress=False), **kw)
    return fit(TinyRestorer(), data, l1_step, settings, batch_size=2)


def test_cfg_of_another_type(tmp_path):
    data = RandomPatches(noisy_pairs(8), patch=8, seed=0)
    with pytest.raises(ValueError, match=r"^cfg: expected a TrainConfig or a dict of its fields, got str"):
        fit(TinyRestorer(), data, l1_step, str(tmp_path / "run"), batch_size=2)
    assert not (tmp_path / "run").exists()


def test_bad_out_dir_and_unknown_setting(tmp_path):
    with pytest.raises(ValueError, match=r"^out_dir: expected a folder path, got None"):
        TrainConfig(None)
    with pytest.raises(ValueError, match=r"TrainConfig: unknown settings \['learning_rate'\]"):
        tiny_fit_dict(tmp_path / "run", learning_rate=1e-3)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=0), r"^batch_size: expected a positive int"),
    (dict(batch_size=9), r"^train_data: 8 samples, fewer than batch_size=9"),
    (dict(step_fn="l1"), r"^step_fn: expected a callable"),
    (dict(frozen=True), r"^model: no parameter requires grad"),
])
def test_bad_fit_arguments(tmp_path, kwargs, match):
    model = TinyRestorer().requires_grad_(not kwargs.pop("frozen", False))
    args = dict(dict(step_fn=l1_step, batch_size=2), **kwargs)
    data = RandomPatches(noisy_pairs(8), patch=8, seed=0)
    with pytest.raises(ValueError, match=match):
        fit(model, data, args["step_fn"], TrainConfig(tmp_path / "run", cpu=True, progress=False),
            batch_size=args["batch_size"])
    assert not (tmp_path / "run").exists()


def test_bad_schedule_and_patch_are_named():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match=r"^schedule: expected one of \('cosine', 'constant'\), got 'step'"):
        make_scheduler(opt, 10, schedule="step")
    with pytest.raises(ValueError, match=r"^patch: expected None or a positive int, got 0"):
        RandomPatches(noisy_pairs(2), patch=0)
    with pytest.raises(ValueError, match=r"^repeats: expected a positive int"):
        RandomPatches(noisy_pairs(2), repeats=0)


# --- a starting checkpoint that fits nothing -----------------------------------------------------------------

def test_official_checkpoint_that_fits_nothing_is_refused(tmp_path):
    path = tmp_path / "not_promptir.ckpt"
    torch.save({"state_dict": {"net.something.weight": torch.zeros(3)}}, path)
    with pytest.raises(ValueError, match="not_promptir.ckpt"):
        starting_model(path, PromptIRConfig.tiny())
