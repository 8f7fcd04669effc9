"""CogVideoX on several processes (issue 15): the LoRA step under `accelerate launch --num_processes 2 --cpu` (gloo)
equals a 1-process run with the same global batch, and the latent cache encoded one shard per process equals a
one-shot cache.

Run as a script (`python tests/test_cogvideo_distributed.py train CACHE OUT BATCH`), this file is the training
program that `accelerate launch` starts on each process.
"""
import os, socket, subprocess, sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3


def toy_items(n=4, size=(32, 32), frames=9):
    "Progressions fading from grey to a random image, each with its own id and prompt."
    g = torch.Generator().manual_seed(0)
    w = torch.linspace(0, 1, frames)[:, None, None, None]
    out = []
    for i in range(n):
        clean = torch.rand(3, size[1], size[0], generator=g)
        out.append(dict(frames=(w * clean + (1 - w) * 0.5), prompt=["a cat becomes clear", "the image becomes sharper"][i % 2],
                        id=f"v{i}", task="blur"))
    return out


def train(cache, out, batch_size):
    "The LoRA step on the shared loop, as experiment 05 runs it; the trainable weights end in OUT/final/."
    from progressive_ir import cogvideo
    from progressive_ir.train import TrainConfig, fit
    torch.set_num_threads(1)
    pipe = cogvideo.load_pipeline(preset="tiny")
    model = cogvideo.prepare_lora_training(pipe, rank=4, alpha=4, gradient_checkpointing=False)
    cfg = TrainConfig(out_dir=str(out), max_steps=STEPS, lr=1e-3, betas=(0.9, 0.95), schedule="constant",
                      log_every=1, progress=False, seed=0, cpu=True, trainable_only=True)
    res = fit(model, cogvideo.LatentDataset(cache, "train"), cogvideo.make_lora_step(pipe), cfg,
              batch_size=int(batch_size))
    from accelerate import PartialState
    state = PartialState()
    print(f"process {state.process_index} of {state.num_processes}", flush=True)
    return res


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args, n=2):
    """`n` CPU processes (gloo) under `accelerate launch`, one thread each; the output on failure.

    accelerate 1.15's `--cpu --num_processes n` starts ONE process unless MPI is set up (it hands multi-CPU runs to
    `mpirun`); `--multi_gpu` with ACCELERATE_USE_CPU=true starts `n` processes through torchrun, on the CPU."""
    env = dict(os.environ, OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), *args]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def weights(folder):
    from safetensors.torch import load_file
    return load_file(str(Path(folder) / "final" / "trainable.safetensors"))


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    from progressive_ir import cogvideo
    cogvideo.build_latent_cache(cogvideo.load_pipeline(preset="tiny"), toy_items(), tmp_path / "cache", "train",
                                progress=False)
    one = train(tmp_path / "cache", tmp_path / "one", batch_size=2)
    assert one["finished"] and one["steps"] == STEPS
    res = launch([str(Path(__file__).resolve()), "train", str(tmp_path / "cache"), str(tmp_path / "two"), "1"])
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert a.keys() == b.keys() and len(a) > 0
    start = cogvideo.add_lora(cogvideo.load_pipeline(preset="tiny").transformer, rank=4, alpha=4)
    moved = {n: p for n, p in start.named_parameters() if n in a and not torch.equal(p.detach(), a[n])}
    assert moved, "training changed no LoRA weight"
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, f"2-process LoRA weights differ from the 1-process ones by up to {worst}"
    ranks = res.stdout.count("process 1 of 2")
    assert ranks == 1, f"expected one line from process 1 of 2 (a 2-process run), got {ranks}:\n{res.stdout[-2000:]}"
    # logs and checkpoints written once (main process): one history, the checkpoints of one run
    assert (tmp_path / "two" / "history.csv").is_file()


def test_latent_cache_one_shard_per_process_equals_one_shot(tmp_path):
    from progressive_ir import cogvideo
    from progressive_ir.progressions import ProgressionVideoDataset, build_progression_dataset
    g = torch.Generator().manual_seed(1)
    images = {f"img{i}": torch.rand(3, 40, 48, generator=g) for i in range(3)}
    man = build_progression_dataset(tmp_path / "data", images, tasks=["blur"], strengths=["severe"], size=(32, 32),
                                    split="train", prompt_types=("uniform",), preview=False)
    launch(["-m", "progressive_ir.cogvideo", "cache", "--manifest", str(man), "--preset", "tiny",
            "--cache", str(tmp_path / "sharded"), "--name", "train-uniform"])
    pipe = cogvideo.load_pipeline(preset="tiny")
    cogvideo.build_latent_cache(pipe, ProgressionVideoDataset(man, "train", "uniform"), tmp_path / "oneshot",
                                "train-uniform", progress=False)
    files = lambda d: {str(p.relative_to(d)): p.read_bytes() for p in d.rglob("*") if p.is_file()}
    assert files(tmp_path / "sharded") == files(tmp_path / "oneshot")


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(*sys.argv[2:5])
