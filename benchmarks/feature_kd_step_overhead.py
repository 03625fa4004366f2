"""Intermediate-layer KD: built-in loop vs a hand-written loop with the same hooks and losses.

Teacher and student are 1-D CNNs of different widths, so both sides need trained 1x1-conv
matchers. Loss per step, on both sides:
    CE(student, labels) + 0.5 * MSE(M1(s.conv1), t.conv1) + 0.5 * MSE(M2(s.conv2), t.conv2)
The hand-written loop captures features with forward hooks, runs the teacher under no_grad in
eval mode and trains the matchers with the student: what a careful user writes by hand.
Runs alternate and the median of the repeats is reported.

    python benchmarks/feature_kd_step_overhead.py [--steps 200] [--repeats 5]
"""

import copy
import tempfile

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from _timing import alternate_medians, fit_one_epoch, torch_benchmark_args

LENGTH, CLASSES = 64, 10


class ConvNet(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, padding=2)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)
        self.fc = nn.Linear(channels * LENGTH, CLASSES)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h))
        return self.fc(h.flatten(1))


def hand_written(student, teacher, loader, lr):
    captured = {"s": {}, "t": {}}

    def recorder(side, name):
        def hook(module, inputs, output):
            captured[side][name] = output
        return hook

    handles = [getattr(model, name).register_forward_hook(recorder(side, name))
               for side, model in (("s", student), ("t", teacher)) for name in ("conv1", "conv2")]
    matchers = nn.ModuleList([nn.Conv1d(student.conv1.out_channels, teacher.conv1.out_channels, 1),
                              nn.Conv1d(student.conv2.out_channels, teacher.conv2.out_channels, 1)])
    optimizer = torch.optim.SGD(list(student.parameters()) + list(matchers.parameters()), lr=lr,
                                momentum=0.9)
    teacher.eval()
    student.train()
    for x, y in loader:
        out = student(x)
        loss = F.cross_entropy(out, y)
        with torch.no_grad():
            teacher(x)
        for i, name in enumerate(("conv1", "conv2")):
            loss = loss + 0.5 * F.mse_loss(matchers[i](captured["s"][name]), captured["t"][name])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    for handle in handles:
        handle.remove()
    return student


CRITERION = {"IntermediateLayersKnowledgeDistillationLoss": {
        "layer_mappings": [["conv1"], ["conv2"]], "loss_types": ["MSE", "MSE"],
        "loss_weights": [0.5, 0.5], "add_origin_loss": True}}


def ours(student, teacher, loader, lr, workspace):
    return fit_one_epoch(CRITERION, student, teacher, loader, lr, workspace)


def main():
    args = torch_benchmark_args(__doc__.split("\n")[0], steps=200, batch_size=64)

    torch.manual_seed(0)
    teacher, student0 = ConvNet(64), ConvNet(16)
    generator = torch.Generator().manual_seed(0)
    n = args.steps * args.batch_size
    x = torch.randn(n, 1, LENGTH, generator=generator)
    y = torch.randint(0, CLASSES, (n,), generator=generator)
    batches = [(x[i:i + args.batch_size], y[i:i + args.batch_size])
               for i in range(0, n, args.batch_size)]
    loader = DataLoader(batches, batch_size=None)

    with tempfile.TemporaryDirectory() as ws:
        medians = alternate_medians({
            "hand": lambda: hand_written(copy.deepcopy(student0), teacher, loader, 0.01),
            "ours": lambda: ours(copy.deepcopy(student0), teacher, loader, 0.01, ws),
        }, args.repeats)
    hand, mine = medians["hand"], medians["ours"]
    print(f"Intermediate-layer KD step, Conv1d teacher (64 ch) -> student (16 ch), 2 mapped "
          f"layers with 1x1-conv matchers, batch {args.batch_size}, {args.steps} steps, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"  hand-written loop : {hand * 1e3 / args.steps:8.3f} ms/step")
    print(f"  neural_distill fit: {mine * 1e3 / args.steps:8.3f} ms/step")
    print(f"  ratio ours/hand   : {mine / hand:.3f}")


if __name__ == "__main__":
    main()
