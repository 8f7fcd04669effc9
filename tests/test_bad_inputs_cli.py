"""Bad input to the command line and the profile files: each case names the key or file, and leaves nothing half-written."""
import json, os, shutil, subprocess, sys, textwrap
from pathlib import Path
import pytest

from progressive_ir import core, cli

EXE = shutil.which("progressive-ir") or str(Path(sys.executable).parent / "progressive-ir")

class Result:
    "What a command ended with: its exit code and outputs."
    def __init__(self, returncode, stdout, stderr): self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

def run(*args, env=None):
    "The console script in a new process (as a user runs it)."
    r = subprocess.run([EXE, *args], capture_output=True, text=True, env={**os.environ, **(env or {})})
    return Result(r.returncode, r.stdout, r.stderr)

@pytest.fixture
def main(monkeypatch, capsys):
    "`cli.main` in this process (fast: no interpreter start), with optional environment variables."
    def call(*args, env=None):
        for k, v in (env or {}).items(): monkeypatch.setenv(k, v)
        rc = cli.main(list(args))
        out = capsys.readouterr()
        return Result(rc, out.out, out.err)
    return call

def one_line_error(r, *parts):
    "The command ended with exit code 2 and a single-line error naming every one of `parts`."
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("progressive-ir: error: ") and r.stderr.count("\n") == 1, r.stderr
    for p in parts: assert p in r.stderr, (p, r.stderr)

# --- --set

def test_unknown_set_key_names_it_and_the_closest_settings(tmp_path):
    # the console script, once end to end
    r = run("reproduce", "--only", "sample_tour", "--set", "report.thumb_hieght=48", "--out", str(tmp_path))
    one_line_error(r, "--set report.thumb_hieght", "no selected experiment has this setting",
                   "closest: report.thumb_height (00_sample_tour)")
    assert not any(tmp_path.iterdir())  # nothing ran, nothing was written

def test_old_flat_key_points_to_its_new_dotted_name(tmp_path, main):
    r = main("reproduce", "--only", "sample_tour", "promptir_crf", "--set", "lr=1e-4", "--out", str(tmp_path))
    one_line_error(r, "--set lr", "train.lr (04_promptir_crf)")
    assert not any(tmp_path.iterdir())

def test_set_value_of_the_wrong_type_is_refused_before_anything_runs(tmp_path, main):
    r = main("reproduce", "--only", "sample_tour", "--set", "report.thumb_height=tall", "--out", str(tmp_path))
    one_line_error(r, "report.thumb_height", "expected int", "'tall'")
    assert not any(tmp_path.iterdir())
    r = main("reproduce", "--only", "promptir_crf", "--set", "train.epochs=true", "--out", str(tmp_path))
    one_line_error(r, "train.epochs", "expected int", "got True (bool)")
    assert not any(tmp_path.iterdir())

def test_value_is_checked_against_every_experiment_that_has_the_key():
    # train.lr is a float in 04 and 05; a list fails for the first experiment that has it, named in the message
    with pytest.raises(ValueError, match=r"train.lr: expected float \(its type in the 04_promptir_crf profiles\)"):
        cli.plan_overrides(["04_promptir_crf", "05_cogvideo_train"], "smoke", {"train.lr": [1]})

def test_type_check_fails_on_a_broken_type_function(monkeypatch):
    "The check is real: with a `setting_type` that calls every value a str, the wrong value goes through."
    bad = {"report.thumb_height": "tall"}
    with pytest.raises(ValueError, match="expected int"): cli.plan_overrides(["00_sample_tour"], "smoke", bad)
    monkeypatch.setattr(core, "setting_type", lambda value: "str")
    assert cli.plan_overrides(["00_sample_tour"], "smoke", bad) == {"00_sample_tour": bad}

def test_malformed_set_argument(tmp_path, main):
    one_line_error(main("reproduce", "--set", "train.lr", "--out", str(tmp_path)), "--set: expected KEY=VALUE", "'train.lr'")
    one_line_error(main("reproduce", "--set", "data.size=[1, 2", "--out", str(tmp_path)), "--set data.size: not valid YAML")
    assert not any(tmp_path.iterdir())

# --- --out, make-data, bench

def test_out_pointing_at_a_file(tmp_path, main):
    f = tmp_path / "runs.txt"
    f.write_text("mine")
    one_line_error(main("reproduce", "--only", "sample_tour", "--out", str(f)), "--out", str(f), "is a file")
    assert f.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["runs.txt"]

def test_make_data_shard_must_be_i_of_n(tmp_path, main):
    one_line_error(main("make-data", "--shard", "half", "--out", str(tmp_path)), "--shard: expected I/N", "'half'")
    assert not any(tmp_path.iterdir())

