"""The recipe "Add a backend" of docs/ARCHITECTURE.md, run for real.

A copy of the package gets a toy backend, ``toyfw``, by touching only what the recipe names: a
folder ``adapters/toyfw/`` (here the PyTorch backend's modules under the new name, its
criterion classes renamed ``Toy<name>``) and one row in ``core/backends.py``. A fresh
interpreter then checks that the rest of the package finds it through the table: the YAML
schema accepts its framework name, ``neural_distill.criterion`` serves its classes, a model it
detects gets its adapter, and a whole ``fit()`` (built-in loop, checks, checkpoints, best
student, report figures) runs on it.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(REPO, "neural_distill")

ROW = '''
# A test's toy backend (tests/architecture/test_backend_recipe.py): torch models marked toy.
BACKENDS = {"toyfw": Backend("toyfw", ("torch",), "Toy", ("toy",), "Toy", ".toy.pt",
                             lambda model: getattr(model, "is_toy", False) is True),
            **BACKENDS}
CONFIG_FRAMEWORKS = CONFIG_FRAMEWORKS + ("toy",)
'''

CHECKS = r'''
import json, os, sys, tempfile
import numpy as np
import torch

torch.manual_seed(0)
torch.set_num_threads(1)
root = sys.argv[1]
import neural_distill
assert neural_distill.__file__.startswith(root), neural_distill.__file__
from neural_distill import Distillation
from neural_distill.adapters import adapter_for_model
from neural_distill.config import validate
from neural_distill.criterion import ToyKnowledgeDistillationLoss

out = {}
validate({"model": {"name": "m", "framework": "toy"}}, "toy.yaml")
out["schema"] = True
student = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
teacher = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
for model in (student, teacher):
    model.is_toy = True
out["adapter"] = adapter_for_model(student, "student_model").name
out["criterion_module"] = type(ToyKnowledgeDistillationLoss()).__module__
x = torch.randn(64, 8)
y = torch.randint(0, 3, (64,))
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
workspace = tempfile.mkdtemp()
distiller = Distillation({
    "model": {"name": "toy", "framework": "toy"},
    "distillation": {"train": {"epoch": 2, "optimizer": {"SGD": {"learning_rate": 0.05}},
                               "criterion": {"KnowledgeDistillationLoss": {
                                   "temperature": 2.0, "loss_types": ["CE", "KL"],
                                   "loss_weights": [0.5, 0.5]}}}},
    "evaluation": {"accuracy": {"metric": {"topk": 1}}},
    "tuning": {"random_seed": 0, "workspace": {"path": workspace}},
})
distiller.student_model = student
distiller.teacher_model = teacher
distiller.train_dataloader = loader
distiller.eval_dataloader = loader
distiller.fit()
out["fit_adapter"] = distiller.adapter.name
out["criterion_class"] = type(distiller.criterion).__name__
run_dir = distiller.workspace.path
out["best_student"] = sorted(f for f in os.listdir(run_dir) if f.startswith("best_student"))
out["epochs"] = len([r for r in distiller.history if "epoch" in r])
from neural_distill.report.runs import framework_of_run
out["run_framework"] = framework_of_run(run_dir)
print("RESULT " + json.dumps(out))
'''


def _apply_recipe(root):
    torch_dir = os.path.join(root, "neural_distill", "adapters", "torch")
    toy_dir = os.path.join(root, "neural_distill", "adapters", "toyfw")
    shutil.copytree(torch_dir, toy_dir)
    for folder, _, files in os.walk(toy_dir):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            text = text.replace("neural_distill.adapters.torch", "neural_distill.adapters.toyfw")
            if name == "criteria.py":
                text = re.sub(r"\bPyTorch(?=\w*Loss\b)", "Toy", text)
            if name == "adapter.py":
                text = text.replace('name = "torch"', 'name = "toyfw"').replace(
                    '"PyTorchKnowledgeDistillationLoss"', '"ToyKnowledgeDistillationLoss"')
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
    table = os.path.join(root, "neural_distill", "core", "backends.py")
    with open(table, encoding="utf-8") as handle:
        text = handle.read()
    anchor = "\n\ndef backend(name):"
    assert anchor in text, "core/backends.py changed: update the recipe test's anchor"
    with open(table, "w", encoding="utf-8") as handle:
        handle.write(text.replace(anchor, "\n" + ROW + anchor, 1))


def test_a_new_backend_is_a_folder_and_a_row(tmp_path):
    pytest.importorskip("torch")
    root = tmp_path / "package_copy"
    shutil.copytree(PACKAGE, root / "neural_distill",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _apply_recipe(str(root))
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3",
               CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", CHECKS, str(root)], env=env, cwd=str(root),
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["schema"] is True
    assert out["adapter"] == out["fit_adapter"] == "toyfw"
    assert out["criterion_module"] == "neural_distill.adapters.toyfw.criteria"
    assert out["criterion_class"] == "ToyKnowledgeDistillationLoss"
    assert out["best_student"] == ["best_student.toy.pt"], out
    assert out["epochs"] == 2
    assert out["run_framework"] == "toyfw"  # the report finds the run's backend too
