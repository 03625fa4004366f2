"""MNIST-1D: the loss catalog side by side, one table over seeds.

The same CNN teacher per seed, the same initial student, optimizer (Adam, lr 0.01, cosine
decay, batch 32) and number of optimizer steps for every run; only the criterion (and, for the
last row, the data) changes:

  student alone       KnowledgeDistillationLoss with loss_weights [1, 0]
  KD                  0.5 * CE + 0.5 * T^2 KL, T=16 (this folder's distill.yaml)
  KD + logit std.     the same with logit_standardization: true, T=2, weights [0.1, 0.9]
  DKD                 alpha 1, beta 8, T=4 (the DKD paper's CIFAR settings, no warm-up);
                      and beta 2
  DIST                beta 2, gamma 2, T=4 (the DIST paper's CIFAR settings)
  KD + transfer set   KD on the labeled data plus 20,000 unlabeled samples

The best epoch is picked on 1000 validation samples; the test set is only used for the table.
The budget is smaller than compare.py's (5,000 steps instead of 12,500) to keep 21 runs short.

    python examples/mnist1d/catalog.py [--seeds 0 1 2] [--quick] [--only DKD]
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

LABELED_EPOCHS = 40      # 40 x 125 steps = 5,000 optimizer steps
TRANSFER_EPOCHS = 7      # 7 x 750 steps = 5,250 optimizer steps

KD = {"KnowledgeDistillationLoss": {"temperature": 16.0, "loss_types": ["CE", "KL"],
                                    "loss_weights": [0.5, 0.5]}}
VARIANTS = [
    ("student alone", "labeled",
     {"KnowledgeDistillationLoss": {"temperature": 16.0, "loss_types": ["CE", "KL"],
                                    "loss_weights": [1.0, 0.0]}}),
    ("KD (T=16)", "labeled", KD),
    ("KD + logit standardization (T=2)", "labeled",
     {"KnowledgeDistillationLoss": {"temperature": 2.0, "loss_types": ["CE", "KL"],
                                    "loss_weights": [0.1, 0.9],
                                    "logit_standardization": True}}),
    ("DKD (alpha 1, beta 8, T=4)", "labeled",
     {"DecoupledKnowledgeDistillationLoss": {"alpha": 1.0, "beta": 8.0, "temperature": 4.0,
                                             "loss_weights": [1.0, 1.0]}}),
    ("DKD (alpha 1, beta 2, T=4)", "labeled",
     {"DecoupledKnowledgeDistillationLoss": {"alpha": 1.0, "beta": 2.0, "temperature": 4.0,
                                             "loss_weights": [1.0, 1.0]}}),
    ("DIST (beta 2, gamma 2, T=4)", "labeled",
     {"DISTLoss": {"beta": 2.0, "gamma": 2.0, "temperature": 4.0,
                   "loss_weights": [1.0, 1.0]}}),
    ("KD + 20k transfer set", "transfer", KD),
]


def accuracy(model, dataset):
    x, y = dataset.tensors
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def run(base, criterion, epochs, teacher, train_set, validation_set):
    config = copy.deepcopy(base)
    train = config["distillation"]["train"]
    train["criterion"] = copy.deepcopy(criterion)
    train["epoch"] = epochs
    distiller = Distillation(config)
    distiller.student_model = build_student()
    distiller.teacher_model = teacher
    distiller.train_dataloader = DataLoader(train_set, shuffle=True,
                                            batch_size=train["dataloader"]["batch_size"])
    distiller.eval_dataloader = DataLoader(validation_set, batch_size=1000)
    return distiller.fit()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of the budget (a smoke run, not the result)")
    parser.add_argument("--only", default="",
                        help="run only the rows whose name contains this text")
    args = parser.parse_args()
    variants = [v for v in VARIANTS if args.only in v[0]]
    torch.set_num_threads(1)
    logging.getLogger("neural_distill").setLevel(logging.WARNING)
    base = DistillationConf(os.path.join(HERE, "distill.yaml")).to_dict()
    base["distillation"]["train"]["progress_bar"] = False
    scale = 10 if args.quick else 1
    test_set, validation_set = datasets.test(), datasets.validation()
    data = {"labeled": datasets.labeled()}
    results = {name: [] for name, _, _ in variants}
    results["teacher (CNN)"] = []
    start = time.perf_counter()
    for seed in args.seeds:
        base["tuning"]["random_seed"] = seed
        teacher = trained_teacher(seed=seed)
        results["teacher (CNN)"].append(accuracy(teacher, test_set))
        data["transfer"] = datasets.labeled_plus_transfer(seed=1000 + seed)
        for name, which, criterion in variants:
            epochs = LABELED_EPOCHS if which == "labeled" else TRANSFER_EPOCHS
            torch.manual_seed(seed)  # the same initial student for every run of a seed
            best = run(base, criterion, max(1, epochs // scale), teacher, data[which],
                       validation_set)
            results[name].append(accuracy(best, test_set))
            print(f"seed {seed}  {name:<34} {results[name][-1]:.1%}  "
                  f"({time.perf_counter() - start:.0f} s so far)", flush=True)

    print(f"\n| run | {' | '.join(f'seed {s}' for s in args.seeds)} | mean |")
    print(f"| --- |{' --- |' * (len(args.seeds) + 1)}")
    for name in ["teacher (CNN)"] + [name for name, _, _ in variants]:
        values = results[name]
        cells = " | ".join(f"{v:.1%}" for v in values)
        print(f"| {name} | {cells} | {sum(values) / len(values):.1%} |")
    print(f"\n{time.perf_counter() - start:.0f} s in all{' (quick run)' if args.quick else ''}")


if __name__ == "__main__":
    main()
