"""Minitron on MNIST-1D: a student cut from the teacher vs the same student from random init.

    OMP_NUM_THREADS=1 python examples/pruning_mnist1d/run.py     # ~10 min on one busy core

1. Train the teacher: the CNN of examples/mnist1d at 64 channels.
2. ``prune_width(teacher, keep=0.25, calibration_data)``: the two inner convolutions keep the
   quarter of their channels with the largest mean activation on 8 training batches.
3. Distil (KD, the reference documents' loop through ``prepare_compression``) for a fixed
   budget of steps, from the pruned start and from the same architecture freshly initialised,
   3 seeds each; test accuracy every ``--eval-every`` steps.

Prints and writes ``results.json`` and the README's table: parameters, CPU latency, agreement
with the teacher before training, accuracy before/after, and the steps the pruned start needs
to reach the random start's final accuracy.
"""

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "mnist1d"), os.path.join(HERE, "..", "..")]

from data import load_mnist1d  # noqa: E402
from models import Teacher  # noqa: E402

from neural_distill.config import (  # noqa: E402
    DistillationConfig, KnowledgeDistillationLossConfig)
from neural_distill.pruning import prune_width  # noqa: E402
from neural_distill.training import prepare_compression  # noqa: E402


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean()) * 100


def agreement(a, b, x):
    with torch.no_grad():
        return float((a(x).argmax(-1) == b(x).argmax(-1)).float().mean()) * 100


def parameters(model):
    return sum(p.numel() for p in model.parameters())


def latency_ms(model, x, repeats=50):
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(repeats + 5):
            start = time.perf_counter()
            model(x)
            if i >= 5:
                times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def train_teacher(x, y, channels, epochs, seed=0):
    torch.manual_seed(seed)
    teacher = Teacher(channels=channels)
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * 40)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        teacher.train()
        for index in torch.randperm(len(x), generator=generator).split(100):
            loss = F.cross_entropy(teacher(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return teacher.eval()


def reinitialised(model, seed):
    torch.manual_seed(seed)
    fresh = copy.deepcopy(model)
    for module in fresh.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return fresh


def distil(student, teacher, x, y, x_test, y_test, steps, eval_every, seed, workspace):
    """KD for ``steps`` optimizer steps; test accuracy every ``eval_every`` steps."""
    config = DistillationConfig(teacher_model=teacher, criterion=KnowledgeDistillationLossConfig(
        temperature=4.0, loss_types=["CE", "KL"], loss_weights=[0.5, 0.5]))
    manager = prepare_compression(student, config)
    manager.distillers[0].conf.tuning.workspace.path = workspace
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    curve, step, epoch = [(0, accuracy(student, x_test, y_test))], 0, 0
    manager.on_train_begin()
    while step < steps:
        manager.on_epoch_begin(epoch)
        student.train()
        for i, index in enumerate(torch.randperm(len(x), generator=generator).split(100)):
            manager.on_step_begin(i)
            output = student(x[index])
            loss = manager.on_after_compute_loss(x[index], output,
                                                 F.cross_entropy(output, y[index]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            manager.on_before_optimizer_step()
            optimizer.step()
            manager.on_after_optimizer_step()
            schedule.step()
            manager.on_step_end()
            step += 1
            if step % eval_every == 0:
                curve.append((step, accuracy(student, x_test, y_test)))
                student.train()
            if step >= steps:
                break
        manager.on_epoch_end()
        epoch += 1
    manager.on_train_end()
    return curve


def steps_to_reach(curve, target):
    return next((step for step, acc in curve if acc >= target), None)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--teacher-epochs", type=int, default=30)
    parser.add_argument("--keep", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(HERE, "results.json"))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    x, y, x_test, y_test = (torch.from_numpy(a) for a in load_mnist1d())
    started = time.time()
    teacher = train_teacher(x, y, args.channels, args.teacher_epochs)
    calibration = [x[i:i + 100] for i in range(0, 800, 100)]  # 8 batches
    pruned = prune_width(teacher, args.keep, calibration)
    sample1, sample256 = x_test[:1], x_test[:256]
    figures = {"teacher": {"accuracy": accuracy(teacher, x_test, y_test),
                           "parameters": parameters(teacher),
                           "latency_ms_batch1": latency_ms(teacher, sample1),
                           "latency_ms_batch256": latency_ms(teacher, sample256)},
               "pruned_start": {"parameters": parameters(pruned),
                                "accuracy_before_training": accuracy(pruned, x_test, y_test),
                                "agreement_with_teacher": agreement(pruned, teacher, x_test),
                                "latency_ms_batch1": latency_ms(pruned, sample1),
                                "latency_ms_batch256": latency_ms(pruned, sample256)},
               "args": vars(args), "runs": []}
    print(json.dumps(figures, indent=1), flush=True)
    with tempfile.TemporaryDirectory() as workspace:
        for seed in range(args.seeds):
            random_start = reinitialised(pruned, seed)
            run = {"seed": seed,
                   "random_accuracy_before": accuracy(random_start, x_test, y_test),
                   "random_agreement_before": agreement(random_start, teacher, x_test)}
            run["random_curve"] = distil(random_start, teacher, x, y, x_test, y_test,
                                         args.steps, args.eval_every, seed, workspace)
            run["pruned_curve"] = distil(copy.deepcopy(pruned), teacher, x, y, x_test, y_test,
                                         args.steps, args.eval_every, seed, workspace)
            target = run["random_curve"][-1][1]
            run["random_final"] = target
            run["pruned_final"] = run["pruned_curve"][-1][1]
            run["pruned_steps_to_random_final"] = steps_to_reach(run["pruned_curve"], target)
            figures["runs"].append(run)
            print(f"seed {seed}: random start final {target:.1f}% after {args.steps} steps; "
                  f"pruned start final {run['pruned_final']:.1f}%, reaches {target:.1f}% at "
                  f"step {run['pruned_steps_to_random_final']}", flush=True)
    figures["wall_s"] = round(time.time() - started, 1)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(figures, handle, indent=1)
    print(f"written {args.out} ({figures['wall_s']} s)")


if __name__ == "__main__":
    main()
