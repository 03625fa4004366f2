"""Every benchmark under benchmarks/ still runs (tiny sizes; what they print is not judged here).

Benchmarks are not imported by the package, so an API change breaks them silently: the
checkpoint and Keras benchmarks once did. Timings are never asserted: speed is read from the
benchmarks themselves, run at full size (`make bench`).
"""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--steps", "4", "--repeats", "1", "--threads", "1"]

# name: (arguments, a line its report must print)
BENCHMARKS = {
    "kd_step_overhead.py": (TINY + ["--batch-size", "16"], "ratio ours/hand"),
    "lm_kd_step_overhead.py": (TINY + ["--batch-size", "4"], "ratio ours/hand"),
    "feature_kd_step_overhead.py": (TINY + ["--batch-size", "16"], "ratio ours/hand"),
    "loss_check_overhead.py": (TINY + ["--batch-size", "16"], "ratio with/without"),
    "trainer_algorithm_overhead.py": (TINY + ["--batch-size", "16"], "ratio ours/hand"),
    "teacher_cache.py": (TINY + ["--batch-size", "16"], "no cache / warm cache (speed-up)"),
    "lm_teacher_cache.py": (TINY + ["--batch-size", "8"],
                            "no cache / warm top-k cache (speed-up)"),
    "tf_kd_step_overhead.py": (TINY + ["--batch-size", "16"], "ours / keras Distiller"),
    "checkpoint_overhead.py": (["--steps", "3", "--repeats", "1"], "one checkpoint write alone"),
    "short_epoch_overhead.py": (TINY + ["--batch-size", "16", "--epochs", "2"],
                                "checkpoint cost: background writer"),
    "distributed_throughput.py": (["--samples", "256", "--epochs", "2", "--repeats", "1"],
                                  "2 processes, 1 thread each"),
}


def test_every_benchmark_is_listed():
    found = {name for name in os.listdir(os.path.join(REPO, "benchmarks"))
             if name.endswith(".py") and not name.startswith("_")}
    assert found == set(BENCHMARKS)


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmark_runs(name):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    arguments, report_line = BENCHMARKS[name]
    result = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", name),
                             *arguments], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert report_line in result.stdout, result.stdout[-2000:]
