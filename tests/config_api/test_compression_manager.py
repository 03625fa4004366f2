"""prepare_compression: the manager's hooks, the order of the configs' parts, the loss returned."""

import os

import pytest

torch = pytest.importorskip("torch")

from helpers import make_blobs, tiny_mlp, trained_teacher  # noqa: E402
from neural_distill import ConfigError, Distillation, ModelError  # noqa: E402
from neural_distill.config import (DistillationConfig,  # noqa: E402
                                   IntermediateLayersKnowledgeDistillationLossConfig,
                                   KnowledgeDistillationLossConfig,
                                   QuantizationAwareTrainingConfig)
from neural_distill.events import HOOK_NAMES  # noqa: E402
from neural_distill.training import Callbacks, CompressionManager, prepare_compression  # noqa: E402

F = torch.nn.functional


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(n=64)
    return torch.as_tensor(x), torch.as_tensor(y)


@pytest.fixture(scope="module")
def teacher(blobs):
    x, y = blobs
    return trained_teacher(x.numpy(), y.numpy())


def test_manager_and_callbacks_have_exactly_the_hooks_in_event_order():
    for cls in (CompressionManager, Callbacks):
        hooks = [name for name in vars(cls) if name.startswith("on_")]
        assert hooks == list(HOOK_NAMES), cls
    # Same signatures as Distillation's hooks.
    import inspect
    for name in HOOK_NAMES:
        assert str(inspect.signature(getattr(CompressionManager, name))) == \
            str(inspect.signature(getattr(Distillation, name))), name


def _record(manager):
    """Wrap every hook of every part; returns the list the calls are appended to."""
    calls = []
    for index, part in enumerate(manager.parts):
        for name in HOOK_NAMES:
            original = getattr(part, name)

            def wrapper(*args, _name=name, _index=index, _original=original, **kwargs):
                calls.append((_index, _name))
                return _original(*args, **kwargs)

            setattr(part, name, wrapper)
    return calls


def _one_epoch(manager, x, y, steps=2, via_callbacks=False, dataloader=None):
    hooks = manager.callbacks if via_callbacks else manager
    model = manager.model
    losses = []
    hooks.on_train_begin(dataloader)
    # Built after on_train_begin: feature matchers (if any) exist by then.
    parameters = list(model.parameters())
    for distiller in manager.distillers:
        parameters += list(distiller.criterion.parameters())
    optimizer = torch.optim.SGD(parameters, lr=0.05)
    hooks.on_epoch_begin(0)
    for step in range(steps):
        hooks.on_step_begin(step)
        xb, yb = x[step * 8:(step + 1) * 8], y[step * 8:(step + 1) * 8]
        out = model(xb)
        loss = hooks.on_after_compute_loss(xb, out, F.cross_entropy(out, yb))
        losses.append(loss)
        optimizer.zero_grad()
        loss.backward()
        hooks.on_before_optimizer_step()
        optimizer.step()
        hooks.on_after_optimizer_step()
        hooks.on_step_end()
    hooks.on_epoch_end()
    hooks.on_train_end()
    return losses


@pytest.mark.parametrize("via_callbacks", [False, True], ids=["manager", "callbacks"])
def test_combined_manager_calls_each_parts_hooks_in_list_order(blobs, teacher, via_callbacks):
    x, y = blobs
    manager = prepare_compression(tiny_mlp(), [
        DistillationConfig(teacher_model=teacher, criterion=KnowledgeDistillationLossConfig()),
        DistillationConfig(teacher_model=teacher, criterion=KnowledgeDistillationLossConfig(
            temperature=2.0, loss_types=["CE", "KL"]))])
    calls = _record(manager)
    _one_epoch(manager, x, y, steps=2, via_callbacks=via_callbacks)
    expected = []
    sequence = ["on_train_begin", "on_epoch_begin"] + [
        "on_step_begin", "on_after_compute_loss", "on_before_optimizer_step",
        "on_after_optimizer_step", "on_step_end"] * 2 + ["on_epoch_end", "on_train_end"]
    for name in sequence:
        expected += [(0, name), (1, name)]
    assert calls == expected


def test_loss_is_chained_through_the_parts_in_order(blobs, teacher):
    x, y = blobs
    first = DistillationConfig(teacher_model=teacher, criterion=KnowledgeDistillationLossConfig(
        loss_types=["CE", "MSE"], loss_weights=[1.0, 1.0]))
    second = DistillationConfig(teacher_model=teacher, criterion=KnowledgeDistillationLossConfig(
        loss_types=["CE", "MSE"], loss_weights=[2.0, 3.0]))
    student = tiny_mlp()
    manager = prepare_compression(student, [first, second])
    out = student(x[:8])
    student_loss = F.cross_entropy(out, y[:8])
    loss = manager.on_after_compute_loss(x[:8], out, student_loss)
    with torch.no_grad():
        mse = F.mse_loss(out, teacher(x[:8]))
    # first: 1 * ce + 1 * mse; second: 2 * (first) + 3 * mse
    assert torch.allclose(loss, 2 * (student_loss + mse) + 3 * mse)


def test_on_after_compute_loss_always_returns_one_scalar_tensor(blobs, teacher):
    x, y = blobs
    manager = prepare_compression(tiny_mlp(), DistillationConfig(teacher_model=teacher))
    model = manager.model
    out = model(x[:8])
    for student_loss in (F.cross_entropy(out, y[:8]),
                         F.cross_entropy(out, y[:8], reduction="none"),  # per sample: averaged
                         None):                                          # unlabeled batch
        loss = manager.on_after_compute_loss(x[:8], out, student_loss)
        assert isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.requires_grad
    per_sample = manager.on_after_compute_loss(
        x[:8], out, F.cross_entropy(out, y[:8], reduction="none"))
    assert torch.allclose(per_sample, manager.on_after_compute_loss(
        x[:8], out, F.cross_entropy(out, y[:8])))
    with pytest.raises(ModelError, match=r"student_loss: expected one scalar loss tensor .*got a "
                                         r"list of 2"):
        manager.on_after_compute_loss(x[:8], out, [F.cross_entropy(out, y[:8])] * 2)


