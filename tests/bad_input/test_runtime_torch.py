"""Run-time bad input with PyTorch models (issue 11, items 3-6, 8-10): each mistake ends in a
NeuralDistillError subclass whose message says what to change, or in a warning."""

import copy
import errno
import os
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import base_config, make_blobs, tensor_loader, tiny_mlp  # noqa: E402
from neural_distill import (ConfigError, DataError, Distillation, ModelError,  # noqa: E402
                            NeuralDistillError)


@pytest.fixture
def blobs():
    return make_blobs(n=64)


def distiller_for(workspace, blobs=None, student=None, teacher=None, loader=None, **overrides):
    distiller = Distillation(base_config(workspace, **overrides))
    distiller.student_model = student if student is not None else tiny_mlp(seed=0)
    distiller.teacher_model = teacher if teacher is not None else tiny_mlp(seed=1)
    if loader is not None:
        distiller.train_dataloader = loader
    elif blobs is not None:
        distiller.train_dataloader = tensor_loader(*blobs, batch_size=16)
    return distiller


def batches(blobs, batch_size=16):
    x, y = (torch.as_tensor(a) for a in blobs)
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]


# ---------------------------------------------------------------------------- 3: shared weights
def test_student_is_the_teacher(workspace):
    model = tiny_mlp()
    distiller = Distillation(base_config(workspace))
    distiller.student_model = model
    with pytest.raises(ModelError, match="same object.*copy.deepcopy"):
        distiller.teacher_model = model


def test_student_shares_a_layer_with_the_teacher_at_assignment(workspace):
    teacher = tiny_mlp(seed=1)
    student = tiny_mlp(seed=0)
    student[2] = teacher[2]
    distiller = Distillation(base_config(workspace))
    distiller.teacher_model = teacher
    with pytest.raises(ModelError, match=r"share 2 weight\(s\) \(e.g. student '2.weight'\)"):
        distiller.student_model = student


def test_layer_shared_after_assignment_is_caught_at_train_begin(workspace, blobs):
    distiller = distiller_for(workspace, blobs)
    distiller.student_model[0] = distiller.teacher_model[0]
    before = copy.deepcopy(distiller.teacher_model.state_dict())
    with pytest.raises(ModelError, match="training the student would change the teacher"):
        distiller.fit()
    for key, value in distiller.teacher_model.state_dict().items():
        assert torch.equal(value, before[key])


# ---------------------------------------------------------------------------- 4: NaN / inf
class NanAt:
    """Batches of ``blobs``; in epoch ``epoch`` (0-based) batch ``step`` holds ``value``."""

    def __init__(self, blobs, epoch, step, value):
        self.items, self.epoch, self.step, self.value = batches(blobs), epoch, step, value
        self.passes = 0

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        this_pass, self.passes = self.passes, self.passes + 1
        for index, (x, y) in enumerate(self.items):
            if this_pass == self.epoch and index == self.step:  # one pass per epoch (no peek)
                x = x.clone()
                x[0, 0] = self.value
            yield x, y


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_loss_mid_epoch_keeps_the_best_student(workspace, blobs, value):
    distiller = distiller_for(workspace, loader=NanAt(blobs, epoch=1, step=2, value=value),
                              evaluation={"accuracy": {"metric": "Accuracy"}})
    distiller.eval_dataloader = tensor_loader(*blobs, batch_size=32)
    with pytest.raises(DataError) as info:
        distiller.fit()
    message = str(info.value)
    assert "became nan at epoch 1, step 2" in message or "became inf at epoch 1, step 2" in \
        message or "became -inf at epoch 1, step 2" in message
    assert "max_grad_norm" in message and "distiller.best_model" in message
    best = distiller.best_model
    assert all(torch.isfinite(p).all() for p in best.state_dict().values())
    saved = os.path.join(distiller.workspace.path, "best_student.pt")
    state = torch.load(saved, weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in best.state_dict().items())


