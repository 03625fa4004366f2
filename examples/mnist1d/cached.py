"""MNIST-1D with the teacher-output cache: the "kd + 20k transfer" run of compare.py, with the
teacher's outputs cached dense, in float16, and as top-k (k = 4, 2).

Same student, data, optimizer and budget as compare.py's transfer variant (17 epochs x 750
steps); the teacher runs in the first epoch only. Prints test accuracy, time, and the cache's
bytes per sample for each, so the compressions can be weighed against what they cost.

    python examples/mnist1d/cached.py [--seed 0] [--quick]
"""

import argparse
import logging
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from neural_distill import DistillationConf  # noqa: E402

import datasets  # noqa: E402
from compare import TRANSFER_EPOCHS, accuracy, run_variant  # noqa: E402
from models import build_student  # noqa: E402
from teacher import trained_teacher  # noqa: E402

CACHES = [
    ("dense (float32)", {"enabled": True}),
    ("float16", {"enabled": True, "compression": "float16"}),
    ("top-4", {"enabled": True, "compression": "topk", "top_k": 4}),
    ("top-2", {"enabled": True, "compression": "topk", "top_k": 2}),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=os.path.join(HERE, "distill.yaml"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of the training budget (a smoke run, not the result)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("neural_distill").setLevel(logging.WARNING)

    base = DistillationConf(args.config).to_dict()
    base["tuning"]["random_seed"] = args.seed
    base["distillation"]["train"]["progress_bar"] = sys.stderr.isatty()
    epochs = max(1, TRANSFER_EPOCHS // (10 if args.quick else 1))

    teacher = trained_teacher(seed=args.seed)
    test_set, validation_set = datasets.test(), datasets.validation()
    transfer = datasets.labeled_plus_transfer(seed=1000 + args.seed)
    print(f"MNIST-1D, kd + 20k transfer, seed {args.seed}; teacher test accuracy "
          f"{accuracy(teacher, test_set):.1%}")
    print(f"{'teacher cache':<18}{'test acc':>10}{'time (s)':>10}{'bytes/sample':>14}")
    for name, cache in CACHES:
        torch.manual_seed(args.seed)  # the same initial student for every variant
        start = time.perf_counter()
        best, _, distiller = run_variant(
            base, {"train": {"epoch": epochs, "teacher_cache": cache}}, build_student(),
            teacher, transfer, validation_set, with_distiller=True)
        seconds = time.perf_counter() - start
        store = distiller.step.cache.store
        print(f"{name:<18}{accuracy(best, test_set):>10.1%}{seconds:>10.1f}"
              f"{store.row_bytes:>14}", flush=True)


if __name__ == "__main__":
    main()
