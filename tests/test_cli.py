"""End-to-end tests of the `progressive-ir` console script (installed by `pip install -e .`)."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest

EXE = shutil.which("progressive-ir") or str(Path(sys.executable).parent / "progressive-ir")

def run(*args, env=None, **kw):
    return subprocess.run([EXE, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, **kw)

def test_help_on_every_subcommand():
    top = run("--help"); assert top.returncode == 0 and "reproduce" in top.stdout
    for cmd in ["reproduce", "make-data", "bench", "docs", "list"]:
        r = run(cmd, "--help")
        assert r.returncode == 0 and f"usage: progressive-ir {cmd}" in r.stdout, (cmd, r.stdout, r.stderr)

def test_unknown_profile_is_a_clear_error(tmp_path):
    r = run("reproduce", "--profile", "huge", "--out", str(tmp_path))
    assert r.returncode == 2
    assert "profile: expected one of ('smoke', 'gpu', 'paper'), got 'huge'" in r.stderr
    assert not any(tmp_path.iterdir())

def test_unknown_experiment_is_a_clear_error(tmp_path):
    r = run("reproduce", "--only", "no_such_experiment", "--out", str(tmp_path))
    assert r.returncode == 2 and "unknown name 'no_such_experiment'" in r.stderr

def test_reproduce_sample_tour_end_to_end(tmp_path):
    r = run("reproduce", "--profile", "smoke", "--only", "sample_tour", "--set", "thumb_height=48", "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "smoke" / "00_sample_tour"
    for f in ["00_sample_tour.ipynb", "contact_sheet.png", "inventory.json", "run.json"]: assert (out / f).is_file(), f
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "done" and rec["params"]["thumb_height"] == 48 and rec["params"]["profile"] == "smoke"
    summary = json.loads((tmp_path / "smoke" / "reproduce.json").read_text())
    assert summary["failed"] == [] and [e["experiment"] for e in summary["experiments"]] == ["00_sample_tour"]
    assert "00_sample_tour" in r.stdout and "all experiments finished" in r.stdout
    # the executed notebook carries the injected parameters
    nb = json.loads((out / "00_sample_tour.ipynb").read_text())
    assert any("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in nb["cells"])

def test_failed_experiment_is_reported_and_exit_nonzero(tmp_path):
    # an override of the wrong type makes the tour fail inside the notebook: reported, non-zero, no temp notebook left
    r = run("reproduce", "--only", "sample_tour", "--set", "images=[no_such_image]", "--out", str(tmp_path))
    assert r.returncode == 1 and "FAIL" in r.stdout and "no_such_image" in r.stdout
    out = tmp_path / "smoke" / "00_sample_tour"
    assert not list(out.glob(".*.running.ipynb"))
    assert json.loads((tmp_path / "smoke" / "reproduce.json").read_text())["failed"] == ["00_sample_tour"]

def test_list_shows_profiles():
    r = run("list"); assert r.returncode == 0 and "00_sample_tour: smoke:" in r.stdout
