"""Intermediate-layer distillation, self-distillation and several teachers (PyTorch)."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import np_reference as ref
from neural_distill import ConfigError, Distillation, ModelError
from neural_distill.criterion import (PyTorchIntermediateLayersKnowledgeDistillationLoss,
                                      PyTorchSelfKnowledgeDistillationLoss)


class ConvNet(nn.Module):
    def __init__(self, channels, length=16, classes=3):
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)
        self.norm = nn.BatchNorm1d(channels)
        self.fc = nn.Linear(channels * length, classes)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.norm(self.conv2(h)))
        return self.fc(h.flatten(1))


class Heads(nn.Module):
    """A network with an auxiliary head: returns a dict of outputs."""

    def __init__(self):
        super().__init__()
        self.block1 = nn.Linear(8, 16)
        self.block2 = nn.Linear(16, 16)
        self.aux = nn.Linear(16, 3)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        a = torch.relu(self.block1(x))
        b = torch.relu(self.block2(a))
        return {"logits": self.head(b), "aux_logits": self.aux(a), "feat1": a, "feat2": b}


def _data(n=96, shape=(1, 16), classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *shape), generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=32)


def _config(tmp_path, criterion, epochs=1):
    return {"distillation": {"train": {"epoch": epochs, "progress_bar": False,
                                       "optimizer": {"SGD": {"learning_rate": 0.05}},
                                       "criterion": criterion}},
            "tuning": {"workspace": {"path": str(tmp_path)}}}


def _hooks_left(*models):
    return sum(len(m._forward_hooks) for model in models for m in model.modules())


# --------------------------------------------------------------------- golden values
def _captured(criterion, student_feats, teacher_feats):
    """Feed features to a criterion as if its hooks had captured them."""
    criterion._student_capture.outputs.update(student_feats)
    criterion._teacher_captures[0].outputs.update(teacher_feats)


@pytest.mark.parametrize("loss_type", ["MSE", "L1", "KL", "cosine"])
def test_feature_losses_match_numpy(loss_type):
    rng = np.random.default_rng(1)
    s = rng.normal(size=(4, 5, 6))
    t = rng.normal(size=(4, 5, 6))
    student, teacher = nn.Sequential(nn.Linear(6, 6)), nn.Sequential(nn.Linear(6, 6))
    crit = PyTorchIntermediateLayersKnowledgeDistillationLoss(
        layer_mappings=[["0"]], loss_types=[loss_type], loss_weights=[0.7])
    crit.attach(student, [teacher])
    _captured(crit, {"0": torch.tensor(s)}, {"0": torch.tensor(t)})
    crit._build_matchers()  # identical shapes: identity matchers
    got = float(crit.distillation_loss())
    crit.detach()

    assert got == pytest.approx(0.7 * ref.feature(loss_type, s, t), rel=1e-5)


def test_self_distillation_matches_numpy():
    rng = np.random.default_rng(2)
    deep, shallow = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    f_deep, f_shallow = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    T = 3.0
    crit = PyTorchSelfKnowledgeDistillationLoss(
        layer_mappings=[[["aux", "logits"]], [["f1", "f2"]]], temperature=T,
        loss_types=["KL", "L2"], loss_weights=[0.5, 0.2])
    output = {"logits": torch.tensor(deep), "aux": torch.tensor(shallow, requires_grad=True),
              "f1": torch.tensor(f_shallow), "f2": torch.tensor(f_deep)}
    got = crit.distillation_loss(output)

    kl = ref.kd("KL", shallow, deep, T)
    l2 = ref.feature("MSE", f_shallow, f_deep)
    assert float(got.detach()) == pytest.approx(0.5 * kl + 0.2 * l2, rel=1e-6)
    got.backward()
    assert output["aux"].grad is not None  # the shallow head learns ...
    assert output["logits"].grad is None   # ... the deep head is only the teacher


# --------------------------------------------------------------------- training behaviour
def test_matchers_are_trained_and_not_part_of_the_student(tmp_path):
    teacher, student = ConvNet(8), ConvNet(4)
    d = Distillation(_config(tmp_path, {"IntermediateLayersKnowledgeDistillationLoss": {
        "layer_mappings": [["conv1"], ["conv2", "", "conv2", ""]], "add_origin_loss": True}},
        epochs=2))
    d.student_model, d.teacher_model = student, teacher
    d.train_dataloader = _data()
    # The dry run happens in on_train_begin: record the matchers' initial weights there.
    initial = {}
    original_begin = d.on_train_begin

    def spy(dataloader=None):
        original_begin(dataloader)
        initial.update({k: v.clone() for k, v in d.criterion.state_dict().items()})
    d.on_train_begin = spy
    best = d.fit()

    assert [type(m).__name__ for m in d.criterion.matchers] == ["Conv1d", "Conv1d"]
    changed = [k for k, v in d.criterion.state_dict().items() if not torch.equal(v, initial[k])]
    assert changed, "matcher parameters did not change during training"
    assert not any("matchers" in k for k in best.state_dict())
    assert (tmp_path / d.workspace.path / "criterion.pt").exists()


def test_student_forward_unchanged_by_attached_criterion():
    student, teacher = ConvNet(4), ConvNet(8)
    x = torch.randn(5, 1, 16)
    student.eval()
    before = student(x)
    crit = PyTorchIntermediateLayersKnowledgeDistillationLoss(layer_mappings=[["conv1"], ["fc"]])
    crit.attach(student, [teacher])
    during = student(x)
    crit.detach()
    assert torch.equal(before, during)
    assert _hooks_left(student, teacher) == 0


def test_no_hooks_left_after_fit(tmp_path):
    student, teacher = ConvNet(4), ConvNet(8)
    d = Distillation(_config(tmp_path, {"IntermediateLayersKnowledgeDistillationLoss": {
        "layer_mappings": [["conv1"], ["fc"]]}}))
    d.student_model, d.teacher_model = student, teacher
    d.train_dataloader = _data()
    d.fit()
    assert _hooks_left(student, teacher) == 0


def test_teacher_bit_identical_after_feature_distillation(tmp_path):
    student, teacher = ConvNet(4), ConvNet(8)
    teacher.train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    d = Distillation(_config(tmp_path, {"IntermediateLayersKnowledgeDistillationLoss": {
        "layer_mappings": [["conv2"], ["fc"]]}}))
    d.student_model, d.teacher_model = student, teacher
    d.train_dataloader = _data()
    d.fit()
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert teacher.training


def test_self_distillation_trains_without_teacher(tmp_path):
    model = Heads()
    d = Distillation(_config(tmp_path, {"SelfKnowledgeDistillationLoss": {
        "layer_mappings": [[["aux_logits", "logits"]], [["feat1", "feat2"], ["block1", "block2"]]],
        "temperature": 2.0, "loss_types": ["KL", "L2"], "loss_weights": [0.5, 0.1],
        "add_origin_loss": True}}, epochs=2))
    d.student_model = model
    d.train_dataloader = _data(shape=(8,))
    d.eval_dataloader = _data(shape=(8,), seed=1)
    best = d.fit()
    assert isinstance(best, Heads)
    assert d.history[0]["distillation_loss"] > 0
    assert _hooks_left(model) == 0


def test_several_teachers_average_logits_and_stay_unchanged(tmp_path):
    teachers = [ConvNet(8), ConvNet(6)]
    states = [{k: v.clone() for k, v in t.state_dict().items()} for t in teachers]
    d = Distillation(_config(tmp_path, {"KnowledgeDistillationLoss": {
        "loss_types": ["CE", "KL"], "temperature": 2.0}}))
    d.student_model, d.teacher_model = ConvNet(4), teachers
    d.teacher_weights = [3.0, 1.0]
    x = torch.randn(4, 1, 16)
    merged = d._adapter.teachers_forward(teachers, x, d.teacher_weights)
    with torch.no_grad():
        want = 0.75 * teachers[0].eval()(x) + 0.25 * teachers[1].eval()(x)
    assert torch.allclose(merged, want, atol=1e-6)
    d.train_dataloader = _data()
    d.fit()
    for teacher, state in zip(teachers, states):
        assert all(torch.equal(state[k], v) for k, v in teacher.state_dict().items())


def test_teacher_dict_loads_checkpoints(tmp_path):
    source = ConvNet(8)
    path = tmp_path / "teacher.pt"
    torch.save(source.state_dict(), path)
    fresh = ConvNet(8)
    d = Distillation(_config(tmp_path, {"KnowledgeDistillationLoss": {}}))
    d.student_model = ConvNet(4)
    d.teacher_model = {str(path): fresh}
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(),
                                                 fresh.state_dict().values()))


def test_intermediate_mapping_can_name_a_teacher(tmp_path):
    teachers = [ConvNet(8), ConvNet(6)]
    d = Distillation(_config(tmp_path, {"IntermediateLayersKnowledgeDistillationLoss": {
        "layer_mappings": [["conv1", {"layer": "conv1", "teacher": 1}]]}}))
    d.student_model, d.teacher_model = ConvNet(4), teachers
    d.train_dataloader = _data()
    d.fit()
    assert d.criterion.matchers[0].out_channels == 6


# --------------------------------------------------------------------- mapping forms
def test_every_mapping_form_parses():
    crit = PyTorchIntermediateLayersKnowledgeDistillationLoss(layer_mappings=[
        ["conv1"],
        ["conv1", "conv2"],
        ["conv1", "", "conv2", ""],
        [["conv1"], ["conv2"]],
        [["conv1", 0], ["conv2", lambda out: out]],
    ])
    pairs = [(m.student.layer, m.teacher.layer) for m in crit.mappings]
    assert pairs == [("conv1", "conv1"), ("conv1", "conv2"), ("conv1", "conv2"),
                     ("conv1", "conv2"), ("conv1", "conv2")]
    assert crit.mappings[4].student.process == 0
    assert callable(crit.mappings[4].teacher.process)


# --------------------------------------------------------------------- bad input
def test_unknown_layer_lists_close_names(tmp_path):
    d = Distillation(_config(tmp_path, {"IntermediateLayersKnowledgeDistillationLoss": {
        "layer_mappings": [["conv3"], ["cnv1", "conv1"]]}}))
    teacher = ConvNet(8)
    teacher.train()
    d.student_model, d.teacher_model = ConvNet(4), teacher
    d.train_dataloader = _data()
    with pytest.raises(ModelError) as info:
        d.fit()
    message = str(info.value)
    assert "student has no layer 'conv3'" in message and "teacher has no layer 'conv3'" in message
    assert "student has no layer 'cnv1'. Did you mean 'conv1'" in message
    assert "student layers: conv1, conv2, norm, fc" in message
    assert teacher.training, "a failed run must give the teacher back in its own mode"
    assert _hooks_left(d.student_model, teacher) == 0


def test_shapes_that_cannot_be_matched(tmp_path):
    class Short(ConvNet):
        def forward(self, x):
            return super().forward(x[..., ::2].repeat_interleave(2, -1))

    d = Distillation(_config(tmp_path, {"IntermediateLayersKnowledgeDistillationLoss": {
        "layer_mappings": [["conv1", lambda h: h[..., :8], "conv1", ""]]}}))
    d.student_model, d.teacher_model = ConvNet(4), ConvNet(8)
    d.train_dataloader = _data()
    with pytest.raises(ModelError, match=r"\(32, 4, 8\) cannot be matched to teacher feature "
                                         r"shape \(32, 8, 16\)"):
        d.fit()


def test_process_index_out_of_range(tmp_path):
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(16, 4, batch_first=True)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.fc(out[:, -1])

    d = Distillation(_config(tmp_path, {"IntermediateLayersKnowledgeDistillationLoss": {
        "layer_mappings": [["lstm", 5, "lstm", 0]]}}))
    d.student_model, d.teacher_model = Pair(), Pair()
    d.train_dataloader = _data()
    with pytest.raises(ModelError, match=r"process index 5 is out of range: the layer returned "
                                         r"2 outputs"):
        d.fit()


def test_checkpoint_path_missing_or_mismatching(tmp_path):
    d = Distillation(_config(tmp_path, {"KnowledgeDistillationLoss": {}}))
    d.student_model = ConvNet(4)
    with pytest.raises(ModelError, match="not found"):
        d.teacher_model = {str(tmp_path / "missing.pt"): ConvNet(8)}
    path = tmp_path / "small.pt"
    torch.save(ConvNet(4).state_dict(), path)
    with pytest.raises(ModelError, match="does not match ConvNet"):
        d.teacher_model = {str(path): ConvNet(8)}


def test_bad_mapping_config_is_a_config_error():
    with pytest.raises(ConfigError, match=r"layer_mappings\[1\]: expected one of"):
        PyTorchIntermediateLayersKnowledgeDistillationLoss(layer_mappings=[["a"], [1, 2, 3]])
    with pytest.raises(ConfigError, match=r"loss_types: expected 1 or 2 entries"):
        PyTorchIntermediateLayersKnowledgeDistillationLoss(layer_mappings=[["a"], ["b"]],
                                                           loss_types=["MSE", "L1", "KL"])
