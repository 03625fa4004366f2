"""Bad configuration values (issue 11, item 7): values of the right type that training cannot
use, YAML that means something else than it says, and the same checks in the Python config API.

Each test asserts the error type and the words that tell the user what to change: the key path,
what is supported, and what was received.
"""

import pytest

from neural_distill import ConfigError, Criterion, DistillationConf
from neural_distill.config import (DistillationConfig,
                                   IntermediateLayersKnowledgeDistillationLossConfig,
                                   KnowledgeDistillationLossConfig)
from neural_distill.criterion import validated_criterion_args

KD = "distillation.train.criterion.KnowledgeDistillationLoss"


def load_yaml(tmp_path, text):
    path = tmp_path / "distill.yaml"
    path.write_text(text, encoding="utf-8")
    return DistillationConf(str(path)), str(path)


def config_error(tmp_path, text):
    path = tmp_path / "distill.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        DistillationConf(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


def kd_yaml(body):
    return ("distillation:\n  train:\n    criterion:\n      KnowledgeDistillationLoss:\n"
            + "".join(f"        {line}\n" for line in body.splitlines()))


def sgd_yaml(body):
    return ("distillation:\n  train:\n    optimizer:\n      SGD:\n"
            + "".join(f"        {line}\n" for line in body.splitlines()))


# --------------------------------------------------------------------------- seeds
def test_random_seed_beyond_32_bits(tmp_path):
    message = config_error(tmp_path, "tuning:\n  random_seed: 4294967296\n")
    assert "tuning.random_seed: expected an int >= 0, got 4294967296" in message
    assert "outside the supported range [0, 4294967295]" in message


def test_random_seed_at_the_32_bit_limit_is_accepted(tmp_path):
    conf, _ = load_yaml(tmp_path, "tuning:\n  random_seed: 4294967295\n")
    assert conf.usr_cfg.tuning.random_seed == 2**32 - 1


def test_random_seed_negative(tmp_path):
    message = config_error(tmp_path, "tuning:\n  random_seed: -5\n")
    assert "tuning.random_seed: expected an int >= 0, got -5" in message


def test_dummy_dataset_seed_beyond_32_bits(tmp_path):
    message = config_error(tmp_path, "distillation:\n  train:\n    dataloader:\n      dataset:\n"
                                     "        dummy: {shape: [4, 2], seed: 99999999999}\n")
    assert "distillation.train.dataloader.dataset.dummy.seed" in message
    assert "[0, 4294967295]" in message


# --------------------------------------------------------------------------- temperatures
@pytest.mark.parametrize("written, shown", [(".inf", "inf"), ("1e30", "1e+30"),
                                            ("1.0e+30", "1e+30")])
def test_temperature_infinite_or_absurd(tmp_path, written, shown):
    message = config_error(tmp_path, kd_yaml(f"temperature: {written}"))
    assert f"{KD}.temperature: expected a number > 0, got {shown}" in message
    assert "outside the supported range [0.01, 1000]" in message


def test_temperature_nan(tmp_path):
    message = config_error(tmp_path, kd_yaml("temperature: .nan"))
    assert f"{KD}.temperature: expected a number > 0, got nan" in message


def test_temperature_too_small_to_divide_by(tmp_path):
    message = config_error(tmp_path, kd_yaml("temperature: 1e-300"))
    assert f"{KD}.temperature" in message and "[0.01, 1000]" in message


def test_self_distillation_temperature_is_bounded_too(tmp_path):
    message = config_error(tmp_path, (
        "distillation:\n  train:\n    criterion:\n      SelfKnowledgeDistillationLoss:\n"
        "        layer_mappings: [[[a, b]]]\n        temperature: 1e9\n"))
    assert "SelfKnowledgeDistillationLoss.temperature" in message
    assert "outside the supported range" in message


