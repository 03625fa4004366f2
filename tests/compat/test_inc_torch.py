"""INC 1.x / the 1.13-1.14 "2.0" preview API, PyTorch, written as INC's own tests write it
(test/distillation/test_distillation*.py), with only the import paths changed
(``neural_compressor.experimental`` -> ``neural_distill``, ``neural_compressor.conf.config`` ->
``neural_distill.config``, ``neural_compressor.training`` -> ``neural_distill.training``).
Models and data are tiny stand-ins for INC's ResNets on dummy ImageNet batches.
"""

import copy
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import np_reference as ref  # noqa: E402
from helpers import (accuracy, make_blobs, state_arrays, tensor_loader, tiny_mlp,  # noqa: E402
                     trained_teacher)
from neural_distill import ConfigError, ModelError  # noqa: E402

torch.set_num_threads(1)

FAKE_YAML = """
model:
    name: imagenet_distillation
    framework: pytorch

distillation:
    train:
        start_epoch: 0
        end_epoch: 3
        iteration: 10
        frequency: 1
        optimizer:
            SGD:
                learning_rate: 0.1
                momentum: 0.1
                nesterov: True
                weight_decay: 0.001
        criterion:
            KnowledgeDistillationLoss:
                temperature: 1.0
                loss_types: ['CE', 'KL']
                loss_weights: [0.5, 0.5]
        dataloader:
            batch_size: 30
            dataset:
                dummy:
                    shape: [128, 8]
                    label: True
                    num_classes: 3
evaluation:
    accuracy:
        metric:
            topk: 1
        dataloader:
            batch_size: 30
            dataset:
                dummy:
                    shape: [128, 8]
                    label: True
                    num_classes: 3
tuning:
    workspace:
        path: {workspace}
"""


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(n=192, seed=0)
    x_eval, y_eval = make_blobs(n=96, seed=5)
    return x, y, x_eval, y_eval


@pytest.fixture(scope="module")
def teacher(blobs):
    return trained_teacher(*blobs[:2])


@pytest.fixture
def fake_yaml(workspace):
    with open("fake.yaml", "w", encoding="utf-8") as f:
        f.write(FAKE_YAML.replace("{workspace}", workspace))
    return "fake.yaml"


@pytest.fixture
def inc_conf(workspace):
    from neural_distill.config import conf

    conf.clear()  # one object per process, as in INC: every test starts a new experiment
    yield conf
    conf.clear()


# ------------------------------------------------------------- INC 1.x: the module-level conf
def test_distillation_with_the_module_level_conf(inc_conf, fake_yaml, workspace, teacher):
    from neural_distill import Distillation
    from neural_distill.config import DistillationConf

    conf = DistillationConf("fake.yaml")
    distiller = Distillation(conf)
    distiller = Distillation()

    from neural_distill.config import conf

    import neural_distill
    assert conf is inc_conf is neural_distill.conf  # INC 1.x: `from neural_compressor import conf`
    conf.model.framework = "pytorch"
    conf.distillation.train.end_epoch = 3
    conf.distillation.train.iteration = 10
    conf.distillation.train.optimizer = {
        "SGD": {"learning_rate": 0.1, "momentum": 0.1, "nesterov": True, "weight_decay": 0.001}
    }
    conf.distillation.train.dataloader.batch_size = 30
    conf.distillation.train.dataloader.dataset = {"dummy": {"shape": [128, 8], "label": True,
                                                            "num_classes": 3}}
    conf.evaluation.accuracy.dataloader.batch_size = 30
    conf.evaluation.accuracy.dataloader.dataset = {"dummy": {"shape": [128, 8], "label": True,
                                                             "num_classes": 3}}
    conf.tuning.workspace.path = workspace
    student_model = tiny_mlp(seed=0)
    before = state_arrays(student_model)
    teacher_model = copy.deepcopy(teacher)
    distiller = Distillation(conf)
    distiller.student_model = student_model
    distiller.teacher_model = teacher_model
    print("student model: {}".format(distiller.student_model))
    distilled_model = distiller.fit()
    distilled_model.save("./saved")
    stat = torch.load("./saved/best_model.pt")
    student_model.load_state_dict(stat)

    # Every value set attribute by attribute reached the experiment.
    train = distiller.conf.distillation.train
    assert (train.end_epoch, train.iteration, train.dataloader.batch_size) == (3, 10, 30)
    assert train.optimizer == {"SGD": {"learning_rate": 0.1, "momentum": 0.1, "nesterov": True,
                                       "weight_decay": 0.001}}
    assert type(distilled_model) is type(student_model)
    assert not np.array_equal(before["0.weight"], state_arrays(student_model)["0.weight"])
    assert state_arrays(teacher_model).keys() == state_arrays(teacher).keys()
    assert all(np.array_equal(v, state_arrays(teacher)[k])
               for k, v in state_arrays(teacher_model).items())


