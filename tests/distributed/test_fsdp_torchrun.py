"""`neural-distill run` under torchrun with `distributed.strategy: fsdp` (2 processes, gloo,
CPU): the student is sharded (FSDP2's ``fully_shard``), yet trains what one process trains
with the batch of both, and a run killed mid-epoch resumes to the student of a run never
interrupted. The criterion has a trained matcher and feature hooks on the sharded student;
every process evaluates the sharded student, the main process saves the best one. The same
project resumes a shuffled DDP run (``strategy: ddp``) in its second epoch."""

import glob
import os
import re

import pytest
import torch

from neural_distill.config.loader import load_config
from tests.distributed.launch import copy_project, run_cli

CONFIG = """
model:
  student: {{factory: fsdp_project.py:student}}
  teacher: {{factory: fsdp_project.py:teacher}}
device: cpu
distillation:
  train:
    epoch: 2
    progress_bar: false
    optimizer: {{Adam: {{learning_rate: 0.01}}}}
    criterion:
      IntermediateLayersKnowledgeDistillationLoss:
        layer_mappings: [['1', '1'], ['2', '', '2', '']]
        loss_types: [MSE, KL]
        loss_weights: [0.5, 0.5]
        add_origin_loss: true
    dataloader:
      batch_size: {batch}
      shuffle: {shuffle}  # one process with 2b sees the same batches only unshuffled
      dataset: {{npz: {{path: data.npz}}}}
    distributed: {{strategy: {strategy}, reshard_after_forward: {reshard}}}
evaluation:
  accuracy:
    metric: {{topk: 1}}
    dataloader: {{batch_size: 32, dataset: {{npz: {{path: data.npz}}}}}}
tuning:
  random_seed: 7
  workspace: {{path: ws, resume: auto, checkpoint_every_steps: 1}}
"""


def _project(folder, batch, reshard=True, strategy="fsdp", shuffle=False):
    copy_project(folder, "fsdp_project")
    config = folder / "distill.yaml"
    config.write_text(CONFIG.format(batch=batch, reshard=str(reshard).lower(), strategy=strategy,
                                    shuffle=str(shuffle).lower()))
    load_config(str(config))  # the YAML is valid before any process starts
    return config


def _run(config, processes, exit_at=None):
    # ND_TEST_EXIT_AT: every process exits abruptly at that training step (fsdp_project.py)
    return run_cli(config, processes, env={"ND_TEST_EXIT_AT": str(exit_at or 0)})


def _ok(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _saved(config):
    runs = glob.glob(str(config.parent / "ws" / "run-*"))
    assert len(runs) == 1, f"expected one run folder, got {runs}"
    return [torch.load(os.path.join(runs[0], name), weights_only=True)
            for name in ("best_student.pt", "criterion.pt")]


def _assert_same(got, expected, atol):
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=atol)


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    config = _project(tmp_path_factory.mktemp("fsdp"), batch=8)
    result = _ok(_run(config, processes=2))
    return config, result


def test_two_sharded_processes_with_batch_b_train_what_one_process_with_2b_trains(
        tmp_path, fsdp_run):
    single = _project(tmp_path / "single", batch=16)
    _ok(_run(single, processes=1))
    config, result = fsdp_run
    student, matchers = _saved(config)
    expected_student, expected_matchers = _saved(single)
    assert matchers, "the criterion's matcher was trained and saved"
    _assert_same(student, expected_student, atol=1e-5)
    _assert_same(matchers, expected_matchers, atol=1e-5)
    # A plain state dict (the user's class), written once, by the main process.
    assert all(type(t) is torch.Tensor for t in student.values())
    output = result.stdout + result.stderr
    assert output.count("student sharded with FSDP across 2 processes: 0, 2 and the root") == 1
    assert len(re.findall(r"best student \(top1=[0-9.]+\) saved to", output)) == 1, \
        output[-3000:]
    assert "SIGABRT" not in output and "terminate called" not in output, output[-3000:]


def test_a_sharded_run_killed_mid_epoch_resumes_to_the_uninterrupted_student(tmp_path, fsdp_run):
    config = _project(tmp_path / "killed", batch=8)
    # 4 steps an epoch: killed at the 3rd step of epoch 2, a checkpoint after every step.
    killed = _run(config, processes=2, exit_at=7)
    assert killed.returncode != 0, killed.stdout[-2000:] + killed.stderr[-2000:]
    assert glob.glob(str(config.parent / "ws" / "run-*" / "*checkpoint*"))
    resumed = _ok(_run(config, processes=2))
    assert "resumed from" in resumed.stdout + resumed.stderr
    student, matchers = _saved(config)
    expected_student, expected_matchers = _saved(fsdp_run[0])
    _assert_same(student, expected_student, atol=1e-6)
    _assert_same(matchers, expected_matchers, atol=1e-6)


def test_a_shuffled_ddp_run_killed_in_its_second_epoch_resumes_to_the_uninterrupted_student(
        tmp_path):
    # Shuffled: each epoch's order comes from the DistributedSampler's epoch, which the resumed
    # run must set to the interrupted epoch's (it would replay epoch 1's order otherwise).
    uninterrupted = _project(tmp_path / "full", batch=8, strategy="ddp", shuffle=True)
    _ok(_run(uninterrupted, processes=2))
    config = _project(tmp_path / "killed", batch=8, strategy="ddp", shuffle=True)
    killed = _run(config, processes=2, exit_at=7)  # the 3rd step of epoch 2
    assert killed.returncode != 0, killed.stdout[-2000:] + killed.stderr[-2000:]
    resumed = _ok(_run(config, processes=2))
    assert "resumed from" in resumed.stdout + resumed.stderr
    student, matchers = _saved(config)
    expected_student, expected_matchers = _saved(uninterrupted)
    _assert_same(student, expected_student, atol=1e-6)
    _assert_same(matchers, expected_matchers, atol=1e-6)
