"""Bad input to the data side (issues 13 and 14): loaders, readers of dataset folders, builders and shards. Each case
asserts the error type, that the message names the file or parameter, and that nothing half-written is left."""
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from progressive_ir.core import from_uint8_hwc, load_image, read_json, read_video, run_ffmpeg, save_image, \
    to_uint8_hwc, video_info
from progressive_ir.progressions import (CrfPairsConfig, ProgressionConfig, build_crf_pairs,
                                         build_progression_dataset, build_progressions, merge_shards, parse_shard,
                                         read_manifest)
from progressive_ir.sources import davis_sequences, davis_split, div2k_images, image_folder, sample_images

KW = dict(tasks=("blur",), strengths=("mild",), size=(64, 48), frames=3, prompt_types=("uniform",), preview=False)


def snapshot(folder: Path) -> dict:
    "Every file under `folder` (hidden ones included) with its bytes: what a refused build must leave unchanged."
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def small_images(names=("chelsea", "coffee")):
    return {n: torch.nn.functional.interpolate(x[None], size=(72, 96), mode="area")[0]
            for n, x in sample_images(list(names)).items()}


@pytest.fixture(scope="module")
def truncated(tmp_path_factory):
    "A faststart mp4 of 40 frames cut at 90% of its bytes, and the whole file."
    folder = tmp_path_factory.mktemp("video")
    rng = np.random.default_rng(0)
    clip = torch.nn.functional.avg_pool2d(from_uint8_hwc(rng.integers(0, 256, (40, 48, 64, 3), dtype=np.uint8)),
                                          3, 1, 1)
    run_ffmpeg(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x48", "-r", "5", "-i", "-", "-c:v", "libx264",
                "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(folder / "whole.mp4")], "whole.mp4",
               stdin=to_uint8_hwc(clip).tobytes())
    data = (folder / "whole.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[:int(len(data) * 0.9)])
    return folder


# --- truncated video (issue 13, item 4) ------------------------------------------------------------------------

def test_truncated_video_is_an_error_with_counts(truncated):
    with pytest.raises(ValueError, match=r"cut\.mp4: truncated or damaged video: \d+ frames decoded, the container "
                                         r"declares 40"):
        video_info(truncated / "cut.mp4")
    with pytest.raises(ValueError, match=r"cut\.mp4: truncated or damaged video.*strict=False"):
        read_video(truncated / "cut.mp4")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = read_video(truncated / "cut.mp4", strict=False)
    assert len(frames) < 40 and "cut.mp4" in str(caught[0].message)
    assert video_info(truncated / "whole.mp4")["frames"] == 40


def test_truncated_clip_is_skipped_and_recorded_by_the_pair_builder(truncated, tmp_path):
    clips = {"whole": truncated / "whole.mp4", "cut": truncated / "cut.mp4", "third": truncated / "whole.mp4"}
    m = build_crf_pairs(tmp_path / "pairs", clips, max_frames=None, split={"whole": "train", "cut": "val",
                                                                             "third": "val"})
    summary = read_json(tmp_path / "pairs" / "summary.json")
    assert summary["failed"] == 1 and summary["failures"][0]["source"] == "cut"
    assert "truncated or damaged video" in summary["failures"][0]["reason"]
    assert summary["failures"][0]["path"].endswith("cut.mp4")
    assert [r["source"] for r in read_manifest(m)] == ["whole", "third"]
    assert not (tmp_path / "pairs" / "samples" / "cut").exists()
    with pytest.raises(ValueError, match=r"cut\.mp4: truncated"):
        build_crf_pairs(tmp_path / "raise", clips, on_error="raise", split={"whole": "train", "cut": "val",
                                                                            "third": "val"})
    assert [r["id"] for r in read_manifest(tmp_path / "raise")] == ["whole"]  # built before the error: resumable
    assert sorted(p.name for p in (tmp_path / "raise" / "samples").iterdir()) == ["whole"]


# --- oversized images (issue 13, item 5) -----------------------------------------------------------------------

def test_oversized_16bit_png_is_a_value_error_naming_file_and_limit(tmp_path, monkeypatch):
    save_image(torch.rand(3, 30, 40), tmp_path / "big16.png", bits=16)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1200 pixels: over twice the limit, Pillow's own error
    with pytest.raises(ValueError, match=r"big16\.png: more pixels than the limit of 100 .*MAX_IMAGE_PIXELS"):
        load_image(tmp_path / "big16.png")
    assert Image.MAX_IMAGE_PIXELS == 100  # the caller's setting is kept
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # over the limit, under twice it: Pillow only warns
    with pytest.raises(ValueError, match=r"limit of 1,000"):
        load_image(tmp_path / "big16.png")
    assert load_image(tmp_path / "big16.png", max_pixels=2000).shape == (3, 30, 40)


def test_oversized_image_among_good_ones(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    imgs = small_images(("chelsea", "coffee", "rocket"))
    for name, img in imgs.items():
        save_image(img if name != "rocket" else torch.nn.functional.interpolate(img[None], scale_factor=2)[0],
                   folder / f"{name}.png", bits=16 if name == "rocket" else 8)
    build_progression_dataset(tmp_path / "data", folder, max_image_pixels=10_000, **KW,
                              split={"chelsea": "train", "coffee": "val", "rocket": "val"})
    summary = read_json(tmp_path / "data" / "summary.json")
    assert (summary["built"], summary["failed"]) == (2, 1)
    failure = summary["failures"][0]
    assert failure["source"] == "rocket" and "rocket.png" in failure["reason"] and "10,000" in failure["reason"]


# --- empty or missing folders ----------------------------------------------------------------------------------

def test_missing_and_empty_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"nope: no such folder"):
        image_folder(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"empty: no image files"):
        image_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"empty: no DIV2K_train_HR, DIV2K_valid_HR folder here"):
        div2k_images(tmp_path / "empty", "all")
    with pytest.raises(FileNotFoundError, match=r"empty: no JPEGImages/480p folder"):
        davis_sequences(tmp_path / "empty")
    for out, call in [("a", lambda: build_progression_dataset(tmp_path / "a", tmp_path / "empty", **KW)),
                      ("b", lambda: build_progressions(ProgressionConfig(source=str(tmp_path / "nope"), **KW),
                                                       tmp_path / "b")),
                      ("c", lambda: build_crf_pairs(tmp_path / "c", config=CrfPairsConfig(source=str(tmp_path / "nope"))))]:
        with pytest.raises(FileNotFoundError, match=r"(empty|nope)"):
            call()
        assert not (tmp_path / out).exists()


