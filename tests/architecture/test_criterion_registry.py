"""One criterion catalog: every table of criteria and loss types is derived from it.

The recipes of docs/ARCHITECTURE.md ("Add a criterion", "Add a loss type") are run for real: a
copy of the package gets a toy criterion and a toy loss type by touching only the files the
recipes name, and a fresh interpreter checks that the YAML schema, the Python config API and
both backends accept them.
"""

import ast
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from neural_distill.config import compression_schema, schema
from neural_distill.config.criterion_configs import CRITERION_CONFIGS
from neural_distill.criterion import catalog
from neural_distill.criterion.catalog.loss_types import LOSS_TYPES
from neural_distill.criterion.registry import REGISTRY

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(REPO, "neural_distill")
CATALOG_DIR = os.path.join(PACKAGE, "criterion", "catalog")


# ------------------------------------------------------------------ the tables agree
def test_every_table_of_criteria_is_the_catalog():
    names = list(catalog.CATALOG)
    assert names[:3] == ["KnowledgeDistillationLoss",
                         "IntermediateLayersKnowledgeDistillationLoss",
                         "SelfKnowledgeDistillationLoss"]
    assert list(schema.CRITERIA) == names
    assert list(compression_schema.PYTHON_CRITERIA) == names
    assert list(CRITERION_CONFIGS) == names
    assert list(REGISTRY) == names
    import neural_distill.criterion as criterion

    assert {n for n in criterion.__all__ if n.startswith(("PyTorch", "Tensorflow"))} == {
        prefix + name for name in names for prefix in ("PyTorch", "Tensorflow")}
    for name, spec in catalog.CATALOG.items():
        assert schema.CRITERIA[name] is spec.node
        assert CRITERION_CONFIGS[name].__name__ == spec.config_class_name
        assert CRITERION_CONFIGS[name]._FIELDS == tuple(spec.args)
        assert REGISTRY[name].needs_teacher is spec.needs_teacher


def _literal_tables(tree):
    """Dict / list / tuple / set literals of the source that name two or more criteria."""
    names = set(catalog.CATALOG)
    for node in ast.walk(tree):
        items = node.keys if isinstance(node, ast.Dict) else (
            node.elts if isinstance(node, (ast.List, ast.Tuple, ast.Set)) else [])
        named = [i.value for i in items if isinstance(i, ast.Constant) and i.value in names]
        if len(named) >= 2:
            yield node.lineno, named


def test_no_module_outside_the_catalog_lists_criteria_by_hand():
    found = []
    for folder, _, files in os.walk(PACKAGE):
        if os.path.abspath(folder).startswith(CATALOG_DIR):
            continue
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                with open(path, encoding="utf-8") as handle:
                    tree = ast.parse(handle.read(), path)
                found += [f"{os.path.relpath(path, REPO)}:{line} {named}"
                          for line, named in _literal_tables(tree)]
    assert not found, "tables of criteria outside criterion/catalog/:\n" + "\n".join(found)


def test_the_table_check_sees_a_table():
    tree = ast.parse('X = {"KnowledgeDistillationLoss": 1, "SelfKnowledgeDistillationLoss": 2}')
    assert list(_literal_tables(tree)) == [(1, ["KnowledgeDistillationLoss",
                                                "SelfKnowledgeDistillationLoss"])]


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_each_backend_has_every_criterion_and_every_loss_type(framework):
    pytest.importorskip(framework)
    import importlib

    from neural_distill.core.backends import backend_module

    criteria = backend_module(framework, "criteria")
    losses = backend_module(framework, "losses")
    for name in catalog.CATALOG:
        assert hasattr(criteria, catalog.backend_class_name(name, framework)), name
    assert {family: set(table) for family, table in losses.LOSSES.items()} == {
        family: set(names) for family, names in LOSS_TYPES.items()}


# ------------------------------------------------------------------ the recipes, for real
TOY_CATALOG = '''
"""ToyScaledLoss: scale * mean((z_s - z_t)^2) (a test's toy criterion)."""

from ...config.criterion_args import CriterionSpec
from ...config.nodes import Leaf, number

SPEC = CriterionSpec(
    "ToyScaledLoss",
    {"scale": Leaf(number(0, exclusive=True), "a number > 0", default=1.0)},
    needs_teacher=True, summary="scaled logit MSE")
'''

