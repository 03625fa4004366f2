"""Distillation + quantization-aware training for PyTorch (torchao PT2E, x86 backend).

Models are tiny and each is prepared once per module: a preparation (torch.export + PT2E) takes
about a second. Conv+BatchNorm models are prepared but not exported here: converting them makes
torchao build ~100 pattern graphs (tens of seconds on two cores).
"""

import copy
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchao")

from torch import nn  # noqa: E402

from helpers import make_blobs  # noqa: E402
from neural_distill import ConfigError, ModelError  # noqa: E402
from neural_distill.adapters.torch import quantization as q  # noqa: E402
from neural_distill.adapters.torch.features import FeatureCapture  # noqa: E402
from neural_distill.config import (DistillationConfig,  # noqa: E402
                                   IntermediateLayersKnowledgeDistillationLossConfig,
                                   KnowledgeDistillationLossConfig,
                                   QuantizationAwareTrainingConfig,
                                   SelfKnowledgeDistillationLossConfig)
from neural_distill.training import prepare_compression  # noqa: E402

F = nn.functional


class SmallCNN(nn.Module):
    """Conv1d -> ReLU -> Linear layers: every layer quantizable by the x86 quantizer."""

    def __init__(self, channels=8, width=64):
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(1, channels, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(channels * 8, width)
        self.act = nn.ReLU()
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        h = self.features(x.unsqueeze(1)).flatten(1)
        return self.head(self.act(self.fc(h)))


class BNHeads(nn.Module):
    """Conv + BatchNorm (custom eps/momentum) + Dropout(0.2), and two heads in a dict."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm1d(4, eps=1e-3, momentum=0.3)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(0.2)
        self.shallow = nn.Linear(4 * 8, 3)
        self.deep = nn.Linear(4 * 8, 3)

    def forward(self, x):
        h = self.drop(self.act(self.bn(self.conv(x.unsqueeze(1))))).flatten(1)
        return {"logits": self.deep(h), "shallow": self.shallow(h)}


def assert_int8_close(fast, reference):
    """The lowered int8 model against the q/dq model, on any x86-64 CPU."""
    scale = float(reference.abs().max())
    difference = (fast - reference).abs()
    assert float(difference.max()) <= 0.25 * scale, (float(difference.max()), scale)
    assert float(difference.mean()) <= 0.05 * scale, (float(difference.mean()), scale)
    assert float((fast.argmax(-1) == reference.argmax(-1)).float().mean()) >= 0.9


@pytest.fixture(scope="module")
def data():
    x, y = make_blobs(n=96, dim=8, classes=3)
    return torch.as_tensor(x), torch.as_tensor(y)


def _train(manager, x, y, epochs=3, lr=0.01, batch=32):
    model = manager.model
    manager.on_train_begin()
    parameters = list(model.parameters())
    for distiller in manager.distillers:
        parameters += list(distiller.criterion.parameters())
    optimizer = torch.optim.Adam(parameters, lr=lr)
    model.train()
    losses = []
    for epoch in range(epochs):
        manager.on_epoch_begin(epoch)
        for step in range(0, len(x), batch):
            manager.on_step_begin(step)
            xb, yb = x[step:step + batch], y[step:step + batch]
            out = model(xb)
            logits = out["logits"] if isinstance(out, dict) else out
            loss = manager.on_after_compute_loss(xb, out, F.cross_entropy(logits, yb))
            optimizer.zero_grad()
            loss.backward()
            manager.on_before_optimizer_step()
            optimizer.step()
            manager.on_after_optimizer_step()
            manager.on_step_end()
            losses.append(float(loss.detach()))
        manager.on_epoch_end()
    manager.on_train_end()
    return losses


@pytest.fixture(scope="module")
def cnn_kd(data, tmp_path_factory):
    """SmallCNN trained with QAT + logit distillation from its float copy; exported."""
    x, y = data
    torch.manual_seed(0)
    model = SmallCNN()
    # A float model that already knows the task: the starting point of QAT.
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    float_state = copy.deepcopy(model.state_dict())
    qat = QuantizationAwareTrainingConfig(example_inputs=x[:1], freeze_observers_epoch=2)
    manager = prepare_compression(model, [qat, DistillationConfig(
        criterion=KnowledgeDistillationLossConfig(temperature=2.0, loss_types=["CE", "KL"]))])
    teacher_before = copy.deepcopy(manager.qat.float_model.state_dict())
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("ws"))  # the distiller's workspace
    try:
        losses = _train(manager, x, y, epochs=3)
    finally:
        os.chdir(cwd)
    info = manager.export(str(tmp_path_factory.mktemp("export") / "cnn_int8.pt2"))
    return {"manager": manager, "model": model, "float_state": float_state, "losses": losses,
            "info": info, "teacher_before": teacher_before}


@pytest.fixture(scope="module")
def bn_model(data):
    x, _ = data
    torch.manual_seed(1)
    model = BNHeads()
    manager = prepare_compression(model, QuantizationAwareTrainingConfig(example_inputs=x[:4]))
    return model, manager


# ------------------------------------------------------------------------ names and hooks
def test_module_names_resolve_and_forward_hooks_fire_after_preparation(bn_model, data):
    x, _ = data
    model, manager = bn_model
    qat = manager.qat
    assert {"bn", "act", "drop", "shallow", "deep"} <= set(qat.observable)
    prepared_modules = dict(manager.model.named_modules())
    for name in ("bn", "act", "deep"):
        assert isinstance(prepared_modules[name], q.LayerTap)
    # Hooks on the prepared model see what the float layers return (fake quantization off).
    names = ["bn", "act", "shallow", "deep"]
    seen_q = FeatureCapture(manager.model, names, "qat")
    seen_f = FeatureCapture(qat.float_model, names, "float")
    try:
        with torch.no_grad(), q.quantizers_paused(manager.model, fake_quant=True):
            manager.model.eval()
            manager.model(x[:6])
            manager.model.train()
            qat.float_model(x[:6])
        for name in names:
            assert torch.allclose(seen_q.get(name), seen_f.get(name), atol=1e-5), name
    finally:
        seen_q.remove()
        seen_f.remove()
    # The state dict keeps the float model's names.
    assert set(model.state_dict()) <= set(manager.model.state_dict())


def test_a_conv_folded_with_its_batchnorm_is_reported_not_silently_hooked(bn_model):
    _, manager = bn_model
    reason = manager.qat.not_observable["conv"]
    assert "rewrote it" in reason and "BatchNorm" in reason
    assert not isinstance(dict(manager.model.named_modules()).get("conv"), q.LayerTap)
    with pytest.raises(ModelError) as info:
        manager.qat.check_layers(["conv", "bn", "nope"], "IntermediateLayersKnowledgeDistillation"
                                                         "LossConfig")
    text = str(info.value)
    assert "'conv': QAT preparation rewrote it" in text
    assert "'nope': the float model has no module of that name" in text
    assert "Layers that can: bn, act, drop, shallow, deep" in text.replace("conv, ", "")


def test_train_and_eval_switch_batchnorm_and_dropout_and_keep_their_settings(bn_model):
    _, manager = bn_model
    model = manager.model

    def ops():
        found = {}
        for node in model.graph.nodes:
            if node.target is torch.ops.aten.batch_norm.default:
                found["bn"] = node.args[5:8]  # training, momentum, eps
            if node.target is torch.ops.aten.dropout.default:
                found["drop"] = node.args[1:3]  # p, train
        return found

    model.eval()
    assert not model.training
    assert ops() == {"bn": (False, 0.3, 1e-3), "drop": (0.2, False)}
    model.train()
    assert model.training
    assert ops() == {"bn": (True, 0.3, 1e-3), "drop": (0.2, True)}
    with q.quiet_copies():
        clone = copy.deepcopy(model)  # rebuilt from its graph: train/eval must still work
    clone.eval()
    assert not clone.training
    assert model.training  # the original is untouched


def test_explicit_mappings_are_checked_against_the_qat_model(bn_model):
    from neural_distill.adapters.torch import compression
    from neural_distill.training import _DistillationPart

    model, manager = bn_model
    teachers = [manager.qat.float_model]
    for criterion in (IntermediateLayersKnowledgeDistillationLossConfig(layer_mappings=[["conv"]]),
                      SelfKnowledgeDistillationLossConfig(layer_mappings=[[["conv", "logits"]]])):
        with pytest.raises(ModelError, match="'conv': QAT preparation rewrote it"):
            _DistillationPart._criterion(criterion, manager.model, teachers, manager.qat,
                                         compression)
    # Output keys of the model are not layers: nothing to check.
    _DistillationPart._criterion(SelfKnowledgeDistillationLossConfig(
        layer_mappings=[[["shallow", "logits"]]]), manager.model, [], manager.qat, compression)


def test_self_distillation_with_qat_trains_without_a_teacher(data, workspace):
    x, y = data
    torch.manual_seed(2)
    manager = prepare_compression(SmallCNN(width=3), [
        QuantizationAwareTrainingConfig(example_inputs=x[:8]),
        DistillationConfig(criterion=SelfKnowledgeDistillationLossConfig(
            layer_mappings=[[["act", "head"]]], loss_types=["L2"], add_origin_loss=True))])
    assert manager.distillers[0].teacher_model is None  # self-distillation needs no teacher
    losses = _train(manager, x, y, epochs=1)
    assert all(v == v for v in losses)  # finite, one float per step


# ------------------------------------------------------------------------ QAT + distillation
def test_default_teacher_is_a_frozen_float_copy_and_the_student_shares_the_users_weights(cnn_kd):
    manager, model = cnn_kd["manager"], cnn_kd["model"]
    teacher = manager.distillers[0].teacher_model
    assert teacher is manager.qat.float_model and teacher is not model
    assert not any(p.requires_grad for p in teacher.parameters())
    # The teacher never changed; the user's model object was trained through the QAT graph.
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, cnn_kd["teacher_before"][key]), key
        assert torch.equal(value, cnn_kd["float_state"][key]), key
    trained = manager.model.state_dict()
    assert not torch.equal(trained["fc.weight"], cnn_kd["float_state"]["fc.weight"])
    assert torch.equal(model.state_dict()["fc.weight"], trained["fc.weight"])


def test_qat_with_distillation_returns_scalar_losses_and_learns(cnn_kd, data):
    x, y = data
    losses = cnn_kd["losses"]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert cnn_kd["manager"].distillers[0].history  # the Distillation object logged its epochs


def test_freeze_observers_epoch_stops_the_observers(cnn_kd):
    fake_quants = [m for m in cnn_kd["manager"].model.modules() if hasattr(m, "observer_enabled")]
    assert fake_quants and all(int(m.observer_enabled[0]) == 0 for m in fake_quants)


def test_export_writes_a_real_int8_model(cnn_kd, data):
    x, y = data
    info = cnn_kd["info"]
    assert info.int8 and os.path.getsize(info.path) == info.file_bytes
    program = torch.export.load(info.path)
    stored = list(program.state_dict.values()) + list(program.constants.values())
    int8 = [t for t in stored if t.dtype == torch.int8]
    assert len(int8) == 3  # conv, fc and head weights
    assert not any(t.dtype == torch.float32 and t.dim() >= 2 for t in stored)  # no float weights
    assert info.compression >= 3.0, info
    assert program.example_inputs is None  # the user's data is not shipped with the model


def test_lowered_int8_model_runs_on_int8_kernels_and_matches_the_qdq_model(cnn_kd, data):
    x, y = data
    info = cnn_kd["info"]
    qdq = q.load_int8(info.path)
    lowered = q.load_int8(info.path, x[:16])
    assert q.int8_kernels(lowered) == ["onednn.qconv_pointwise.default",
                                       "onednn.qlinear_pointwise.default"]
    assert q.int8_kernels(qdq) == []
    with torch.no_grad():
        reference = qdq(x[:16])
        fast = lowered(x[:16])
        assert qdq(x[:5]).shape == (5, 3)  # the portable program keeps a dynamic batch
        # The int8 model predicts like the fake-quantized one it came from.
        manager = cnn_kd["manager"]
        manager.model.eval()
        fake = manager.model(x[:16])
        manager.model.train()
    # oneDNN's int8 kernels compute differently by instruction set: within 3e-4 of the q/dq
    # model with AVX-512 VNNI, but on AVX2-only CPUs u8*s8 products are summed in saturating
    # 16-bit pairs, and single logits move by 4-11% of the output scale (docs/quantization.md).
    # Compare relative to the output scale, and check that the predictions are the same.
    assert_int8_close(fast, reference)
    assert (reference.argmax(-1) == fake.argmax(-1)).float().mean() >= 0.9
    assert (qdq(x).argmax(-1) == y).float().mean() >= 0.9
    assert q.measure_latency(lowered, x[:16], repeats=3, warmup=1) > 0


def test_layer_by_layer_distillation_between_float_teacher_and_its_quantized_copy(data,
                                                                                 workspace):
    x, y = data
    torch.manual_seed(3)
    manager = prepare_compression(SmallCNN(), [
        DistillationConfig(criterion=IntermediateLayersKnowledgeDistillationLossConfig(
            add_origin_loss=True)),
        QuantizationAwareTrainingConfig(example_inputs=x[:8], excluded_layers=["head"])])
    (distiller,) = manager.distillers
    mappings = distiller.conf.distillation.train.criterion[
        "IntermediateLayersKnowledgeDistillationLoss"]["layer_mappings"]
    assert mappings == [["features.0"], ["fc"], ["head"]]
    model = manager.model
    manager.on_train_begin()
    # Built on the example inputs in on_train_begin; same shapes, so identity matchers.
    assert len(distiller.criterion.matchers) == 3
    out = model(x[:8])
    loss = manager.on_after_compute_loss(x[:8], out, F.cross_entropy(out, y[:8]))
    assert loss.dim() == 0 and loss.requires_grad
    # The quantized copy differs from the float teacher by its quantization error only.
    kd = distiller.running_losses()["distillation_loss"]  # the mean over the one step
    assert 0.0 < kd < 0.1
    loss.backward()
    manager.on_step_end()
    manager.on_train_end()
    # The excluded head keeps a float weight in the int8 model.
    converted = manager.qat.convert()
    dtypes = {name: t.dtype for name, t in converted.state_dict().items()}
    assert dtypes["head.weight"] == torch.float32
    assert torch.int8 in dtypes.values()


# ------------------------------------------------------------------------ errors and helpers
def test_example_inputs_must_be_a_batch_of_inputs():
    # None is fine (captured on the first batch, tests/torch/test_qat_capture.py); a value that
    # is not a batch is not.
    with pytest.raises(ConfigError, match=r"QuantizationAwareTrainingConfig: example_inputs: "
                                          r"expected one batch of model inputs .* got str"):
        prepare_compression(SmallCNN(), QuantizationAwareTrainingConfig(example_inputs="x"))


def test_excluded_layers_must_exist(data):
    x, _ = data
    with pytest.raises(ConfigError, match=r"excluded_layers: the model has no layer 'haed'"):
        prepare_compression(SmallCNN(), QuantizationAwareTrainingConfig(
            example_inputs=x[:4], excluded_layers=["haed"]))


def test_a_model_torch_export_cannot_capture_is_reported(data):
    x, _ = data

    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent Python control flow
                return self.fc(x)
            return -self.fc(x)

    with pytest.raises(ModelError, match=r"torch.export could not capture DataDependent"):
        prepare_compression(DataDependent(), QuantizationAwareTrainingConfig(
            example_inputs=x[:4]))


def test_export_before_any_training_step_says_what_to_do(bn_model, tmp_path):
    _, manager = bn_model  # prepared, never trained
    with pytest.raises(ModelError, match="the QAT model has not been trained yet"):
        manager.export(str(tmp_path / "m.pt2"))


def test_post_training_quantization_helper_gives_an_int8_model(cnn_kd, data):
    x, y = data
    float_model = SmallCNN()
    float_model.load_state_dict(cnn_kd["float_state"])
    quantized = q.quantize_post_training(float_model, x[:8], [x[:32], x[32:64]])
    assert any(t.dtype == torch.int8 for t in quantized.state_dict().values())
    with torch.no_grad():
        assert (quantized(x).argmax(-1) == y).float().mean() >= 0.9
