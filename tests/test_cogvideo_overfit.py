"""The CogVideoX overfit check (issue 11 item 4): a LoRA trained on two progression videos regenerates them through
the pipeline far better than the untrained model, and the same check fails when the training step is mis-wired.

Settings and why: nbs/10_cogvideo.ipynb, "The overfit check". The tiny pipeline uses the fitted tiny VAE of
tests/fixtures/cogvideo_tiny_vae (the random one is nearly blind to image content, which bounds what any check on it
can show). About 20 CPU-seconds per training run; four runs.
"""
import warnings
from pathlib import Path

import pytest
import torch

from progressive_ir import cogvideo
from progressive_ir.sources import sample_image
from progressive_ir.train import fit

FIXTURE = Path(__file__).parent / "fixtures" / "cogvideo_tiny_vae"
PIPELINE = dict(preset="tiny", vae=FIXTURE)


@pytest.fixture(scope="module")
def items():
    torch.set_num_threads(1)
    return cogvideo.overfit_items({n: sample_image(n) for n in ("astronaut", "rocket")})


def scores_of(result):
    return [(round(s["mean_psnr"], 1), round(s["margin"], 1)) for s in result["scores"]]


def test_untrained_model_fails_the_check(items):
    scores = cogvideo.memorisation_scores(cogvideo.load_pipeline(**PIPELINE), [it["frames"] for it in items],
                                          [it["prompt"] for it in items])
    with pytest.raises(AssertionError, match="not memorised"):
        cogvideo.check_memorised(scores)


def test_recipe_memorises(items, tmp_path):
    res = cogvideo.overfit_check(fit, items, tmp_path, pipeline=PIPELINE)
    assert res["steps"] == cogvideo.OVERFIT_TRAIN["max_steps"]
    cogvideo.check_memorised(res["scores"])  # raises with the scores when it does not


MUTATIONS = {
    "condition_zeroed": dict(step=dict(image_dropout=1.0)),
    "epsilon_objective": dict(step=dict(objective="epsilon")),
    "frames_reversed": "reverse",
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_miswired_step_fails_the_check(items, tmp_path, name):
    kw = MUTATIONS[name]
    if kw == "reverse":  # trains on the videos played backwards; scored against the true ones
        kw = dict(train_items=[dict(it, frames=it["frames"].flip(0)) for it in items])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the epsilon objective warns about the v-prediction sampler, as it should
        res = cogvideo.overfit_check(fit, items, tmp_path, pipeline=PIPELINE, **kw)
    with pytest.raises(AssertionError, match="not memorised"):
        cogvideo.check_memorised(res["scores"])