# --------------------------------------------------------------------------- learning rates
@pytest.mark.parametrize("optimizer", ["SGD", "Adam", "AdamW"])
def test_learning_rate_infinite(tmp_path, optimizer):
    message = config_error(tmp_path, ("distillation:\n  train:\n    optimizer:\n"
                                      f"      {optimizer}:\n        learning_rate: .inf\n"))
    assert (f"distillation.train.optimizer.{optimizer}.learning_rate: expected a learning rate "
            f"> 0, got inf: outside the supported range (0, 10]") in message


def test_learning_rate_absurd(tmp_path):
    message = config_error(tmp_path, sgd_yaml("learning_rate: 1e30"))
    assert "optimizer.SGD.learning_rate" in message and "got 1e+30" in message
    assert "(0, 10]" in message


def test_momentum_of_one_or_more(tmp_path):
    message = config_error(tmp_path, sgd_yaml("momentum: 1.5"))
    assert "optimizer.SGD.momentum" in message and "[0, 1)" in message


def test_learning_rate_in_e_notation_is_a_number(tmp_path):
    # YAML 1.1 reads 1e-3 (no dot) as a string; the user means one thousandth.
    conf, _ = load_yaml(tmp_path, sgd_yaml("learning_rate: 1e-3"))
    rate = conf.usr_cfg.distillation.train.optimizer.SGD.learning_rate
    assert isinstance(rate, float) and rate == pytest.approx(1e-3)


def test_quoted_number_is_text_and_says_so(tmp_path):
    message = config_error(tmp_path, sgd_yaml("learning_rate: '0.01'"))
    assert "optimizer.SGD.learning_rate: expected a learning rate > 0, got '0.01'" in message
    assert "remove the quotes" in message


def test_max_grad_norm_infinite(tmp_path):
    message = config_error(tmp_path, "distillation:\n  train:\n    max_grad_norm: .inf\n")
    assert "distillation.train.max_grad_norm" in message and "outside the supported range" \
        in message


# --------------------------------------------------------------------------- weights
def test_loss_weights_all_zero(tmp_path):
    message = config_error(tmp_path, kd_yaml("loss_weights: [0, 0]"))
    assert f"{KD}.loss_weights: expected a list of two numbers >= 0" in message
    assert "all weights are 0, so nothing would be trained; make at least one > 0" in message


@pytest.mark.parametrize("weights, shown", [("[1e30, 0.5]", "1e+30"), ("[.inf, 0.5]", "inf")])
def test_loss_weight_infinite_or_absurd(tmp_path, weights, shown):
    message = config_error(tmp_path, kd_yaml(f"loss_weights: {weights}"))
    assert f"{KD}.loss_weights" in message
    assert f"weight {shown} is outside the supported range [0, 1000]" in message


def test_feature_loss_weights_all_zero(tmp_path):
    message = config_error(tmp_path, (
        "distillation:\n  train:\n    criterion:\n"
        "      IntermediateLayersKnowledgeDistillationLoss:\n"
        "        layer_mappings: [[fc1], [fc2]]\n        loss_weights: [0, 0]\n"))
    assert "IntermediateLayersKnowledgeDistillationLoss.loss_weights" in message
    assert "all weights are 0" in message


def test_teacher_weights_all_zero(tmp_path):
    message = config_error(tmp_path, "distillation:\n  train:\n    teacher_weights: [0, 0]\n")
    assert "distillation.train.teacher_weights" in message and "all weights are 0" in message


# --------------------------------------------------------------------------- YAML 1.1 traps
def test_duplicate_top_level_block(tmp_path):
    message = config_error(tmp_path, (
        "distillation:\n  train:\n    epoch: 3\nmodel:\n  name: x\n"
        "distillation:\n  train:\n    frequency: 2\n"))
    assert "distillation (line 6, column 1): duplicate key 'distillation' (first given at " \
           "line 1)" in message
    assert "give each key once" in message


def test_duplicate_nested_key(tmp_path):
    message = config_error(tmp_path, kd_yaml("temperature: 2\nloss_types: [CE, KL]\n"
                                             "temperature: 4"))
    assert f"{KD}.temperature (line 7, column 9): duplicate key 'temperature'" in message


