"""Durable runs (issue 12): a killed or interrupted `neural-distill run` resumes bit for bit.

The experiment has shuffled data (the loader's own seeded generator), Dropout and BatchNorm in
both models, a cosine learning-rate schedule with warm-up, SGD with momentum and a trained
feature matcher (16 -> 32). A run killed with SIGKILL mid-epoch, then run again with
``resume: auto``, ends with the same best student, matcher and history as a run never
interrupted.
"""

import glob
import os
import shutil
import signal
import subprocess
import sys

import pytest
import yaml

torch = pytest.importorskip("torch")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))

# 48 training samples in batches of 8: 6 steps an epoch. The first-batch pass reads no batch
# of its own (it looks at the first training batch), so sample 48 + 4 * 8 + 3 is read during
# the 5th step of epoch 2; the latest checkpoint then is the one after step 9 (every 3
# steps): mid-epoch.
SIGNAL_AT = 48 + 4 * 8 + 3


def _experiment(folder):
    shutil.copy(os.path.join(HERE, "durable_factories.py"), folder)
    config = {
        "model": {"name": "durable", "framework": "pytorch",
                  "student": "durable_factories.py:student",
                  "teacher": "durable_factories.py:teacher"},
        "device": "cpu",
        "distillation": {"train": {
            "epoch": 3,
            "optimizer": {"SGD": {"learning_rate": 0.05, "momentum": 0.9}},
            "lr_schedule": {"cosine": {"warmup_epochs": 1}},
            "criterion": {"IntermediateLayersKnowledgeDistillationLoss": {
                "layer_mappings": [["hidden.0"], ["head"]], "add_origin_loss": True}},
            "dataloader": {"batch_size": 8, "shuffle": True, "dataset": {"factory": {
                "name": "durable_factories.py:dataset", "kwargs": {"split": "train"}}}},
            "progress_bar": False}},
        "evaluation": {"accuracy": {"metric": {"topk": 1}, "dataloader": {
            "batch_size": 48, "dataset": {"factory": {
                "name": "durable_factories.py:dataset", "kwargs": {"split": "eval"}}}}}},
        "tuning": {"random_seed": 3, "workspace": {
            "path": os.path.join(folder, "ws"), "resume": "auto",
            "checkpoint_every_steps": 3}},
    }
    path = os.path.join(folder, "distill.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle)
    return path


def _run(config, signal_name=None):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS="1")
    env.pop("ND_TEST_SIGNAL", None)
    if signal_name:
        env.update(ND_TEST_SIGNAL=signal_name, ND_TEST_SIGNAL_AT=str(SIGNAL_AT))
    return subprocess.run([sys.executable, "-m", "neural_distill.cli", "run", config],
                          cwd=os.path.dirname(config), capture_output=True, text=True,
                          timeout=300, env=env)


def _results(config):
    runs = glob.glob(os.path.join(os.path.dirname(config), "ws", "run-*"))
    assert len(runs) == 1, f"expected one run folder (the resumed run continues it): {runs}"
    load = lambda name: torch.load(os.path.join(runs[0], name), weights_only=True)  # noqa: E731
    with open(os.path.join(runs[0], "metrics.jsonl"), encoding="utf-8") as handle:
        history = [yaml.safe_load(line) for line in handle]
    for record in history:
        record.pop("time_s", None)
    return load("best_student.pt"), load("criterion.pt"), history, runs[0]


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    config = _experiment(str(tmp_path_factory.mktemp("reference")))
    done = _run(config)
    assert done.returncode == 0, done.stderr
    return _results(config)


@pytest.mark.parametrize("signal_name", ["KILL", "INT"])
def test_stopped_run_resumes_bit_for_bit(tmp_path, reference, signal_name):
    config = _experiment(str(tmp_path))
    stopped = _run(config, signal_name)
    assert stopped.returncode != 0
    run_folder = glob.glob(os.path.join(tmp_path, "ws", "run-*"))[0]
    checkpoints = sorted(os.path.basename(p) for p in glob.glob(os.path.join(run_folder,
                                                                         "checkpoint-*")))
    if signal_name == "KILL":
        # The checkpoint of step 9 is written by the background writer: a kill can come
        # before it is on disk, and then the one before it (end of epoch 1) is the latest.
        assert checkpoints[-1] in ("checkpoint-e0001-s000000009.pt",
                                   "checkpoint-e0001-s000000006.pt"), checkpoints
    else:
        # Ctrl-C: the step in progress is finished, then a checkpoint and the best student.
        assert checkpoints[-1] == "checkpoint-e0001-s000000011.pt", checkpoints
        assert os.path.isfile(os.path.join(run_folder, "best_student.pt"))
        assert "checkpoint and best student saved" in stopped.stderr
    assert len(checkpoints) <= 2  # keep_checkpoints (default 2)
    resumed = _run(config)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    best, matcher, history, folder = _results(config)
    assert folder == run_folder
    _assert_same(best, reference[0])
    _assert_same(matcher, reference[1])
    assert history == reference[2]