def test_no_usable_source_leaves_no_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not a png")
    (folder / "b.png").write_bytes(b"nor this")
    with pytest.raises(ValueError, match=r"sources: none could be used: .*a\.png: not a readable image"):
        build_progression_dataset(tmp_path / "data", folder, **KW)
    assert not (tmp_path / "data").exists()


# --- DAVIS 2017 given as DAVIS 2016, empty validation split -----------------------------------------------------

def test_davis_2017_is_named(tmp_path):
    root = tmp_path / "DAVIS"
    for name in ("bear", "bike-packing"):
        (root / "JPEGImages" / "480p" / name).mkdir(parents=True)
        Image.new("RGB", (8, 6)).save(root / "JPEGImages" / "480p" / name / "00000.jpg")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    for call in (lambda: davis_sequences(root), lambda: davis_split(root),
                 lambda: build_crf_pairs(tmp_path / "pairs", config=CrfPairsConfig(source=str(root)))):
        with pytest.raises(ValueError, match=r"DAVIS: this is a DAVIS 2017 folder \(ImageSets/2017/, 2 sequences"):
            call()
    assert not (tmp_path / "pairs").exists()


def test_empty_validation_split_names_the_count(tmp_path):
    train_only = tmp_path / "DIV2K" / "DIV2K_train_HR"
    train_only.mkdir(parents=True)
    for name, img in small_images(("chelsea", "coffee")).items():
        save_image(img, train_only / f"{name}.png")
    with pytest.raises(ValueError, match=r"split: the validation set would be empty: 0 of the 2 sources to build "
                                         r"are in 'val' \(0 of all 2 sources are\)"):
        build_progressions(ProgressionConfig(source=str(train_only), **KW), tmp_path / "data")
    with pytest.raises(ValueError, match=r"limit=1 keeps the first 1 of 2 sources"):
        build_progression_dataset(tmp_path / "data", small_images(), limit=1, split=None, **KW,
                                  val_fraction=0.5, seed=_seed_with_val_last())
    assert not (tmp_path / "data").exists()


