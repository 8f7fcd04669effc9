"""Resuming `train.fit` from checkpoints that were damaged or tampered with (issue 13, items 1 and 3).

`resume="latest"` passes over a damaged newest checkpoint (warning, `resume_log.json`, the result's
`skipped_checkpoints`) and still ends bit for bit with the uninterrupted weights; a crafted pickle placed in a
checkpoint is never opened and changes nothing; random-generator states are part of what makes a resume exact, so a
damaged one is refused instead of resuming with other states.
"""
import json
import pickle
import warnings
from pathlib import Path

import pytest
import torch

from progressive_ir.train import (DamagedCheckpoint, RandomPatches, TinyRestorer, TrainConfig, fit, l1_step,
                                  latest_checkpoint, list_checkpoints, noisy_pairs, read_json, set_rng_states)


class Exploit:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def tiny_fit(out_dir, **kw):
    "TinyRestorer with dropout (the generator states matter), 8 steps, checkpoints every 2."
    torch.manual_seed(0)
    model = TinyRestorer(dropout=0.1)
    data = RandomPatches(noisy_pairs(8), patch=8, seed=0)
    settings = dict(epochs=2, checkpoint_every=2, log_every=1, progress=False, cpu=True, lr=1e-2)
    return model, fit(model, data, l1_step, TrainConfig(out_dir, **dict(settings, **kw)), batch_size=2)


def same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    model, res = tiny_fit(tmp_path_factory.mktemp("ref") / "run")
    return model, res


def test_latest_passes_over_a_damaged_checkpoint(tmp_path, reference):
    out = tmp_path / "run"
    tiny_fit(out, stop_after=3)
    damaged = latest_checkpoint(out)
    (damaged / "optimizer.safetensors").write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, res = tiny_fit(out, resume="latest")
    assert any("passed over damaged checkpoint(s) step_3" in str(w.message) for w in caught)
    assert res["resumed_from"].name == "step_2" and res["finished"]
    assert res["skipped_checkpoints"][0]["checkpoint"] == str(damaged)
    log = read_json(out / "resume_log.json")
    assert log[0]["resumed_from"].endswith("step_2") and "optimizer.safetensors" in log[0]["skipped"][0]["problems"][0]
    assert same_weights(model, reference[0])
    assert res["history"] == reference[1]["history"]


def test_a_placed_pickle_is_never_opened(tmp_path, reference):
    out = tmp_path / "run"
    tiny_fit(out, stop_after=3)
    marker = tmp_path / "marker"
    for name in ("custom_checkpoint_0.pkl", "optimizer.bin", "random_states_0.pkl"):
        (latest_checkpoint(out) / name).write_bytes(pickle.dumps(Exploit(marker)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, res = tiny_fit(out, resume="latest")
    assert not marker.exists()
    assert any("custom_checkpoint_0.pkl" in str(w.message) and "not read" in str(w.message) for w in caught)
    assert res["resumed_from"].name == "step_3" and same_weights(model, reference[0])


def test_other_generator_states_would_change_the_run(tmp_path, reference):
    "Why a damaged state is refused: resuming with other generator states gives other weights (dropout)."
    out = tmp_path / "run"
    tiny_fit(out, stop_after=3)
    rng_path = latest_checkpoint(out) / "rng_state_0.json"
    rng = json.loads(rng_path.read_text())
    import progressive_ir.train as train
    original = train.set_rng_states
    try:   # what silently ignoring the saved states would amount to: keep fit's fresh seeding
        train.set_rng_states = lambda states, source="": None
        model, _ = tiny_fit(out, resume="latest")
    finally:
        train.set_rng_states = original
    assert not same_weights(model, reference[0])
    set_rng_states(rng)                                   # the saved record itself is valid


def test_a_truncated_generator_state_is_never_used(tmp_path, reference):
    out = tmp_path / "run"
    tiny_fit(out, stop_after=3)
    rng_path = latest_checkpoint(out) / "rng_state_0.json"
    rng_path.write_text(rng_path.read_text()[:-200])
    with pytest.raises(DamagedCheckpoint, match=r"rng_state_0.json: \d+ bytes, the manifest says"):
        tiny_fit(out, resume=str(latest_checkpoint(out)))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        model, res = tiny_fit(out, resume="latest")           # falls back to step_2, exact again
    assert res["resumed_from"].name == "step_2" and same_weights(model, reference[0])


def test_only_legacy_checkpoints_is_an_error_not_a_restart(tmp_path):
    out = tmp_path / "run"
    tiny_fit(out, stop_after=3)
    for ckpt in list_checkpoints(out):
        (ckpt / "manifest.json").unlink()
        (ckpt / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Exploit(tmp_path / "marker")))
    with pytest.raises(DamagedCheckpoint, match=r"no intact checkpoint .*step_3: no manifest.json.*older version"):
        tiny_fit(out, resume="latest")
    assert not (tmp_path / "marker").exists()
