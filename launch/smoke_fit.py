#!/usr/bin/env python
"""A launch check: the project's training loop (`train.fit`) on a tiny restorer, under whatever `accelerate launch`
configuration started it. Every process prints its rank, the world size and the torch.distributed backend; the
main process writes `<out>/launch_check.json` with the number of processes, the steps, the final loss and a checksum
of the trained weights (identical on every process after data-parallel training, which the script asserts).

    accelerate launch --config_file launch/cpu_2proc.yaml launch/smoke_fit.py --out runs/launch_check
    python launch/smoke_fit.py --out runs/launch_check_1proc        # the same, one process

It checks the launch path (configuration, process group, data-parallel loop, checkpoints written once), not a
result; the equality of one- and several-process training is tested with the training loop itself.
"""
from __future__ import annotations
import argparse, os, shutil, sys
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))

from progressive_ir.core import write_json  # noqa: E402
from progressive_ir.train import TinyRestorer, TrainConfig, fit, l1_step, noisy_pairs  # noqa: E402


def weights_checksum(model) -> float:
    "A float that changes with any weight: the sum of every parameter times its position."
    flat = torch.cat([p.detach().float().flatten() for p in model.parameters()])
    return float((flat * torch.arange(1, flat.numel() + 1, dtype=torch.float32)).sum())


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "runs" / "launch_check"), help="output folder (replaced)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=2, help="per process")
    p.add_argument("--samples", type=int, default=16)
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    out = Path(a.out)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0 and out.exists(): shutil.rmtree(out)
    torch.manual_seed(0)
    model = TinyRestorer(width=4)
    cfg = TrainConfig(out, epochs=a.epochs, lr=1e-2, log_every=1, progress=False, seed=0)
    res = fit(model, noisy_pairs(a.samples, size=8), l1_step, cfg, batch_size=a.batch_size, shuffle=True)
    from accelerate import PartialState
    state = PartialState()  # as the training loop's Accelerator set it up
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and state.num_processes != launched:
        raise SystemExit(f"launched {launched} processes, but Accelerate runs this one as {state.distributed_type} with "
                         f"{state.num_processes} process(es): each trains alone. On a machine without GPU set "
                         "ACCELERATE_USE_CPU=1 (see launch/README.md)")
    world, backend = state.num_processes, state.backend
    checksum = weights_checksum(res["model"])
    print(f"rank {rank} of {world} ({backend}): {res['steps']} steps, weights checksum {checksum:.6f}", flush=True)
    if dist.is_initialized():
        sums = [None] * world
        dist.all_gather_object(sums, checksum)
        assert len(set(sums)) == 1, f"processes ended with different weights: {sums}"
    if rank == 0:
        loss = [r["loss"] for r in res["history"] if r["kind"] == "train"][-1]
        write_json(dict(processes=world, backend=backend, steps=res["steps"], epochs=res["epochs"], final_loss=loss,
                        weights_checksum=checksum, batch_size_per_process=a.batch_size, samples=a.samples,
                        checkpoints=sorted(p.name for p in (out / "checkpoints").iterdir())),
                   out / "launch_check.json")
    if dist.is_initialized(): dist.barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main())
