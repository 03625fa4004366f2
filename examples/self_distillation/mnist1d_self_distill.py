"""Self-distillation on MNIST-1D: a CNN's deepest head teaches its two shallower heads.

The network has a classifier head after each of its three conv blocks. Both runs train every
head with cross-entropy (deep supervision) in the same user loop, with the same initial
weights and budget; the second run adds SelfKnowledgeDistillationLoss through the
`on_after_compute_loss` hook:
  - KL (T=3, scaled by T^2) from the deepest head's logits to each shallower head's,
  - L2 from the deepest head's hidden features to each shallower head's.
It prints each head's test accuracy and the ensemble's (mean of the heads' probabilities).

    python examples/self_distillation/mnist1d_self_distill.py [--seed 0] [--epochs 30]
"""

import argparse
import copy
import logging
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mnist1d"))

from neural_distill import Distillation  # noqa: E402
from neural_distill.criterion import PyTorchSelfKnowledgeDistillationLoss  # noqa: E402

import datasets  # noqa: E402

HEADS = ("head1_logits", "head2_logits", "logits")


class Head(nn.Module):
    """Flatten -> 64 hidden units -> 10 classes; the hidden units are what L2 compares."""

    def __init__(self, features):
        super().__init__()
        self.hidden = nn.Linear(features, 64)
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        hidden = torch.relu(self.hidden(x.flatten(1)))
        return hidden, self.out(hidden)


class MultiHeadCNN(nn.Module):
    def __init__(self, channels=16):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv1d(1, channels, 5, padding=2), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv1d(channels, channels, 3, stride=2, padding=1),
                                    nn.ReLU())
        self.block3 = nn.Sequential(nn.Conv1d(channels, channels, 3, stride=2, padding=1),
                                    nn.ReLU())
        self.head1, self.head2, self.head3 = Head(channels * 40), Head(channels * 20), \
            Head(channels * 10)

    def forward(self, x):
        a = self.block1(x.unsqueeze(1))
        b = self.block2(a)
        c = self.block3(b)
        (h1, z1), (h2, z2), (h3, z3) = self.head1(a), self.head2(b), self.head3(c)
        return {"logits": z3, "head1_logits": z1, "head2_logits": z2,
                "head1_hidden": h1, "head2_hidden": h2, "head3_hidden": h3}


def self_distillation(weights, temperature):
    return PyTorchSelfKnowledgeDistillationLoss(
        layer_mappings=[
            [["head1_logits", "logits"], ["head2_logits", "logits"]],
            [["head1_hidden", "head3_hidden"], ["head2_hidden", "head3_hidden"]],
        ],
        temperature=temperature, loss_types=["KL", "L2"], loss_weights=weights,
        add_origin_loss=True)


def train(model, distiller, loader, epochs, lr):
    """A user loop: deep supervision on every head, the hooks add self-distillation."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * len(loader))
    distiller.on_train_begin(loader)
    for epoch in range(epochs):
        distiller.on_epoch_begin(epoch)
        model.train()
        for step, (x, y) in enumerate(loader):
            distiller.on_step_begin(step)
            output = model(x)
            loss = sum(F.cross_entropy(output[head], y) for head in HEADS)
            loss = distiller.on_after_compute_loss(x, output, loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            distiller.on_before_optimizer_step()
            optimizer.step()
            distiller.on_after_optimizer_step()
            schedule.step()
            distiller.on_step_end()
        distiller.on_epoch_end()
    distiller.on_train_end()


def head_accuracies(model, dataset):
    x, y = dataset.tensors
    model.eval()
    with torch.no_grad():
        output = model(x)
    probabilities = [F.softmax(output[h], -1) for h in HEADS]
    scores = [(p.argmax(1) == y).float().mean().item() for p in probabilities]
    ensemble = (torch.stack(probabilities).mean(0).argmax(1) == y).float().mean().item()
    return scores + [ensemble]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--temperature", type=float, default=3.0)
    parser.add_argument("--kl-weight", type=float, default=1.0)
    parser.add_argument("--l2-weight", type=float, default=0.05)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("neural_distill").setLevel(logging.WARNING)

    train_set, validation_set, test_set = datasets.labeled(), datasets.validation(), \
        datasets.test()
    torch.manual_seed(args.seed)
    initial = MultiHeadCNN()
    results = {}
    for name, weights in (("deep supervision only", [0.0, 0.0]),
                          ("+ self-distillation", [args.kl_weight, args.l2_weight])):
        torch.manual_seed(args.seed)
        model = copy.deepcopy(initial)
        distiller = Distillation({"tuning": {"random_seed": args.seed}})
        distiller.student_model = model
        distiller.criterion = self_distillation(weights, args.temperature)
        distiller.eval_dataloader = DataLoader(validation_set, batch_size=1000)
        distiller.train_func = lambda m: train(
            m, distiller, DataLoader(train_set, batch_size=64, shuffle=True), args.epochs, args.lr)
        best = distiller.fit()
        results[name] = head_accuracies(best, test_set)

    print(f"\nMNIST-1D test accuracy, seed {args.seed}, {args.epochs} epochs")
    print(f"{'run':<24}" + "".join(f"{c:>10}" for c in ("head 1", "head 2", "head 3",
                                                        "ensemble")))
    for name, scores in results.items():
        print(f"{name:<24}" + "".join(f"{s:>10.1%}" for s in scores))


if __name__ == "__main__":
    main()
