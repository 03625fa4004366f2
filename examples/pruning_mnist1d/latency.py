"""CPU latency of the teacher and of its width-pruned copy, timed interleaved (the shapes, not
the weights, set the time, so an untrained teacher serves).

    OMP_NUM_THREADS=1 python examples/pruning_mnist1d/latency.py
"""

import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "mnist1d"), os.path.join(HERE, "..", "..")]

from models import Teacher  # noqa: E402

from neural_distill.pruning import prune_width  # noqa: E402


def main(channels=64, keep=0.25, rounds=15, repeats=20):
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(0)
    teacher = Teacher(channels=channels).eval()
    x = torch.randn(256, 40)
    pruned = prune_width(teacher, keep, [x[:100]]).eval()
    times = {"teacher": {1: [], 256: []}, "pruned": {1: [], 256: []}}
    with torch.no_grad():
        for model in (teacher, pruned):  # warm-up
            for batch in (1, 256):
                for _ in range(5):
                    model(x[:batch])
        for _ in range(rounds):  # interleaved: a busy machine slows both alike
            for name, model in (("teacher", teacher), ("pruned", pruned)):
                for batch in (1, 256):
                    start = time.perf_counter()
                    for _ in range(repeats):
                        model(x[:batch])
                    times[name][batch].append((time.perf_counter() - start) / repeats)
    for name, model in (("teacher", teacher), ("pruned", pruned)):
        count = sum(p.numel() for p in model.parameters())
        print(f"{name}: {count} parameters, batch 1 "
              f"{statistics.median(times[name][1]) * 1e3:.3f} ms, batch 256 "
              f"{statistics.median(times[name][256]) * 1e3:.3f} ms (median of {rounds} rounds "
              f"of {repeats})")


if __name__ == "__main__":
    main()
