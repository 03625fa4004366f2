"""Issue 10: the code users of the reference documents' API write, run unchanged (PyTorch).

Each test is written the way that user writes it: ``common.Model`` wrappers, ``model.save``,
callables in configs, self-distillation with ``teacher_output=``, the seed's training loop
(optimizer built first, only ``on_after_compute_loss`` and ``on_epoch_end`` called),
``distiller.model = m``, an ``eval_func`` returning a dict, a softmax head.
"""

import copy
import json
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from helpers import (accuracy, base_config, make_blobs, tensor_loader, tiny_mlp,  # noqa: E402
                     trained_teacher)


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(n=192, seed=0)
    x_eval, y_eval = make_blobs(n=96, seed=5)
    return x, y, x_eval, y_eval


@pytest.fixture(scope="module")
def teacher(blobs):
    return trained_teacher(*blobs[:2])


def _distiller(workspace, blobs, teacher, **overrides):
    from neural_distill import Distillation

    distiller = Distillation(base_config(workspace, **overrides))
    distiller.teacher_model = copy.deepcopy(teacher)
    distiller.train_dataloader = tensor_loader(*blobs[:2], shuffle=True)
    distiller.eval_dataloader = tensor_loader(*blobs[2:])
    return distiller


def _same_outputs(a, b, x):
    with torch.no_grad():
        return torch.equal(a(torch.from_numpy(x)), b(torch.from_numpy(x)))


# ------------------------------------------------------------------ 1. common.Model
def test_common_imports_with_distillation_and_loads_no_framework(repo_root):
    code = ("import sys\nfrom neural_distill import Distillation, common\n"
            "common.Model\nprint(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'tensorflow', 'keras')))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True,
                            text=True, timeout=60, env=dict(os.environ, PYTHONPATH=repo_root))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_common_model_as_student_and_teacher(workspace, blobs, teacher):
    from neural_distill import Distillation, common

    student = tiny_mlp(seed=0)
    distiller = Distillation(base_config(workspace))
    distiller.student_model = common.Model(student)
    distiller.teacher_model = common.Model(copy.deepcopy(teacher))
    distiller.train_dataloader = tensor_loader(*blobs[:2], shuffle=True)
    distiller.eval_dataloader = tensor_loader(*blobs[2:])
    model = distiller.fit()

    # A common.Model in, a common.Model out, as in the reference API.
    assert isinstance(model, common.Model) and model.framework == "torch"
    assert type(model.model) is type(student) and model.model is not student
    assert accuracy(model.model, *blobs[2:]) > 0.85
    path = model.save("./saved")
    assert os.path.samefile(path, "./saved/best_model.pt")
    fresh = tiny_mlp(seed=3)
    fresh.load_state_dict(torch.load("./saved/best_model.pt", weights_only=True))
    assert _same_outputs(fresh, model.model, blobs[2])


def test_common_model_rejects_a_path():
    from neural_distill import ModelError, common

    with pytest.raises(ModelError, match="Load the model in your framework first"):
        common.Model("./model.pt")


# ------------------------------------------------------------------ 2. model.save
def test_fit_result_saves_like_the_reference_api(workspace, blobs, teacher):
    distiller = _distiller(workspace, blobs, teacher)
    student = tiny_mlp(seed=0)
    distiller.student_model = student
    model = distiller.fit()
    model.save("./saved")

    assert isinstance(model, nn.Sequential) and not hasattr(nn.Sequential, "save")
    assert not hasattr(student, "save")  # the user's own object is not touched
    assert set(model.state_dict()) == set(student.state_dict())  # save is no submodule
    fresh = tiny_mlp(seed=5)
    fresh.load_state_dict(torch.load("./saved/best_model.pt", weights_only=True))
    assert _same_outputs(fresh, model, blobs[2])
    # Copies and pickles of the returned model save themselves, not the original.
    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone[0].weight.zero_()
    clone.save("./clone")
    assert torch.load("./clone/best_model.pt", weights_only=True)["0.weight"].abs().sum() == 0
    revived = pickle.loads(pickle.dumps(model))
    revived.save("./revived")
    assert os.path.isfile("./revived/best_model.pt")


def test_a_class_save_method_is_kept(workspace, blobs, teacher):
    class WithSave(nn.Sequential):
        def save(self, path):
            return "own save"

    distiller = _distiller(workspace, blobs, teacher, distillation={"train": {"epoch": 1}})
    distiller.student_model = WithSave(*tiny_mlp(seed=0))
    model = distiller.fit()
    assert isinstance(model, WithSave) and model.save("x") == "own save"