def test_a_misspelt_section_of_conf_is_an_error_not_a_new_empty_setting(inc_conf):
    from neural_distill import Distillation
    from neural_distill.config import conf

    conf.model.framework = "pytorch"
    conf.distilation.train.end_epoch = 3
    with pytest.raises(ConfigError, match="distilation: unknown key. Did you mean 'distillation'"):
        Distillation(conf)


def test_reading_protocol_names_does_not_create_sections(inc_conf):
    from neural_distill.config import conf

    conf.model.framework = "pytorch"
    assert not hasattr(conf, "__deepcopy_hook__") and copy.deepcopy(conf) == conf
    assert list(conf) == ["model"]


# --------------------------------------------- INC 1.13/1.14: training.prepare / training.fit
def test_distillation_external_new_API(fake_yaml, blobs, teacher):
    from neural_distill.config import DistillationConf
    from neural_distill.training import fit, prepare

    x, y, x_eval, y_eval = blobs
    dummy_dataloader = tensor_loader(x, y, batch_size=32, shuffle=True)
    student_model = tiny_mlp(seed=0)
    teacher_model = copy.deepcopy(teacher)
    teacher_before = state_arrays(teacher_model)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(student_model.parameters(), lr=0.1)
    conf = DistillationConf("fake.yaml")
    callbacks, model = prepare(conf, model=student_model, teacher_model=teacher_model)
    assert model is student_model
    scores = []

    def training_func_for_nc(model):
        epochs = 3
        iters = 10
        for nepoch in range(epochs):
            model.train()
            cnt = 0
            callbacks.on_epoch_begin(nepoch)
            for image, target in dummy_dataloader:
                callbacks.on_step_begin(cnt)
                print(".", end="")
                cnt += 1
                output = model(image)
                loss = criterion(output, target)
                loss = callbacks.on_after_compute_loss(image, output, loss)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                callbacks.on_step_end()
                if cnt >= iters:
                    break
            callbacks.on_epoch_end()
        return model

    def eval_func(model):
        scores.append(accuracy(model, x_eval, y_eval))
        return scores[-1]

    model = fit(model, callbacks, train_func=training_func_for_nc, eval_func=eval_func)

    assert isinstance(model, nn.Sequential) and model is not student_model
    assert len(scores) == 3 and accuracy(model, x_eval, y_eval) == max(scores) > 0.85
    distiller = callbacks.component
    assert len(distiller.history) == 3
    # The KD term of the YAML's criterion was in every epoch's loss.
    assert all(r["distillation_loss"] > 0 for r in distiller.history)
    after = state_arrays(teacher_model)
    assert all(np.array_equal(teacher_before[k], after[k]) for k in teacher_before)