TOY_TORCH = '''

from ...criterion.base import CatalogCriterion  # noqa: E402


class PyTorchToyScaledLoss(CatalogCriterion, torch.nn.Module):
    yaml_name = "ToyScaledLoss"

    def __init__(self, scale=None):
        torch.nn.Module.__init__(self)
        self._configure_from_spec(scale=scale)

    def student_loss(self, student_output, labels):
        return _student_term(losses.label_cross_entropy, student_output, labels, True)

    def distillation_loss(self, student_output, teacher_output):
        return self.scale * torch.mean((student_output - teacher_output.detach()) ** 2)

    def forward(self, student_output, teacher_output, labels=None):
        return self.combine(self.student_loss(student_output, labels),
                            self.distillation_loss(student_output, teacher_output))
'''

TOY_TF = '''

from ...criterion.base import CatalogCriterion  # noqa: E402


class TensorflowToyScaledLoss(CatalogCriterion, CriterionBase):
    yaml_name = "ToyScaledLoss"

    def __init__(self, scale=None):
        self._configure_from_spec(scale=scale)

    def student_loss(self, student_output, labels):
        return None if labels is None else losses.label_cross_entropy(student_output, labels)

    def distillation_loss(self, student_output, teacher_output):
        return self.scale * tf.reduce_mean(tf.square(student_output
                                                     - tf.stop_gradient(teacher_output)))

    def __call__(self, student_output, teacher_output, labels=None):
        return self.combine(self.student_loss(student_output, labels),
                            self.distillation_loss(student_output, teacher_output))
'''

TOY_LOSS_TYPE_NAME = '\nLOSS_TYPES["kd"] += ("ABS",)  # a test\'s toy loss type\n'

TOY_LOSS_TYPE_TORCH = '''


def logit_abs(student, teacher, temperature=1.0, from_logits=True):
    return torch.mean(torch.abs(student.float() - teacher.float()))


KD_LOSSES["ABS"] = logit_abs
'''

TOY_LOSS_TYPE_TF = '''


def logit_abs(student, teacher, temperature=1.0, from_logits=True):
    return tf.reduce_mean(tf.abs(_float(student) - _float(teacher)))


KD_LOSSES["ABS"] = logit_abs
'''

# The files each recipe touches in the copy (package-relative), and what is written there.
CRITERION_RECIPE = {
    "criterion/catalog/toy_scaled.py": ("create", TOY_CATALOG),
    "adapters/torch/criteria.py": ("append", TOY_TORCH),
    "adapters/tensorflow/criteria.py": ("append", TOY_TF),
}
LOSS_TYPE_RECIPE = {
    "criterion/catalog/loss_types.py": ("append", TOY_LOSS_TYPE_NAME),
    "adapters/torch/losses.py": ("append", TOY_LOSS_TYPE_TORCH),
    "adapters/tensorflow/losses.py": ("append", TOY_LOSS_TYPE_TF),
}

