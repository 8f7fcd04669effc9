"""PromptIR against the fixtures of the authors' architectures (copied in tests/fixtures/).

promptir_official_state_dict.json / restormer_official_state_dict.json: the state_dict keys (in order) and
shapes of the authors' `PromptIR(decoder=True)` and `Restormer()`; promptir_reference.npz: the official network's
float64 output for a fixed input under the deterministic weights of `deterministic_weights`.
"""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from progressive_ir.promptir import (PromptIR, PromptIRConfig, PartialLoadWarning, deterministic_weights,
                                     load_official_checkpoint, param_table, PROMPT_GENERATION, PROMPT_INTERACTION,
                                     UNUSED)

FIXTURES = Path(__file__).parent / "fixtures"


def _manifest(name):
    return json.loads((FIXTURES / f"{name}_official_state_dict.json").read_text())


@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(0)
    return PromptIR(PromptIRConfig.paper())


def test_state_dict_matches_official_manifest(paper_model):
    manifest = _manifest("promptir")
    ours = {k: list(v.shape) for k, v in paper_model.state_dict().items()}
    assert list(ours) == list(manifest["keys"])  # same names, same order
    assert ours == manifest["keys"]              # same shapes
    assert sum(p.numel() for p in paper_model.parameters()) == manifest["total_numel"] == 35_592_263


def test_float64_reference_output():
    manifest, ref = _manifest("promptir"), np.load(FIXTURES / "promptir_reference.npz")
    model = PromptIR(PromptIRConfig.paper()).double().eval()
    model.load_state_dict(deterministic_weights(manifest["keys"]), strict=True)
    with torch.no_grad():
        out = model(torch.from_numpy(ref["input"]))
    assert out.dtype == torch.float64 and out.shape == (1, 3, 64, 96)
    assert (out - torch.from_numpy(ref["output"])).abs().max().item() < 1e-10


def test_deterministic_weights_recipe():
    sd = deterministic_weights({"a.body.weight": [4], "b.attn.temperature": [2, 1, 1], "c.weight": [3, 2, 1, 1]})
    assert torch.allclose(sd["a.body.weight"], torch.from_numpy(1 + 0.1 * np.random.RandomState(0).uniform(-1, 1, 4)))
    assert (sd["b.attn.temperature"] - 1).abs().max() <= 1  # centred on 1
    expected = np.random.RandomState(2).uniform(-1, 1, 6) / np.sqrt(6 / 3)
    assert torch.allclose(sd["c.weight"].flatten(), torch.from_numpy(expected))


def test_table1_split(paper_model):
    t = param_table(paper_model)
    assert list(t.loc[["Table 1: backbone", "Table 1: PromptIR modules"], "M (2^20)"]) == [23.21, 10.74]
    assert list(t.loc[["Table 1: backbone", "Table 1: PromptIR modules"], "share %"]) == [68.4, 31.6]
    assert list(t.loc[["Table 1: full model", "Table 1: backbone", "Table 1: PromptIR modules"], "M (10^6)"]) == [35.59, 24.33, 11.26]


def test_official_lightning_checkpoint_loads_strictly(tmp_path, paper_model):
    sd = {f"net.{k}": torch.randn(v) for k, v in _manifest("promptir")["keys"].items()}
    torch.save({"epoch": 119, "global_step": 0, "state_dict": sd}, tmp_path / "model.ckpt")
    report = load_official_checkpoint(paper_model, tmp_path / "model.ckpt")
    assert (report["kind"], report["loaded"], report["not_loaded"]) == ("promptir", 548, [])
    assert report["complete"] and report["counts"]["expected"] == 548 and report["warnings"] == []
    assert torch.equal(paper_model.state_dict()["noise_level3.ffn.project_in.weight"], sd["net.noise_level3.ffn.project_in.weight"])