def test_non_finite_loss_before_any_evaluation_returns_nothing(workspace, blobs):
    distiller = distiller_for(workspace, loader=NanAt(blobs, epoch=0, step=1,
                                                      value=float("nan")))
    with pytest.raises(DataError, match="epoch 0, step 1.*none was kept"):
        distiller.fit()
    assert distiller.best_model is None
    assert not os.path.exists(os.path.join(distiller.workspace.path, "best_student.pt"))


def test_non_finite_loss_in_a_user_loop(workspace, blobs):
    distiller = distiller_for(workspace)
    student = distiller.student_model
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    distiller.on_train_begin()
    distiller.on_epoch_begin(0)
    with pytest.raises(DataError, match="epoch 0, step 3"):
        for step, (x, y) in enumerate(batches(blobs)):
            distiller.on_step_begin(step)
            if step == 3:
                x = x * float("inf")
            out = student(x)
            loss = distiller.on_after_compute_loss(x, out, torch.nn.functional.cross_entropy(
                out, y))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            distiller.on_step_end()



def test_non_finite_weights_after_finite_losses_are_not_returned(workspace, blobs):
    def train_func(student):
        distiller.on_train_begin()
        distiller.on_epoch_begin(0)
        for step, (x, y) in enumerate(batches(blobs)):
            distiller.on_step_begin(step)
            out = student(x)
            distiller.on_after_compute_loss(x, out, torch.nn.functional.cross_entropy(out, y))
            distiller.on_step_end()
        with torch.no_grad():  # what a NaN gradient in the last update leaves behind
            student[0].bias[0] = float("nan")
        distiller.on_epoch_end()

    distiller = distiller_for(workspace)
    distiller.train_func = train_func
    with pytest.raises(DataError, match="weights became non-finite.*max_grad_norm"):
        distiller.fit()
    assert distiller.best_model is None

# ---------------------------------------------------------------------------- 5: empty data
@pytest.mark.parametrize("make_loader", [
    lambda blobs: [],
    lambda blobs: torch.utils.data.DataLoader(torch.utils.data.TensorDataset(
        torch.zeros(0, 8), torch.zeros(0, dtype=torch.long)), batch_size=4),
], ids=["list", "DataLoader"])
def test_empty_dataloader(workspace, blobs, make_loader):
    distiller = distiller_for(workspace, loader=make_loader(blobs))
    with pytest.raises(DataError, match="empty"):
        distiller.fit()


def test_one_shot_generator_over_several_epochs(workspace, blobs):
    distiller = distiller_for(workspace, loader=(b for b in batches(blobs)))
    with pytest.raises(DataError, match="one-shot iterator.*2 epochs"):
        distiller.fit()


def test_generator_exhausted_in_a_user_loop(workspace, blobs):
    distiller = distiller_for(workspace)
    student = distiller.student_model
    data = iter(batches(blobs))
    distiller.on_train_begin()
    distiller.on_epoch_begin(0)
    for step, (x, y) in enumerate(data):
        distiller.on_step_begin(step)
        out = student(x)
        distiller.on_after_compute_loss(x, out, torch.nn.functional.cross_entropy(out, y))
        distiller.on_step_end()
    distiller.on_epoch_end()
    distiller.on_epoch_begin(1)
    for step, (x, y) in enumerate(data):  # exhausted: nothing
        pass
    with pytest.raises(DataError, match="yielded no batch in epoch 2.*one-shot"):
        distiller.on_epoch_end()


# ---------------------------------------------------------------------------- 6: loss shape
def test_per_sample_student_loss_is_averaged_with_one_warning(workspace, blobs):
    distiller = distiller_for(workspace)
    x, y = batches(blobs)[0]
    out = distiller.student_model(x)
    per_sample = torch.nn.functional.cross_entropy(out, y, reduction="none")
    with pytest.warns(UserWarning, match="one value per sample"):
        loss = distiller.on_after_compute_loss(x, out, per_sample)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = distiller.on_after_compute_loss(x, out, per_sample)
    assert loss.shape == () and again.shape == ()
    expected = distiller.on_after_compute_loss(x, out, per_sample.mean())
    assert torch.allclose(loss, expected)


