"""A data folder knows its settings and sources (issue 14, items 4 and 5): the resolved settings and the sources'
content are recorded, and a rerun with anything else is refused, naming what differs."""
import json
from pathlib import Path

import pytest

from progressive_ir.core import read_json, resize_center_crop, save_image
from progressive_ir.progressions import (TASK_DEFAULTS, CrfPairsConfig, ProgressionConfig, build_crf_pairs,
                                         build_progression_dataset, build_progressions, read_manifest)
from progressive_ir.sources import sample_images, sample_videos

KW = dict(tasks=("blur",), strengths=("mild",), size=(64, 48), frames=3, prompt_types=("uniform",), preview=False)


def write_images(folder: Path, names, flip=False):
    folder.mkdir(parents=True)
    for name, img in sample_images(names).items():
        img = resize_center_crop(img, (96, 72))
        save_image(img.flip(-1) if flip else img, folder / f"{name}.png")
    return folder


def div2k(root: Path, flip=False):
    "A DIV2K-like folder: three training and one validation image, same names in every copy."
    write_images(root / "DIV2K_train_HR", ["astronaut", "chelsea", "coffee"], flip)
    write_images(root / "DIV2K_valid_HR", ["rocket"], flip)
    return root


def test_record_holds_resolved_settings_and_sources(tmp_path):
    build_progressions(ProgressionConfig(source=str(div2k(tmp_path / "DIV2K")), **KW), tmp_path / "data")
    record = read_json(tmp_path / "data" / "dataset.json")
    assert record["settings"]["degradations"]["lowlight"]["min_exposure"] == 0.1  # a default, recorded
    assert record["settings"]["split"] == "official"
    assert {n: s["split"] for n, s in record["sources"].items()} == {
        "astronaut": "train", "chelsea": "train", "coffee": "train", "rocket": "val"}
    assert all(len(r["source_sha256"]) == 64 for r in read_manifest(tmp_path / "data"))


def test_second_div2k_folder_with_same_names_is_refused(tmp_path):
    first, second = div2k(tmp_path / "A"), div2k(tmp_path / "B", flip=True)
    build_progressions(ProgressionConfig(source=str(first), **KW), tmp_path / "data")
    before = (tmp_path / "data" / "manifest.jsonl").read_bytes()
    with pytest.raises(ValueError, match=r"sources: 4 have other content .* e\.g\. astronaut .*Delete this folder"):
        build_progressions(ProgressionConfig(source=str(second), **KW), tmp_path / "data")
    assert (tmp_path / "data" / "manifest.jsonl").read_bytes() == before
    copy = tmp_path / "copy"  # the same bytes elsewhere are the same dataset
    (copy / "DIV2K_train_HR").mkdir(parents=True)
    (copy / "DIV2K_valid_HR").mkdir()
    for p in first.rglob("*.png"):
        (copy / p.parent.name / p.name).write_bytes(p.read_bytes())
    build_progressions(ProgressionConfig(source=str(copy), **KW), tmp_path / "data")
    assert read_json(tmp_path / "data" / "summary.json")["already_done"] == 4


def test_fingerprints_are_cached_in_the_folder(tmp_path):
    build_progressions(ProgressionConfig(source=str(div2k(tmp_path / "A")), **KW), tmp_path / "data")
    cache = read_json(tmp_path / "data" / ".source-hashes.json")
    assert len(cache) == 4 and all(len(v) == 3 for v in cache.values())


def test_edit_of_task_defaults_is_seen(tmp_path, monkeypatch):
    images = {n: resize_center_crop(x, (96, 72)) for n, x in sample_images(["chelsea", "coffee"]).items()}
    build_progression_dataset(tmp_path / "data", images, **KW)
    monkeypatch.setitem(TASK_DEFAULTS["lowlight"], "min_exposure", 0.2)  # a task this folder did not even build
    with pytest.raises(ValueError, match=r"degradations\.lowlight\.min_exposure=0\.1, now 0\.2"):
        build_progression_dataset(tmp_path / "data", images, **KW)


def test_degradation_settings_reach_the_videos(tmp_path):
    images = {n: resize_center_crop(x, (96, 72)) for n, x in sample_images(["chelsea", "coffee"]).items()}
    m = build_progression_dataset(tmp_path / "data", images, degradations={"blur": {"max_length": 20.0}}, **KW)
    length = read_manifest(m)[0]["params"][0]["length"]
    assert length == pytest.approx(1 + (20.0 * 64 / 1360 - 1) * 0.5)


def test_crf_pairs_from_davis_then_sample_clip_refused(tmp_path):
    "Experiment 04 run on DAVIS, then on the sample clip, into one folder: refused, not trained on both."
    davis = tmp_path / "DAVIS"
    for k, (name, img) in enumerate(sample_images(["chelsea", "coffee", "rocket"]).items()):
        folder = davis / "JPEGImages" / "480p" / name
        folder.mkdir(parents=True)
        for i in range(3):
            save_image(resize_center_crop(img, (64, 48)).roll(i, -1), folder / f"{i:05d}.jpg")
    (davis / "ImageSets" / "480p").mkdir(parents=True)
    (davis / "ImageSets" / "480p" / "train.txt").write_text(
        "".join(f"/JPEGImages/480p/{n}/00000.jpg /Annotations/480p/{n}/00000.png\n" for n in ("chelsea", "rocket")))
    (davis / "ImageSets" / "480p" / "val.txt").write_text("/JPEGImages/480p/coffee/00000.jpg /Annotations/x.png\n")
    m = build_crf_pairs(tmp_path / "pairs", config=CrfPairsConfig(source=str(davis), split="official"))
    assert {r["source"]: r["split"] for r in read_manifest(m)} == {"chelsea": "train", "coffee": "val",
                                                                  "rocket": "train"}
    with pytest.raises(ValueError, match=r"sources: 3 of the 3 it was built from are not given now"):
        build_crf_pairs(tmp_path / "pairs", sample_videos(["bigbuckbunny"]), max_frames=4, split=None)
    assert len(read_manifest(m)) == 3
