"""`neural-distill run` under torchrun (2 processes, gloo, CPU) trains what one process trains
with the batch of both: DDP averages the two shards' gradients into the big batch's gradient.
The criterion has a trained Linear matcher (student features 16 wide, teacher's 32) and feature
hooks on the student, which must work through the DDP wrapper."""

import glob
import os

import pytest
import torch

from neural_distill.config.loader import load_config
from tests.distributed.launch import copy_project, run_cli

CONFIG = """
model:
  student: {{factory: ddp_project.py:student}}
  teacher: {{factory: ddp_project.py:teacher}}
device: cpu
distillation:
  train:
    epoch: 2
    progress_bar: false
    optimizer: {{SGD: {{learning_rate: 0.1, momentum: 0.9}}}}
    criterion:
      IntermediateLayersKnowledgeDistillationLoss:
        layer_mappings: [['1', '1'], ['2', '', '2', '']]
        loss_types: [MSE, KL]
        loss_weights: [0.5, 0.5]
        add_origin_loss: true
    dataloader:
      batch_size: {batch}
      shuffle: false
      dataset: {{npz: {{path: data.npz}}}}
tuning:
  random_seed: 7
  workspace: {{path: {workspace}}}
"""


def _run(tmp_path, name, batch, processes):
    folder = tmp_path / name
    copy_project(folder, "ddp_project")
    config = folder / "distill.yaml"
    config.write_text(CONFIG.format(batch=batch, workspace="ws"))
    load_config(str(config))  # the YAML is valid before any process starts
    result = run_cli(config, processes)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = glob.glob(str(folder / "ws" / "run-*"))
    return runs, result


def test_two_processes_with_batch_b_train_what_one_process_with_2b_trains(tmp_path):
    single_runs, _ = _run(tmp_path, "single", batch=16, processes=1)
    ddp_runs, result = _run(tmp_path, "ddp", batch=8, processes=2)
    assert len(ddp_runs) == 1, f"expected one run folder, got {ddp_runs}"
    single = torch.load(os.path.join(single_runs[0], "best_student.pt"), weights_only=True)
    ddp = torch.load(os.path.join(ddp_runs[0], "best_student.pt"), weights_only=True)
    assert single.keys() == ddp.keys()
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=0, atol=1e-5)
    matchers = [torch.load(os.path.join(run, "criterion.pt"), weights_only=True)
                for run in (single_runs[0], ddp_runs[0])]
    assert matchers[0] and matchers[0].keys() == matchers[1].keys()
    for key in matchers[0]:
        torch.testing.assert_close(matchers[1][key], matchers[0][key], rtol=0, atol=1e-5)
    lines = open(os.path.join(ddp_runs[0], "metrics.jsonl")).read().splitlines()
    assert len(lines) == 3 or len(lines) == 2  # two epochs (+ a final record)
    # The main process tells the story once: the other process logs warnings only.
    output = result.stdout + result.stderr
    assert output.count("epoch=1, step=4") == 1, output[-3000:]
    assert output.count("best student saved to") == 1, output[-3000:]
