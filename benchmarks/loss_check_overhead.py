"""Cost of the per-step non-finite loss check, measured side by side in one run.

The same built-in PyTorch KD fit as ``kd_step_overhead.py`` runs alternately with the check
(``LossFlag.observe`` / ``poll``, as shipped) and with both replaced by no-ops; the medians are
compared. Also prints the cost of one ``observe`` call on its own.

    python benchmarks/loss_check_overhead.py [--steps 300] [--repeats 7] [--threads 1]
"""

import copy
import tempfile
import time

import torch
from torch.utils.data import DataLoader

from _timing import alternate_medians, fit_one_epoch, torch_benchmark_args
from kd_step_overhead import CRITERION, make_models
from neural_distill.adapters.torch import checks


def main():
    args = torch_benchmark_args(__doc__.split("\n")[0], steps=300, batch_size=128)
    teacher, student0 = make_models(784, 10)
    generator = torch.Generator().manual_seed(0)
    n = args.steps * args.batch_size
    x = torch.randn(n, 784, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    loader = DataLoader([(x[i:i + args.batch_size], y[i:i + args.batch_size])
                         for i in range(0, n, args.batch_size)], batch_size=None)

    shipped = checks.LossFlag.observe, checks.LossFlag.poll

    def fit(with_check):
        if with_check:
            checks.LossFlag.observe, checks.LossFlag.poll = shipped
        else:
            checks.LossFlag.observe = lambda self, loss, where: None
            checks.LossFlag.poll = lambda self, where, wait=False: None
        with tempfile.TemporaryDirectory() as ws:
            fit_one_epoch(CRITERION, copy.deepcopy(student0), teacher, loader, 0.01, ws)

    medians = alternate_medians({"without": lambda: fit(False), "with": lambda: fit(True)},
                                args.repeats)
    checks.LossFlag.observe, checks.LossFlag.poll = shipped

    flag, loss = checks.LossFlag(), torch.tensor(1.5, requires_grad=True) * 2
    start = time.perf_counter()
    for step in range(10000):
        flag.observe(loss, (0, step))
    observe_us = (time.perf_counter() - start) / 10000 * 1e6

    without, with_check = medians["without"], medians["with"]
    print(f"non-finite loss check, built-in PyTorch KD fit, {args.steps} steps of batch "
          f"{args.batch_size}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"  without check : {without * 1e3 / args.steps:8.3f} ms/step")
    print(f"  with check    : {with_check * 1e3 / args.steps:8.3f} ms/step")
    print(f"  ratio with/without: {with_check / without:.4f}")
    print(f"  one observe() on a CPU scalar loss: {observe_us:.2f} us")


if __name__ == "__main__":
    main()