def test_bench_suite_without_its_script(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "repo_root", lambda: tmp_path)  # a checkout without bench/gpu_suite.py
    assert cli.main(["bench", "--suite", "gpu", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "bench --suite gpu" in err and "gpu_suite.py not found" in err and err.count("\n") == 1
    assert cli.main(["bench", "--suite", "tpu"]) == 2
    assert "expected one of ['gpu']" in capsys.readouterr().err

# --- broken profile files

PROFILES_OK = {p: {"extends": "base"} for p in core.PROFILES}

def experiments(tmp_path, table, name="00_broken"):
    "A folder of experiments holding one notebook `name` and its profile file `table` (a dict, or YAML text)."
    d = tmp_path / "experiments"
    d.mkdir(exist_ok=True)
    (d / f"{name}.yml").write_text(table if isinstance(table, str) else json.dumps(table))
    (d / f"{name}.ipynb").write_text(json.dumps(notebook(["pass"])))
    return {"PROGRESSIVE_IR_EXPERIMENTS": str(d)}

@pytest.mark.parametrize("table, says", [
    ({"base": {"a": 1}, **PROFILES_OK, "cpu": {"extends": "laptop"}}, "profile 'cpu' extends 'laptop', which is not in the file"),
    ({"base": {"a": 1}, **PROFILES_OK, "gpu": {"extends": "paper"}, "paper": {"extends": "gpu"}}, "cycle: gpu -> paper -> gpu"),
    ({"base": {"a": 1}, **PROFILES_OK, "smoke": {"extends": "base", "b": 2}}, "profile 'smoke': sets 'b', which base does not have"),
    ({"base": {"a": 1}, **PROFILES_OK, "cpu": {"a": 2}}, "profile 'cpu' needs an `extends:` key"),
    ({**PROFILES_OK}, "has no 'base' section"),
    ({"base": {"a": 1}, "smoke": {"extends": "base"}}, "has no 'cpu' or 'gpu' or 'paper' section"),
    ("base: {a: [1, 2}\n", "not valid YAML"),
])
def test_broken_profile_file_is_named(tmp_path, main, table, says):
    env = experiments(tmp_path, table)
    out = tmp_path / "runs"
    for args in (["list", "broken"], ["reproduce", "--only", "broken", "--out", str(out)]):
        one_line_error(main(*args, env=env), "00_broken.yml", says)
    assert not out.exists()

# --- a failed experiment's record

def notebook(code_cells):
    "A papermill experiment notebook: the parameters cell, then `code_cells`."
    cell = lambda src, tags=(): {"cell_type": "code", "execution_count": None, "id": f"c{abs(hash(src)) % 10**6}",
                                  "metadata": {"tags": list(tags)}, "outputs": [], "source": src}
    cells = [cell('profile = "smoke"\noverrides = {}\nout_dir = None', ["parameters"])] + [cell(c) for c in code_cells]
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}

OPENS_THEN_FAILS = [textwrap.dedent('''
    from progressive_ir.core import RunFolder, load_profile
    P = load_profile("10_late", profile, overrides)
    run = RunFolder(out_dir, params=P)'''), 'raise RuntimeError("the model diverged at step 3")', "run.finish()"]
FAILS_FIRST = ['raise FileNotFoundError("/data/DAVIS: no such folder")']

def failing_experiments(tmp_path):
    d = tmp_path / "experiments"
    d.mkdir()
    table = json.dumps({"base": {"steps": 3}, **PROFILES_OK})
    for name, cells in [("10_late", OPENS_THEN_FAILS), ("11_early", FAILS_FIRST)]:
        (d / f"{name}.ipynb").write_text(json.dumps(notebook(cells)))
        (d / f"{name}.yml").write_text(table)
    return d

def test_failed_experiments_record_failed_not_running(tmp_path):
    d = failing_experiments(tmp_path)
    out = tmp_path / "runs"
    (out / "smoke" / "11_early").mkdir(parents=True)
    (out / "smoke" / "11_early" / "run.json").write_text(json.dumps({"status": "done", "params": {"old": True}}))  # an earlier run's
    r = run("reproduce", "--out", str(out), env={"PROGRESSIVE_IR_EXPERIMENTS": str(d)})
    assert r.returncode == 1 and "failed: 10_late, 11_early" in r.stdout, r.stdout + r.stderr
    late = json.loads((out / "smoke" / "10_late" / "run.json").read_text())
    assert late["status"] == "failed" and late["error"] == "RuntimeError: the model diverged at step 3"
    assert late["params"] == {"steps": 3}  # the notebook's own record, marked failed by its RunFolder
    early = json.loads((out / "smoke" / "11_early" / "run.json").read_text())
    assert early["status"] == "failed" and "/data/DAVIS: no such folder" in early["error"]
    assert early["params"] == {"profile": "smoke", "overrides": {}}  # written by the command line: the notebook never opened one
    for name in ("10_late", "11_early"):
        assert not list((out / "smoke" / name).glob(".*.running.ipynb"))
        assert (out / "smoke" / name / f"{name}.ipynb").is_file()  # the executed notebook, with its traceback

def test_runfolder_records_a_failure_under_plain_papermill(tmp_path, monkeypatch):
    "Without the command line: the RunFolder's kernel hook alone marks the run failed, and papermill still fails."
    import papermill as pm
    d = failing_experiments(tmp_path)
    out = tmp_path / "plain"
    monkeypatch.setenv("PROGRESSIVE_IR_EXPERIMENTS", str(d))  # the kernel inherits it: load_profile finds 10_late.yml
    with pytest.raises(pm.PapermillExecutionError, match="the model diverged"):
        pm.execute_notebook(str(d / "10_late.ipynb"), str(tmp_path / "executed.ipynb"), kernel_name="python3",
                            parameters={"out_dir": str(out)}, cwd=str(d), progress_bar=False)
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "failed" and rec["error"] == "RuntimeError: the model diverged at step 3"
