"""The reference documents' top-level names: ``metric``/``metrics``, ``objectives``,
``DistillationConfig``, ``Criterion`` (shared/seeds/000_*.txt), without any framework."""

import json
import os
import subprocess
import sys

import pytest

import neural_distill
from neural_distill import ConfigError, DataError, ModelError
from neural_distill.config import (IntermediateLayersKnowledgeDistillationLossConfig,
                                   KnowledgeDistillationLossConfig)
from neural_distill.metrics import Accuracy, TopK


def test_the_documents_names_import_from_the_top_package_without_a_framework(repo_root):
    code = ("import json, sys\n"
            "from neural_distill import metric, metrics, objectives, DistillationConfig, "
            "Criterion\n"
            "import neural_distill.integrations\n"
            "assert metric is metrics\n"
            "DistillationConfig(metrics=metrics.Metric(name='eval_accuracy'), "
            "criterion=Criterion(name='KnowledgeLoss'), framework='pytorch')\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'tensorflow', 'keras', 'transformers', 'jax'))))\n")
    env = dict(os.environ, PYTHONPATH=repo_root)
    result = subprocess.run([sys.executable, "-c", code], cwd=repo_root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_unknown_top_level_names_are_still_attribute_errors():
    with pytest.raises(AttributeError, match="has no attribute 'Criteria'"):
        neural_distill.Criteria  # noqa: B018


# ----------------------------------------------------------------------------- Criterion
def test_criterion_defaults_are_the_documents_defaults():
    criterion = neural_distill.Criterion()
    assert criterion.name == "KnowledgeLoss"
    assert (criterion.temperature, criterion.loss_types, criterion.loss_weight_ratio) == \
        (1.0, ["CE", "CE"], [0.5, 0.5])
    assert criterion.layer_mappings == [] and criterion.add_origin_loss is False
    assert criterion.to_loss_config() == KnowledgeDistillationLossConfig()


def test_criterion_converts_to_the_config_of_the_same_meaning():
    knowledge = neural_distill.Criterion(name="KnowledgeLoss", temperature=3.0,
                                         loss_types=["CE", "KL"], loss_weight_ratio=[0.2, 0.8],
                                         layer_mappings=[], add_origin_loss=False)
    assert knowledge.to_loss_config() == KnowledgeDistillationLossConfig(
        temperature=3.0, loss_types=["CE", "KL"], loss_weights=[0.2, 0.8])
    layers = neural_distill.Criterion(name="IntermediateLayersLoss",
                                      layer_mappings=[["layer1", "layer3"]], loss_types=["MSE"],
                                      loss_weight_ratio=[1.0], add_origin_loss=True)
    assert layers.to_loss_config() == IntermediateLayersKnowledgeDistillationLossConfig(
        layer_mappings=[["layer1", "layer3"]], loss_types=["MSE"], loss_weights=[1.0],
        add_origin_loss=True)
    # The YAML names mean the same.
    assert neural_distill.Criterion(name="KnowledgeDistillationLoss") == neural_distill.Criterion()
    # DistillationConfig stores the config, and a new one each time.
    config = neural_distill.DistillationConfig(criterion=knowledge)
    assert config.criterion == knowledge.to_loss_config()
    assert config.criterion is not knowledge.to_loss_config()


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "KnowledgLoss"}, "Criterion: name: expected one of {KnowledgeLoss, "
     "IntermediateLayersLoss, KnowledgeDistillationLoss, "
     "IntermediateLayersKnowledgeDistillationLoss}, got 'KnowledgLoss'. Did you mean "
     "'KnowledgeLoss'?"),
    ({"temperature": 0}, "Criterion(name='KnowledgeLoss'): KnowledgeDistillationLossConfig: "
     "temperature: expected a number > 0, got 0"),
    ({"loss_weight_ratio": [0.5]}, "Criterion(name='KnowledgeLoss'): "
     "KnowledgeDistillationLossConfig: loss_weights: expected"),
    ({"layer_mappings": [["a", "b"]]}, "Criterion(name='KnowledgeLoss'): layer_mappings: is a "
     "parameter of IntermediateLayersLoss"),
    ({"add_origin_loss": True}, "Criterion(name='KnowledgeLoss'): add_origin_loss: is a "
     "parameter of IntermediateLayersLoss; KnowledgeLoss always adds the student's own loss"),
    ({"name": "IntermediateLayersLoss", "temperature": 4.0},
     "Criterion(name='IntermediateLayersLoss'): temperature: is a parameter of KnowledgeLoss"),
    ({"name": "IntermediateLayersLoss", "loss_types": ["CE", "CE"]},
     "Criterion(name='IntermediateLayersLoss'): "
     "IntermediateLayersKnowledgeDistillationLossConfig: loss_types: expected"),
], ids=["name", "temperature", "weights", "kd-mappings", "kd-origin", "il-temperature",
        "il-ce"])
