"""Bad user input: each mistake gets its own error type and a message that says how to fix it."""

import pytest
import yaml

torch = pytest.importorskip("torch")

from helpers import (assert_states_identical, base_config, make_blobs, state_arrays,  # noqa: E402
                     tensor_loader, tiny_mlp)
from neural_distill import (ConfigError, DataError, Distillation, ModelError,  # noqa: E402
                           NeuralDistillError)


@pytest.fixture
def blobs():
    return make_blobs(n=64)


def ready_distiller(workspace, blobs, **overrides):
    x, y = blobs
    distiller = Distillation(base_config(workspace, **overrides))
    distiller.student_model = tiny_mlp(seed=0)
    distiller.teacher_model = tiny_mlp(seed=1)
    distiller.train_dataloader = tensor_loader(x, y, batch_size=32)
    return distiller


# ---------------------------------------------------------------------------- data
def test_missing_train_dataloader(workspace):
    distiller = Distillation(base_config(workspace))
    distiller.student_model = tiny_mlp(seed=0)
    distiller.teacher_model = tiny_mlp(seed=1)
    with pytest.raises(DataError) as info:
        distiller.fit()
    message = str(info.value)
    assert "no training data" in message
    assert "distiller.train_dataloader" in message
    assert "distillation.train.dataloader.dataset" in message
    assert "<dict>" in message


def test_missing_train_dataloader_names_the_yaml_file(tmp_path, workspace):
    path = tmp_path / "distill.yaml"
    config = base_config(workspace)
    config["distillation"]["train"]["dataloader"] = {"batch_size": 8}  # no dataset
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    distiller = Distillation(str(path))
    distiller.student_model = tiny_mlp(seed=0)
    distiller.teacher_model = tiny_mlp(seed=1)
    with pytest.raises(DataError) as info:
        distiller.fit()
    assert str(path) in str(info.value)


def test_unreadable_batch_type(workspace):
    distiller = Distillation(base_config(workspace))
    distiller.student_model = tiny_mlp(seed=0)
    distiller.teacher_model = tiny_mlp(seed=1)
    distiller.train_dataloader = ["not a batch"]
    with pytest.raises(DataError) as info:
        distiller.fit()
    assert "cannot read a batch of type str" in str(info.value)
    assert "train_dataloader" in str(info.value)


def test_eval_dataloader_without_labels(workspace, blobs):
    distiller = ready_distiller(workspace, blobs,
                                evaluation={"accuracy": {"metric": "Accuracy"}})
    distiller.eval_dataloader = tensor_loader(blobs[0], None, batch_size=32)
    with pytest.raises(DataError) as info:
        distiller.fit()
    assert "eval_dataloader" in str(info.value)
    assert "labels" in str(info.value)


def test_non_finite_loss_is_reported(workspace, blobs):
    x, y = blobs
    x = x.copy()
    x[0, 0] = float("nan")
    distiller = ready_distiller(workspace, (x, y))
    with pytest.raises(DataError) as info:
        distiller.fit()
    assert "loss became nan" in str(info.value)
    assert "max_grad_norm" in str(info.value)


def test_npz_dataset_file_missing(tmp_path, workspace):
    config = base_config(workspace)
    config["distillation"]["train"]["dataloader"] = {"dataset": {"npz": {"path": "nope.npz"}}}
    path = tmp_path / "distill.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    distiller = Distillation(str(path))
    distiller.student_model = tiny_mlp(seed=0)
    distiller.teacher_model = tiny_mlp(seed=1)
    with pytest.raises(ConfigError) as info:
        distiller.fit()
    assert str(tmp_path / "nope.npz") in str(info.value)
    assert "distillation.train.dataloader.dataset.npz.path" in str(info.value)


# ---------------------------------------------------------------------------- shapes
def test_student_and_teacher_output_shapes_disagree(workspace, blobs):
    distiller = ready_distiller(workspace, blobs)
    distiller.teacher_model = tiny_mlp(out=4, seed=1)
    before = state_arrays(distiller.student_model)
    with pytest.raises(ModelError) as info:
        distiller.fit()
    message = str(info.value)
    assert "(32, 3)" in message and "(32, 4)" in message
    assert "student" in message and "teacher" in message
    # Nothing was trained with the broken pair.
    assert_states_identical(before, state_arrays(distiller.student_model))


def test_cached_teacher_output_of_the_wrong_shape(workspace, blobs):
    x, y = blobs
    distiller = ready_distiller(workspace, blobs)
    out = distiller.student_model(torch.as_tensor(x[:5]))
    with pytest.raises(ModelError) as info:
        distiller.on_after_compute_loss(torch.as_tensor(x[:5]), out, None,
                                        teacher_output=torch.zeros(5, 7))
    assert "(5, 3)" in str(info.value) and "(5, 7)" in str(info.value)


# ---------------------------------------------------------------------------- models
@pytest.mark.parametrize("not_a_model,type_name", [
    ("teacher.pt", "builtins.str"),
    (42, "builtins.int"),
    (torch.nn.Linear, "builtins.type"),  # the class, not an instance
], ids=["str", "int", "class"])
@pytest.mark.parametrize("role", ["teacher", "student"])
def test_assigning_something_that_is_not_a_model(workspace, role, not_a_model, type_name):
    distiller = Distillation(base_config(workspace))
    with pytest.raises(ModelError) as info:
        setattr(distiller, f"{role}_model", not_a_model)
    message = str(info.value)
    assert message.startswith(f"{role}_model: ")
    assert "expected a torch.nn.Module or a keras.Model" in message
    assert type_name in message
    assert getattr(distiller, f"{role}_model") is None


