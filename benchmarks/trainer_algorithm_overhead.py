"""Trainer + Distillation algorithm vs a hand-written PyTorch loop doing the same math.

Both train the same student (same initial weights) against the same teacher on the same
in-memory batches with the same optimizer (SGD, momentum 0.9) and loss:
    0.1 * CE(student, labels) + 0.9 * T^2 * KL(softmax(t/T) || softmax(s/T))   (batch mean)
``ours`` is ``neural_distill.trainer.Trainer(max_duration='1ep', algorithms=[Distillation(...)])``
without evaluation or checkpoints. Runs alternate (hand, ours, hand, ours, ...) so drift in
machine load hits both; the median of the repeats is reported. The ratio ours/hand is the
per-step cost of the Trainer, its event dispatch and the algorithm, plus its fixed per-fit costs.

    python benchmarks/trainer_algorithm_overhead.py [--steps 300] [--repeats 5] [--threads 1]
"""

import copy

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from _timing import alternate_medians, torch_benchmark_args
from kd_step_overhead import make_models  # the same teacher and student

TEMPERATURE = 4.0
ORG_WEIGHT, KD_WEIGHT = 0.1, 0.9


def hand_written(student, teacher, loader, lr):
    """The loop a careful user writes by hand."""
    optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9)
    teacher.eval()
    student.train()
    for x, y in loader:
        out = student(x)
        student_loss = F.cross_entropy(out, y)
        with torch.no_grad():
            t = teacher(x)
        kd = F.kl_div(F.log_softmax(out / TEMPERATURE, -1), F.log_softmax(t / TEMPERATURE, -1),
                      reduction="batchmean", log_target=True) * TEMPERATURE ** 2
        loss = ORG_WEIGHT * student_loss + KD_WEIGHT * kd
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return student


def ours(student, teacher, loader, lr):
    from neural_distill.algorithms.distillation import Distillation, KLDivergence
    from neural_distill.trainer import Trainer

    distillation = Distillation(teachers=teacher, kd_loss_fn=KLDivergence(TEMPERATURE),
                                org_loss_weight=ORG_WEIGHT, kd_loss_weight=KD_WEIGHT)
    Trainer(model=student, train_dataloader=loader, max_duration="1ep",
            algorithms=[distillation], device="cpu", progress_bar=False,
            optimizers=torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9)).fit()
    return student


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
    b = ours(copy.deepcopy(student0), teacher, DataLoader(batches[:1], batch_size=None), 0.01)
    max_diff = max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))

    medians = alternate_medians({
        "hand": lambda: hand_written(copy.deepcopy(student0), teacher, loader, 0.01),
        "ours": lambda: ours(copy.deepcopy(student0), teacher, loader, 0.01),
    }, args.repeats)
    hand, mine = medians["hand"], medians["ours"]
    print(f"Trainer + Distillation algorithm, MLP teacher 784-1024-1024-10 -> student "
          f"784-256-10, batch {args.batch_size}, {args.steps} steps, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"  same math check: max |param diff| after one step = {max_diff:.2e}")
    print(f"  hand-written loop      : {hand * 1e3 / args.steps:8.3f} ms/step")
    print(f"  Trainer + Distillation : {mine * 1e3 / args.steps:8.3f} ms/step")
    print(f"  ratio ours/hand        : {mine / hand:.3f}")


if __name__ == "__main__":
    main()
