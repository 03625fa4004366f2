"""Shared timing helper: alternate the contenders so machine-load drift hits all of them."""

import statistics
import time


def alternate_medians(contenders, repeats):
    """``contenders``: {name: zero-argument callable}; returns {name: median seconds}."""
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def fit_one_epoch(criterion_config, student, teacher, loader, lr, workspace):
    """neural_distill's built-in loop for one epoch with SGD (momentum 0.9), quietly."""
    from neural_distill import Distillation

    distiller = Distillation({
        "distillation": {"train": {
            "epoch": 1, "progress_bar": False,
            "optimizer": {"SGD": {"learning_rate": lr, "momentum": 0.9}},
            "criterion": criterion_config}},
        "tuning": {"workspace": {"path": workspace}}})
    distiller.student_model = student
    distiller.teacher_model = teacher
    distiller.train_dataloader = loader
    return distiller.fit()


def torch_benchmark_args(description, steps, batch_size, extra=None):
    """The command line both PyTorch benchmarks take; applies --threads and quiets logging.
    ``extra(parser)`` adds a benchmark's own options."""
    import argparse
    import logging

    import torch

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default); 1 is steadier on a busy machine")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("neural_distill").setLevel(logging.WARNING)
    return args
