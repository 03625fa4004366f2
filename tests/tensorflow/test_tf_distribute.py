"""tf.distribute.MirroredStrategy on two logical CPUs trains what one device trains.

The built-in loop (``Distillation.fit()``) and Keras' ``fit()`` of ``DistillationModel``, with
global batch ``b`` split over 2 replicas, must give the student (and feature matchers) that one
device gives with batch ``b``, and the same epoch losses. The gradients of the replicas are
summed, so a loss not weighted by the replica's share of the global batch trains with twice the
gradient: the SGD cases then differ by ~0.2, far outside the tolerance. ``tf_distribute_script``
runs in its own process: the CPU must be split into logical devices before TensorFlow starts.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(HERE, "tf_distribute_script.py")
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tf_distribute")
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    result = subprocess.run([sys.executable, SCRIPT, str(workdir)], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("case", [
    "loop_kd",                       # SGD, evaluation every epoch
    "loop_uneven_clip_decay_hooks",  # an empty replica, max_grad_norm, weight decay, split step
    "loop_features",                 # Adam; a Dense matcher trained under the strategy
    "keras_criterion_loss",          # DistillationModel, the criterion's student loss + L2
    "keras_compiled_loss",           # DistillationModel with a loss given to compile()
    "keras_features",                # DistillationModel training a Dense matcher
])
def test_two_replicas_train_what_one_device_trains(report, case):
    result = report[case]
    assert result["finite"], result
    assert result["moved"] > 0.05, result  # the students did train
    assert result["max_weight_diff"] < TOLERANCE, result
    assert result["max_loss_diff"] < TOLERANCE, result


@pytest.mark.parametrize("case", ["loop_features", "keras_features"])
def test_features_cases_compare_the_matcher_too(report, case):
    assert report[case]["weights"] == 6  # student kernel+bias x2, matcher kernel+bias


def test_a_run_under_the_strategy_resumes_from_a_mid_epoch_checkpoint_exactly(report):
    difference, continued_in_the_checkpoints_folder = report["resume_difference"]
    assert continued_in_the_checkpoints_folder
    assert difference == 0.0


def test_a_student_built_outside_the_scope_is_refused_with_the_fix(report):
    message = report["outside_scope_error"]
    assert message is not None
    assert "outside strategy.scope()" in message and "with strategy.scope():" in message


def test_data_the_strategy_cannot_split_is_refused_with_the_fix(report):
    message = report["list_loader_error"]
    assert message is not None
    assert "tf.data.Dataset" in message and "from_tensor_slices" in message


def _free_port():
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def test_multi_worker_mirrored_strategy_with_two_workers_trains_what_one_device_trains(tmp_path):
    """Two processes on this machine, one CPU replica each, described by TF_CONFIG; only the
    chief (worker 0) writes a run folder."""
    import numpy as np

    script = os.path.join(HERE, "tf_multi_worker_script.py")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO_ROOT, HERE]), OMP_NUM_THREADS="1",
               TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    single = subprocess.run([sys.executable, script, str(tmp_path / "single.npz"),
                             str(tmp_path / "ws_single")], env=env, capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    workers = [f"localhost:{_free_port()}", f"localhost:{_free_port()}"]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, script, str(tmp_path / f"worker{index}.npz"),
             str(tmp_path / f"ws_worker{index}")], env=dict(env, TF_CONFIG=json.dumps(tf_config)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=600))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    reference = np.load(tmp_path / "single.npz")
    assert list(reference["layout"]) == [1, 32]
    for index in range(2):
        trained = np.load(tmp_path / f"worker{index}.npz")
        # 2 replicas in sync, and each worker's replica gets half of the 32 samples.
        assert list(trained["layout"]) == [2, 16]
        assert sorted(trained.files) == sorted(reference.files)
        for key in set(reference.files) - {"layout"}:
            np.testing.assert_allclose(trained[key], reference[key], rtol=0, atol=TOLERANCE)
    assert os.listdir(tmp_path / "ws_worker0")  # the chief's run folder
    assert not os.path.exists(tmp_path / "ws_worker1")  # the other worker wrote nothing
