"""Throughput of `neural-distill run` on 2 processes (torchrun, gloo) vs 1, and bf16 vs fp32.

Both process counts train the same YAML experiment (MLP teacher 784-1200-1200-10 -> student
784-400-400-10, KD loss) for the same epochs on the same data; each process of the 2-process
run reads half of every epoch through its DistributedSampler. Runs alternate (1, 2, 1, 2, ...)
and the median epoch time after the first (warm-up) epoch gives samples/s. On a 2-core machine
each process gets one thread, so 2 processes can at best double the 1-process throughput with
one thread; the "1 process, 2 threads" line is the fair single-process alternative.

bf16 vs fp32: the same built-in loop in this process, alternating, median time per step.

    python benchmarks/distributed_throughput.py [--samples 8192] [--repeats 3]
"""

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROJECT = '''
import torch
from torch import nn

def teacher():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(784, 1200), nn.ReLU(), nn.Linear(1200, 1200), nn.ReLU(),
                         nn.Linear(1200, 10))

def student():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(),
                         nn.Linear(400, 10))
'''

CONFIG = """
model: {{student: {{factory: project.py:student}}, teacher: {{factory: project.py:teacher}}}}
device: cpu
threads: {threads}
distillation:
  train:
    epoch: {epochs}
    progress_bar: false
    precision: {precision}
    optimizer: {{SGD: {{learning_rate: 0.01, momentum: 0.9}}}}
    criterion: {{KnowledgeDistillationLoss: {{temperature: 4.0, loss_types: [CE, KL]}}}}
    dataloader: {{batch_size: {batch}, dataset: {{npz: {{path: data.npz}}}}}}
tuning: {{workspace: {{path: ws}}}}
"""


def run(folder, processes, threads, batch, epochs, precision="fp32"):
    config = os.path.join(folder, f"p{processes}t{threads}{precision}.yaml")
    with open(config, "w") as handle:
        handle.write(CONFIG.format(threads=threads, epochs=epochs, batch=batch,
                                   precision=precision))
    before = set(glob.glob(os.path.join(folder, "ws", "run-*")))
    command = [sys.executable, "-m", "neural_distill.cli", "run", config]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={processes}", "-m", "neural_distill.cli", "run", config]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run(command, cwd=folder, env=env, check=True, capture_output=True)
    (new_run,) = set(glob.glob(os.path.join(folder, "ws", "run-*"))) - before
    with open(os.path.join(new_run, "metrics.jsonl")) as handle:
        times = [json.loads(line)["time_s"] for line in handle if '"time_s"' in line]
    return statistics.median(times[1:])  # the first epoch warms up


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "project.py"), "w") as handle:
            handle.write(PROJECT)
        rng = np.random.default_rng(0)
        np.savez(os.path.join(folder, "data.npz"),
                 x=rng.normal(size=(args.samples, 784)).astype(np.float32),
                 y=rng.integers(0, 10, args.samples))
        contenders = {"1 process, 1 thread": (1, 1, args.batch_size),
                      "1 process, 2 threads": (1, 2, args.batch_size),
                      "2 processes, 1 thread each": (2, 1, args.batch_size // 2)}
        times = {name: [] for name in contenders}
        for _ in range(args.repeats):
            for name, (processes, threads, batch) in contenders.items():
                times[name].append(run(folder, processes, threads, batch, args.epochs))
        print(f"KD epoch of {args.samples} samples, global batch {args.batch_size}, "
              f"median of {args.repeats} runs x {args.epochs - 1} epochs, {os.cpu_count()} cores")
        base = statistics.median(times["1 process, 1 thread"])
        for name, values in times.items():
            epoch = statistics.median(values)
            print(f"  {name:28s}: {args.samples / epoch:8.0f} samples/s  "
                  f"(x{base / epoch:.2f} vs 1 process, 1 thread)")
        precision = {"fp32": [], "bf16": []}
        for _ in range(args.repeats):
            for name in precision:
                precision[name].append(run(folder, 1, 1, args.batch_size, args.epochs, name))
        steps = args.samples / args.batch_size
        fp32, bf16 = (statistics.median(precision[n]) for n in ("fp32", "bf16"))
        print(f"  step time, 1 process, 1 thread: fp32 {fp32 / steps * 1e3:.2f} ms, "
              f"bf16 {bf16 / steps * 1e3:.2f} ms (bf16/fp32 = {bf16 / fp32:.2f})")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"  (benchmark took {time.perf_counter() - start:.0f} s)")
