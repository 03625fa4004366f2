"""Teacher-output cache: epoch time with a warm cache vs a student-only loop and vs no cache.

The MLP pair of the cache issue: teacher 784-1200-1200-10, student 784-400-400-10, batch 128,
KD loss (0.5 CE + 0.5 T^2 KL, T=4). Three contenders, alternating, median epoch time:

  hand, student only : a hand-written loop training the student on its labels alone (the floor:
                       no teacher, no KL term)
  ours, no cache     : the built-in loop, teacher run on every batch
  ours, warm cache   : the built-in loop with ``teacher_cache: {enabled: true}``; the first epoch
                       fills the cache and is not counted

Data are shuffled every epoch (per-sample keys make that a hit). The cached run is also checked
to train the same student as the uncached one (dense cache: bit-identical).

    python benchmarks/teacher_cache.py [--steps 64] [--repeats 3] [--threads 1] [--cpu-time]

--cpu-time times with the main thread's CPU time instead of the wall clock: on a shared, loaded
machine other processes' turns on the CPU then do not count. Use it with --threads 1 (every
contender then runs on the main thread alone, so on an idle machine both clocks agree).
"""

import copy
import json
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _timing import torch_benchmark_args

TEMPERATURE = 4.0


def make_models():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(784, 1200), nn.ReLU(), nn.Linear(1200, 1200), nn.ReLU(),
                            nn.Linear(1200, 10))
    student = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(),
                            nn.Linear(400, 10))
    return teacher, student


def loader(x, y, batch_size, seed=0):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def hand_student_only(student, data, epochs):
    """Seconds per epoch of the loop a user writes to train the student alone."""
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for x, y in data:
            loss = F.cross_entropy(student(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def ours(student, teacher, data, epochs, cache):
    """Seconds per epoch (after the first) of our built-in loop; also the trained student."""
    from neural_distill import Distillation

    with tempfile.TemporaryDirectory() as workspace:
        distiller = Distillation({
            "distillation": {"train": {
                "epoch": epochs, "progress_bar": False,
                "optimizer": {"SGD": {"learning_rate": 0.01, "momentum": 0.9}},
                "criterion": {"KnowledgeDistillationLoss": {
                    "temperature": TEMPERATURE, "loss_types": ["CE", "KL"],
                    "loss_weights": [0.5, 0.5]}},
                "teacher_cache": {"enabled": cache}}},
            # Checkpoints cost the same with or without the cache (measured on their own by
            # checkpoint_overhead.py); the hand-written loop writes none either.
            "tuning": {"workspace": {"path": workspace, "checkpoint_every_epochs": 0}}})
        distiller.student_model = student
        distiller.teacher_model = teacher
        distiller.train_dataloader = data
        trained = distiller.fit()
        times = [record["time_s"] for record in distiller.history if "time_s" in record]
    return statistics.median(times[1:]), trained


def main():
    args = torch_benchmark_args(__doc__.split("\n")[0], steps=64, batch_size=128, extra=lambda p:
                                p.add_argument("--cpu-time", action="store_true",
                                               help="main-thread CPU time, not wall time"))
    if args.cpu_time:  # the loop's epoch timer and the hand-written loop's both read this
        time.perf_counter = time.thread_time
    epochs = 3
    teacher, student0 = make_models()
    generator = torch.Generator().manual_seed(1)
    n = args.steps * args.batch_size
    x = torch.randn(n, 784, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)

    _, uncached = ours(copy.deepcopy(student0), teacher, loader(x, y, args.batch_size), 2, False)
    _, cached = ours(copy.deepcopy(student0), teacher, loader(x, y, args.batch_size), 2, True)
    identical = all(torch.equal(p, q) for p, q in zip(uncached.state_dict().values(),
                                                      cached.state_dict().values()))

    times = {"hand, student only": [], "ours, no cache": [], "ours, warm cache": []}
    for _ in range(args.repeats):
        times["hand, student only"].append(hand_student_only(
            copy.deepcopy(student0), loader(x, y, args.batch_size), epochs))
        times["ours, no cache"].append(ours(copy.deepcopy(student0), teacher,
                                            loader(x, y, args.batch_size), epochs, False)[0])
        times["ours, warm cache"].append(ours(copy.deepcopy(student0), teacher,
                                              loader(x, y, args.batch_size), epochs, True)[0])
    medians = {name: statistics.median(values) for name, values in times.items()}
    hand, uncached_t, warm = (medians[k] for k in times)
    print(f"Teacher cache, MLP 784-1200-1200-10 -> 784-400-400-10, batch {args.batch_size}, "
          f"{args.steps} steps/epoch, shuffled, {torch.get_num_threads()} threads, median of "
          f"{args.repeats} x {epochs - 1} epochs, {'CPU' if args.cpu_time else 'wall'} time")
    print(f"  cached run trains the same student as the uncached one: {identical}")
    for name, value in medians.items():
        print(f"  {name:20s}: {value * 1e3 / args.steps:8.3f} ms/step")
    print(f"  warm cache / student-only loop : {warm / hand:.3f}  (target <= 1.15)")
    print(f"  no cache / warm cache (speed-up): {uncached_t / warm:.2f}x  (target >= 2.5)")
    print(json.dumps({"warm_over_student_only": round(warm / hand, 3),
                      "speedup_vs_uncached": round(uncached_t / warm, 2),
                      "bit_identical": identical}))


if __name__ == "__main__":
    main()