def test_fit_refuses_what_it_cannot_run():
    from neural_distill.training import fit, prepare

    callbacks, model = prepare({"model": {"framework": "pytorch"}}, model=tiny_mlp(),
                               teacher_model=tiny_mlp(hidden=32, seed=1))
    with pytest.raises(ConfigError, match="train_func: expected a function"):
        fit(model, callbacks, train_func=None, eval_func=lambda m: 1.0)
    with pytest.raises(ModelError, match="TrainingCallbacks that prepare"):
        fit(model, object(), train_func=lambda m: m)
    with pytest.raises(ConfigError, match="list of configurations"):
        prepare([{}, {}], model=model)


# ------------------------------------------------ INC criterion objects used in a user's loop
def test_criterion_objects_driven_by_a_loop(blobs, teacher):
    from neural_distill.common.criterion import PyTorchKnowledgeDistillationLoss

    x, y, x_eval, y_eval = blobs
    student_model = tiny_mlp(seed=0)
    teacher_model = copy.deepcopy(teacher).train()  # a loop may leave it in train mode
    teacher_before = state_arrays(teacher_model)
    criterion = PyTorchKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", "KL"],
                                                 loss_weights=[0.3, 0.7],
                                                 student_model=student_model,
                                                 teacher_model=teacher_model)
    # The teacher is referenced, not adopted: nothing of it reaches an optimizer or a save.
    assert criterion.teacher_model is teacher_model
    assert list(criterion.parameters()) == [] and criterion.state_dict() == {}
    optimizer = torch.optim.SGD(student_model.parameters(), lr=0.1)

    first = None
    for epoch in range(3):
        for image, target in tensor_loader(x, y, batch_size=32):
            teacher_output = criterion.teacher_model_forward(image)
            output = student_model(image)
            student_loss = criterion.loss_cal(output, target)
            loss = criterion.loss_cal_sloss(output, teacher_output, student_loss)
            if first is None:
                s, t = output.detach().numpy(), teacher_output.numpy()
                assert student_loss.item() == pytest.approx(
                    ref.student_term("CE", s, target.numpy()), rel=1e-5)
                assert criterion.teacher_student_loss_cal(output, teacher_output).item() == \
                    pytest.approx(ref.kd("KL", s, t, 2.0), rel=1e-5)
                assert loss.item() == pytest.approx(
                    ref.total("CE", "KL", [0.3, 0.7], s, t, target.numpy(), 2.0), rel=1e-5)
                first = loss.item()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    assert teacher_output.requires_grad is False and criterion.teacher_outputs is teacher_output
    assert teacher_model.training  # put back as the loop left it
    assert accuracy(student_model, x_eval, y_eval) > 0.85
    after = state_arrays(teacher_model)
    assert all(np.array_equal(teacher_before[k], after[k]) for k in teacher_before)


def test_teacher_model_forward_edge_cases(teacher):
    from neural_distill.common.criterion import PyTorchKnowledgeDistillationLoss

    no_kd = PyTorchKnowledgeDistillationLoss(loss_weights=[1.0, 0.0], teacher_model=teacher)
    assert no_kd.teacher_model_forward(torch.zeros(2, 8)) is None  # INC: no term, no forward
    assert no_kd.teacher_model_forward(None) is None
    alone = PyTorchKnowledgeDistillationLoss()
    with pytest.raises(ModelError, match="no teacher"):
        alone.teacher_model_forward(torch.zeros(2, 8))
    given = alone.teacher_model_forward(torch.zeros(2, 8), teacher_model=teacher)
    assert given.shape == (2, 3)


def test_inc_style_criterion_call_with_labels_says_where_it_went(teacher):
    from neural_distill.common.criterion import PyTorchKnowledgeDistillationLoss

    criterion = PyTorchKnowledgeDistillationLoss(teacher_model=teacher)
    output = tiny_mlp()(torch.zeros(4, 8))
    with pytest.raises(ModelError, match=r"criterion.loss_cal\(output, target\)"):
        criterion(output, torch.zeros(4, dtype=torch.long))


