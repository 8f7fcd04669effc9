"""The launch configurations of launch/ (issue 15 item 4): validated with Accelerate's classes, without launching;
the CPU one also launched."""
import json, os, subprocess, sys
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "launch").glob("*.yaml"))
EXPECTED = {  # file: (distributed type, processes, machines)
    "cpu_2proc.yaml": ("MULTI_GPU", 2, 1), "ddp_1node.yaml": ("MULTI_GPU", 8, 1),
    "ddp_multinode.yaml": ("MULTI_GPU", 16, 2), "deepspeed_zero2_lora.yaml": ("DEEPSPEED", 8, 1),
    "fsdp_full.yaml": ("FSDP", 8, 1), "deepspeed_zero3_full.yaml": ("DEEPSPEED", 8, 1)}


def validated(path):
    "What `accelerate launch --config_file path x.py` resolves before starting anything."
    args = launch_command_parser().parse_args(["--config_file", str(path), "x.py"])
    return _validate_launch_command(args)


def launcher_env(path):
    "The environment `accelerate launch` would give the processes (DeepSpeed and FSDP settings included)."
    args, defaults, mp_from_config = validated(path)
    if args.use_deepspeed:
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return prepare_deepspeed_cmd_env(args)[1]
    return prepare_multi_gpu_env(args)


def test_every_config_is_expected_and_documented():
    assert {p.name for p in CONFIGS} == set(EXPECTED)
    readme = (ROOT / "launch" / "README.md").read_text()
    for p in CONFIGS: assert p.name in readme, p.name


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_validates(path):
    c = load_config_from_file(str(path))  # unknown top-level keys are an error here
    kind, processes, machines = EXPECTED[path.name]
    assert (c.distributed_type.value, c.num_processes, c.num_machines) == (kind, processes, machines)
    dests = {a.dest for a in launch_command_parser()._actions}
    nested = {**{k: k for k in c.deepspeed_config}, **{k if k.startswith("fsdp") else f"fsdp_{k}": k for k in c.fsdp_config}}
    assert set(nested) <= dests, f"{path.name}: keys accelerate launch does not know: {set(nested) - dests}"
    args, _, _ = validated(path)
    assert args.num_processes == processes and args.num_machines == machines


def test_multinode_has_placeholders_to_fill():
    raw = yaml.safe_load((ROOT / "launch" / "ddp_multinode.yaml").read_text())
    text = (ROOT / "launch" / "ddp_multinode.yaml").read_text()
    assert raw["machine_rank"] == 0 and raw["main_process_ip"] and text.count("PLACEHOLDER") == 2


@pytest.mark.parametrize("name,stage", [("deepspeed_zero2_lora.yaml", 2), ("deepspeed_zero3_full.yaml", 3)])
def test_deepspeed_plugin_from_the_launch_environment(name, stage, monkeypatch):
    for k, v in launcher_env(ROOT / "launch" / name).items(): monkeypatch.setenv(k, v)
    plugin = DeepSpeedPlugin()
    assert plugin.zero_stage == stage and plugin.deepspeed_config["gradient_clipping"] == 1.0
    assert plugin.deepspeed_config["zero_optimization"]["offload_optimizer"]["device"] == "none"


def test_fsdp_plugin_wraps_a_block_the_cogvideox_transformer_has(monkeypatch):
    env = launcher_env(ROOT / "launch" / "fsdp_full.yaml")
    for k, v in env.items(): monkeypatch.setenv(k, v)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.transformer_cls_names_to_wrap == ["CogVideoXBlock"]
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    from accelerate.utils.dataclasses import get_module_class_from_name
    from progressive_ir.cogvideo import PRESETS
    from diffusers import CogVideoXTransformer3DModel
    tiny = CogVideoXTransformer3DModel(**PRESETS["tiny"][0])
    assert get_module_class_from_name(tiny, "CogVideoXBlock") is not None
    assert get_module_class_from_name(tiny, "NoSuchBlock") is None  # the check can fail


def test_cpu_config_needs_the_cpu_flag_in_the_environment():
    "The CPU config goes through the torch.distributed launcher (not mpirun); the processes turn to CPU by env."
    args, _, _ = validated(ROOT / "launch" / "cpu_2proc.yaml")
    assert args.multi_gpu and not args.cpu
    readme = (ROOT / "launch" / "README.md").read_text()
    assert "ACCELERATE_USE_CPU=1 accelerate launch --config_file launch/cpu_2proc.yaml" in readme


def test_cpu_config_launches_two_gloo_processes(tmp_path):
    "The one configuration that runs here: two CPU processes train together (data split, weights equal)."
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "launch" / "cpu_2proc.yaml"),
           str(ROOT / "launch" / "smoke_fit.py"), "--out", str(tmp_path / "run")]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    rec = json.loads((tmp_path / "run" / "launch_check.json").read_text())
    assert (rec["processes"], rec["backend"], rec["steps"]) == (2, "gloo", 8)  # 16 samples, batch 2 each, 2 epochs
    assert rec["checkpoints"] == ["step_4", "step_8"]
