"""The speed benchmarks of issue 17 run and write what they promise (`--quick`, tiny settings); no timing is
asserted here (timings live in bench/results/*.json), only that each figure is there and the checks hold."""
import importlib.util, json, sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name):
    "Import bench/<name>.py as a module (the scripts are not a package)."
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_metrics_speed_writes_ratios_against_its_peers(tmp_path):
    out = tmp_path / "metrics.json"
    load("metrics_speed").main(["--quick", "--sizes", "64x48", "--rounds", "1", "--crf-frames", "2",
                                "--crf-size", "64x48", "--out", str(out)])
    r = json.loads(out.read_text())
    assert r["device"] and r["settings"]["rounds"] == 1 and r["settings"]["quick"]
    for metric in ("psnr", "ssim"):
        case = r[metric]["9x3x48x64"]
        assert set(case["cases"]) == {"ours_batched", "ours_shared_target", "ours_per_frame", "skimage_loop",
                                      "skimage_loop_shared_target"}
        for name, agree in case["agreement"].items():
            assert agree["max_abs_diff"] < 1e-12 and agree["same_infinite_frames"], (metric, name, agree)
        assert {"wall", "cpu"} <= set(case["ratio_vs_peer"]["ours_batched"])
        assert case["ratio_vs_peer"]["ours_shared_target"]["peer"] == "skimage_loop_shared_target"
        assert len(case["cases"]["skimage_loop"]["wall_runs_s"]) == 1
    assert r["crf"]["same_bytes_as_cli"] == {"ours_uint8": True, "ours_float": True}
    assert set(r["goals"]) == {"psnr", "ssim", "crf"} and r["goals"]["crf"]["goal"] == 1.2
    assert r["checks"]["within_1e_12"] and r["checks"]["crf_ours_uint8_same_bytes_as_cli"]
    assert "crf 2x48x64: ours_uint8 / ffmpeg CLI" in r["summary"]
    load_record = r["machine_load"]
    assert len(load_record["loadavg_1_5_15_before"]) == 3 and load_record["other_processes_cores_mean"] >= 0


def test_metrics_speed_quick_keeps_explicit_settings(tmp_path, monkeypatch):
    ms = load("metrics_speed")
    seen = {}
    monkeypatch.setattr(ms, "measure_metrics", lambda sizes, frames, rounds, device: seen.update(
        sizes=sizes, rounds=rounds) or {"psnr": {}, "ssim": {}})
    monkeypatch.setattr(ms, "measure_crf", lambda *a: {"ratio_vs_ffmpeg_cli": {"ours_uint8": {"wall": 1.0}}})
    for name in ("goals", "summary", "checks"):
        monkeypatch.setattr(ms, name, lambda m, c: {})
    ms.main(["--quick", "--rounds", "4", "--out", str(tmp_path / "m.json")])
    assert seen == dict(sizes=[(680, 384)], rounds=4)  # the quick size, the given rounds


@pytest.mark.skipif(sys.platform != "linux", reason="rusage/psutil figures as on the project's Linux machines")
def test_progression_speed_quick_run_records_runs_load_and_phases(tmp_path):
    out = tmp_path / "progression.json"
    load("progression_speed").main(["--quick", "--size", "96x64", "--frames", "3", "--workers", "1",
                                    "--no-per-task", "--out", str(out)])
    r = json.loads(out.read_text())
    paper = r["paper_set"]
    assert len(paper["runs"]) == 1 and paper["videos"] == 4800 and paper["goal_minutes"] == 15.0
    assert paper["minutes_min"] <= paper["minutes_median"] <= paper["minutes_max"]
    run = paper["runs"][0]
    assert run["videos"] == 2 * 3 * 2 and run["cpu_seconds_per_video"] > 0
    assert {"loadavg_1_5_15_before", "loadavg_1_5_15_after", "other_processes_cores_mean"} <= set(run["machine_load"])
    phases = r["phases"]["phases"]
    assert {"load PNG", "degrade lowlight", "PSNR records", "lossless video alone", "lossless + preview (as built with a preview)"} <= set(phases)
    assert phases["degrade blur"]["cpu_seconds_per_video_of_this_task"] > 0
    assert r["phases"]["videos"] == 6 and r["settings"]["quick"]
    assert r["summary"]["paper set, goal minutes"] == 15.0 and "CPU-s per video: degrade blur" in r["summary"]