def test_compression_manager_model_saves(blobs, teacher):
    from neural_distill.config import DistillationConfig, KnowledgeDistillationLossConfig
    from neural_distill.training import prepare_compression

    model = tiny_mlp(seed=0)
    manager = prepare_compression(model, DistillationConfig(
        teacher_model=teacher, criterion=KnowledgeDistillationLossConfig()))
    manager.model.save("./saved")
    fresh = tiny_mlp(seed=8)
    fresh.load_state_dict(torch.load("./saved/best_model.pt", weights_only=True))
    assert _same_outputs(fresh, model, blobs[2])


# ------------------------------------------------------------------ 3. callables in configs
FEATURE_CRITERION = {"IntermediateLayersKnowledgeDistillationLoss": {
    "layer_mappings": [[["0", ""], ["0", ""]], [["2", ""], ["2", ""]]]}}


def test_a_callable_process_set_on_the_conf_is_recorded_not_a_crash(workspace, blobs, teacher):
    from neural_distill import Distillation
    from neural_distill.config import DistillationConf

    conf = DistillationConf(base_config(workspace, distillation={"train": {
        "criterion": FEATURE_CRITERION, "epoch": 1}}))
    conf.usr_cfg.distillation.train.criterion.IntermediateLayersKnowledgeDistillationLoss \
        .layer_mappings[1][1][-1] = lambda x: x[:, :2, ...]
    distiller = Distillation(conf)
    distiller.student_model = tiny_mlp(seed=0)
    distiller.teacher_model = copy.deepcopy(teacher)
    distiller.on_train_begin(tensor_loader(*blobs[:2]))

    # The process was used: teacher logits cut to 2 columns, matched by a Linear 3 -> 2.
    assert distiller.criterion.matchers[1].weight.shape == (2, 3)
    text = open(os.path.join(distiller.workspace.path, "config.yaml"), encoding="utf-8").read()
    assert text.startswith("# Written by neural_distill")
    assert "test_a_callable_process_set_on_the_conf_is_recorded_not_a_crash.<locals>." \
           "<lambda>" in text
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any(line.startswith("#   distillation.train.criterion.IntermediateLayersKnowledge"
                               "DistillationLoss.layer_mappings[1][1][1]: <callable ")
               for line in header)
    distiller.on_train_end()


def test_a_callable_process_in_a_config_dict(workspace, blobs, teacher):
    from neural_distill import Distillation

    distiller = Distillation(base_config(workspace, distillation={"train": {"criterion": {
        "IntermediateLayersKnowledgeDistillationLoss": {
            "layer_mappings": [["2", "", "2", lambda x: x[:, :2, ...]]]}}}}))
    distiller.student_model = tiny_mlp(seed=0)
    distiller.teacher_model = copy.deepcopy(teacher)
    distiller.train_dataloader = tensor_loader(*blobs[:2])
    distiller.fit()
    text = open(os.path.join(distiller.workspace.path, "config.yaml"), encoding="utf-8").read()
    assert "<lambda>" in text and text.startswith("#")


def test_a_callable_process_in_the_python_config_api(blobs, teacher, workspace):
    from neural_distill.config import (DistillationConfig,
                                       IntermediateLayersKnowledgeDistillationLossConfig)
    from neural_distill.training import prepare_compression

    def first_two(x):
        return x[:, :2, ...]

    manager = prepare_compression(tiny_mlp(seed=0), DistillationConfig(
        teacher_model=teacher, criterion=IntermediateLayersKnowledgeDistillationLossConfig(
            layer_mappings=[[["2", ""], ["2", first_two]]])))
    manager.on_train_begin()
    x = torch.from_numpy(blobs[0][:32])
    loss = manager.on_after_compute_loss(x, manager.model(x), None)
    assert loss.ndim == 0 and torch.isfinite(loss)
    record = open(os.path.join(manager.distillers[0].workspace.path, "config.yaml"),
                  encoding="utf-8").read()
    assert "first_two" in record
    manager.save("./saved")
    assert "first_two" in open("./saved/compression.yaml", encoding="utf-8").read()