def test_student_loss_given_as_a_python_float(workspace, blobs):
    distiller = distiller_for(workspace)
    x, y = batches(blobs)[0]
    out = distiller.student_model(x)
    with pytest.raises(ModelError, match=r"Python number.*do not call .item\(\)"):
        distiller.on_after_compute_loss(x, out, torch.nn.functional.cross_entropy(out, y).item())


# ---------------------------------------------------------------------------- 8: warnings
def test_topk_covering_every_class_warns(workspace, blobs):
    distiller = distiller_for(workspace, blobs, evaluation={"accuracy": {"metric": {"topk": 3}}})
    distiller.eval_dataloader = tensor_loader(*blobs, batch_size=32)
    with pytest.warns(UserWarning, match="k=3 but the model predicts 3 classes"):
        distiller.fit()


def test_metric_without_evaluation_data_warns(workspace, blobs):
    distiller = distiller_for(workspace, blobs, evaluation={"accuracy": {"metric": "Accuracy"}})
    with pytest.warns(UserWarning, match="no evaluation data.*eval_dataloader"):
        distiller.fit()
    assert distiller.best_score is None


def test_probabilities_expected_but_logits_given_warns(workspace, blobs):
    distiller = distiller_for(workspace, blobs, distillation={"train": {"criterion": {
        "KnowledgeDistillationLoss": {"loss_types": ["CE", "KL"], "from_logits": False}}}})
    with pytest.warns(UserWarning, match="from_logits is false.*look like logits"):
        distiller.fit()


# ---------------------------------------------------------------------------- 9: raw errors
def _with_labels(blobs, labels):
    x, _ = blobs
    return tensor_loader(x, labels, batch_size=16)


@pytest.mark.parametrize("labels, error, words", [
    (lambda y: y + 5, DataError, r"a label is \d+, but the student predicts 3 classes.*0..2"),
    (lambda y: y.astype(np.float32), DataError, "class labels must be integers"),
    (lambda y: np.eye(3, dtype=np.int64)[y], DataError, "one-hot"),
    (lambda y: y.reshape(-1, 2), DataError, "expected one class index per output row"),
], ids=["out-of-range", "float", "one-hot", "wrong-shape"])
def test_bad_labels(workspace, blobs, labels, error, words):
    x, y = blobs
    if labels(y).shape[0] != len(x):  # wrong shape: pairs of labels per sample
        loader = [(torch.as_tensor(x[:16]), torch.as_tensor(labels(y[:32])))]
    else:
        loader = _with_labels(blobs, labels(y))
    distiller = distiller_for(workspace, loader=loader)
    with pytest.raises(error, match=words):
        distiller.fit()


def test_label_out_of_range_in_a_later_batch(workspace, blobs):
    x, y = blobs
    y = y.copy()
    y[40] = 7
    distiller = distiller_for(workspace, loader=tensor_loader(x, y, batch_size=16))
    with pytest.raises(DataError, match="a label is 7.*0..2"):
        distiller.fit()


def test_mse_student_loss_with_class_labels(workspace, blobs):
    distiller = distiller_for(workspace, blobs, distillation={"train": {"criterion": {
        "KnowledgeDistillationLoss": {"loss_types": ["MSE", "KL"]}}}})
    with pytest.raises(DataError, match="student loss is MSE.*loss_types: \\['CE'"):
        distiller.fit()


def test_float64_teacher_with_float32_student(workspace, blobs):
    distiller = distiller_for(workspace, blobs, teacher=tiny_mlp(seed=1).double())
    with pytest.raises(ModelError, match="torch.float64 weights but the student has "
                                         "torch.float32.*teacher.to"):
        distiller.fit()


def test_teacher_on_the_meta_device(workspace):
    with torch.device("meta"):
        teacher = torch.nn.Linear(8, 3)
    distiller = Distillation(base_config(workspace))
    distiller.student_model = tiny_mlp()
    with pytest.raises(ModelError, match="'meta' device.*Load its weights first"):
        distiller.teacher_model = teacher


