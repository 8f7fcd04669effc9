"""Launchable tiny PromptIR training (`train.tiny_regime_fit`) for the multi-process tests and benchmark.

    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        tests/dist_fit.py OUT --regime full --epochs 2 --batch-size 2

(`accelerate launch --cpu --num_processes 2` starts a single process in Accelerate 1.15; the script asks for the CPU
itself, so the multi-GPU launcher runs gloo processes on CPUs.) Every process writes `OUT/process_<k>.json`: its
view of the result (number of processes, steps, history), for the tests to compare.
"""
import argparse
import json
from pathlib import Path

from progressive_ir.train import tiny_regime_fit


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--regime", default="full", choices=("full", "lightweight", "ours"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=2, help="per process")
    ap.add_argument("--n-train", type=int, default=16)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--checkpoint-every", type=int, default=3)
    ap.add_argument("--stop-after", type=int, default=None)
    ap.add_argument("--resume", default=None)
    ap.add_argument("--crash-at", default=None, help="PROCESS:MICRO_BATCH, e.g. 1:7: that process raises there")
    ap.add_argument("--log-every", type=int, default=1)
    ap.add_argument("--no-eval", action="store_true")
    args = ap.parse_args(argv)
    crash = tuple(int(v) for v in args.crash_at.split(":")) if args.crash_at else None
    res = tiny_regime_fit(args.out_dir, regime=args.regime, n_train=args.n_train, size=args.size,
                          batch_size=args.batch_size, crash_at=crash, epochs=args.epochs, max_steps=args.max_steps,
                          checkpoint_every=args.checkpoint_every, stop_after=args.stop_after, resume=args.resume,
                          log_every=args.log_every, evaluate=not args.no_eval)
    from accelerate import PartialState
    state = PartialState()
    view = dict(process_index=state.process_index, num_processes=state.num_processes, steps=res["steps"],
                finished=res["finished"], history=res["history"], train_time_s=res["train_time_s"],
                images_per_s=res["images_per_s"])
    Path(args.out_dir, f"process_{state.process_index}.json").write_text(json.dumps(view))


if __name__ == "__main__":
    main()