# ------------------------------------------------------------------ 4. self-distillation
class Heads(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.block1 = nn.Linear(8, 16)
        self.aux = nn.Linear(16, 3)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        a = torch.relu(self.block1(x))
        return {"logits": self.head(a), "aux_logits": self.aux(a)}


def test_self_distillation_with_teacher_output(workspace, blobs):
    from neural_distill import Distillation

    distiller = Distillation(base_config(workspace, distillation={"train": {"criterion": {
        "SelfKnowledgeDistillationLoss": {"layer_mappings": [[["aux_logits", "logits"]]],
                                          "temperature": 2.0}}}}))
    model = Heads()
    distiller.student_model = model
    distiller.on_train_begin()
    x, y = torch.from_numpy(blobs[0][:32]), torch.from_numpy(blobs[1][:32])
    outputs = model(x)
    loss = nn.functional.cross_entropy(outputs["logits"], y)
    # The documented call passes the outputs as teacher_output too.
    with_output = distiller.on_after_compute_loss(x, outputs, loss, teacher_output=outputs)
    without = distiller.on_after_compute_loss(x, outputs, loss)
    assert with_output.ndim == 0 and torch.equal(with_output, without)
    with_output.backward()
    assert model.aux.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------ 5. matchers in the seed loop
MATCHER_CONFIG = {"distillation": {"train": {
    "optimizer": {"Adam": {"learning_rate": 0.02}},
    "criterion": {"IntermediateLayersKnowledgeDistillationLoss": {
        "layer_mappings": [["0", "0"]]}}}}}  # student 16 wide, teacher 32: a Linear matcher


def _seed_loop(distiller, model, loader, optimizer, epochs, after_step=None):
    """The seed's train_func: on_train_begin() without data, only two hooks."""
    criterion = nn.CrossEntropyLoss()
    distiller.on_train_begin()
    for nepoch in range(epochs):
        model.train()
        for step, (x, target) in enumerate(loader):
            output = model(x)
            loss = criterion(output, target)
            loss = distiller.on_after_compute_loss(x, output, loss)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step(nepoch, step)
        distiller.on_epoch_end()


def test_matchers_learn_in_the_seed_loop(workspace, blobs, teacher):
    from neural_distill import Distillation

    distiller = Distillation(base_config(workspace, **MATCHER_CONFIG))
    model = tiny_mlp(seed=0)
    distiller.student_model = model
    distiller.teacher_model = copy.deepcopy(teacher)
    distiller.eval_dataloader = tensor_loader(*blobs[2:])
    # lr 0: the student is frozen, so a falling feature loss can only come from the matcher.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    loader = tensor_loader(*blobs[:2], shuffle=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "matchers will not be trained" warning any more
        _seed_loop(distiller, model, loader, optimizer, epochs=4)
    matcher = distiller.criterion.matchers[0]
    first = matcher.weight.detach().clone()
    losses = [r["distillation_loss"] for r in distiller.history]
    assert losses[-1] < 0.8 * losses[0]
    # Going on moves the weights further.
    _seed_loop(distiller, model, loader, optimizer, epochs=1)
    assert not torch.equal(first, matcher.weight.detach())


def test_matchers_in_the_users_optimizer_are_stepped_once(workspace, blobs, teacher):
    from neural_distill import Distillation

    distiller = Distillation(base_config(workspace, **MATCHER_CONFIG))
    model = tiny_mlp(seed=0)
    distiller.student_model = model
    distiller.teacher_model = copy.deepcopy(teacher)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = {}

    def after_step(epoch, step):
        matcher = distiller.criterion.matchers[0]
        if (epoch, step) == (0, 0):
            # The user follows the advice: their optimizer takes the matchers.
            optimizer.add_param_group({"params": list(distiller.criterion.parameters())})
        seen[(epoch, step)] = matcher.weight.detach().clone()

    checks = []
    original = distiller.on_after_compute_loss

    def checked(*args, **kwargs):
        result = original(*args, **kwargs)
        if len(seen) >= 2:  # from the third step on, only the user's optimizer steps them
            checks.append(torch.equal(distiller.criterion.matchers[0].weight,
                                      seen[max(seen)]))
        return result

    distiller.on_after_compute_loss = checked
    _seed_loop(distiller, model, tensor_loader(*blobs[:2]), optimizer, epochs=2,
               after_step=after_step)
    assert len(checks) >= 8 and all(checks)
    assert not torch.equal(seen[(0, 1)], seen[max(seen)])  # and it does step them


def test_matchers_built_before_the_optimizer_get_no_second_optimizer(workspace, blobs, teacher):
    from neural_distill import Distillation

    distiller = Distillation(base_config(workspace, **MATCHER_CONFIG))
    model = tiny_mlp(seed=0)
    distiller.student_model = model
    distiller.teacher_model = copy.deepcopy(teacher)
    loader = tensor_loader(*blobs[:2])
    distiller.on_train_begin(loader)  # builds the matchers now
    optimizer = torch.optim.SGD([*model.parameters(), *distiller.criterion.parameters()],
                                lr=0.1)
    matcher = distiller.criterion.matchers[0]
    for x, y in loader:
        loss = distiller.on_after_compute_loss(x, model(x), nn.functional.cross_entropy(
            model(x), y))
        optimizer.zero_grad()
        loss.backward()
        before = matcher.weight.detach().clone()
        grad = matcher.weight.grad.clone()
        optimizer.step()
        distiller.on_step_end()
        torch.testing.assert_close(matcher.weight.detach(), before - 0.1 * grad)
    distiller.on_epoch_end()
    distiller.on_train_end()


# ------------------------------------------------------------------ 6. attributes
def test_distiller_model_is_the_student(workspace, blobs, teacher):
    from neural_distill import Distillation

    distiller = Distillation(base_config(workspace, distillation={"train": {"epoch": 1}}))
    student = tiny_mlp(seed=0)
    distiller.model = student
    distiller.teacher_model = copy.deepcopy(teacher)
    distiller.train_dataloader = tensor_loader(*blobs[:2])
    assert distiller.student_model is student and distiller.model is student
    assert isinstance(distiller.fit(), nn.Sequential)


def test_a_misspelt_attribute_is_an_error(workspace):
    from neural_distill import ConfigError, Distillation

    distiller = Distillation(base_config(workspace))
    with pytest.raises(ConfigError, match="no attribute 'studnet_model'.*'student_model'"):
        distiller.studnet_model = tiny_mlp()
    with pytest.raises(AttributeError, match="eval_dataloader"):
        distiller.eval_dataloder = []
    distiller.eval_func = len  # real attributes and internals still work
    distiller._scratch = 1


# ------------------------------------------------------------------ 7. eval_func dicts
def test_eval_func_returning_a_dict(workspace, blobs, teacher, caplog):
    distiller = _distiller(workspace, blobs, teacher)
    distiller.student_model = tiny_mlp(seed=0)
    distiller.eval_func = lambda model: {"acc": accuracy(model, *blobs[2:])}
    with caplog.at_level("INFO", logger="neural_distill"):
        model = distiller.fit()
    assert distiller.best_score == pytest.approx(accuracy(model, *blobs[2:]))
    assert sum("using its 'acc' value" in r.getMessage() for r in caplog.records) == 1


def test_eval_func_dict_with_the_configured_metric(workspace, blobs, teacher):
    from neural_distill.metrics import Metric

    distiller = _distiller(workspace, blobs, teacher, distillation={"train": {"epoch": 1}})
    distiller.student_model = tiny_mlp(seed=0)
    distiller.metric = Metric(name="accuracy")
    distiller.eval_func = lambda model: {"eval_loss": 9.0, "eval_accuracy": 0.25}
    distiller.fit()
    assert distiller.best_score == 0.25


def test_eval_func_dict_with_several_keys_and_no_metric(workspace, blobs, teacher):
    from neural_distill import DataError

    distiller = _distiller(workspace, blobs, teacher, distillation={"train": {"epoch": 1}})
    distiller.student_model = tiny_mlp(seed=0)
    distiller.eval_func = lambda model: {"acc": 0.5, "f1": 0.4}
    with pytest.raises(DataError, match=r"several keys \['acc', 'f1'\].*Metric\(name="):
        distiller.fit()


# ------------------------------------------------------------------ 11. softmax heads
def _softmax_head(seed):
    return nn.Sequential(*tiny_mlp(seed=seed), nn.Softmax(dim=-1))


@pytest.mark.parametrize("from_logits, probabilities, key", [
    (True, True, "KnowledgeDistillationLoss.from_logits: false"),
    (False, False, "KnowledgeDistillationLoss.from_logits: true")])
def test_outputs_that_contradict_from_logits_warn_once(workspace, blobs, from_logits,
                                                       probabilities, key):
    from neural_distill import Distillation

    distiller = Distillation(base_config(workspace, distillation={"train": {"criterion": {
        "KnowledgeDistillationLoss": {"from_logits": from_logits}}}}))
    make = _softmax_head if probabilities else (lambda seed: tiny_mlp(seed=seed))
    distiller.student_model, distiller.teacher_model = make(0), make(1)
    distiller.on_train_begin()
    x = torch.from_numpy(blobs[0][:32])
    with pytest.warns(UserWarning, match=key) as record:
        for _ in range(3):
            distiller.on_after_compute_loss(x, distiller.student_model(x), None)
    assert sum("from_logits" in str(w.message) for w in record) == 1


def test_matching_outputs_do_not_warn(workspace, blobs):
    from neural_distill import Distillation

    distiller = Distillation(base_config(workspace, distillation={"train": {"criterion": {
        "KnowledgeDistillationLoss": {"from_logits": False}}}}))
    distiller.student_model, distiller.teacher_model = _softmax_head(0), _softmax_head(1)
    distiller.on_train_begin()
    x = torch.from_numpy(blobs[0][:32])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        distiller.on_after_compute_loss(x, distiller.student_model(x), None)
