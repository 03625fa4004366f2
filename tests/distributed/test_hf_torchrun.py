"""NLPTrainer.distill under torchrun: 2 processes with per-device batch b train what one process
with batch 2b trains (Hugging Face's Trainer shards the data and wraps the student in DDP; our
distillation term rides along in every process)."""

import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(HERE, "hf_ddp_script.py")


def _train(tmp_path, name, processes, batch_size):
    out = str(tmp_path / f"{name}.pt")
    command = [sys.executable, SCRIPT, out, str(batch_size), str(tmp_path / name)]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={processes}"] + command[1:]
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return torch.load(out, weights_only=True)


def test_nlp_trainer_distill_under_two_processes_matches_one_process_with_twice_the_batch(
        tmp_path):
    single = _train(tmp_path, "single", 1, 16)
    ddp = _train(tmp_path, "ddp", 2, 8)
    assert single.keys() == ddp.keys()
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=0, atol=1e-5)