def _seed_with_val_last():
    "A seed whose 1:1 split of chelsea/coffee puts the first (chelsea) in train."
    from progressive_ir.progressions import assign_splits
    return next(s for s in range(100) if assign_splits(["chelsea", "coffee"], 0.5, s)["chelsea"] == "train")


# --- settings or sources changed on a rerun ----------------------------------------------------------------------

def test_rerun_with_other_settings_changes_nothing(tmp_path):
    images = small_images()
    build_progression_dataset(tmp_path / "data", images, **KW)
    before = snapshot(tmp_path / "data")
    for kw, message in [(dict(KW, frames=4), r"frames=3, now 4"),
                        (dict(KW, degradations={"blur": {"max_length": 30.0}}),
                         r"degradations\.blur\.max_length=48\.0, now 30\.0"),
                        (dict(KW, level_schedule="cosine"), r"level_schedule='linear', now 'cosine'")]:
        with pytest.raises(ValueError, match=message + r".*Delete this folder to rebuild it, or build into"):
            build_progression_dataset(tmp_path / "data", images, **kw)
    with pytest.raises(ValueError, match=r"sources: 1 given now are not among those, e\.g\. \['rocket'\]"):
        build_progression_dataset(tmp_path / "data", {**images, **small_images(("rocket",))}, **KW)
    assert snapshot(tmp_path / "data") == before


def test_unknown_or_malformed_settings(tmp_path):
    for kw, error, message in [
            (dict(frame=3), ValueError, r"frame: not a setting of ProgressionConfig \(did you mean frames"),
            (dict(degradations={"blur": {"max_lenght": 3}}), ValueError, r"degradations\.blur\.max_lenght"),
            (dict(degradations={"crf": {"crf": 36}}), ValueError, r"degradations\.crf\.crf: .* a pair of numbers"),
            (dict(workers=0), ValueError, r"workers: expected an int >= 1"),
            (dict(split="random"), ValueError, r"split: expected one of \('auto', 'official', 'seeded'\), "
                                               r"'train', 'val' or a dict")]:
        with pytest.raises(error, match=message):
            build_progression_dataset(tmp_path / "data", small_images(), **{**KW, **kw})
    with pytest.raises(ValueError, match=r"crf_frames: not a setting of CrfPairsConfig"):
        build_crf_pairs(tmp_path / "pairs", crf_frames=3)
    assert not (tmp_path / "data").exists() and not (tmp_path / "pairs").exists()


# --- shards ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shard", ["0/3", "4/3", "3", "1/0", "a/b", "1-3", (3, 3), (-1, 2), (1.0, 2), [0, 1, 2]])
def test_bad_shard_strings(shard, tmp_path):
    with pytest.raises(ValueError, match=r"shard: expected"):
        parse_shard(shard)
    with pytest.raises(ValueError, match=r"shard: expected"):
        build_progression_dataset(tmp_path / "data", small_images(), shard=shard, **KW)
    assert not (tmp_path / "data").exists()


def test_merge_names_the_missing_shard(tmp_path):
    images = small_images(("chelsea", "coffee", "rocket"))
    build_progression_dataset(tmp_path / "data", images, shard="1/3", **KW)
    build_progression_dataset(tmp_path / "data", images, shard="3/3", **KW)
    before = snapshot(tmp_path / "data")
    with pytest.raises(ValueError, match=r"data: shard 2/3 has not finished"):
        merge_shards(tmp_path / "data")
    assert snapshot(tmp_path / "data") == before and not (tmp_path / "data" / "manifest.jsonl").exists()
    with pytest.raises(FileNotFoundError, match=r"nothing: no dataset here"):
        merge_shards(tmp_path / "nothing")