def test_criterion_errors_name_the_call_and_the_fix(kwargs, message):
    with pytest.raises(ConfigError) as info:
        neural_distill.Criterion(**kwargs)
    assert str(info.value).startswith(message)


# ----------------------------------------------------------------------------- Metric
def test_a_named_metric_reads_a_trainers_results():
    metric = neural_distill.metrics.Metric(name="eval_accuracy")
    assert metric.reads_results and metric.greater_is_better and metric.higher_is_better
    assert metric.value_from({"eval_accuracy": 0.75, "eval_loss": 0.3}) == 0.75
    # Trainers prefix compute_metrics' keys with "eval_": the bare name finds it too.
    assert neural_distill.metrics.Metric(name="accuracy").value_from({"eval_accuracy": 1}) == 1.0
    # A loss is lower-is-better unless told otherwise, as in transformers.
    assert not neural_distill.metrics.Metric(name="eval_loss").greater_is_better
    assert neural_distill.metrics.Metric(name="eval_loss", greater_is_better=True) \
        .greater_is_better
    assert not neural_distill.metrics.Metric(name="eval_f1", greater_is_better=False) \
        .higher_is_better


def test_the_computing_metrics_are_unchanged():
    assert not Accuracy().reads_results and not TopK(2).reads_results
    assert TopK(2).name == "top2" and Accuracy().name == "Accuracy"


@pytest.mark.parametrize("call, error, message", [
    (lambda: neural_distill.metrics.Metric(name=""), ConfigError,
     "Metric: name: expected a non-empty string"),
    (lambda: neural_distill.metrics.Metric(name="x", greater_is_better="yes"), ConfigError,
     "Metric: greater_is_better: expected True or False, got 'yes'"),
    (lambda: neural_distill.metrics.Metric(name="eval_acc").value_from({"eval_accuracy": 1}),
     DataError, "metric 'eval_acc': expected a key of the evaluation results, which has "
     "['eval_accuracy']. Did you mean 'eval_accuracy'?"),
    (lambda: neural_distill.metrics.Metric(name="eval_x").value_from({"eval_x": "n/a"}),
     DataError, "metric 'eval_x': expected a number in the evaluation results, got "
     "eval_x='n/a'"),
    (lambda: neural_distill.metrics.Metric(name="eval_accuracy").update([[1.0]], [0]),
     DataError, "metric 'eval_accuracy': Metric(name=...) names a value of a trainer's "
     "evaluation results; it cannot be computed from predictions"),
], ids=["empty-name", "direction", "missing-key", "not-a-number", "update"])
def test_metric_errors(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert str(info.value).startswith(message)


# ----------------------------------------------------------------------------- config
def test_distillation_config_takes_the_documents_arguments():
    metric = neural_distill.metrics.Metric(name="eval_accuracy")
    config = neural_distill.DistillationConfig(framework="pytorch", metrics=metric,
                                               criterion=neural_distill.Criterion())
    assert config.metrics is metric and config.framework == "pytorch"
    assert config.to_dict()["model"] == {"framework": "pytorch"}
    again = neural_distill.DistillationConfig.from_yaml(config.to_yaml(), metrics=metric)
    assert again == config
    assert "model" not in neural_distill.DistillationConfig().to_dict()
    with pytest.raises(ConfigError, match="DistillationConfig: framework: expected one of "
                                          r"\{pytorch, pytorch_fx, pytorch_ipex, tensorflow, "
                                          r"keras\}, got 'pytroch'"):
        neural_distill.DistillationConfig(framework="pytroch")


def test_a_framework_that_is_not_the_models_is_an_error():
    torch = pytest.importorskip("torch")
    from neural_distill.training import prepare_compression

    with pytest.raises(ModelError, match="model.framework says 'tensorflow' but the "
                                         "student_model model is a torch model"):
        prepare_compression(torch.nn.Linear(2, 2), neural_distill.DistillationConfig(
            teacher_model=torch.nn.Linear(2, 2), framework="tensorflow"))


# ----------------------------------------------------------------------------- objectives
def test_objectives_measure_size_and_speed():
    torch = pytest.importorskip("torch")
    objectives = neural_distill.objectives
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    # Linear 3*4 + 4, BatchNorm weight/bias 4 + 4, buffers mean/var 4 + 4 (+ 1 int64 count).
    assert objectives.model_size.parameters(model) == 24
    assert objectives.model_size.measure(model) == (24 + 8) * 4 + 8
    assert not objectives.model_size.greater_is_better and objectives.performance.greater_is_better
    assert objectives.performance.measure(lambda: None, repeats=3) > 0
    with pytest.raises(ModelError, match="expected a torch.nn.Module or a keras.Model"):
        objectives.model_size.measure("model.pt")
    with pytest.raises(ConfigError, match="repeats: expected an int >= 1, got 0"):
        objectives.performance.measure(lambda: None, repeats=0)
    with pytest.raises(ConfigError, match="Objective: greater_is_better: expected True or False"):
        objectives.Objective("latency", greater_is_better=None)
