"""The Python config API: YAML round trips and every error message.

Each config is validated by the YAML's schema nodes, so each mistake is also made in the
equivalent experiment file and the two messages must agree after the source prefix.
"""

import pytest
import yaml

from neural_distill import ConfigError, Distillation, ModelError
from neural_distill.config import (DistillationConfig,
                                   IntermediateLayersKnowledgeDistillationLossConfig,
                                   KnowledgeDistillationLossConfig,
                                   QuantizationAwareTrainingConfig,
                                   SelfKnowledgeDistillationLossConfig)

KD = KnowledgeDistillationLossConfig
IL = IntermediateLayersKnowledgeDistillationLossConfig
SELF = SelfKnowledgeDistillationLossConfig
QAT = QuantizationAwareTrainingConfig

CONFIGS = [
    pytest.param(lambda: KD(), id="kd-defaults"),
    pytest.param(lambda: KD(temperature=4.0, loss_types=["CE", "KL"], loss_weights=[0.3, 0.7],
                            from_logits=False), id="kd-custom"),
    pytest.param(lambda: IL(), id="intermediate-automatic"),
    pytest.param(lambda: IL(layer_mappings=[["layer1", "block.1"], ["head"]],
                            loss_types=["MSE", "L1"], loss_weights=[0.5, 0.5],
                            add_origin_loss=True), id="intermediate-explicit"),
    pytest.param(lambda: SELF(layer_mappings=[[["shallow", "deep"]], [["mid", "deep"]]],
                              temperature=3.0, loss_types=["KL", "L2"], loss_weights=[0.7, 0.3]),
                 id="self"),
    pytest.param(lambda: DistillationConfig(), id="distillation-defaults"),
    pytest.param(lambda: DistillationConfig(
        criterion=KD(temperature=2.0, loss_types=["CE", "KL"]),
        optimizer={"SGD": {"learning_rate": 0.05, "momentum": 0.9}},
        metrics={"topk": 5}), id="distillation-full"),
    pytest.param(lambda: DistillationConfig(criterion=IL(add_origin_loss=True),
                                            metrics="Accuracy"), id="distillation-automatic"),
    pytest.param(lambda: QAT(), id="qat-defaults"),
    pytest.param(lambda: QAT(reduce_range=True, excluded_layers=["head"],
                             freeze_observers_epoch=3), id="qat-custom"),
]


@pytest.mark.parametrize("make", CONFIGS)
def test_config_to_yaml_and_back(make, tmp_path):
    config = make()
    cls = type(config)
    text = config.to_yaml()
    assert yaml.safe_load(text) == config.to_dict()
    assert cls.from_yaml(text) == config
    assert cls.from_dict(config.to_dict()) == config
    path = tmp_path / "config.yaml"
    path.write_text(text)
    again = cls.from_yaml(str(path))
    assert again == config and again.to_yaml() == text


def test_yaml_to_config_and_back_fills_defaults():
    text = "KnowledgeDistillationLoss:\n  temperature: 3\n"
    config = KD.from_yaml(text)
    assert config.temperature == 3 and config.loss_types == ["CE", "CE"]
    assert yaml.safe_load(config.to_yaml()) == {"KnowledgeDistillationLoss": {
        "temperature": 3, "loss_types": ["CE", "CE"], "loss_weights": [0.5, 0.5],
        "from_logits": True, "logit_standardization": False, "beta": 0.5,
        "vocab_mismatch": "error"}}
    assert KD.from_dict({"temperature": 3}) == config  # the arguments alone are accepted too


def test_distillation_config_reads_an_experiment_file_and_writes_one_distillation_runs(tmp_path):
    experiment = {
        "model": {"name": "x", "framework": "pytorch"},
        "distillation": {"train": {
            "criterion": {"KnowledgeDistillationLoss": {"temperature": 2.0,
                                                        "loss_types": ["CE", "KL"]}},
            "optimizer": {"SGD": {"learning_rate": 0.1}},
            "epoch": 3}},
        "evaluation": {"accuracy": {"metric": {"topk": 1}}},
    }
    path = tmp_path / "distill.yaml"
    path.write_text(yaml.safe_dump(experiment))
    config = DistillationConfig.from_yaml(str(path))
    assert config.criterion == KD(temperature=2.0, loss_types=["CE", "KL"])
    assert config.optimizer["SGD"]["learning_rate"] == 0.1
    assert config.metrics == {"topk": 1}
    # Its own YAML is an experiment file Distillation accepts, meaning the same.
    distiller = Distillation(yaml.safe_load(config.to_yaml()))
    assert distiller.conf.distillation.train.criterion == config.criterion.to_dict()
    assert distiller.conf.distillation.train.optimizer == config.optimizer