def test_batches_of_three_items(workspace, blobs):
    x, y = batches(blobs)[0]
    distiller = distiller_for(workspace, loader=[(x, x, y)])
    with pytest.raises(DataError, match="batches have 3 items.*Yield \\(inputs, labels\\)"):
        distiller.fit()


def test_dict_batches_without_the_label_key(workspace, blobs):
    class Named(torch.nn.Module):
        def __init__(self, seed):
            super().__init__()
            self.net = tiny_mlp(seed=seed)

        def forward(self, x):
            return self.net(x)

    x, y = batches(blobs)[0]
    distiller = distiller_for(workspace, student=Named(0), teacher=Named(1),
                              loader=[{"x": x, "target": y}])
    with pytest.raises(DataError, match="\\['target', 'x'\\].*rename the label key to 'labels'"):
        distiller.fit()


def test_student_and_teacher_with_different_class_counts(workspace, blobs):
    x, y = blobs
    teacher = tiny_mlp(seed=1, out=5)
    loader = tensor_loader(x, (y + 2).astype(np.int64), batch_size=16)  # labels 2..4
    distiller = distiller_for(workspace, teacher=teacher, loader=loader)
    with pytest.raises(ModelError, match="student predicts 3 classes but teacher_model "
                                         "predicts 5.*last layer 5 outputs"):
        distiller.fit()


# ---------------------------------------------------------------------------- 10: files
def test_workspace_path_not_creatable(tmp_path, blobs):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    distiller = distiller_for(str(blocker / "ws"), blobs)
    with pytest.raises(ConfigError, match="tuning.workspace.path: creating the run folder"):
        distiller.fit()


def test_read_only_workspace(workspace, blobs, monkeypatch):
    import neural_distill.run.workspace as workspace_module

    def read_only(path, exist_ok=False):
        raise OSError(errno.EROFS, "Read-only file system", path)

    # A real read-only folder cannot be made for root (tests may run as root).
    monkeypatch.setattr(workspace_module.os, "makedirs", read_only)
    distiller = distiller_for(workspace, blobs)
    with pytest.raises(ConfigError, match="Read-only file system. Choose a folder you can "
                                          "write to"):
        distiller.fit()


def test_disk_full_while_saving_leaves_no_truncated_file(workspace, blobs, monkeypatch):
    real_save = torch.save

    def full_disk(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        with open(path, "r+b") as handle:  # what a full disk leaves behind: a partial file
            handle.truncate(10)
        raise OSError(errno.ENOSPC, "No space left on device")

    distiller = distiller_for(workspace, blobs)
    monkeypatch.setattr(torch, "save", full_disk)
    # The first file written may be a checkpoint (CheckpointError) or best_student.pt
    # (ConfigError naming the workspace): both say what happened and what to do.
    with pytest.raises(NeuralDistillError, match="No space left on device. (Free|The previous)"):
        distiller.fit()
    run = os.listdir(distiller.workspace.path)
    assert not [name for name in run if "best_student" in name]


def _checkpoint(tmp_path, kind):
    path = str(tmp_path / f"{kind}.pt")
    model = tiny_mlp(seed=1)
    if kind == "module":
        torch.save(model, path)
    elif kind == "truncated":
        torch.save(model.state_dict(), path)
        with open(path, "r+b") as handle:
            handle.truncate(os.path.getsize(path) // 2)
    else:
        torch.save([v for v in model.state_dict().values()], path)
    return path


@pytest.mark.parametrize("kind, words", [
    ("module", "whole model.*torch.save\\(model.state_dict\\(\\), path\\)"),
    ("truncated", "truncated or not a torch checkpoint"),
    ("list", "holds a list, not a state dict"),
])
def test_bad_teacher_checkpoint(workspace, tmp_path, kind, words):
    path = _checkpoint(tmp_path, kind)
    distiller = Distillation(base_config(workspace))
    with pytest.raises(ModelError, match=words):
        distiller.teacher_model = {path: tiny_mlp(seed=2)}


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_device_without_mps(workspace, blobs):
    distiller = distiller_for(workspace, blobs, device="mps")
    with pytest.raises(ModelError, match="device 'mps'.*no Apple MPS.*device: cpu"):
        distiller.fit()

