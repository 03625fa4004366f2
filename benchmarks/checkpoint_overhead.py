"""Checkpoint overhead per epoch on the MNIST-1D example (issue 12; target: under 2%).

Trains one epoch of examples/mnist1d/distill.yaml (750 steps, batch 32) with one checkpoint
per epoch and with none, alternating the two so machine-load drift hits both, and prints the
median epoch times, their ratio, and the time of one checkpoint write measured on its own.

    python benchmarks/checkpoint_overhead.py [--repeats 3] [--threads 1] [--steps N]
"""

import argparse
import copy
import logging
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from _timing import alternate_medians  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None,
                        help="batches per epoch (default: the whole epoch, 750)")
    args = parser.parse_args()

    import torch

    from neural_distill import Distillation
    from neural_distill.cli import build_model

    torch.set_num_threads(args.threads)
    logging.getLogger("neural_distill").setLevel(logging.WARNING)
    config = os.path.join(REPO, "examples", "mnist1d", "distill.yaml")
    probe = Distillation(config)
    base_dir = os.path.dirname(config)
    student = build_model(probe.conf, "student", config, base_dir)
    teacher = build_model(probe.conf, "teacher", config, base_dir)  # trained once, shared
    workspace = tempfile.mkdtemp(prefix="nd_bench_ckpt_")
    last = {}

    def epoch(every):
        distiller = Distillation(config)
        distiller.conf.distillation.train.epoch = 1
        if args.steps:
            distiller.conf.distillation.train.iteration = args.steps
        distiller.conf.distillation.train.progress_bar = False
        distiller.conf.tuning.workspace.path = workspace
        distiller.conf.tuning.workspace.checkpoint_every_epochs = every
        distiller.student_model = copy.deepcopy(student)
        distiller.teacher_model = teacher
        distiller.fit()
        last[every] = distiller

    medians = alternate_medians({"no checkpoint": lambda: epoch(0),
                                 "checkpoint every epoch": lambda: epoch(1)}, args.repeats)
    durable = last[1].run.durable
    start = time.perf_counter()
    writes = 5
    for _ in range(writes):
        durable.save(0, 0, None)
        durable.flush()  # the write itself, also when a background thread does it
    write_s = (time.perf_counter() - start) / writes
    size = max(os.path.getsize(os.path.join(last[1].workspace.path, name))
               for name in os.listdir(last[1].workspace.path) if name.startswith("checkpoint"))
    base, with_ckpt = medians["no checkpoint"], medians["checkpoint every epoch"]
    print(f"epoch without checkpoint: {base:.3f} s (median of {args.repeats})")
    print(f"epoch with one checkpoint: {with_ckpt:.3f} s")
    print(f"ratio: {with_ckpt / base:.4f}  (overhead {100 * (with_ckpt / base - 1):+.2f}%)")
    print(f"one checkpoint write alone: {1000 * write_s:.1f} ms = {100 * write_s / base:.2f}% "
          f"of an epoch; file size {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
