"""Multi-process training on CPUs (issue 15, item 1): `train.fit` under `accelerate launch` with two gloo processes.

Two processes with batch 2 each must train like one process with batch 4 (final weights within float tolerance),
write checkpoints and logs once, report validation means over all frames (not process 0's share), resume after a
process is killed mid-run to the uninterrupted weights, and refuse a resume with another number of processes.
The launched script is `tests/dist_fit.py` (it runs `train.tiny_regime_fit`); each launch takes ~10-25 s here.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from progressive_ir.promptir import PromptIR, PromptIRConfig
from progressive_ir.train import evaluate_pairs, noisy_pairs, read_history, tiny_regime_fit

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "dist_fit.py"
RUN = ["--epochs", "2", "--batch-size", "2", "--checkpoint-every", "3"]   # 16 samples: 4 steps per epoch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out_dir, *args, processes=2, expect_ok=True):
    "Run tests/dist_fit.py under `accelerate launch` with `processes` CPU processes."
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(SCRIPT), str(out_dir), *args]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if expect_ok and proc.returncode != 0:
        raise AssertionError(f"launch failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def final_weights(out_dir) -> dict:
    return load_file(str(Path(out_dir) / "final" / "model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "An uninterrupted two-process run and the one-process run with the same global batch (4)."
    root = tmp_path_factory.mktemp("dist")
    launch(root / "two", *RUN)
    torch.set_num_threads(1)
    one = tiny_regime_fit(root / "one", epochs=2, batch_size=4, checkpoint_every=3)
    return root, one


def test_two_processes_train_like_one(runs):
    root, one = runs
    two = final_weights(root / "two")
    ref = {k: v.detach() for k, v in one["model"].state_dict().items()}
    assert two.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(two[k], ref[k], atol=2e-5, rtol=1e-4)
    moved = max(float((ref[k] - v).abs().max()) for k, v in _fresh().state_dict().items())
    assert moved > 1e-4                          # training changed the weights well beyond the tolerance
    hist_two = read_history(root / "two" / "history.csv")
    train_two = hist_two[hist_two["kind"] == "train"]
    train_one = [r for r in one["history"] if r["kind"] == "train"]
    assert list(train_two["step"]) == [r["step"] for r in train_one] == list(range(1, 9))
    np.testing.assert_allclose(train_two["loss"], [r["loss"] for r in train_one], rtol=1e-5)   # over both shares


def _fresh():
    torch.manual_seed(0)
    return PromptIR(PromptIRConfig.tiny())


def test_checkpoints_and_logs_written_once(runs):
    root, _ = runs
    out = root / "two"
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["step_6", "step_8"]                         # no temporary folder left
    names = sorted(p.name for p in (out / "checkpoints" / "step_8").iterdir())
    assert names == ["manifest.json", "model.safetensors", "optimizer.safetensors", "rng_state_0.json",
                     "rng_state_1.json", "train_state.json"]
    state = json.loads((out / "checkpoints" / "step_8" / "train_state.json").read_text())
    assert (state["num_processes"], state["batch_size"], state["step"]) == (2, 2, 8)
    hist = read_history(out / "history.csv")
    rows = list(zip(hist["step"], hist["kind"]))
    assert len(rows) == len(set(rows)) == 10                    # 8 training rows, 2 evaluations, each once
    views = [json.loads((out / f"process_{k}.json").read_text()) for k in (0, 1)]
    assert [v["num_processes"] for v in views] == [2, 2]
    assert views[0]["history"] == views[1]["history"]           # every process holds the whole run's history


def test_validation_gathered_over_processes(runs):
    root, _ = runs
    hist = read_history(root / "two" / "history.csv")
    logged = float(hist[hist["kind"] == "eval"]["val_psnr"].iloc[-1])
    model = _fresh()
    model.load_state_dict(final_weights(root / "two"))
    val = noisy_pairs(3, 16, seed=1)                             # tiny_regime_fit's validation frames
    psnrs = [r["psnr"] for r in evaluate_pairs(model.eval(), val)]
    assert abs(logged - np.mean(psnrs)) < 1e-3                  # the mean over all three frames ...
    share0 = np.mean([psnrs[0], psnrs[2]])                       # ... not process 0's frames 0 and 2
    assert abs(share0 - np.mean(psnrs)) > 1e-2


def test_resume_after_a_process_is_killed(runs):
    root, _ = runs
    out = root / "killed"
    crashed = launch(out, *RUN, "--crash-at", "1:7", expect_ok=False)
    assert crashed.returncode != 0 and "simulated crash of process 1" in crashed.stderr
    assert not (out / "final").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_4", "step_6"]
    launch(out, *RUN, "--resume", "latest")
    ref, got = final_weights(root / "two"), final_weights(out)
    assert all(torch.equal(ref[k], got[k]) for k in ref)          # bit for bit: same processes, same order
    assert read_history(out / "history.csv").equals(read_history(root / "two" / "history.csv"))


def test_resume_with_another_process_count_is_refused(runs, tmp_path):
    root, _ = runs
    copy = tmp_path / "two"
    shutil.copytree(root / "two", copy)
    before = sorted(str(p.relative_to(copy)) for p in copy.rglob("*"))
    with pytest.raises(ValueError, match=r"written by 2 process\(es\), this run has 1.*--num_processes 2"):
        tiny_regime_fit(copy, epochs=2, batch_size=2, checkpoint_every=3, resume="latest")
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*")) == before   # nothing written


def test_lightweight_regime_two_processes_train_like_one(tmp_path):
    "The frozen-backbone regime with checkpointed blocks ('ours') under DDP."
    launch(tmp_path / "two", *RUN, "--regime", "ours", "--no-eval")
    torch.set_num_threads(1)
    one = tiny_regime_fit(tmp_path / "one", regime="ours", epochs=2, batch_size=4, checkpoint_every=3,
                          evaluate=False)
    two = final_weights(tmp_path / "two")
    ref = one["model"].state_dict()
    for k in ref:
        torch.testing.assert_close(two[k], ref[k].detach(), atol=2e-5, rtol=1e-4)
