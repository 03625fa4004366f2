"""MNIST-1D: does distillation make the 40-100-100-10 MLP student better? Side by side.

Trains the CNN teacher, then the same student (same initial weights, same optimizer, same
number of optimizer steps) three ways with neural_distill, from the shipped `distill.yaml`:

  scratch            the student alone: loss_weights [1, 0] (the teacher's term weighs nothing)
  kd (labeled)       0.5 * CE + 0.5 * T^2 * KL on the 4000 labeled samples
  kd + transfer      the same, plus 20,000 unlabeled samples that get the distillation term only

and prints test accuracy and time. The best epoch is picked on a separate validation set; the
test set is only used for the table.

    python examples/mnist1d/compare.py [--seed 0] [--quick]
"""

import argparse
import copy
import logging
import os
import sys
import time

import torch
from torch.utils.data import DataLoader

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from neural_distill import Distillation, DistillationConf  # noqa: E402

import datasets  # noqa: E402
from models import build_student  # noqa: E402
from teacher import trained_teacher  # noqa: E402

LABELED_EPOCHS = 100     # 100 x 125 steps = 12,500 optimizer steps
TRANSFER_EPOCHS = 17     # 17 x 750 steps = 12,750 optimizer steps


def accuracy(model, dataset):
    x, y = dataset.tensors
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def run_variant(base_config, overrides, student, teacher, train_set, validation_set,
                with_distiller=False):
    config = copy.deepcopy(base_config)
    train = config["distillation"]["train"]
    train.update(overrides.get("train", {}))
    train["criterion"]["KnowledgeDistillationLoss"].update(overrides.get("criterion", {}))
    distiller = Distillation(config)
    distiller.student_model = student
    distiller.teacher_model = teacher
    batch_size = train["dataloader"]["batch_size"]
    distiller.train_dataloader = DataLoader(train_set, batch_size=batch_size, shuffle=True)
    distiller.eval_dataloader = DataLoader(validation_set, batch_size=1000)
    start = time.perf_counter()
    best = distiller.fit()
    seconds = time.perf_counter() - start
    return (best, seconds, distiller) if with_distiller else (best, seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=os.path.join(HERE, "distill.yaml"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of the training budget (a smoke run, not the result)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny models: more threads mostly add overhead
    logging.getLogger("neural_distill").setLevel(logging.WARNING)

    base = DistillationConf(args.config).to_dict()
    base["tuning"]["random_seed"] = args.seed
    base["distillation"]["train"]["progress_bar"] = sys.stderr.isatty()
    scale = 10 if args.quick else 1

    start = time.perf_counter()
    teacher = trained_teacher(seed=args.seed)
    teacher_time = time.perf_counter() - start
    test_set, validation_set = datasets.test(), datasets.validation()
    labeled = datasets.labeled()
    transfer = datasets.labeled_plus_transfer(seed=1000 + args.seed)

    variants = [
        ("student, scratch", labeled, {"train": {"epoch": LABELED_EPOCHS // scale},
                                       "criterion": {"loss_weights": [1.0, 0.0]}}),
        ("student, kd (labeled)", labeled, {"train": {"epoch": LABELED_EPOCHS // scale}}),
        ("student, kd + 20k transfer", transfer,
         {"train": {"epoch": max(1, TRANSFER_EPOCHS // scale)}}),
    ]
    rows = [("teacher (CNN)", accuracy(teacher, test_set), teacher_time)]
    for name, train_set, overrides in variants:
        torch.manual_seed(args.seed)  # the same initial student for every variant
        best, seconds = run_variant(base, overrides, build_student(), teacher, train_set,
                                    validation_set)
        rows.append((name, accuracy(best, test_set), seconds))
        print(f"{name:<28} test accuracy {rows[-1][1]:.1%}  ({seconds:.1f} s)", flush=True)

    print(f"\nMNIST-1D, seed {args.seed}{' (quick run)' if args.quick else ''}")
    print(f"{'run':<28}{'test acc':>10}{'time (s)':>10}")
    for name, acc, seconds in rows:
        print(f"{name:<28}{acc:>10.1%}{seconds:>10.1f}")


if __name__ == "__main__":
    main()