# -------------------------------------------------- outputs that differ by leading size-1 axes
class SqueezingTeacher(nn.Module):
    """Like INC's test models: a batch of one comes out as shape (classes,)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x).squeeze(0)


def test_leading_size_one_axes_broadcast_with_one_warning(blobs, teacher, workspace):
    from neural_distill import Distillation

    x, y, _, _ = blobs
    student_model = tiny_mlp(seed=0)
    distiller = Distillation({"model": {"framework": "pytorch"},
                              "tuning": {"workspace": {"path": workspace}}})
    distiller.student_model = student_model
    distiller.teacher_model = SqueezingTeacher(copy.deepcopy(teacher))
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(student_model.parameters(), lr=0.05)
    losses = []
    with pytest.warns(UserWarning, match=r"\(1, 3\) and teacher output shape \(3,\)") as caught:
        distiller.on_train_begin()
        for i in range(6):
            image, target = torch.from_numpy(x[i:i + 1]), torch.from_numpy(y[i:i + 1])
            output = student_model(image)  # shape (1, 3)
            loss = distiller.on_after_compute_loss(image, output, criterion(output, target))
            losses.append(loss.item())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        distiller.on_train_end()
    assert sum("leading axes of size 1" in str(w.message) for w in caught) == 1
    assert all(np.isfinite(losses))


def test_leading_size_one_axes_give_the_same_loss_and_real_mismatches_stay_errors():
    from neural_distill.common.criterion import PyTorchKnowledgeDistillationLoss

    criterion = PyTorchKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", "KL"])
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(1, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)
    with pytest.warns(UserWarning, match="leading axes of size 1"):
        squeezed = criterion.distillation_loss(torch.from_numpy(s), torch.from_numpy(t))
    assert squeezed.item() == pytest.approx(ref.kd("KL", s, t[None], 2.0), rel=1e-5)
    for student_shape, teacher_shape in [((2, 3), (2, 4)), ((1, 3), (3, 1)), ((2, 3), (6,))]:
        with pytest.raises(ModelError, match="disagree"):
            criterion.distillation_loss(torch.zeros(student_shape), torch.zeros(teacher_shape))


# ------------------------------------------------ INC 2.x config objects expose .config
def test_distillation_intermediate_layers_config_node(blobs, teacher):
    from neural_distill.config import (DistillationConfig,
                                       IntermediateLayersKnowledgeDistillationLossConfig)
    from neural_distill.training import prepare_compression

    x, y, _, _ = blobs
    criterion = nn.CrossEntropyLoss()
    distillation_criterion_conf = IntermediateLayersKnowledgeDistillationLossConfig(
        layer_mappings=[
            ["", ],
            [["0", ""], ["0", "0"]],
        ],
        loss_types=["L1", "MSE"],
        loss_weights=[0.5, 0.5],
    )
    calls = []

    def first_16(output):
        calls.append(tuple(output.shape))
        return output[:, :16]

    distillation_criterion_conf.config.IntermediateLayersKnowledgeDistillationLoss \
        .layer_mappings[1][1][-1] = first_16
    assert distillation_criterion_conf.layer_mappings[1][1][1] is first_16
    student_model = tiny_mlp(seed=0)
    optimizer = torch.optim.SGD(student_model.parameters(), lr=0.01)
    conf = DistillationConfig(copy.deepcopy(teacher), distillation_criterion_conf)
    compression_manager = prepare_compression(copy.deepcopy(student_model), conf)
    model = compression_manager.model

    compression_manager.callbacks.on_train_begin()
    for nepoch in range(2):
        model.train()
        cnt = 0
        for image, target in tensor_loader(x, y, batch_size=32):
            compression_manager.callbacks.on_step_begin(cnt)
            cnt += 1
            output = model(image)
            loss = criterion(output, target)
            loss = compression_manager.callbacks.on_after_compute_loss(image, output, loss)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if cnt >= 3:
                break
        compression_manager.callbacks.on_epoch_end()
    compression_manager.callbacks.on_train_end()

    # The teacher's layer "0" has 32 units: the process set through .config cut it to 16.
    assert calls and {shape[1] for shape in calls} == {32}
    with pytest.raises(ConfigError, match="loss_types"):
        distillation_criterion_conf.config.IntermediateLayersKnowledgeDistillationLoss \
            .loss_types = ["L1", "BAD"]
    assert distillation_criterion_conf.loss_types == ["L1", "MSE"]


FAKE_YAML_2 = """
model:
    name: imagenet_distillation
    framework: pytorch

