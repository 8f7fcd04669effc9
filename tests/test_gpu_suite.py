"""The GPU suite's CPU dry run (issue 16): every part runs at tiny sizes and writes its JSON; a part that fails or
runs out of time is recorded as such while the others still run."""
import json, subprocess, sys, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "bench" / "gpu_suite.py"
sys.path.insert(0, str(ROOT / "bench"))
import gpu_suite  # noqa: E402

PART_KEYS = {"part", "status", "device", "tiny", "commit", "command", "settings", "env", "figures", "wall_s", "budget_s"}


def run_suite(tmp_path, *args, timeout=600):
    out, work = tmp_path / "out", tmp_path / "work"
    cmd = [sys.executable, str(SUITE), "--dry-run", "--out-dir", str(out), "--work-dir", str(work), "--no-install",
           "--commit", "test-commit", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    docs = {f.stem: json.loads(f.read_text()) for f in out.glob("*.json")}
    return p, docs


@pytest.fixture(scope="module")
def dry_run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("dry")


@pytest.fixture(scope="module")
def dry_run(dry_run_dir):
    return run_suite(dry_run_dir)


def test_dry_run_writes_every_part(dry_run):
    p, docs = dry_run
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert set(docs) == set(gpu_suite.ORDER) | {"summary"}
    for part in gpu_suite.ORDER:
        d = docs[part]
        assert PART_KEYS <= set(d), (part, PART_KEYS - set(d))
        assert d["status"] == "ok" and d["part"] == part and d["tiny"] is True and d["commit"] == "test-commit", d
        assert d["env"]["torch"] and "cuda" in d["env"] and d["figures"]["headline"], part
    assert [r["part"] for r in docs["summary"]["parts"]] == list(gpu_suite.ORDER)
    assert "promptir_compile" in p.stdout and "status" in docs["summary"]["table"][0]


def test_dry_run_figures(dry_run):
    _, docs = dry_run
    infer = docs["promptir_infer"]["figures"]["inference"]
    assert {(r["amp"], r["channels_last"]) for r in infer} == {("fp32", False), ("fp32", True), ("bf16", False),
                                                                 ("bf16", True)}
    assert all(r["max_abs_diff"] < 0.05 for r in infer)
    assert [r["compile"] for r in docs["promptir_compile"]["figures"]["inference"]] == [True]
    cases = docs["promptir_train"]["figures"]["cases"]
    assert [(c["recipe"], c["status"]) for c in cases] == [("full_fp32", "ok"), ("ours_ckpt_frozen_bf16", "ok")]
    cog = docs["cogvideo"]["figures"]
    assert cog["train"]["status"] == "ok" and cog["train"]["gradient_checkpointing"]
    sampling = cog["sampling"]
    assert [r["status"] for r in sampling["runs"]] == ["ok", "ok"]
    assert (sampling.get("extrapolated_steps") == 50 and sampling["s_per_step"] > 0) or "too noisy" in sampling["warning"]
    assert [d["tiling"] for d in cog["vae_decode"]] == [False, True]
    assert all(d["frames_out"][2] == 9 for d in cog["vae_decode"])
    regimes = docs["exp04"]["figures"]["regimes"]
    assert set(regimes) == {"none", "full"} and regimes["full"]["steps"] == 4 and regimes["full"]["finished"]
    assert regimes["full"]["delta_psnr"] == pytest.approx(regimes["full"]["psnr"] - regimes["full"]["psnr_compressed"])
    assert set(docs["metrics"]["figures"]["frames_per_s"]["cpu"]) == {"psnr", "ssim"}


def test_exp04_resumes_in_the_same_work_dir(dry_run, dry_run_dir):
    "A second run reuses the stand-in and continues the regime from its last checkpoint (here to 6 steps)."
    p, docs = run_suite(dry_run_dir, "--parts", "exp04", "--set", "exp04.max_steps=6")
    assert p.returncode == 0, p.stdout[-3000:]
    figures = docs["exp04"]["figures"]
    assert figures["starting_model"]["steps"] == 2  # not retrained: the one the first run saved
    assert figures["regimes"]["full"]["steps"] == 6 and figures["regimes"]["full"]["finished"]
    checkpoints = sorted((dry_run_dir / "work" / "exp04" / "full" / "checkpoints").iterdir())
    assert [c.name for c in checkpoints] == ["step_4", "step_6"]


def test_failing_and_hanging_parts_are_recorded_and_the_others_run(tmp_path):
    t0 = time.time()
    p, docs = run_suite(tmp_path, "--parts", "promptir_infer,metrics,promptir_compile", "--inject", "hang:promptir_infer",
                        "--budget", "promptir_infer=4", "--inject", "fail:promptir_compile")
    assert p.returncode == 1  # not every part ended well
    hang, ok, fail = docs["promptir_infer"], docs["metrics"], docs["promptir_compile"]
    assert hang["status"] == "timeout" and "out of budget" in hang["error"] and hang["wall_s"] < 4 + 15
    assert ok["status"] == "ok" and ok["figures"]["frames_per_s"]
    assert fail["status"] == "failed" and "injected failure" in fail["error"] and fail["log_tail"] is not None
    assert [r["status"] for r in docs["summary"]["parts"]] == ["timeout", "ok", "failed"]
    assert time.time() - t0 < 120


def test_parts_beyond_the_total_budget_are_skipped(tmp_path):
    p, docs = run_suite(tmp_path, "--parts", "metrics,promptir_infer", "--total-budget", "1")
    assert p.returncode == 1
    assert [docs[k]["status"] for k in ("metrics", "promptir_infer")] == ["skipped", "skipped"]
    assert "total budget" in docs["metrics"]["error"]


def test_bad_arguments_name_the_option():
    for argv, msg in [(["--parts", "nope"], "--parts: unknown ['nope']"), (["--inject", "boom:metrics"], "--inject"),
                      (["--budget", "metrics"], "--budget: expected KEY=VALUE"), (["--set", "x.y=1"], "--set"),
                      (["--budget", "nope=3"], "--budget: unknown part")]:
        with pytest.raises(SystemExit, match=msg.replace("[", r"\[").replace("]", r"\]")): gpu_suite.parse_args(argv)
    with pytest.raises(ValueError, match="unknown setting"): gpu_suite.settings_of("exp04", True, {"nope": 1})
    assert gpu_suite.settings_of("exp04", True, {"regimes": ["ours"]})["regimes"] == ["ours"]
    assert gpu_suite.settings_of("exp04", False)["model"] == "paper" and gpu_suite.settings_of("exp04", True)["model"] == "tiny"


def test_install_wheels_installs_only_missing_distributions(tmp_path, monkeypatch):
    wheels = tmp_path / "whl"
    wheels.mkdir()
    (wheels / "torch-9.9-py3-none-any.whl").write_bytes(b"")          # installed here: skipped
    (wheels / "no_such_dist_xyz-1.0-py3-none-any.whl").write_bytes(b"")  # missing: handed to pip
    calls = []
    monkeypatch.setattr(gpu_suite.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or
                        subprocess.CompletedProcess(cmd, 0, "", ""))
    rec = gpu_suite.install_wheels(wheels, tmp_path / "site")
    assert rec["status"] == "ok" and rec["installed"] == ["no_such_dist_xyz-1.0-py3-none-any.whl"]
    assert rec["already_installed"] == 1 and "--no-index" in calls[0] and "--no-deps" in calls[0]
    assert calls[0][-1].endswith("no_such_dist_xyz-1.0-py3-none-any.whl")
    assert gpu_suite.install_wheels(tmp_path / "absent", tmp_path / "site")["wheels"] == 0
