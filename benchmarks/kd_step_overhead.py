"""Built-in KD loop vs a hand-written PyTorch loop doing the same math, side by side.

Both train the same student (same initial weights) against the same teacher on the same
in-memory batches with the same optimizer and loss:
    0.5 * CE(student, labels) + 0.5 * T^2 * KL(softmax(t/T) || softmax(s/T))   (batch mean)
Runs alternate (hand, ours, hand, ours, ...) so drift in machine load hits both; the median
of the repeats is reported. The ratio ours/hand is the overhead of the library per step,
including its fixed per-fit costs (workspace, best-model copy, checkpoint).

    python benchmarks/kd_step_overhead.py [--steps 300] [--repeats 5]
"""

import copy
import tempfile

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from _timing import alternate_medians, fit_one_epoch, torch_benchmark_args

TEMPERATURE = 4.0


def make_models(in_features, classes):
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(in_features, 1024), nn.ReLU(), nn.Linear(1024, 1024),
                            nn.ReLU(), nn.Linear(1024, classes))
    student = nn.Sequential(nn.Linear(in_features, 256), nn.ReLU(), nn.Linear(256, classes))
    return teacher, student


def hand_written(student, teacher, loader, lr, epochs=1):
    """The loop a careful user writes by hand."""
    optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9)
    teacher.eval()
    student.train()
    for x, y in (batch for _ in range(epochs) for batch in loader):
        out = student(x)
        student_loss = F.cross_entropy(out, y)
        with torch.no_grad():
            t = teacher(x)
        kd = F.kl_div(F.log_softmax(out / TEMPERATURE, -1), F.log_softmax(t / TEMPERATURE, -1),
                      reduction="batchmean", log_target=True) * TEMPERATURE ** 2
        loss = 0.5 * student_loss + 0.5 * kd
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return student


CRITERION = {"KnowledgeDistillationLoss": {
        "temperature": TEMPERATURE, "loss_types": ["CE", "KL"], "loss_weights": [0.5, 0.5]}}


def ours(student, teacher, loader, lr, workspace):
    return fit_one_epoch(CRITERION, student, teacher, loader, lr, workspace)


def main():
    args = torch_benchmark_args(__doc__.split("\n")[0], steps=300, batch_size=128)

    in_features, classes = 784, 10
    teacher, student0 = make_models(in_features, classes)
    generator = torch.Generator().manual_seed(0)
    n = args.steps * args.batch_size
    x = torch.randn(n, in_features, generator=generator)
    y = torch.randint(0, classes, (n,), generator=generator)
    # Batches are pre-built so data loading, identical for both, does not dilute the ratio.
    batches = [(x[i:i + args.batch_size], y[i:i + args.batch_size])
               for i in range(0, n, args.batch_size)]
    loader = DataLoader(batches, batch_size=None)

    # Same math: one step each from the same weights gives the same student.
    a = hand_written(copy.deepcopy(student0), teacher, batches[:1], 0.01)
    with tempfile.TemporaryDirectory() as ws:
        b = ours(copy.deepcopy(student0), teacher, DataLoader(batches[:1], batch_size=None),
                 0.01, ws)
    max_diff = max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))

    with tempfile.TemporaryDirectory() as ws:
        medians = alternate_medians({
            "hand": lambda: hand_written(copy.deepcopy(student0), teacher, loader, 0.01),
            "ours": lambda: ours(copy.deepcopy(student0), teacher, loader, 0.01, ws),
        }, args.repeats)
    hand, mine = medians["hand"], medians["ours"]
    print(f"KD step, MLP teacher 784-1024-1024-10 -> student 784-256-10, batch "
          f"{args.batch_size}, {args.steps} steps, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    print(f"  same math check: max |param diff| after one step = {max_diff:.2e}")
    print(f"  hand-written loop : {hand * 1e3 / args.steps:8.3f} ms/step")
    print(f"  neural_distill fit: {mine * 1e3 / args.steps:8.3f} ms/step")
    print(f"  ratio ours/hand   : {mine / hand:.3f}")


if __name__ == "__main__":
    main()
