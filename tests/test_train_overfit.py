"""Overfit checks of PromptIR on `train.fit` (issue 11, item 5), with the mutations that must make them fail.

A tiny PromptIR memorises two CRF-compressed crops: full retraining from the identity must end 5 dB above the
compressed input, the lightweight regime (from the memorised network, its deep FFN replaced) 1.5 dB above where it
started. The same checks must fail when the loss is computed against the input instead of the target, when the
trainable modules of the frozen regime receive no gradient, and when freezing leaves nothing to train. A few seconds
per check on one core; the notebook 09_train shows the same.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from progressive_ir.promptir import PromptIR, PromptIRConfig
from progressive_ir.train import (TrainConfig, assert_memorises, crf_pairs_of_images, freeze_unused, l1_step,
                                  regime_model)


def identity_start():
    torch.manual_seed(0)
    model = freeze_unused(PromptIR(PromptIRConfig.tiny()))
    nn.init.zeros_(model.output.weight)
    return model


def cfg(out_dir):
    return TrainConfig(out_dir, max_steps=40, lr=4e-3, schedule="constant", progress=False, cpu=True,
                       log_every=20)


def loss_against_input(model, batch, accelerator=None):
    "The mutation: the L1 loss against the input instead of the target."
    return dict(loss=F.l1_loss(model(batch["lq"]).float(), batch["lq"].float()))


def without_gradient(model):
    "The mutation: every trainable parameter's gradient replaced by zeros."
    for p in model.parameters():
        if p.requires_grad:
            p.register_hook(torch.zeros_like)
    return model


@pytest.fixture(scope="module")
def pairs():
    torch.set_num_threads(1)
    return crf_pairs_of_images()


@pytest.fixture(scope="module")
def memorised(pairs, tmp_path_factory):
    model = identity_start()
    report = assert_memorises(model, pairs, cfg(tmp_path_factory.mktemp("full")), margin_db=5.0)
    return model, report


def test_full_retraining_memorises(memorised):
    _, report = memorised
    assert abs(report["psnr_start"] - report["psnr_in"]) < 1e-6     # the identity start
    assert report["gain_db"] >= 5.0


def test_full_check_fails_with_the_loss_against_the_input(pairs, tmp_path):
    with pytest.raises(AssertionError, match="did not memorise"):
        assert_memorises(identity_start(), pairs, cfg(tmp_path), margin_db=5.0, step_fn=loss_against_input)


def test_lightweight_regime_recovers(memorised, pairs, tmp_path):
    light, _ = regime_model(memorised[0], "lightweight")
    report = assert_memorises(light, pairs, cfg(tmp_path), margin_db=1.5, over="start")
    assert report["psnr_end"] > report["psnr_in"] + 5


def test_lightweight_check_fails_without_gradient(memorised, pairs, tmp_path):
    light = without_gradient(regime_model(memorised[0], "lightweight")[0])
    with pytest.raises(AssertionError, match=r"did not memorise: .* [-+]0\.00 dB over the start"):
        assert_memorises(light, pairs, cfg(tmp_path), margin_db=1.5, over="start")


def test_lightweight_check_fails_when_everything_is_frozen(memorised, pairs, tmp_path):
    frozen = regime_model(memorised[0], "lightweight")[0].requires_grad_(False)
    with pytest.raises(ValueError, match="model: no parameter requires grad"):
        assert_memorises(frozen, pairs, cfg(tmp_path), margin_db=1.5, over="start")