CHECKS = r'''
import json, sys
import numpy as np
import yaml
from neural_distill import ConfigError, Distillation
from neural_distill.config import DistillationConfig, KnowledgeDistillationLossConfig
from neural_distill.config.loader import load_config as _load

def load_config(source):
    return _load(source)[0]
from neural_distill.adapters import build_criterion as build
from neural_distill.criterion.registry import needs_teacher

out = {}
def error_of(call):
    try:
        call()
    except ConfigError as exc:
        return str(exc)
    return None

yaml_text = "distillation:\n  train:\n    criterion:\n      ToyScaledLoss: {scale: %s}\n"
path = sys.argv[1] + "/toy.yaml"
open(path, "w").write(yaml_text % "2.5")
out["yaml"] = dict(load_config(path).distillation.train.criterion)
open(path, "w").write(yaml_text % "-1")
out["yaml_bad"] = error_of(lambda: load_config(path))
out["yaml_default"] = dict(load_config({"distillation": {"train": {"criterion": {
    "ToyScaledLoss": None}}}}).distillation.train.criterion)

from neural_distill.config import ToyScaledLossConfig
out["config"] = ToyScaledLossConfig(scale=3.0).to_dict()
out["config_bad"] = error_of(lambda: ToyScaledLossConfig(scale=0))
out["config_typo"] = error_of(lambda: ToyScaledLossConfig(scael=1.0))
dc = DistillationConfig(criterion={"ToyScaledLoss": {"scale": 4.0}})
out["distillation_config"] = [type(dc.criterion).__name__, dc.criterion.scale]
out["needs_teacher"] = needs_teacher(dc.criterion)

import torch
torch.set_num_threads(1)
torch.manual_seed(0)
s, t = torch.randn(4, 3), torch.randn(4, 3)
from neural_distill.criterion import PyTorchToyScaledLoss
criterion = build("torch", "ToyScaledLoss", {"scale": 2.0})
out["torch_class"] = type(criterion).__name__
out["torch_loss"] = [float(criterion.distillation_loss(s, t)),
                     float(2.0 * ((s - t) ** 2).mean())]
out["torch_bad"] = error_of(lambda: PyTorchToyScaledLoss(scale=-2))

# A whole fit() with the toy criterion from the experiment file.
student, teacher = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
distiller = Distillation({"model": {"framework": "pytorch"}, "distillation": {"train": {
    "criterion": {"ToyScaledLoss": {"scale": 2.0}}, "epoch": 1, "progress_bar": False,
    "optimizer": {"SGD": {"learning_rate": 0.1}},
    "dataloader": {"batch_size": 4, "dataset": {"dummy": {"shape": [8, 4], "num_classes": 3}}}}},
    "tuning": {"workspace": {"path": sys.argv[1] + "/ws"}}})
distiller.student_model, distiller.teacher_model = student, teacher
before = student.weight.detach().clone()
distiller.fit()
out["fit"] = [type(distiller.criterion).__name__, len(distiller.history),
              bool((student.weight != before).any())]

# The toy loss type: YAML, Python config and the torch criterion.
kd = {"KnowledgeDistillationLoss": {"loss_types": ["CE", "ABS"], "loss_weights": [0, 1]}}
out["abs_yaml"] = load_config({"distillation": {"train": {"criterion": kd}}}
                              ).distillation.train.criterion.KnowledgeDistillationLoss.loss_types
out["abs_config"] = KnowledgeDistillationLossConfig(loss_types=["CE", "ABS"]).loss_types
out["abs_bad"] = error_of(lambda: KnowledgeDistillationLossConfig(loss_types=["CE", "ABX"]))
kd_loss = build("torch", "KnowledgeDistillationLoss", kd["KnowledgeDistillationLoss"])
out["abs_torch"] = [float(kd_loss(s, t)), float((s - t).abs().mean())]

if "tensorflow" in sys.argv[2:]:
    import tensorflow as tf
    s_tf, t_tf = tf.constant(s.numpy()), tf.constant(t.numpy())
    tf_criterion = build("tensorflow", "ToyScaledLoss", {"scale": 2.0})
    out["tf_loss"] = [type(tf_criterion).__name__,
                      float(tf_criterion.distillation_loss(s_tf, t_tf))]
    tf_kd = build("tensorflow", "KnowledgeDistillationLoss", kd["KnowledgeDistillationLoss"])
    out["abs_tf"] = float(tf_kd(s_tf, t_tf))
print("RESULT " + json.dumps(out))
'''


def _apply(root, recipe):
    for relative, (how, text) in recipe.items():
        path = os.path.join(root, "neural_distill", relative)
        if how == "create":
            assert not os.path.exists(path), relative
        with open(path, "a" if how == "append" else "x", encoding="utf-8") as handle:
            handle.write(textwrap.dedent(text))


def _changed_files(copy_root):
    """Package-relative paths of the .py files that differ between the package and its copy."""
    changed = []
    for folder, _, files in os.walk(os.path.join(copy_root, "neural_distill")):
        for file in files:
            if not file.endswith(".py"):
                continue
            path = os.path.join(folder, file)
            relative = os.path.relpath(path, os.path.join(copy_root, "neural_distill"))
            original = os.path.join(PACKAGE, relative)
            if not os.path.exists(original) or not filecmp.cmp(path, original, shallow=False):
                changed.append(relative.replace(os.sep, "/"))
    return sorted(changed)