def test_runtime_objects_are_left_out_of_the_yaml_and_passed_back():
    torch = pytest.importorskip("torch")
    teacher = torch.nn.Linear(2, 2)
    example = torch.zeros(2, 2)
    config = DistillationConfig(teacher_model=teacher)
    assert "teacher" not in config.to_yaml()
    assert DistillationConfig.from_yaml(config.to_yaml(), teacher_model=teacher) == config
    assert DistillationConfig.from_yaml(config.to_yaml()) != config  # the teacher differs
    qat = QAT(example_inputs=example)
    assert "example_inputs" not in qat.to_yaml()
    assert QAT.from_yaml(qat.to_yaml(), example_inputs=example).example_inputs is example


def test_loss_weight_ratio_is_another_name_for_loss_weights():
    assert KD(loss_weight_ratio=[0.2, 0.8]).loss_weights == [0.2, 0.8]
    assert IL(loss_weight_ratio=[1.0]).loss_weights == [1.0]
    config = KD()
    config.loss_weight_ratio = [0.1, 0.9]
    assert config.loss_weights == [0.1, 0.9] and config.loss_weight_ratio == [0.1, 0.9]
    assert KD(loss_weights=[0.2, 0.8], loss_weight_ratio=[0.2, 0.8]).loss_weights == [0.2, 0.8]


def test_assigning_a_field_validates_it_and_keeps_the_old_value_on_error():
    config = KD(temperature=2.0)
    with pytest.raises(ConfigError, match="temperature: expected a number > 0, got 0"):
        config.temperature = 0
    assert config.temperature == 2.0
    config.temperature = 5
    assert config.to_dict()["KnowledgeDistillationLoss"]["temperature"] == 5
    distillation = DistillationConfig()
    with pytest.raises(ConfigError, match="optimizer.SDG: unknown optimizer"):
        distillation.optimizer = {"SDG": {}}
    assert distillation.optimizer is None


# (id, how the Python API is called, the same mistake in an experiment file or None when the
#  mistake has no YAML form, the message both must contain)
ERRORS = [
    ("kd-temperature", lambda: KD(temperature=-1),
     {"KnowledgeDistillationLoss": {"temperature": -1}},
     "temperature: expected a number > 0, got -1"),
    ("kd-temperature-string", lambda: KD(temperature="hot"),
     {"KnowledgeDistillationLoss": {"temperature": "hot"}},
     "temperature: expected a number > 0, got 'hot'"),
    ("kd-loss-types", lambda: KD(loss_types=["CE", "XX"]),
     {"KnowledgeDistillationLoss": {"loss_types": ["CE", "XX"]}},
     "loss_types: expected a list of two loss types [student in {CE, MSE}, distillation in "
     "{CE, KL, MSE, RKL, JSD}], got ['CE', 'XX']"),
    ("kd-loss-weights", lambda: KD(loss_weights=[0.5]),
     {"KnowledgeDistillationLoss": {"loss_weights": [0.5]}},
     "loss_weights: expected a list of two numbers >= 0 [student_weight, "
     "distillation_weight], got [0.5]"),
    ("kd-loss-weight-ratio", lambda: KD(loss_weight_ratio=[-1, 2]),
     {"KnowledgeDistillationLoss": {"loss_weights": [-1, 2]}},
     "loss_weights: expected a list of two numbers >= 0"),
    ("kd-from-logits", lambda: KD(from_logits="yes"),
     {"KnowledgeDistillationLoss": {"from_logits": "yes"}},
     "from_logits: expected true or false, got 'yes'"),
    ("il-loss-types", lambda: IL(layer_mappings=[["a"]], loss_types=["CE", "CE"]),
     {"IntermediateLayersKnowledgeDistillationLoss": {"layer_mappings": [["a"]],
                                                      "loss_types": ["CE", "CE"]}},
     "loss_types: expected a list of loss types out of {MSE, L1, KL, cosine, AT, SP, RKD}, "
     "got ['CE', 'CE']"),
    ("il-count", lambda: IL(layer_mappings=[["a"], ["b"]], loss_weights=[1, 1, 1]),
     {"IntermediateLayersKnowledgeDistillationLoss": {"layer_mappings": [["a"], ["b"]],
                                                      "loss_weights": [1, 1, 1]}},
     "loss_weights: expected 1 or 2 entries (one per mapping of layer_mappings), got 3"),
    ("il-mapping-form", lambda: IL(layer_mappings=[["a", "b", "c"]]),
     {"IntermediateLayersKnowledgeDistillationLoss": {"layer_mappings": [["a", "b", "c"]]}},
     "layer_mappings[0]: expected one of [layer], [student_layer, teacher_layer]"),
    ("il-add-origin-loss", lambda: IL(add_origin_loss=1),
     {"IntermediateLayersKnowledgeDistillationLoss": {"layer_mappings": [["a"]],
                                                      "add_origin_loss": 1}},
     "add_origin_loss: expected true or false, got 1"),
    ("il-automatic-count", lambda: IL(loss_types=["MSE", "L1"]), None,
     "loss_types: expected 1 entry (without layer_mappings the mappings are generated and "
     "share one type), got 2"),
    ("self-no-mappings", lambda: SELF(),
     {"SelfKnowledgeDistillationLoss": {"layer_mappings": []}},
     "layer_mappings: expected a non-empty list of groups, each a list of [student_key, "
     "teacher_key] pairs, got []"),
    ("self-pair", lambda: SELF(layer_mappings=[[["a", "b", "c"]]]),
     {"SelfKnowledgeDistillationLoss": {"layer_mappings": [[["a", "b", "c"]]]}},
     "layer_mappings[0][0]: expected [student_key, teacher_key], got ['a', 'b', 'c']"),
    ("self-loss-type", lambda: SELF(layer_mappings=[[["a", "b"]]], loss_types=["L3"]),
     {"SelfKnowledgeDistillationLoss": {"layer_mappings": [[["a", "b"]]],
                                        "loss_types": ["L3"]}},
     "loss_types: expected a list of loss types out of {CE, KL, L2, MSE}, got ['L3']"),
    ("self-temperature", lambda: SELF(layer_mappings=[[["a", "b"]]], temperature=0),
     {"SelfKnowledgeDistillationLoss": {"layer_mappings": [[["a", "b"]]], "temperature": 0}},
     "temperature: expected a number > 0, got 0"),
]


