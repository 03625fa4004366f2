"""Intermediate-layer distillation on MNIST-1D: a narrow CNN student learns from a wide one.

The teacher is the 32-channel CNN of examples/mnist1d; the student has the same layout with
8 channels, so every mapped feature needs a trained 1x1-convolution matcher (8 -> 32
channels). Three students, same initial weights and budget:

  scratch              cross-entropy only
  logits               + T^2 KL on the logits (KnowledgeDistillationLoss, T=16)
  features             + MSE between matched features of the three conv layers, and KL
                       between the whole models' outputs (the "" layer), in one
                       IntermediateLayersKnowledgeDistillationLoss with add_origin_loss

    python examples/feature_distillation/mnist1d_intermediate.py [--seed 0] [--epochs 40]
"""

import argparse
import copy
import logging
import os
import sys
import time

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mnist1d"))

from neural_distill import Distillation  # noqa: E402
from neural_distill.criterion import (PyTorchIntermediateLayersKnowledgeDistillationLoss,  # noqa: E402,E501
                                      PyTorchKnowledgeDistillationLoss)

import datasets  # noqa: E402
from models import Teacher  # noqa: E402
from teacher import trained_teacher  # noqa: E402


def accuracy(model, dataset):
    x, y = dataset.tensors
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("neural_distill").setLevel(logging.WARNING)

    teacher = trained_teacher(seed=args.seed)
    train_set, validation_set, test_set = datasets.labeled(), datasets.validation(), \
        datasets.test()
    config = {"distillation": {"train": {
        "epoch": args.epochs, "progress_bar": sys.stderr.isatty(),
        "optimizer": {"Adam": {"learning_rate": 0.005}}, "lr_schedule": {"cosine": {}}}},
        "tuning": {"random_seed": args.seed}}

    def kd():
        return PyTorchKnowledgeDistillationLoss(temperature=16.0, loss_types=["CE", "KL"],
                                                loss_weights=[0.5, 0.5])

    def features():
        return PyTorchIntermediateLayersKnowledgeDistillationLoss(
            layer_mappings=[["features.0"], ["features.2"], ["features.4"], [""]],
            loss_types=["MSE", "MSE", "MSE", "KL"], loss_weights=[0.3, 0.3, 0.3, 1.0],
            add_origin_loss=True)

    variants = {
        "scratch": lambda: PyTorchKnowledgeDistillationLoss(loss_weights=[1.0, 0.0]),
        "logits": kd,
        "features": features,
    }
    torch.manual_seed(args.seed)
    initial = Teacher(channels=8)
    rows = [("teacher (32 channels)", accuracy(teacher, test_set), None)]
    for name, make_criterion in variants.items():
        distiller = Distillation(copy.deepcopy(config))
        distiller.student_model = copy.deepcopy(initial)
        distiller.teacher_model = teacher
        distiller.criterion = make_criterion()
        distiller.train_dataloader = DataLoader(train_set, batch_size=64, shuffle=True)
        distiller.eval_dataloader = DataLoader(validation_set, batch_size=1000)
        start = time.perf_counter()
        best = distiller.fit()
        rows.append((f"student (8 ch), {name}", accuracy(best, test_set),
                     time.perf_counter() - start))
        if name == "features":
            kinds = [type(m).__name__ for m in distiller.criterion.matchers]
            print(f"matchers created for the mapped layers: {kinds}")

    print(f"\nMNIST-1D, seed {args.seed}, {args.epochs} epochs")
    print(f"{'run':<34}{'test acc':>10}{'time (s)':>10}")
    for name, acc, seconds in rows:
        print(f"{name:<34}{acc:>10.1%}{'' if seconds is None else f'{seconds:.1f}':>10}")


if __name__ == "__main__":
    main()