distillation:
    train:
        start_epoch: 0
        end_epoch: 2
        iteration: 3
        optimizer:
            SGD:
                learning_rate: 0.001
        criterion:
            IntermediateLayersKnowledgeDistillationLoss:
                layer_mappings: [
                    ['0', ],
                    [['0', ''], ['0', '0']],
                                    ]
                loss_types: ['KL', 'MSE']
                loss_weights: [0.5, 0.5]
        dataloader:
            batch_size: 8
            dataset:
                dummy:
                    shape: [32, 8]
                    label: True
                    num_classes: 3
evaluation:
    accuracy:
        metric:
            topk: 1
        dataloader:
            batch_size: 8
            dataset:
                dummy:
                    shape: [32, 8]
                    label: True
                    num_classes: 3
tuning:
    workspace:
        path: {workspace}
"""


def test_distillation_intermediate_layers_usr_cfg(workspace, teacher):
    from neural_distill import Distillation, common
    from neural_distill.config import DistillationConf

    with open("fake_2.yaml", "w", encoding="utf-8") as f:
        f.write(FAKE_YAML_2.replace("{workspace}", workspace))
    calls = []

    def first_16(x):
        calls.append(tuple(x.shape))
        return x[:, :16, ...]

    conf = DistillationConf("fake_2.yaml")
    conf.usr_cfg.distillation.train.criterion.IntermediateLayersKnowledgeDistillationLoss \
        .layer_mappings[1][1][-1] = first_16
    distiller = Distillation(conf)
    distiller.student_model = common.Model(tiny_mlp(seed=0))
    distiller.teacher_model = common.Model(copy.deepcopy(teacher))
    print("student model: {}".format(distiller.student_model))
    model = distiller.fit()

    assert isinstance(model, common.Model) and isinstance(model.model, nn.Sequential)
    # The teacher's 32-unit layer went through the process set on usr_cfg at every step.
    assert calls and {shape[1] for shape in calls} == {32}


def test_intermediate_layers_criterion_driven_by_a_loop(blobs, teacher):
    from neural_distill.common.criterion import (
        PyTorchIntermediateLayersKnowledgeDistillationLoss)

    x, y, _, _ = blobs
    student_model = tiny_mlp(seed=0)
    teacher_model = copy.deepcopy(teacher)
    # INC's form: both models given to the criterion, which hooks the mapped layers at once.
    criterion = PyTorchIntermediateLayersKnowledgeDistillationLoss(
        layer_mappings=[["2"]], loss_types=["MSE"], loss_weights=[1.0], add_origin_loss=True,
        student_model=student_model, teacher_model=teacher_model)
    ce = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(student_model.parameters(), lr=0.002)
    losses = []
    batches = [batch for _ in range(4) for batch in tensor_loader(x, y, batch_size=64)]
    for image, target in batches:
        teacher_output = criterion.teacher_model_forward(image)
        output = student_model(image)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "matchers created at the first step": identity
            loss = criterion.loss_cal_sloss(output, teacher_output, ce(output, target))
        if not losses:
            s, t = output.detach().numpy(), teacher_output.numpy()
            assert loss.item() == pytest.approx(
                ref.feature("MSE", s, t) + ref.student_term("CE", s, target.numpy()), rel=1e-5)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.8 * losses[0]
    assert all(p.grad is None for p in teacher_model.parameters())
    criterion.remove_all_hooks()
    assert not student_model[2]._forward_hooks and not teacher_model[2]._forward_hooks
