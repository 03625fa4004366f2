"""The package tree shows the layers (docs/ARCHITECTURE.md, "The tree"): the root holds the
public faces only, and the import paths users write keep working."""

import importlib
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(REPO, "neural_distill")

PUBLIC_FACES = {"__init__", "distillation", "training", "cli", "errors", "events", "metrics",
                "objectives", "version",
                "cache_teacher"}  # the path earlier docs gave write_offline_cache


def test_the_package_root_holds_the_public_faces_only():
    root_modules = {name[:-3] for name in os.listdir(PACKAGE) if name.endswith(".py")}
    assert root_modules == PUBLIC_FACES
    assert len(root_modules) <= 12


def test_documented_import_paths_still_work():
    # README, docs/ and the seed documents (import paths changed to neural_distill): each must
    # import in a fresh interpreter, without loading a framework.
    code = """
import sys
from neural_distill import Distillation, common, metric, metrics, objectives
from neural_distill import DistillationConfig, Criterion, prepare_compression
from neural_distill import write_offline_cache
from neural_distill.cache_teacher import write_offline_cache as old_path
from neural_distill.config import (DistillationConf, DistillationConfig,
                                   KnowledgeDistillationLossConfig,
                                   IntermediateLayersKnowledgeDistillationLossConfig,
                                   SelfKnowledgeDistillationLossConfig)
from neural_distill.training import prepare_compression
from neural_distill.criterion import DistillationCriterion
from neural_distill.common import Model
from neural_distill.events import Event
assert write_offline_cache is old_path
assert "torch" not in sys.modules and "tensorflow" not in sys.modules
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_every_folder_is_a_package_with_a_docstring():
    for entry in os.listdir(PACKAGE):
        folder = os.path.join(PACKAGE, entry)
        if os.path.isdir(folder) and entry != "__pycache__":
            init = os.path.join(folder, "__init__.py")
            assert os.path.isfile(init), f"neural_distill/{entry}/ has no __init__.py"
            module = importlib.import_module(f"neural_distill.{entry}")
            assert module.__doc__, f"neural_distill/{entry}/__init__.py: say what it holds"