def test_duplicate_key_in_flow_mapping(tmp_path):
    message = config_error(tmp_path, "tuning: {random_seed: 1, random_seed: 2}\n")
    assert "tuning.random_seed" in message and "duplicate key 'random_seed'" in message


def test_merge_key_overrides_are_not_duplicates(tmp_path):
    conf, _ = load_yaml(tmp_path, (
        "distillation:\n  train:\n    dataloader: &train {batch_size: 8, shuffle: false}\n"
        "evaluation:\n  accuracy:\n    dataloader:\n      <<: *train\n      batch_size: 16\n"))
    loader = conf.usr_cfg.evaluation.accuracy.dataloader
    assert loader.batch_size == 16 and loader.shuffle is False


def test_sexagesimal_epoch(tmp_path):
    message = config_error(tmp_path, "distillation:\n  train:\n    epoch: 1:30\n")
    assert "distillation.train.epoch: expected an int >= 1, got '1:30'" in message
    assert "base-60" in message and "write the number itself" in message


def test_numbers_follow_yaml_1_2(tmp_path):
    conf, _ = load_yaml(tmp_path, "distillation:\n  train:\n    epoch: 010\n"
                                  "    iteration: 0o10\n    frequency: 0x2\n")
    train = conf.usr_cfg.distillation.train
    assert (train.epoch, train.iteration, train.frequency) == (10, 8, 2)


# --------------------------------------------------------------------------- Python API
def test_python_criterion_config_temperature_infinite():
    with pytest.raises(ConfigError, match=r"KnowledgeDistillationLossConfig: temperature: "
                                          r"expected a number > 0, got inf: outside the "
                                          r"supported range \[0.01, 1000\]"):
        KnowledgeDistillationLossConfig(temperature=float("inf"))


def test_python_criterion_config_weights_all_zero():
    with pytest.raises(ConfigError, match="loss_weights: .*all weights are 0"):
        KnowledgeDistillationLossConfig(loss_weights=[0, 0])


def test_python_feature_config_weight_absurd():
    with pytest.raises(ConfigError, match="loss_weights: .*weight 1e\\+30 is outside"):
        IntermediateLayersKnowledgeDistillationLossConfig(
            layer_mappings=[["fc1"]], loss_weights=[1e30])


def test_python_distillation_config_learning_rate_absurd():
    with pytest.raises(ConfigError, match="DistillationConfig: optimizer.SGD.learning_rate: "
                                          ".*outside the supported range"):
        DistillationConfig(optimizer={"SGD": {"learning_rate": 1e30}})


def test_python_seed_names_criterion_temperature_absurd():
    with pytest.raises(ConfigError, match=r"Criterion\(name='KnowledgeLoss'\): .*temperature.*"
                                          r"outside the supported range"):
        Criterion(name="KnowledgeLoss", temperature=1e9)


def test_framework_criterion_arguments_use_the_same_bounds():
    # What PyTorch/TensorFlow criterion classes call to check their arguments.
    with pytest.raises(ConfigError, match="PyTorchKnowledgeDistillationLoss: loss_weights: "
                                          ".*all weights are 0"):
        validated_criterion_args("KnowledgeDistillationLoss", "PyTorchKnowledgeDistillationLoss",
                                 loss_weights=[0.0, 0.0])


def test_python_from_yaml_text_refuses_duplicate_keys():
    with pytest.raises(ConfigError, match="KnowledgeDistillationLossConfig.from_yaml: "
                                          "temperature .*duplicate key 'temperature'"):
        KnowledgeDistillationLossConfig.from_yaml("temperature: 2\ntemperature: 3\n")


def test_python_from_yaml_text_reads_e_notation():
    config = KnowledgeDistillationLossConfig.from_yaml("temperature: 2e0\n"
                                                       "loss_weights: [1e-1, 1]\n")
    assert config.temperature == 2.0 and config.loss_weights == [0.1, 1]
