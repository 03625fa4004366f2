"""MNIST-1D with the Trainer-algorithm API: the same student with and without `Distillation`.

No config file: everything is Python, in the style of seed 004. For each seed:

  1. the CNN teacher is trained by our `Trainer` and saved (`save_folder`, `save_filename`);
  2. the 40-100-100-10 MLP student is trained three ways from the same initial weights, with
     the same optimizer and the same budget of optimizer steps (`max_duration='...ba'`):
       plain         no algorithm: cross-entropy on the 4000 labeled samples
       distilled     + Distillation(teachers={checkpoint: model}, KLDivergence(T)) on them
       + transfer    the same algorithm, plus 20,000 unlabeled samples (label -100) that get
                     the distillation term alone

Test accuracy of the final student is printed per seed and as the mean of the seeds. Data and
models come from `examples/mnist1d/` (imported, not copied).

    python examples/algorithms_mnist1d/compare.py [--seeds 0 1 2] [--steps 4000]
"""

import argparse
import copy
import logging
import os
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "mnist1d"))

import datasets  # noqa: E402  (examples/mnist1d: MNIST-1D as torch datasets)
from models import build_student, build_teacher  # noqa: E402

from neural_distill.algorithms.distillation import Distillation, KLDivergence  # noqa: E402
from neural_distill.trainer import Trainer  # noqa: E402

BATCH_SIZE = 32
LEARNING_RATE = 0.01
TEMPERATURE = 4.0
ORG_LOSS_WEIGHT, KD_LOSS_WEIGHT = 0.1, 0.9


def labeled_cross_entropy(outputs, targets):
    """Cross-entropy over the labeled samples only (label -100 = unlabeled).

    Summing and dividing by max(count, 1) keeps a batch drawn entirely from the transfer set
    at 0 instead of the NaN that F.cross_entropy's mean over no sample would give.
    """
    total = F.cross_entropy(outputs, targets, ignore_index=-100, reduction="sum")
    return total / (targets != -100).sum().clamp_min(1)


def accuracy(model, dataset):
    x, y = dataset.tensors
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def adam_with_cosine(model, steps):
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)


def train_teacher(seed, folder, train_set, validation_set, epochs=40, batch_size=100):
    torch.manual_seed(seed)
    teacher = build_teacher()
    steps = epochs * -(-len(train_set) // batch_size)
    optimizer, scheduler = adam_with_cosine(teacher, steps)
    Trainer(model=teacher, train_dataloader=DataLoader(train_set, batch_size, shuffle=True),
            eval_dataloader=DataLoader(validation_set, batch_size=1000),
            max_duration=f"{epochs}ep", optimizers=optimizer, schedulers=scheduler,
            save_folder=folder, save_filename="teacher.pt", seed=seed, progress_bar=False).fit()
    return os.path.join(folder, "teacher.pt")


def train_student(seed, initial, train_set, validation_set, steps, algorithms=()):
    student = copy.deepcopy(initial)
    optimizer, scheduler = adam_with_cosine(student, steps)
    start = time.perf_counter()
    Trainer(model=student, train_dataloader=DataLoader(train_set, BATCH_SIZE, shuffle=True),
            eval_dataloader=DataLoader(validation_set, batch_size=1000),
            max_duration=f"{steps}ba", algorithms=algorithms, optimizers=optimizer,
            schedulers=scheduler, loss_fn=labeled_cross_entropy, seed=seed,
            progress_bar=False).fit()
    return student, time.perf_counter() - start


def run_seed(seed, steps, sets):
    labeled, transfer, validation, test = sets
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = train_teacher(seed, folder, labeled, validation)
        # Loaded back the way seed 004 shows: {checkpoint path: model}, tensors only.
        teacher = build_teacher()
        distillation = Distillation(teachers={checkpoint: teacher},
                                    kd_loss_fn=KLDivergence(temperature=TEMPERATURE),
                                    org_loss_weight=ORG_LOSS_WEIGHT,
                                    kd_loss_weight=KD_LOSS_WEIGHT)
    torch.manual_seed(1000 + seed)
    initial = build_student()
    results = {"teacher (CNN)": (accuracy(teacher, test), 0.0)}
    for name, train_set, algorithms in (("student, plain", labeled, []),
                                        ("student + Distillation", labeled, [distillation]),
                                        ("student + Distillation + transfer set", transfer,
                                         [distillation])):
        student, seconds = train_student(seed, initial, train_set, validation, steps, algorithms)
        results[name] = (accuracy(student, test), seconds)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=4000,
                        help="optimizer steps of every student run (the same budget for all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("neural_distill").setLevel(logging.WARNING)

    sets = (datasets.labeled(), datasets.labeled_plus_transfer(), datasets.validation(),
            datasets.test())
    start = time.perf_counter()
    table = {}
    for seed in args.seeds:
        for name, (acc, seconds) in run_seed(seed, args.steps, sets).items():
            table.setdefault(name, []).append(acc)
            print(f"seed {seed}  {name:38s} test accuracy {acc:6.1%}"
                  + (f"  ({seconds:.0f} s)" if seconds else ""), flush=True)
    print(f"\n{args.steps} optimizer steps per student, batch {BATCH_SIZE}, Adam lr "
          f"{LEARNING_RATE} with cosine decay; T={TEMPERATURE}, org/kd weights "
          f"{ORG_LOSS_WEIGHT}/{KD_LOSS_WEIGHT}; {time.perf_counter() - start:.0f} s in all")
    print("| run | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean |")
    print("| --- |" + " --- |" * (len(args.seeds) + 1))
    for name, values in table.items():
        cells = " | ".join(f"{v:.1%}" for v in values)
        print(f"| {name} | {cells} | {sum(values) / len(values):.1%} |")


if __name__ == "__main__":
    main()