def _recipe_files(title):
    """The code files a recipe of docs/ARCHITECTURE.md names (package-relative)."""
    with open(os.path.join(REPO, "docs", "ARCHITECTURE.md"), encoding="utf-8") as handle:
        text = handle.read()
    match = re.search(r"\*\*" + re.escape(title) + r"\*\*(.*?)(?=\n\*\*|\Z)", text, re.S)
    assert match, f"docs/ARCHITECTURE.md has no recipe '{title}'"
    # Only the numbered steps: what follows "Then" (docs, tests) is not package code.
    steps = match.group(1).split("\nThen")[0]
    return sorted(set(re.findall(r"`([\w/<>]+\.py)`", steps)))


@pytest.fixture(scope="module")
def recipes_applied(tmp_path_factory):
    root = tmp_path_factory.mktemp("package_copy")
    shutil.copytree(PACKAGE, root / "neural_distill",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    assert _changed_files(str(root)) == []
    _apply(str(root), CRITERION_RECIPE)
    _apply(str(root), LOSS_TYPE_RECIPE)
    frameworks = ["torch"]
    try:
        import importlib.util

        if importlib.util.find_spec("tensorflow") is not None:
            frameworks.append("tensorflow")
    except ValueError:
        pass
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3",
               CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", CHECKS, str(root), *frameworks], env=env,
                          cwd=str(root), capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    # TensorFlow installed: its classes must have run too.
    assert ("tf_loss" in out and "abs_tf" in out) == ("tensorflow" in frameworks)
    return str(root), out


def test_recipes_touch_at_most_three_code_files_each(recipes_applied):
    root, _ = recipes_applied
    assert _changed_files(root) == sorted([*CRITERION_RECIPE, *LOSS_TYPE_RECIPE])
    for title, recipe in (("Add a criterion", CRITERION_RECIPE),
                          ("Add a loss type", LOSS_TYPE_RECIPE)):
        assert len(recipe) <= 3
        named = _recipe_files(title)
        assert len(named) <= 3, (title, named)
        # The documented files are the ones the toy needed (the new catalog module by pattern).
        documented = {re.sub(r"<\w+>", "toy_scaled", f) for f in named}
        assert documented == set(recipe), (title, named)


def test_a_new_criterion_is_accepted_by_the_yaml_schema(recipes_applied):
    _, out = recipes_applied
    assert out["yaml"] == {"ToyScaledLoss": {"scale": 2.5}}
    assert out["yaml_default"] == {"ToyScaledLoss": {"scale": 1.0}}
    assert out["yaml_bad"].endswith("toy.yaml: distillation.train.criterion.ToyScaledLoss.scale: "
                                    "expected a number > 0, got -1")


def test_a_new_criterion_is_accepted_by_the_python_config_api(recipes_applied):
    _, out = recipes_applied
    assert out["config"] == {"ToyScaledLoss": {"scale": 3.0}}
    assert out["config_bad"] == "ToyScaledLossConfig: scale: expected a number > 0, got 0"
    assert "scael: unknown key. Did you mean 'scale'?" in out["config_typo"]
    assert out["distillation_config"] == ["ToyScaledLossConfig", 4.0]
    assert out["needs_teacher"] is True


def test_a_new_criterion_runs_in_the_backends(recipes_applied):
    _, out = recipes_applied
    assert out["torch_class"] == "PyTorchToyScaledLoss"
    assert out["torch_loss"][0] == pytest.approx(out["torch_loss"][1], rel=1e-5)
    # The class validates its arguments through the same spec node.
    assert out["torch_bad"] == "PyTorchToyScaledLoss: scale: expected a number > 0, got -2"
    assert out["fit"] == ["PyTorchToyScaledLoss", 1, True]
    if "tf_loss" in out:
        assert out["tf_loss"][0] == "TensorflowToyScaledLoss"
        assert out["tf_loss"][1] == pytest.approx(out["torch_loss"][1], rel=1e-5)


def test_a_new_loss_type_is_accepted_everywhere(recipes_applied):
    _, out = recipes_applied
    assert out["abs_yaml"] == ["CE", "ABS"]
    assert out["abs_config"] == ["CE", "ABS"]
    assert "distillation in {CE, KL, MSE, RKL, JSD, ABS}" in out["abs_bad"]
    assert out["abs_torch"][0] == pytest.approx(out["abs_torch"][1], rel=1e-5)
    if "abs_tf" in out:
        assert out["abs_tf"] == pytest.approx(out["abs_torch"][1], rel=1e-5)
