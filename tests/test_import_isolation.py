"""Importing neural_distill loads no deep-learning framework (DESIGN.md section 3)."""

import json
import os
import subprocess
import sys

import pytest

FRAMEWORKS = ("torch", "tensorflow", "keras", "jax")

PROBE = """
import json, sys
for name in {modules!r}:
    __import__(name)
import neural_distill
neural_distill.Distillation, neural_distill.DistillationConf, neural_distill.Event
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {frameworks!r})))
"""


def _loaded_frameworks(repo_root, modules):
    env = dict(os.environ, PYTHONPATH=repo_root, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=list(modules), frameworks=FRAMEWORKS)],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("modules", [
    ["neural_distill"],
    ["neural_distill.criterion"],
    ["neural_distill.config"],
    ["neural_distill.metrics"],
    ["neural_distill", "neural_distill.criterion", "neural_distill.config",
     "neural_distill.metrics", "neural_distill.events", "neural_distill.errors"],
], ids=lambda m: "+".join(m))
def test_import_loads_no_framework(repo_root, modules):
    assert _loaded_frameworks(repo_root, modules) == []


def test_config_can_be_validated_without_a_framework(repo_root):
    code = ("import sys, json\n"
            "from neural_distill import Distillation\n"
            "d = Distillation({'distillation': {'train': {'epoch': 2}},"
            " 'tuning': {'workspace': {'path': 'unused'}}})\n"
            "from neural_distill.criterion import criterion_name_and_args\n"
            "print(json.dumps(['torch' in sys.modules, 'tensorflow' in sys.modules]))\n")
    env = dict(os.environ, PYTHONPATH=repo_root)
    result = subprocess.run([sys.executable, "-c", code], cwd=repo_root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip()) == [False, False]


def test_the_probe_can_detect_a_framework(repo_root):
    # Guards the test itself: if the probe could not see torch, the tests above could not fail.
    pytest.importorskip("torch")
    assert "torch" in _loaded_frameworks(repo_root, ["torch"])
