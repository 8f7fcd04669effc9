#!/usr/bin/env python
"""Multi-process training on CPUs (issue 15, item 5): steps/s of `train.fit` with 1 and 2 processes.

The tiny PromptIR (`PromptIRConfig.tiny()`, full regime) trains on synthetic pairs with the same *global* batch in
every case (`--global-batch`, split evenly over the processes), so each case does the same optimizer steps; the
processes talk through gloo (`accelerate launch --multi_gpu --num_processes N` with a script that asks for the CPU;
one process runs the script directly). Each case runs `tests/dist_fit.py` in fresh processes, with one torch thread
per process (OMP_NUM_THREADS=1), no validation and a checkpoint at each epoch end only. Reported per case: optimizer
steps/s and images/s of the training loop (`fit`'s clock: data loading, forward, backward, gradient all-reduce,
optimizer; checkpoints excluded), the launch's wall time, and the speed-up over one process.

On a quiet machine with at least N free cores, N processes should approach N times the steps/s of one for large
enough batches; the tiny network's steps are so short that the all-reduce and the launch dominate, which is what
this measures (the overhead), not PromptIR's scaling at the paper's size.

Usage (writes bench/results/train_processes_cpu.json):
    python bench/train_processes.py
    python bench/train_processes.py --epochs 1 --n-train 16 --out /tmp/train_processes.json   # a dry run
"""
from __future__ import annotations
import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "dist_fit.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_case(processes: int, out_dir: Path, a) -> dict:
    "Train once with `processes` processes; the main process's view of the run, and the wall time."
    args = [str(out_dir), "--epochs", str(a.epochs), "--batch-size", str(a.global_batch // processes),
            "--n-train", str(a.n_train), "--size", str(a.size), "--checkpoint-every", str(10**9),
            "--log-every", str(10**9), "--no-eval"]
    if processes == 1:
        cmd = [sys.executable, str(SCRIPT), *args]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), str(SCRIPT), *args]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return dict(processes=processes, status="failed", error=proc.stderr.strip().splitlines()[-1:])
    view = json.loads((out_dir / "process_0.json").read_text())
    steps, seconds = view["steps"], view["train_time_s"]
    return dict(processes=processes, status="ok", batch_per_process=a.global_batch // processes, steps=steps,
                train_time_s=round(seconds, 3), steps_per_s=round(steps / seconds, 3),
                images_per_s=round(view["images_per_s"], 2), launch_wall_s=round(wall, 1))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", default="1,2", help="comma-separated process counts (default 1,2)")
    ap.add_argument("--global-batch", type=int, default=8, help="samples per optimizer step, over all processes")
    ap.add_argument("--n-train", type=int, default=128, help="training pairs (an epoch is n-train / global-batch steps)")
    ap.add_argument("--size", type=int, default=32, help="pair size (pixels, square)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=None, help="output JSON (default bench/results/train_processes_cpu.json)")
    a = ap.parse_args(argv)
    counts = [int(n) for n in a.processes.split(",")]
    bad = [n for n in counts if n < 1 or a.global_batch % n]
    if bad:
        sys.exit(f"--processes: {bad} do not divide --global-batch {a.global_batch}")
    import tempfile
    from progressive_ir.core import env_info, write_json
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            r = run_case(n, Path(tmp) / f"p{n}", a)
            results.append(r)
            print(json.dumps(r), flush=True)
    base = next((r for r in results if r["processes"] == 1 and r["status"] == "ok"), None)
    for r in results:
        if base and r["status"] == "ok":
            r["speedup_vs_1"] = round(r["steps_per_s"] / base["steps_per_s"], 2)
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / "train_processes_cpu.json"
    settings = dict(network="PromptIRConfig.tiny(), full regime", global_batch=a.global_batch, n_train=a.n_train,
                    size=a.size, epochs=a.epochs, threads_per_process=1, backend="gloo", validation=False)
    write_json(dict(benchmark="train_processes", device=dict(kind="cpu", name=cpu_name(), cores=os.cpu_count()),
                    command=" ".join([Path(sys.executable).name, *sys.argv]), settings=settings, results=results,
                    env=env_info()), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
