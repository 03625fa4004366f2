"""Built-in loop / hand-written loop for short epochs, where fit()'s fixed costs show (issue 19).

One 60-step epoch (MLP teacher 784-1200-1200-10 -> student 784-400-400-10, batch 128) per fit,
with the checkpoint settings at their default (one per epoch). Contenders alternate
(hand, ours, hand, ours-with-sync-writes, ...) so machine-load drift hits each one, and the
median of the repeats is reported:

- ``hand``: the loop a careful user writes (same optimizer, same loss);
- ``ours``: ``Distillation.fit()`` with the defaults (checkpoint written by the background
  writer where the code has one);
- ``ours, sync checkpoint``: the checkpoint written on the training thread;
- ``ours, no checkpoint``: ``checkpoint_every_epochs: 0``.

    python benchmarks/short_epoch_overhead.py [--steps 60] [--repeats 9] [--threads 1]
"""

import copy
import os
import sys
import tempfile

import torch
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import alternate_medians, torch_benchmark_args  # noqa: E402
# The same hand-written loop and criterion as the per-step benchmark: one definition.
from kd_step_overhead import CRITERION, hand_written  # noqa: E402


def make_models():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(784, 1200), nn.ReLU(), nn.Linear(1200, 1200), nn.ReLU(),
                            nn.Linear(1200, 10))
    student = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(),
                            nn.Linear(400, 10))
    return teacher, student


def ours(student, teacher, loader, lr, workspace, every=1, writer=None, epochs=1):
    from neural_distill import Distillation

    workspace_conf = {"path": workspace, "checkpoint_every_epochs": every}
    if writer is not None:
        workspace_conf["checkpoint_writer"] = writer
    distiller = Distillation({
        "distillation": {"train": {
            "epoch": epochs, "progress_bar": False,
            "optimizer": {"SGD": {"learning_rate": lr, "momentum": 0.9}},
            "criterion": CRITERION}},
        "tuning": {"workspace": workspace_conf}})
    distiller.student_model = student
    distiller.teacher_model = teacher
    distiller.train_dataloader = loader
    return distiller.fit()


def has_writer_option():
    """Whether this code has ``tuning.workspace.checkpoint_writer`` (the 'before' code has not)."""
    from neural_distill import Distillation
    from neural_distill.errors import ConfigError

    try:
        Distillation({"tuning": {"workspace": {"checkpoint_writer": "sync"}}})
    except ConfigError:
        return False
    return True


def main():
    args = torch_benchmark_args(
        __doc__.split("\n")[0], steps=60, batch_size=128,
        extra=lambda parser: parser.add_argument(
            "--epochs", type=int, default=1,
            help="epochs per fit (the writer overlaps a checkpoint with the next epoch)"))
    epochs = args.epochs
    args.repeats = max(args.repeats, 1)
    teacher, student0 = make_models()
    generator = torch.Generator().manual_seed(0)
    n = args.steps * args.batch_size
    x = torch.randn(n, 784, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    batches = [(x[i:i + args.batch_size], y[i:i + args.batch_size])
               for i in range(0, n, args.batch_size)]
    loader = DataLoader(batches, batch_size=None)
    writer = has_writer_option()

    with tempfile.TemporaryDirectory() as ws:
        # Warm-up: first-call costs (imports, allocator) out of the timed runs.
        hand_written(copy.deepcopy(student0), teacher, loader, 0.01)
        ours(copy.deepcopy(student0), teacher, loader, 0.01, ws)
        contenders = {
            "hand": lambda: hand_written(copy.deepcopy(student0), teacher, loader, 0.01, epochs),
            "ours": lambda: ours(copy.deepcopy(student0), teacher, loader, 0.01, ws,
                                 epochs=epochs),
            "ours, no checkpoint": lambda: ours(copy.deepcopy(student0), teacher, loader,
                                                0.01, ws, every=0, epochs=epochs),
        }
        if writer:
            contenders["ours, sync checkpoint"] = lambda: ours(
                copy.deepcopy(student0), teacher, loader, 0.01, ws, writer="sync",
                epochs=epochs)
        medians = alternate_medians(contenders, args.repeats)
    hand = medians["hand"]
    print(f"short epoch: MLP 784-1200-1200-10 -> 784-400-400-10, batch {args.batch_size}, "
          f"{args.steps} steps x {epochs} epoch(s) per fit, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}"
          f"{'' if writer else ' (code without a background checkpoint writer)'}")
    for name, seconds in medians.items():
        print(f"  {name:24s}: {seconds * 1e3:8.1f} ms/fit  ratio to hand {seconds / hand:.3f}")
    if writer:
        cost_bg = medians["ours"] - medians["ours, no checkpoint"]
        cost_sync = medians["ours, sync checkpoint"] - medians["ours, no checkpoint"]
        print(f"  checkpoint cost: background writer {cost_bg * 1e3:+.1f} ms, "
              f"on the training thread {cost_sync * 1e3:+.1f} ms")
    else:
        cost = medians["ours"] - medians["ours, no checkpoint"]
        print(f"  checkpoint cost (on the training thread): {cost * 1e3:+.1f} ms")


if __name__ == "__main__":
    main()
