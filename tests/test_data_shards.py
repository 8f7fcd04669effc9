"""Sharded data builds (issue 15, item 2): N shards built into one folder and merged equal a one-shot build, byte for
byte -- the manifest and every sample file -- for the progression videos and for the CRF frame pairs."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from progressive_ir.core import resize_center_crop, save_image
from progressive_ir.progressions import build_crf_pairs, build_progression_dataset, merge_shards, read_manifest
from progressive_ir.sources import sample_images, sample_videos
import progressive_ir.progressions as progressions

SIZE = (64, 48)
SETTINGS = dict(tasks=("blur", "resolution"), strengths=("mild", "severe"), size=SIZE, frames=3,
                prompt_types=("uniform",))


def files_of(folder: Path) -> dict:
    "Relative path -> bytes of every file under `folder`."
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    "Five small sample photographs as PNG files (a folder, as DIV2K would be)."
    folder = tmp_path_factory.mktemp("images")
    for name, img in sample_images(["astronaut", "chelsea", "coffee", "rocket", "hubble"]).items():
        save_image(resize_center_crop(img, (96, 72)), folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def one_shot(images, tmp_path_factory):
    return build_progression_dataset(tmp_path_factory.mktemp("one") / "data", images, **SETTINGS)


def test_three_shards_equal_one_shot(images, one_shot, tmp_path):
    out = tmp_path / "data"
    for shard in ("2/3", "3/3", "1/3"):  # any order, as a job array runs them
        build_progression_dataset(out, images, shard=shard, **SETTINGS)
    merged = merge_shards(out)
    assert merged.read_bytes() == one_shot.read_bytes()
    assert files_of(out / "samples") == files_of(one_shot.parent / "samples")
    assert len(read_manifest(merged)) == 5 * 2 * 2


def test_shard_pairs_counted_from_zero_and_strings_agree(images, one_shot, tmp_path):
    out = tmp_path / "data"
    for i in range(3):
        build_progression_dataset(out, images, shard=(i, 3), **SETTINGS)
    assert merge_shards(out).read_bytes() == one_shot.read_bytes()


def test_the_check_sees_a_wrong_order(images, one_shot, tmp_path, monkeypatch):
    "The byte comparison fails when the merge's canonical order is broken (reversed)."
    out = tmp_path / "data"
    for shard in ("1/2", "2/2"):
        build_progression_dataset(out, images, shard=shard, **SETTINGS)
    real = progressions._canonical_key
    monkeypatch.setattr(progressions, "_canonical_key", lambda r, order: tuple(-x for x in real(r, order)[:3]))
    assert merge_shards(out).read_bytes() != one_shot.read_bytes()


def test_crf_pairs_three_shards_equal_one_shot(tmp_path):
    clips = sample_videos()
    kw = dict(crf=36, size=(64, 48), max_frames=4)
    whole = build_crf_pairs(tmp_path / "whole", clips, **kw)
    for shard in ("3/3", "1/3", "2/3"):
        build_crf_pairs(tmp_path / "sharded", clips, shard=shard, **kw)
    assert merge_shards(tmp_path / "sharded").read_bytes() == whole.read_bytes()
    assert files_of(tmp_path / "sharded" / "samples") == files_of(tmp_path / "whole" / "samples")


SHARD_SCRIPT = """
import sys
from progressive_ir.progressions import build_progression_dataset
build_progression_dataset(sys.argv[1], sys.argv[2], shard=sys.argv[3], tasks=("blur", "resolution"),
                          strengths=("mild", "severe"), size=(64, 48), frames=3, prompt_types=("uniform",))
"""


def test_two_shard_processes_side_by_side(images, one_shot, tmp_path):
    "Two processes build their shards into one folder at the same time, as two jobs on a shared filesystem."
    out = tmp_path / "data"
    procs = [subprocess.Popen([sys.executable, "-c", SHARD_SCRIPT, str(out), str(images), s]) for s in ("1/2", "2/2")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert merge_shards(out).read_bytes() == one_shot.read_bytes()
    assert files_of(out / "samples") == files_of(one_shot.parent / "samples")