def test_qat_only_manager_returns_the_students_loss(blobs):
    x, y = blobs
    manager = prepare_compression(tiny_mlp(), QuantizationAwareTrainingConfig(
        example_inputs=x[:8]))
    out = manager.model(x[:8])
    student_loss = F.cross_entropy(out, y[:8])
    assert manager.on_after_compute_loss(x[:8], out, student_loss) is student_loss
    with pytest.raises(ModelError, match="there is no loss to return"):
        manager.on_after_compute_loss(x[:8], out, None)
    with pytest.raises(ModelError, match="expected a loss tensor of the model's framework, got "
                                         "float"):
        manager.on_after_compute_loss(x[:8], out, 0.5)


def test_distillation_part_drives_a_distillation_object(blobs, teacher, workspace):
    x, y = blobs
    student = tiny_mlp()
    manager = prepare_compression(student, DistillationConfig(
        teacher_model=teacher, criterion=KnowledgeDistillationLossConfig(temperature=2.0),
        optimizer={"SGD": {"learning_rate": 0.1}}, metrics="Accuracy"))
    (distiller,) = manager.distillers
    assert isinstance(distiller, Distillation)
    assert distiller.student_model is student and manager.model is student
    assert distiller.teacher_model is teacher
    assert distiller.conf.distillation.train.optimizer == {"SGD": {
        "learning_rate": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}}
    _one_epoch(manager, x, y)
    assert distiller.history and distiller.best_model is not None


def test_automatic_layer_mappings_without_qat_use_the_layers_both_models_have(blobs, teacher):
    x, y = blobs
    manager = prepare_compression(tiny_mlp(hidden=16), DistillationConfig(
        teacher_model=teacher, criterion=IntermediateLayersKnowledgeDistillationLossConfig(
            add_origin_loss=True)))
    criterion = manager.distillers[0].conf.distillation.train.criterion
    assert criterion["IntermediateLayersKnowledgeDistillationLoss"]["layer_mappings"] == \
        [["0"], ["2"]]
    # A dataloader lets on_train_begin build the feature matchers before the optimizer exists.
    losses = _one_epoch(manager, x, y, dataloader=[(x[:8], y[:8])])
    assert all(loss.dim() == 0 for loss in losses)


def test_automatic_layer_mappings_need_a_teacher():
    with pytest.raises(ModelError, match="layer_mappings is empty and there is no teacher"):
        prepare_compression(tiny_mlp(), DistillationConfig(
            criterion=IntermediateLayersKnowledgeDistillationLossConfig()))


def test_save_writes_weights_and_the_configs_yaml(tmp_path, teacher):
    import yaml

    student = tiny_mlp()
    manager = prepare_compression(student, DistillationConfig(
        teacher_model=teacher, criterion=KnowledgeDistillationLossConfig(temperature=3.0)))
    folder = manager.save(str(tmp_path / "saved"))
    state = torch.load(os.path.join(folder, "model.pt"), weights_only=True)
    assert state.keys() == student.state_dict().keys()
    document = yaml.safe_load(open(os.path.join(folder, "compression.yaml")))
    assert document == manager.configs[0].to_dict()
    assert DistillationConfig.from_dict(document, teacher_model=teacher) == manager.configs[0]


def test_float_export_needs_example_inputs_and_writes_a_program(tmp_path, teacher):
    manager = prepare_compression(tiny_mlp(), DistillationConfig(teacher_model=teacher))
    with pytest.raises(ConfigError, match="export: example_inputs: expected one batch"):
        manager.export(str(tmp_path / "m.pt2"))
    info = manager.export(str(tmp_path / "m.pt2"), example_inputs=torch.zeros(1, 8))
    assert os.path.getsize(info.path) == info.file_bytes and not info.int8
    loaded = torch.export.load(info.path).module()
    x = torch.randn(5, 8)  # another batch size than the example's
    assert torch.allclose(loaded(x), manager.model(x), atol=1e-6)


@pytest.mark.parametrize("configs,message", [
    ([], "configs: expected a DistillationConfig, a QuantizationAwareTrainingConfig or a "
         "non-empty list of them, got []"),
    ([KnowledgeDistillationLossConfig()], "configs[0]: expected a DistillationConfig, a "
                                          "QuantizationAwareTrainingConfig or a "
                                          "WeightPruningConfig, got "
                                          "KnowledgeDistillationLossConfig"),
    ([QuantizationAwareTrainingConfig(), QuantizationAwareTrainingConfig()],
     "expected at most one QuantizationAwareTrainingConfig"),
], ids=["empty", "criterion-not-config", "two-qat"])
def test_prepare_compression_rejects_bad_configs(configs, message):
    with pytest.raises(ConfigError) as info:
        prepare_compression(tiny_mlp(), configs)
    assert message in str(info.value)


def test_prepare_compression_rejects_what_is_not_a_model():
    with pytest.raises(ModelError, match="prepare_compression: model: expected a torch.nn.Module "
                                         "or a keras.Model, got builtins.str"):
        prepare_compression("model.pt", DistillationConfig())


def test_qat_for_a_keras_model_uses_the_keras_backend():
    """Keras QAT itself is tested in tests/tensorflow/test_tf_qat.py."""
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
    manager = prepare_compression(model, QuantizationAwareTrainingConfig(example_inputs=None))
    assert manager.model is model and manager.qat.quantized == {"d": "Dense"}