def _experiment_error(criterion, tmp_path):
    path = tmp_path / "distill.yaml"
    path.write_text(yaml.safe_dump({"distillation": {"train": {"criterion": criterion}}}))
    with pytest.raises(ConfigError) as info:
        Distillation(str(path))
    return str(info.value)


@pytest.mark.parametrize("call,criterion,message", [e[1:] for e in ERRORS],
                         ids=[e[0] for e in ERRORS])
def test_criterion_config_errors_match_the_yaml(call, criterion, message, tmp_path):
    with pytest.raises(ConfigError) as info:
        call()
    text = str(info.value)
    cls_name = text.split(":")[0]
    assert cls_name.endswith("LossConfig"), text  # the class is named like the file would be
    assert message in text, text
    if criterion is not None:
        yaml_text = _experiment_error(criterion, tmp_path)
        assert message in yaml_text, yaml_text
        # Same tail after the source and key-path prefixes.
        assert text.split(": ", 1)[1].split(": ", 1)[1] == \
            yaml_text.split("criterion.", 1)[1].split(": ", 1)[1].split("\n")[0]


OTHER_ERRORS = [
    ("criterion-type", lambda: DistillationConfig(criterion="KnowledgeDistillationLoss"),
     ConfigError, "DistillationConfig: criterion: expected one of "
     "{KnowledgeDistillationLossConfig, IntermediateLayersKnowledgeDistillationLossConfig, "
     "SelfKnowledgeDistillationLossConfig, DecoupledKnowledgeDistillationLossConfig, "
     "DISTLossConfig} or a {name: arguments} section, got str"),
    ("criterion-section", lambda: DistillationConfig(
        criterion={"KnowledgeDistilationLoss": {}}),
     ConfigError, "DistillationConfig: criterion.KnowledgeDistilationLoss: unknown criterion. "
     "Did you mean 'KnowledgeDistillationLoss'?"),
    ("criterion-section-value", lambda: DistillationConfig(
        criterion={"KnowledgeDistillationLoss": {"temperature": 0}}),
     ConfigError, "DistillationConfig: criterion.KnowledgeDistillationLoss.temperature: "
     "expected a number > 0, got 0"),
    ("optimizer-name", lambda: DistillationConfig(optimizer={"SDG": {}}),
     ConfigError, "DistillationConfig: optimizer.SDG: unknown optimizer. Did you mean 'SGD'? "
     "Expected one of {SGD, Adam, AdamW}"),
    ("optimizer-value", lambda: DistillationConfig(optimizer={"SGD": {"learning_rate": -1}}),
     ConfigError, "DistillationConfig: optimizer.SGD.learning_rate: expected a learning rate "
     "> 0, got -1"),
    ("optimizer-key", lambda: DistillationConfig(optimizer={"Adam": {"betas": 0.9}}),
     ConfigError, "DistillationConfig: optimizer.Adam.betas: unknown key"),
    ("metric-name", lambda: DistillationConfig(metrics="Acuracy"),
     ConfigError, "DistillationConfig: metrics: expected exactly one metric out of {topk, "
     "Accuracy, Loss, MSE, RMSE, MAE, F1}, got 'Acuracy'"),
    ("metric-value", lambda: DistillationConfig(metrics={"topk": 0}),
     ConfigError, "DistillationConfig: metrics.topk: expected an int k >= 1, got 0"),
    ("teacher-type", lambda: DistillationConfig(teacher_model="teacher.pt"),
     ModelError, "DistillationConfig: teacher_model: expected a torch.nn.Module or a "
     "keras.Model (or a list of them), got str"),
    ("loss-weight-ratio-conflict", lambda: KD(loss_weights=[1, 0], loss_weight_ratio=[0, 1]),
     ConfigError, "KnowledgeDistillationLossConfig: loss_weight_ratio: is another name for "
     "loss_weights; got loss_weights=[1, 0] and loss_weight_ratio=[0, 1]. Give only one"),
    ("qat-backend", lambda: QAT(backend="arm"),
     ConfigError, "QuantizationAwareTrainingConfig: backend: expected one of {x86}, got 'arm'"),
    ("qat-approach", lambda: QAT(approach="post_training_static_quant"),
     ConfigError, "QuantizationAwareTrainingConfig: approach: expected one of "
     "{quant_aware_training}, got 'post_training_static_quant'"),
    ("qat-reduce-range", lambda: QAT(reduce_range="no"),
     ConfigError, "QuantizationAwareTrainingConfig: reduce_range: expected true or false, "
     "got 'no'"),
    ("qat-excluded-layers", lambda: QAT(excluded_layers="head"),
     ConfigError, "QuantizationAwareTrainingConfig: excluded_layers: expected a list of layer "
     "names (module paths such as 'features.0'), got 'head'"),
    ("qat-freeze-epoch", lambda: QAT(freeze_observers_epoch=-1),
     ConfigError, "QuantizationAwareTrainingConfig: freeze_observers_epoch: expected an epoch "
     "number >= 0 or null, got -1"),
    ("qat-yaml-unknown-key", lambda: QAT.from_yaml("quantization:\n  backnd: x86\n"),
     ConfigError, "QuantizationAwareTrainingConfig.from_yaml: quantization.backnd: unknown key."
     " Did you mean 'backend'?"),
    ("qat-yaml-missing-section", lambda: QAT.from_dict({"approach": "quant_aware_training"}),
     ConfigError, "QuantizationAwareTrainingConfig.from_dict: approach: unknown key"),
    ("kd-yaml-not-yaml", lambda: KD.from_yaml("a: [1,"),
     ConfigError, "KnowledgeDistillationLossConfig.from_yaml: not valid YAML"),
    ("kd-yaml-missing-file", lambda: KD.from_yaml("missing.yaml"),
     ConfigError, "missing.yaml: configuration file not found"),
    ("distillation-yaml", lambda: DistillationConfig.from_yaml(
        "distillation:\n  train:\n    criterion:\n      KnowledgeDistillationLoss:\n"
        "        temperature: -2\n"),
     ConfigError, "DistillationConfig.from_yaml: distillation.train.criterion."
     "KnowledgeDistillationLoss.temperature: expected a number > 0, got -2"),
    ("kd-dump-callable", lambda: IL(layer_mappings=[["a", len, "b", ""]]).to_yaml(),
     ConfigError, "IntermediateLayersKnowledgeDistillationLossConfig: cannot be written as "
     "YAML: it holds a Python object"),
]


@pytest.mark.parametrize("call,error,message", [e[1:] for e in OTHER_ERRORS],
                         ids=[e[0] for e in OTHER_ERRORS])
def test_config_error_messages(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value), str(info.value)


def test_a_config_error_lists_every_problem_at_once():
    with pytest.raises(ConfigError) as info:
        KD(temperature=0, loss_types=["KL", "KL"], loss_weights=[1])
    assert len(info.value.problems) == 3
    assert "3 problems" in str(info.value)