def test_restormer_checkpoint_fills_the_backbone(tmp_path, paper_model):
    restormer = {k: torch.randn(v) for k, v in _manifest("restormer")["keys"].items()}
    assert len(restormer) == 494
    torch.save({"params": restormer}, tmp_path / "restormer.pth")
    with pytest.warns(PartialLoadWarning, match="prompt modules .54 tensors."):
        report = load_official_checkpoint(paper_model, tmp_path / "restormer.pth")
    assert report["kind"] == "restormer" and report["loaded"] == 492 and report["unexpected"] == []
    assert report["counts"] == dict(loaded=492, expected=548, unexpected=0, mismatched=2, missing=54)
    assert report["complete"] is False
    assert sorted(report["mismatched"]) == ["reduce_chan_level3.weight", "up4_3.body.0.weight"]
    prompt_modules = PROMPT_GENERATION + PROMPT_INTERACTION + UNUSED
    assert all(k.split(".")[0] in prompt_modules for k in report["not_loaded"] if k not in report["mismatched"])
    assert torch.equal(paper_model.state_dict()["latent.7.ffn.project_out.weight"], restormer["latent.7.ffn.project_out.weight"])
    with pytest.raises(ValueError, match="does not match"):
        load_official_checkpoint(paper_model, tmp_path / "restormer.pth", strict=True)


def _lightweight_config_of(config, shallow_size=None, prompt_scale=0.5, deep_ffn_expansion=1.5):
    "The reference: train.lightweight_config_of as it was before PromptIRConfig.to_lightweight replaced it."
    first = tuple(shallow_size) if shallow_size is not None else config.prompt_sizes[0]
    return dataclasses.replace(config, prompt_sizes=(first,) + tuple(config.prompt_sizes[1:]),
                               prompt_scales=(float(prompt_scale),) + tuple(config.prompt_scales[1:]),
                               pim_ffn_expansion=tuple(config.pim_ffn_expansion[:2]) + (float(deep_ffn_expansion),))


@pytest.mark.parametrize("base", [PromptIRConfig.paper(), PromptIRConfig.tiny(),
                                  PromptIRConfig(dim=16, prompt_sizes=((24, 40), 8, 4), pim_heads=(2, 2, 2))])
@pytest.mark.parametrize("kwargs", [{}, dict(shallow_size=(180, 320)), dict(shallow_size=(36, 64), prompt_scale=0.25),
                                    dict(prompt_scale=1.0, deep_ffn_expansion=2.66), dict(deep_ffn_expansion=1.0)])
def test_to_lightweight_agrees_with_lightweight_config_of(base, kwargs):
    assert base.to_lightweight(**kwargs) == _lightweight_config_of(base, **kwargs)


def test_lightweight_preset_is_the_paper_config_reduced():
    light = PromptIRConfig.lightweight()
    assert light == PromptIRConfig.paper().to_lightweight(shallow_size=(180, 320))
    assert light == _lightweight_config_of(PromptIRConfig.paper(), (180, 320))
    assert (light.prompt_sizes, light.prompt_scales, light.pim_ffn_expansion) == \
        (((180, 320), 32, 16), (0.5, 1.0, 1.0), (2.66, 2.66, 1.5))
    assert light.stored_hw(1) == (90, 160)
    level2 = PromptIRConfig.lightweight(shallow_level=2)
    assert (level2.prompt_sizes, level2.prompt_scales) == ((64, (180, 320), 16), (1.0, 0.5, 1.0))
    # the lightweight network: 64x90x160 shallow components, a 1056-wide deep FFN
    model = PromptIR(light)
    assert model.prompt1.prompt_param.shape == (1, 5, 64, 90, 160)
    assert model.noise_level3.ffn.project_out.weight.shape == (704, 1056, 1, 1)


def test_state_dict_unchanged_without_unused_modules():
    "The six unused convolutions are the only difference; every other key keeps its official place."
    full = list(PromptIR(PromptIRConfig.tiny()).state_dict())
    lean = list(PromptIR(dataclasses.replace(PromptIRConfig.tiny(), unused_modules=False)).state_dict())
    assert lean == [k for k in full if k.split(".")[0] not in UNUSED]
