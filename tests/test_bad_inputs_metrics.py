"""Bad input to the metrics and the degradations: each error has the right type, names the argument or setting,
and leaves nothing half-written behind (issue 17; CONTRIBUTING's bad-input rules)."""
import tempfile

import numpy as np
import pandas as pd
import pytest
import torch

from progressive_ir import degradations as D
from progressive_ir import metrics as M

IMG = torch.rand(3, 24, 32)


@pytest.mark.parametrize("call, error, names", [
    (lambda: M.psnr(IMG.numpy(), IMG), TypeError, "x: expected a torch.Tensor"),
    (lambda: M.psnr(IMG, IMG[:2]), ValueError, "y: expected shape [...,3,H,W]"),
    (lambda: M.ssim(IMG, IMG[:, :-1]), ValueError, "y: shape [3, 23, 32] differs from x's"),
    (lambda: M.psnr((IMG * 255).byte(), IMG), ValueError, "x: expected a float tensor"),
    (lambda: M.ssim(IMG * 2, IMG), ValueError, "x: values must lie in [0,1]"),
    (lambda: M.psnr(IMG, torch.full_like(IMG, float("nan"))), ValueError, "y: contains NaN"),
    (lambda: M.ssim(IMG, (IMG[None] - 1).expand(4, -1, -1, -1)[0]), ValueError, "y: values must lie in [0,1]"),
    (lambda: M.psnr(IMG, IMG, crop=-1), ValueError, "crop: expected a non-negative int"),
    (lambda: M.ssim(IMG, IMG, crop=12), ValueError, "crop: 12 pixels per border"),
    (lambda: M.ssim(IMG[:, :8, :8], IMG[:, :8, :8]), ValueError, "x: SSIM needs images of at least 11x11"),
    (lambda: M.image_metrics(IMG[None], IMG[None]), ValueError, "x: expected an image [3,H,W]"),
    (lambda: M.trajectory_metrics(IMG, IMG), ValueError, "frames: expected a tensor [T,3,H,W]"),
    (lambda: M.trajectory_metrics(IMG[None], IMG[None]), ValueError, "target: expected a tensor [3,H,W]"),
    (lambda: M.trajectory_metrics(IMG[None], IMG[:, 1:]), ValueError, "target: shape [3, 23, 32] differs"),
    (lambda: M.trajectory_metrics(IMG[None], IMG * 3), ValueError, "target: values must lie in [0,1]"),
    (lambda: M.trajectory_summary([]), ValueError, "values: expected a non-empty 1-D sequence"),
    (lambda: M.lpips_backbone_path("resnet"), ValueError, "net: expected one of"),
])
def test_metrics_name_the_bad_argument(call, error, names):
    with pytest.raises(error, match=None) as e:
        call()
    assert names in str(e.value)


def test_save_table_refuses_a_bad_suffix_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="table.txt: expected a .csv or .json"):
        M.save_table(pd.DataFrame({"a": [1]}), tmp_path / "table.txt")
    assert not any(tmp_path.iterdir())


def test_save_table_leaves_no_partial_file_when_writing_fails(tmp_path):
    class Broken(pd.DataFrame):
        def to_csv(self, *a, **kw):
            open(a[0], "w").write("half")
            raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        M.save_table(Broken({"a": [1]}), tmp_path / "table.csv")
    assert not any(tmp_path.iterdir())


FRAMES8 = np.random.default_rng(0).integers(0, 256, (2, 16, 24, 3), dtype=np.uint8)


@pytest.mark.parametrize("kwargs, names", [
    (dict(crf=60), "crf: expected a number in 0..51"),
    (dict(crf="36"), "crf: expected a number in 0..51"),
    (dict(crf=True), "crf: expected a number in 0..51"),
    (dict(codec="mpeg4"), "codec: expected one of ('libx264', 'libx265'), got 'mpeg4'"),
    (dict(preset="fastest"), "preset: expected one of"),
    (dict(fps=0), "fps: expected a positive frame rate"),
])
@pytest.mark.parametrize("frames", [FRAMES8, torch.rand(2, 3, 16, 24)], ids=["uint8", "float"])
def test_crf_compress_names_the_bad_setting(frames, kwargs, names):
    with pytest.raises(ValueError) as e:
        D.crf_compress(frames, **kwargs)
    assert names in str(e.value)


@pytest.mark.parametrize("frames, names", [
    (FRAMES8.astype(np.float32), "frames: expected uint8 frames [T,H,W,3]"),
    (FRAMES8[..., :2], "frames: expected uint8 frames [T,H,W,3]"),
    (FRAMES8[None], "frames: expected uint8 frames [T,H,W,3]"),
    (torch.rand(1, 2, 3, 16, 24), "frames: expected one clip [T,3,H,W]"),
    (torch.rand(2, 4, 16, 24), "frames: expected shape [3,H,W] or [T,3,H,W]"),
    (torch.rand(2, 3, 16, 24) + 1, "frames: values must lie in [0,1]"),
])
def test_crf_compress_names_bad_frames(frames, names):
    with pytest.raises(ValueError) as e:
        D.crf_compress(frames, crf=30, preset="ultrafast")
    assert names in str(e.value)


def test_crf_compress_failure_leaves_no_temporary_files(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    real = D.run_ffmpeg

    def fail_decoding(args, what, stdin=None):
        if what == "crf_compress (decoding)":
            raise ValueError(f"{what}: ffmpeg failed (simulated)")
        return real(args, what, stdin=stdin)

    monkeypatch.setattr(D, "run_ffmpeg", fail_decoding)
    with pytest.raises(ValueError, match="crf_compress \\(decoding\\): ffmpeg failed"):
        D.crf_compress(FRAMES8, crf=30, preset="ultrafast")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("call, names", [
    (lambda: D.low_light(IMG, 0.3, shot_noise=-1), "shot_noise: expected a value >= 0"),
    (lambda: D.low_light(IMG, 0.3, wb_gains=(1, 0, 1)), "wb_gains: expected positive gains"),
    (lambda: D.low_light8(FRAMES8[0].astype(np.int16), 0.3), "levels: expected a uint8 array [H,W,3]"),
    (lambda: D.low_light8(FRAMES8[0], 0.3, out=np.zeros((2, 2, 3), np.uint8)), "out: expected a uint8 array"),
    (lambda: D.motion_blur(IMG, [5, 6]), "length: expected a number or one value per frame (1)"),
    (lambda: D.motion_blur8(FRAMES8[0], 5, mode="wrap"), "mode: expected one of"),
    (lambda: D.resolution_degrade(IMG, 0.5, quality=0), "quality: expected an integer JPEG quality"),
    (lambda: D.resolution_degrade8(FRAMES8[0], 2.0), "scale: expected a downscaling factor in (0, 1]"),
    (lambda: D.gaussian_noise(IMG, 300), "sigma: expected a noise level in 0..255"),
    (lambda: D.haze(IMG, airlight=(1, 2)), "airlight: expected a value or an (r, g, b) triple"),
    (lambda: D.filter2d(IMG[None], torch.ones(3, 3), method="slow"), "method: expected 'auto', 'direct' or 'fft'"),
    (lambda: D.poisson_by_level(FRAMES8[0], np.full(256, 3.0), rng=np.random.default_rng(0)).shape, None),
])
def test_degradations_name_the_bad_argument(call, names):
    if names is None:  # a control: good input passes
        call()
        return
    with pytest.raises(ValueError) as e:
        call()
    assert names in str(e.value)