@pytest.mark.parametrize("not_a_model,hint", [
    ({"fc.weight": [1.0]}, "Assign the model object itself"),
    (tiny_mlp().state_dict(), "This looks like a state_dict"),  # a state_dict, not a model
], ids=["dict", "state_dict"])
def test_assigning_a_dict_of_non_models_as_teacher(workspace, not_a_model, hint):
    # A dict teacher maps checkpoint paths to models; a dict without models is a mistake.
    distiller = Distillation(base_config(workspace))
    with pytest.raises(ModelError) as info:
        distiller.teacher_model = not_a_model
    message = str(info.value)
    assert message.startswith("teacher_model: ")
    assert "expected a torch.nn.Module or a keras.Model, got " in message
    assert "Dict" in message or "dict" in message
    assert hint in message
    assert distiller.teacher_model is None


def test_teacher_dict_with_a_model_under_a_non_path_key(workspace):
    distiller = Distillation(base_config(workspace))
    with pytest.raises(ModelError, match="a dict must map checkpoint paths to models"):
        distiller.teacher_model = {0: tiny_mlp()}


def test_student_must_be_a_single_model(workspace):
    distiller = Distillation(base_config(workspace))
    with pytest.raises(ModelError) as info:
        distiller.student_model = {"student.pt": tiny_mlp()}
    assert str(info.value).startswith("student_model: ")
    assert "builtins.dict" in str(info.value)


def test_student_not_set(workspace, blobs):
    distiller = Distillation(base_config(workspace))
    distiller.teacher_model = tiny_mlp(seed=1)
    distiller.train_dataloader = tensor_loader(*blobs)
    with pytest.raises(ModelError) as info:
        distiller.fit()
    assert "no student model" in str(info.value)
    assert "distiller.student_model" in str(info.value)
    with pytest.raises(ModelError) as info:
        distiller.on_train_begin()
    assert "distiller.student_model" in str(info.value)


def test_teacher_not_set(workspace, blobs):
    distiller = Distillation(base_config(workspace))
    distiller.student_model = tiny_mlp(seed=0)
    distiller.train_dataloader = tensor_loader(*blobs)
    with pytest.raises(ModelError) as info:
        distiller.fit()
    assert "distiller.teacher_model" in str(info.value)


def test_loss_hook_without_teacher_or_teacher_output(workspace, blobs):
    distiller = Distillation(base_config(workspace))
    distiller.student_model = tiny_mlp(seed=0)
    x = torch.as_tensor(blobs[0][:4])
    with pytest.raises(ModelError) as info:
        distiller.on_after_compute_loss(x, distiller.student_model(x), None)
    assert "teacher_output" in str(info.value)
    assert "distiller.teacher_model" in str(info.value)


@pytest.mark.parametrize("framework", ["tensorflow", "keras"])
def test_framework_in_config_disagrees_with_the_model(workspace, framework):
    distiller = Distillation(base_config(workspace, model={"framework": framework}))
    with pytest.raises(ModelError) as info:
        distiller.student_model = tiny_mlp(seed=0)
    message = str(info.value)
    assert message.startswith("<dict>: model.framework")
    assert f"'{framework}'" in message
    assert "torch" in message and "Sequential" in message
    with pytest.raises(ModelError):
        distiller.teacher_model = tiny_mlp(seed=1)


def test_framework_mismatch_names_the_yaml_file(tmp_path, workspace):
    path = tmp_path / "tf.yaml"
    path.write_text(yaml.safe_dump(base_config(workspace, model={"framework": "tensorflow"})),
                    encoding="utf-8")
    distiller = Distillation(str(path))
    with pytest.raises(ModelError) as info:
        distiller.teacher_model = tiny_mlp(seed=1)
    assert str(info.value).startswith(f"{path}: model.framework")


def test_pytorch_variants_accept_torch_models(workspace):
    for framework in ("pytorch", "pytorch_fx", "pytorch_ipex"):
        distiller = Distillation(base_config(workspace, model={"framework": framework}))
        distiller.student_model = tiny_mlp(seed=0)
        assert distiller.framework == "torch"


def test_criterion_of_the_wrong_kind(workspace, blobs):
    distiller = ready_distiller(workspace, blobs)
    distiller.criterion = torch.nn.CrossEntropyLoss()
    with pytest.raises(ModelError) as info:
        distiller.fit()
    assert "PyTorchKnowledgeDistillationLoss" in str(info.value)
    assert "CrossEntropyLoss" in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda(workspace, blobs):
    distiller = ready_distiller(workspace, blobs, device="cuda")
    with pytest.raises(ModelError) as info:
        distiller.fit()
    assert "device" in str(info.value) and "cuda" in str(info.value)


def test_every_error_is_a_neural_distill_error():
    for error in (ConfigError, DataError, ModelError):
        assert issubclass(error, NeuralDistillError)

