"""End-to-end tests of the `progressive-ir` console script (installed by `pip install -e .`) and of the profile files."""
import configparser, json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from safetensors import safe_open

from progressive_ir.core import PROFILES, load_profile, profile_table
from progressive_ir.cli import list_experiments, figures_as_text

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "nbs" / "experiments"
EXE = shutil.which("progressive-ir") or str(Path(sys.executable).parent / "progressive-ir")

def run(*args, env=None, **kw):
    return subprocess.run([EXE, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, **kw)

def read(path): return json.loads(Path(path).read_text())

def test_help_on_every_subcommand():
    top = run("--help")
    assert top.returncode == 0 and "reproduce" in top.stdout
    for cmd in ["reproduce", "make-data", "bench", "docs", "list", "restore", "publish"]:
        r = run(cmd, "--help")
        assert r.returncode == 0 and f"usage: progressive-ir {cmd}" in r.stdout, (cmd, r.stdout, r.stderr)

def test_unknown_profile_is_a_clear_error(tmp_path):
    r = run("reproduce", "--profile", "huge", "--out", str(tmp_path))
    assert r.returncode == 2
    assert "profile: expected one of ('smoke', 'cpu', 'gpu', 'paper'), got 'huge'" in r.stderr
    assert not any(tmp_path.iterdir())

def test_unknown_experiment_is_a_clear_error(tmp_path):
    r = run("reproduce", "--only", "no_such_experiment", "--out", str(tmp_path))
    assert r.returncode == 2 and "unknown name 'no_such_experiment'" in r.stderr

def test_reproduce_sample_tour_end_to_end(tmp_path):
    r = run("reproduce", "--profile", "smoke", "--only", "sample_tour", "--set", "report.thumb_height=48", "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "smoke" / "00_sample_tour"
    for f in ["00_sample_tour.ipynb", "contact_sheet.png", "inventory.json", "run.json"]: assert (out / f).is_file(), f
    rec = read(out / "run.json")
    assert rec["status"] == "done" and rec["params"]["report"]["thumb_height"] == 48 and rec["params"]["profile"] == "smoke"
    assert rec["params"]["overrides"] == {"report.thumb_height": 48}
    summary = read(tmp_path / "smoke" / "reproduce.json")
    assert summary["failed"] == [] and [e["experiment"] for e in summary["experiments"]] == ["00_sample_tour"]
    assert summary["experiments"][0]["overrides"] == {"report.thumb_height": 48}
    assert "00_sample_tour" in r.stdout and "all experiments finished" in r.stdout
    # the executed notebook carries the injected parameters
    nb = read(out / "00_sample_tour.ipynb")
    assert any("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in nb["cells"])
    # the terminal shows the progress bar and the summary, not the kernel's or papermill's chatter
    for noise in ["without encryption", "KeyboardInterrupt", "Unable to parse line", "IProgress", "Invalid -W option"]:
        assert noise not in r.stderr + r.stdout, noise

def test_failed_experiment_is_reported_and_exit_nonzero(tmp_path):
    # a sample image that does not exist makes the tour fail inside the notebook: reported, non-zero, no temp notebook
    r = run("reproduce", "--only", "sample_tour", "--set", "data.images=[no_such_image]", "--out", str(tmp_path))
    assert r.returncode == 1 and "FAIL" in r.stdout and "no_such_image" in r.stdout
    out = tmp_path / "smoke" / "00_sample_tour"
    assert not list(out.glob(".*.running.ipynb"))
    assert read(tmp_path / "smoke" / "reproduce.json")["failed"] == ["00_sample_tour"]
    rec = read(out / "run.json")
    assert rec["status"] == "failed" and "no_such_image" in rec["error"]

def test_list_shows_experiments_and_resolved_settings():
    r = run("list")
    assert r.returncode == 0 and "00_sample_tour: profiles smoke, cpu, gpu, paper" in r.stdout
    r = run("list", "promptir_crf", "--profile", "gpu")
    assert r.returncode == 0, r.stderr
    assert "# 04_promptir_crf --profile gpu" in r.stdout and "config: paper" in r.stdout and "epochs: 20" in r.stdout

# --- the profile files

def test_every_profile_of_every_experiment_resolves():
    for name in list_experiments():
        table = profile_table(name)
        assert set(table) >= {"base", *PROFILES}, name
        for p in PROFILES:
            assert table[p].get("extends"), (name, p)
            load_profile(name, p)

def test_experiments_take_profile_overrides_and_out_dir_only():
    for name in list_experiments():
        nb = read(EXPERIMENTS / f"{name}.ipynb")
        params = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
        assert len(params) == 1, name
        assert "".join(params[0]["source"]) == 'profile = "smoke"\noverrides = {}\nout_dir = None', name
        code = "\n".join("".join(c["source"]) for c in nb["cells"])
        assert f'load_profile("{name}", profile, overrides)' in code, name
        assert "PAPERS.md" not in code, name

def test_train_sections_are_train_config_fields():
    from dataclasses import fields
    from progressive_ir.train import TrainConfig
    names = {f.name for f in fields(TrainConfig)}
    for p in PROFILES:
        for exp, keys in [("04_promptir_crf", ["train"]), ("04_promptir_crf", ["start", "train"]), ("05_cogvideo_train", ["train"])]:
            section = load_profile(exp, p)
            for k in keys: section = section[k]
            assert set(section) <= names, (exp, p, set(section) - names)

def test_progression_data_settings_agree_between_01_and_05():
    "01 and 05 build one dataset folder: their shared `data` settings must be the same under every profile."
    for p in PROFILES:
        a, b = load_profile("01_progression_data", p)["data"], load_profile("05_cogvideo_train", p)["data"]
        shared = (set(a) & set(b)) - {"tasks"}
        assert {k for k in shared if a[k] != b[k]} == set(), p
        assert set(b["tasks"]) <= set(a["tasks"]), p

def test_degradation_constants_in_the_profile_are_the_library_defaults():
    from progressive_ir.progressions import TASK_DEFAULTS
    plain = lambda d: {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
    assert load_profile("01_progression_data", "smoke")["data"]["degradations"] == {t: plain(d) for t, d in TASK_DEFAULTS.items()}

def test_lora_targets_in_the_profile_are_the_library_defaults():
    from progressive_ir.cogvideo import LORA_TARGETS
    assert load_profile("05_cogvideo_train", "smoke")["lora"]["targets"] == list(LORA_TARGETS)

# --- settings reach the code: --set, the run's record, and the effect

def test_degradation_setting_reaches_the_built_videos_and_figures_are_images(tmp_path):
    "A small progression build through the CLI: a degradation constant set with --set is recorded and used."
    sets = ["data.images=[astronaut, coffee]", "data.tasks=[blur]", "data.strengths=[severe]", "data.size=[64, 48]",
            "data.degradations.blur.max_length=136.0", "data.degradations.blur.angle=30.0",
            "crf_pairs.videos=[carphone]", "crf_pairs.size=[64, 48]", "crf_pairs.max_frames=4"]
    r = run("make-data", *[a for s in sets for a in ("--set", s)], "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "smoke" / "01_progression_data"
    rec = read(out / "run.json")
    assert rec["params"]["data"]["degradations"]["blur"]["max_length"] == 136.0
    manifest = tmp_path / "smoke" / "data" / "progressions" / "manifest.jsonl"
    first = [json.loads(line) for line in manifest.read_text().splitlines()][0]
    assert first["params"][0]["angle"] == 30.0
    assert first["params"][0]["length"] == pytest.approx(136.0 * 64 / 1360)  # level 1 of a 64-pixel-wide frame
    # every figure of the executed notebook is an image (the PSNR curves are a matplotlib figure)
    nb = out / "01_progression_data.ipynb"
    assert figures_as_text(nb) == []
    images = sum("image/png" in o.get("data", {}) for c in read(nb)["cells"] for o in c.get("outputs", []))
    assert images >= 2, images

def test_lightweight_setting_reaches_the_network(tmp_path):
    r = run("reproduce", "--only", "promptir_table1", "--set", "promptir.lightweight.prompt_scale=0.25", "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "smoke" / "03_promptir_table1"
    assert read(out / "run.json")["params"]["promptir"]["lightweight"]["prompt_scale"] == 0.25
    assert "45x80 / 32x32 / 16x16" in (out / "lightweight_variants.csv").read_text()  # (180, 320) stored at a quarter

def test_training_and_lora_settings_reach_the_runs(tmp_path):
    "Weight decay and warmup of experiment 04's regimes, LoRA targets of experiment 05: recorded, and in what ran."
    sets = ["train.weight_decay=0.05", "train.warmup_epochs=1", "regimes=[full]", "lora.targets=[to_q, to_v]",
            "prompt_types=[uniform]", "data.images=[astronaut, coffee]", "data.tasks=[blur]", "data.strengths=[severe]"]
    r = run("reproduce", "--only", "promptir_crf", "cogvideo_train", *[a for s in sets for a in ("--set", s)], "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    summary = read(tmp_path / "smoke" / "reproduce.json")
    by_name = {e["experiment"]: e["overrides"] for e in summary["experiments"]}
    train = {"train.weight_decay": 0.05, "train.warmup_epochs": 1.0}  # both experiments have a `train` section
    assert by_name["04_promptir_crf"] == {**train, "regimes": ["full"]}
    assert by_name["05_cogvideo_train"] == {**train, "lora.targets": ["to_q", "to_v"], "prompt_types": ["uniform"],
                                            "data.images": ["astronaut", "coffee"], "data.tasks": ["blur"],
                                            "data.strengths": ["severe"]}
    assert isinstance(by_name["04_promptir_crf"]["train.warmup_epochs"], float)  # an int given for a float setting
    crf = tmp_path / "smoke" / "04_promptir_crf"
    assert read(crf / "run.json")["params"]["train"]["weight_decay"] == 0.05
    state = read(next((crf / "full" / "checkpoints").glob("step_*")) / "train_state.json")
    assert state["config"]["weight_decay"] == 0.05 and state["config"]["warmup_epochs"] == 1.0
    lora = tmp_path / "smoke" / "05_cogvideo_train" / "uniform" / "lora" / "pytorch_lora_weights.safetensors"
    with safe_open(str(lora), "pt") as f: keys = list(f.keys())
    assert any(".to_q." in k for k in keys) and any(".to_v." in k for k in keys)
    assert not any(".to_k." in k or ".to_out." in k for k in keys)

# --- docs without the dev extras

def test_nbconvert_is_a_runtime_requirement():
    c = configparser.ConfigParser(delimiters=["="])
    c.read(ROOT / "settings.ini")
    assert any(r.startswith("nbconvert") for r in c["DEFAULT"]["requirements"].split())

def test_docs_without_nbconvert_says_what_to_install(monkeypatch, capsys):
    import importlib.util
    from progressive_ir import cli
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nbconvert" else real(name, *a))
    monkeypatch.setattr(cli.shutil, "which", lambda name: None)  # as without Quarto
    assert cli.main(["docs"]) == 2
    err = capsys.readouterr().err
    assert "nbconvert is not installed" in err and "pip install" in err and err.count("\n") == 1
