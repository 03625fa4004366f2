"""The newer catalog entries through the YAML schema and the Python config API: every argument
has its type, range and default from the catalog, with the usual messages (no framework)."""

import pytest

from neural_distill import ConfigError, DistillationConf
from neural_distill.config import criterion_configs


def _conf(criterion, workspace):
    return DistillationConf({"model": {"name": "x", "framework": "pytorch"},
                             "distillation": {"train": {"criterion": criterion}},
                             "tuning": {"workspace": {"path": workspace}}}).to_dict()


def test_defaults_come_from_the_catalog(workspace):
    dkd = _conf({"DecoupledKnowledgeDistillationLoss": {}}, workspace)
    assert dkd["distillation"]["train"]["criterion"] == {"DecoupledKnowledgeDistillationLoss": {
        "alpha": 1.0, "beta": 8.0, "temperature": 4.0, "loss_weights": [1.0, 1.0],
        "logit_standardization": False}}
    dist = _conf({"DISTLoss": {"temperature": 4}}, workspace)
    assert dist["distillation"]["train"]["criterion"] == {"DISTLoss": {
        "beta": 1.0, "gamma": 1.0, "temperature": 4, "loss_weights": [1.0, 1.0]}}
    feature = _conf({"IntermediateLayersKnowledgeDistillationLoss": {
        "layer_mappings": [["a", "b"]], "loss_types": ["RKD"]}}, workspace)
    criterion = feature["distillation"]["train"]["criterion"]
    args = criterion["IntermediateLayersKnowledgeDistillationLoss"]
    assert args["rkd_weights"] == [25.0, 50.0]


@pytest.mark.parametrize("criterion,message", [
    ({"DecoupledKnowledgeDistillationLoss": {"alpha": -1}},
     "DecoupledKnowledgeDistillationLoss.alpha: expected a number >= 0, got -1"),
    ({"DecoupledKnowledgeDistillationLoss": {"temprature": 4}},
     "temprature: unknown key. Did you mean 'temperature'?"),
    ({"DISTLoss": {"gamma": "big"}}, "DISTLoss.gamma: expected a number >= 0, got 'big'"),
    ({"DISTLoss": {"beta": 1e9}}, "outside the supported range [0, 1000]"),
    ({"KnowledgeDistillationLoss": {"loss_types": ["CE", "JSD"], "beta": 1.5}},
     "KnowledgeDistillationLoss.beta: expected a number in [0, 1], got 1.5"),
    ({"KnowledgeDistillationLoss": {"loss_types": ["CE", "RKLL"]}},
     "distillation in {CE, KL, MSE, RKL, JSD}"),
    ({"KnowledgeDistillationLoss": {"from_logits": False, "logit_standardization": True}},
     "logit_standardization: expected from_logits: true"),
    ({"KnowledgeDistillationLoss": {"logit_standardization": "yes"}},
     "logit_standardization: expected true or false"),
    ({"IntermediateLayersKnowledgeDistillationLoss": {
        "layer_mappings": [["a", "b"]], "loss_types": ["AT"], "rkd_weights": [1.0]}},
     "rkd_weights: expected a list of two numbers >= 0"),
    ({"IntermediateLayersKnowledgeDistillationLoss": {
        "layer_mappings": [["a", "b"]], "loss_types": ["ATT"]}},
     "{MSE, L1, KL, cosine, AT, SP, RKD}"),
])
def test_bad_values_are_named_with_the_expected_range(criterion, message, workspace):
    with pytest.raises(ConfigError) as error:
        _conf(criterion, workspace)
    assert message in str(error.value)


def test_python_configs_exist_for_the_new_criteria_and_round_trip():
    dkd = criterion_configs.CRITERION_CONFIGS["DecoupledKnowledgeDistillationLoss"](beta=2.0)
    assert dkd.to_dict()["DecoupledKnowledgeDistillationLoss"]["beta"] == 2.0
    dist = criterion_configs.CRITERION_CONFIGS["DISTLoss"](gamma=3.0)
    assert dist.arguments()["gamma"] == 3.0
    kd = criterion_configs.KnowledgeDistillationLossConfig(loss_types=["CE", "JSD"], beta=0.2,
                                                          logit_standardization=True)
    assert kd.to_dict()["KnowledgeDistillationLoss"]["beta"] == 0.2
    with pytest.raises(ConfigError, match="beta"):
        criterion_configs.CRITERION_CONFIGS["DISTLoss"](beta=-2)
