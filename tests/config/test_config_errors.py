"""Configuration errors (accelerate-style fixture table) and how configurations are accepted.

Every invalid config is tried twice: as a dict (source ``<dict>``) and as a YAML file written to
``tmp_path`` (source = the file's path). Each message must name the source, the dotted key path,
what was expected and what was received.
"""

import os

import pytest
import yaml

from helpers import base_config, make_blobs, tensor_loader, tiny_mlp
from neural_distill import ConfigError, Distillation, DistillationConf, NeuralDistillError

# (id, config, key path, what was expected, what was received)
INVALID_CONFIGS = [
    ("unknown-key", {"distillation": {"train": {"optimiser": {"SGD": {}}}}},
     "distillation.train.optimiser", "unknown key", "Did you mean 'optimizer'?"),
    ("unknown-top-level-key", {"devise": "cpu"},
     "devise", "unknown key", "Did you mean 'device'?"),
    ("wrong-type-string-for-int", {"distillation": {"train": {"epoch": "three"}}},
     "distillation.train.epoch", "expected an int >= 1", "got 'three'"),
    ("wrong-type-bool-for-int", {"tuning": {"random_seed": True}},
     "tuning.random_seed", "expected an int >= 0", "got True"),
    ("wrong-type-section", {"distillation": {"train": 5}},
     "distillation.train", "expected a mapping", "got 5"),
    ("temperature-negative",
     {"distillation": {"train": {"criterion": {"KnowledgeDistillationLoss": {"temperature": -1}}}}},
     "distillation.train.criterion.KnowledgeDistillationLoss.temperature",
     "expected a number > 0", "got -1"),
    ("temperature-string",
     {"distillation": {"train": {"criterion": {"KnowledgeDistillationLoss": {
         "temperature": "hot"}}}}},
     "distillation.train.criterion.KnowledgeDistillationLoss.temperature",
     "expected a number > 0", "got 'hot'"),
    ("loss-weights-one-number",
     {"distillation": {"train": {"criterion": {"KnowledgeDistillationLoss": {
         "loss_weights": [0.5]}}}}},
     "distillation.train.criterion.KnowledgeDistillationLoss.loss_weights",
     "expected a list of two numbers", "got [0.5]"),
    ("loss-weights-not-numbers",
     {"distillation": {"train": {"criterion": {"KnowledgeDistillationLoss": {
         "loss_weights": [0.5, "half"]}}}}},
     "distillation.train.criterion.KnowledgeDistillationLoss.loss_weights",
     "expected a list of two numbers", "got [0.5, 'half']"),
    ("loss-weights-scalar",
     {"distillation": {"train": {"criterion": {"KnowledgeDistillationLoss": {
         "loss_weights": 0.5}}}}},
     "distillation.train.criterion.KnowledgeDistillationLoss.loss_weights",
     "expected a list of two numbers", "got 0.5"),
    ("loss-types-unknown",
     {"distillation": {"train": {"criterion": {"KnowledgeDistillationLoss": {
         "loss_types": ["CE", "XX"]}}}}},
     "distillation.train.criterion.KnowledgeDistillationLoss.loss_types",
     "distillation in {CE, KL, MSE, RKL, JSD}", "got ['CE', 'XX']"),
    ("loss-types-kl-as-student-loss",
     {"distillation": {"train": {"criterion": {"KnowledgeDistillationLoss": {
         "loss_types": ["KL", "KL"]}}}}},
     "distillation.train.criterion.KnowledgeDistillationLoss.loss_types",
     "student in {CE, MSE}", "got ['KL', 'KL']"),
    ("unknown-criterion",
     {"distillation": {"train": {"criterion": {"KnowledgeDistilationLoss": {}}}}},
     "distillation.train.criterion.KnowledgeDistilationLoss",
     "Expected one of {KnowledgeDistillationLoss", "Did you mean 'KnowledgeDistillationLoss'?"),
    ("bad-optimizer-name", {"distillation": {"train": {"optimizer": {"SDG": {}}}}},
     "distillation.train.optimizer.SDG", "Expected one of {SGD, Adam, AdamW}",
     "Did you mean 'SGD'?"),
    ("bad-optimizer-lr",
     {"distillation": {"train": {"optimizer": {"SGD": {"learning_rate": -0.1}}}}},
     "distillation.train.optimizer.SGD.learning_rate", "expected a learning rate > 0",
     "got -0.1"),
    ("bad-optimizer-param", {"distillation": {"train": {"optimizer": {"Adam": {"betas": 0.9}}}}},
     "distillation.train.optimizer.Adam.betas", "unknown key", "Did you mean"),
    ("end-epoch-before-start",
     {"distillation": {"train": {"start_epoch": 3, "end_epoch": 2}}},
     "distillation.train.end_epoch", "expected an int > start_epoch (3)", "got 2"),
    ("end-epoch-equals-start",
     {"distillation": {"train": {"start_epoch": 3, "end_epoch": 3}}},
     "distillation.train.end_epoch", "expected an int > start_epoch (3)", "got 3"),
    ("unknown-lr-schedule", {"distillation": {"train": {"lr_schedule": {"cosin": {}}}}},
     "distillation.train.lr_schedule.cosin", "Expected one of {constant, cosine, step}",
     "Did you mean 'cosine'?"),
    ("unknown-metric", {"evaluation": {"accuracy": {"metric": {"Acuracy": None}}}},
     "evaluation.accuracy.metric.Acuracy", "unknown metric", "Did you mean 'Accuracy'?"),
    ("bad-device", {"device": "tpu"}, "device", "one of cpu, gpu", "got 'tpu'"),
    ("bad-framework", {"model": {"framework": "pytorh"}},
     "model.framework", "one of {pytorch", "got 'pytorh'"),
    ("dataset-name-typo",
     {"distillation": {"train": {"dataloader": {"dataset": {"dumy": {"shape": [4, 3]}}}}}},
     "distillation.train.dataloader.dataset.dumy", "unknown dataset", "Did you mean 'dummy'?"),
    ("bad-dataset-shape",
     {"distillation": {"train": {"dataloader": {"dataset": {"dummy": {"shape": [0, 3]}}}}}},
     "distillation.train.dataloader.dataset.dummy.shape", "a list of positive ints",
     "got [0, 3]"),
]


def _write_yaml(tmp_path, document, name="distill.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("as_file", [False, True], ids=["dict", "yaml-file"])
@pytest.mark.parametrize("case_id,config,key_path,expected,received", INVALID_CONFIGS,
                         ids=[case[0] for case in INVALID_CONFIGS])
def test_invalid_config_names_source_key_expected_and_received(
        tmp_path, workspace, as_file, case_id, config, key_path, expected, received):
    document = dict(config, tuning=dict(config.get("tuning", {}),
                                        workspace={"path": workspace}))
    source = _write_yaml(tmp_path, document) if as_file else document
    source_name = source if as_file else "<dict>"

    with pytest.raises(ConfigError) as info:
        Distillation(source)

    error = info.value
    assert isinstance(error, NeuralDistillError) and isinstance(error, ValueError)
    assert len(error.problems) == 1, error.problems
    message = str(error)
    assert message == error.problems[0]
    assert message.startswith(f"{source_name}: {key_path}: "), message
    assert expected in message
    assert received in message


def test_temperature_message_is_exactly_as_documented(tmp_path, workspace):
    path = _write_yaml(tmp_path, base_config(workspace, distillation={"train": {"criterion": {
        "KnowledgeDistillationLoss": {"temperature": -1}}}}))
    with pytest.raises(ConfigError) as info:
        Distillation(path)
    assert str(info.value) == (f"{path}: distillation.train.criterion.KnowledgeDistillationLoss"
                               f".temperature: expected a number > 0, got -1")


def test_all_problems_are_reported_at_once(tmp_path, workspace):
    document = {
        "devise": "cpu",
        "distillation": {"train": {
            "optimizer": {"SDG": {}},
            "epoch": 0,
            "criterion": {"KnowledgeDistillationLoss": {"temperature": -1,
                                                        "loss_weights": [1]}},
        }},
        "tuning": {"random_seed": "x", "workspace": {"path": workspace}},
    }
    path = _write_yaml(tmp_path, document)
    with pytest.raises(ConfigError) as info:
        Distillation(path)
    problems = info.value.problems
    expected_paths = ["devise", "distillation.train.optimizer.SDG", "distillation.train.epoch",
                      "distillation.train.criterion.KnowledgeDistillationLoss.temperature",
                      "distillation.train.criterion.KnowledgeDistillationLoss.loss_weights",
                      "tuning.random_seed"]
    assert len(problems) == len(expected_paths), problems
    for key_path in expected_paths:
        assert sum(p.startswith(f"{path}: {key_path}: ") for p in problems) == 1, key_path
    message = str(info.value)
    assert f"{len(expected_paths)} problems" in message
    for problem in problems:
        assert problem in message


def test_invalid_yaml_syntax_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  name: x\ndistillation:\n  train: {epoch: 2\n  bad\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Distillation(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: not valid YAML (line ")
    line = int(message.split("(line ")[1].split(",")[0])
    assert 4 <= line <= 6, message


def test_indentation_error_points_at_the_offending_line(tmp_path):
    path = tmp_path / "indent.yaml"
    path.write_text("model:\n  name: x\n framework: pytorch\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Distillation(str(path))
    assert f"{path}: not valid YAML (line 3, column" in str(info.value)


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "no_such.yaml"
    with pytest.raises(ConfigError) as info:
        Distillation(str(path))
    assert str(path) in str(info.value)
    assert "not found" in str(info.value)


def test_yaml_python_tags_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "created_by_yaml"
    path = tmp_path / "evil.yaml"
    path.write_text(f"model: !!python/object/apply:os.mkdir ['{marker}']\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Distillation(str(path))
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_unsupported_source_type_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        Distillation(42)
    assert "expected a path to a YAML file, a dict or a DistillationConf, got int" \
        in str(info.value)


def test_top_level_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Distillation(str(path))
    assert str(info.value).startswith(f"{path}: ")
    assert "expected a mapping" in str(info.value)
    assert "[1, 2]" in str(info.value)


# ---------------------------------------------------------------------------- valid configs
def test_valid_config_gets_defaults(workspace):
    distiller = Distillation({"distillation": {"train": {"epoch": 3}},
                              "tuning": {"workspace": {"path": workspace}}})
    conf = distiller.conf
    train = conf.distillation.train
    assert train.epoch == 3
    assert train.start_epoch == 0
    assert train.frequency == 1
    assert train.optimizer == {"Adam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
                                        "epsilon": 1e-8, "amsgrad": False, "weight_decay": 0.0}}
    assert train.criterion == {"KnowledgeDistillationLoss": {
        "temperature": 1.0, "loss_types": ["CE", "CE"], "loss_weights": [0.5, 0.5],
        "from_logits": True, "logit_standardization": False, "beta": 0.5,
        "vocab_mismatch": "error"}}
    assert train.lr_schedule == {"constant": {}}
    assert conf.device == "cpu"
    assert conf.tuning.random_seed == 1978
    assert conf.tuning.workspace.path == workspace


def test_partial_sections_keep_user_values_and_fill_the_rest(workspace):
    distiller = Distillation(base_config(workspace, distillation={"train": {
        "optimizer": {"SGD": {"learning_rate": 0.5}},
        "criterion": {"KnowledgeDistillationLoss": {"temperature": 3}}}}))
    train = distiller.conf.distillation.train
    assert train.optimizer == {"SGD": {"learning_rate": 0.5, "momentum": 0.0,
                                       "nesterov": False, "weight_decay": 0.0}}
    kd = train.criterion["KnowledgeDistillationLoss"]
    assert kd["temperature"] == 3
    assert kd["loss_types"] == ["CE", "CE"]
    assert kd["loss_weights"] == [0.5, 0.5]


def test_empty_sections_written_as_null_are_accepted(tmp_path, workspace):
    path = tmp_path / "nulls.yaml"
    path.write_text("model:\ndistillation:\n  train:\n    optimizer:\n      SGD:\n"
                    f"tuning:\n  workspace:\n    path: {workspace}\n", encoding="utf-8")
    conf = Distillation(str(path)).conf
    assert conf.distillation.train.optimizer["SGD"]["learning_rate"] == 0.01


def test_dict_path_and_distillation_conf_are_all_accepted(tmp_path, workspace):
    document = base_config(workspace)
    path = _write_yaml(tmp_path, document)

    from_dict = Distillation(document)
    from_path = Distillation(path)
    from_pathlike = Distillation(tmp_path / "distill.yaml")
    conf = DistillationConf(path)
    from_conf = Distillation(conf)

    assert from_dict.conf_source == "<dict>"
    assert from_path.conf_source == path
    assert from_conf.conf_source == path
    assert from_dict.conf == from_path.conf == from_pathlike.conf == from_conf.conf
    assert from_conf.conf == conf.usr_cfg
    assert from_conf.conf.distillation.train.epoch == 2


def test_distillation_conf_is_reusable_and_not_shared(tmp_path, workspace):
    conf = DistillationConf(base_config(workspace))
    first = Distillation(conf)
    first.conf.distillation.train.epoch = 99
    second = Distillation(conf)
    assert conf.usr_cfg.distillation.train.epoch == 2
    assert second.conf.distillation.train.epoch == 2


def test_distillation_conf_errors_name_the_file(tmp_path):
    path = _write_yaml(tmp_path, {"distillation": {"train": {"epoch": -2}}})
    with pytest.raises(ConfigError) as info:
        DistillationConf(path)
    assert str(info.value).startswith(f"{path}: distillation.train.epoch: ")


def test_users_dict_is_not_changed(workspace):
    document = base_config(workspace)
    snapshot = yaml.safe_dump(document)
    Distillation(document)
    assert yaml.safe_dump(document) == snapshot


YAML_WITH_COMMENTS = """\
# my experiment -- comments, odd spacing and key order must survive untouched
model:
    name:   kd_test       # trailing comment
    framework: pytorch

distillation:
  train:
    epoch: 1
    progress_bar: false
    optimizer: {SGD: {learning_rate: 0.1}}
    criterion:
      KnowledgeDistillationLoss:
        temperature: 2
        loss_types: [CE, KL]
tuning:
  random_seed: 3
  workspace:
    path: {workspace}
"""


def test_users_yaml_file_is_byte_identical_after_loading_and_fit(tmp_path, workspace):
    pytest.importorskip("torch")
    path = tmp_path / "user.yaml"
    path.write_bytes(YAML_WITH_COMMENTS.replace("{workspace}", workspace).encode("utf-8"))
    original = path.read_bytes()
    mtime = os.stat(path).st_mtime_ns

    distiller = Distillation(str(path))
    assert path.read_bytes() == original

    x, y = make_blobs(n=64)
    distiller.student_model = tiny_mlp(seed=0)
    distiller.teacher_model = tiny_mlp(hidden=24, seed=1)
    distiller.train_dataloader = tensor_loader(x, y, batch_size=32)
    distiller.eval_dataloader = tensor_loader(x, y, batch_size=64)
    distiller.fit()

    assert path.read_bytes() == original
    assert os.stat(path).st_mtime_ns == mtime
    # The validated config went to the run's workspace instead.
    runs = os.listdir(workspace)
    assert len(runs) == 1
    written = yaml.safe_load((tmp_path / "nd_ws" / runs[0] / "config.yaml").read_text())
    assert written["distillation"]["train"]["optimizer"]["SGD"]["learning_rate"] == 0.1
    assert sorted(os.listdir(tmp_path)) == ["nd_ws", "user.yaml"]


def test_datasets_of_other_systems_load_and_name_the_fix_when_built(tmp_path, workspace):
    """A file written for another system may name its datasets; they only matter when no
    dataloader object is assigned."""
    config = base_config(workspace)
    config["distillation"]["train"]["dataloader"] = {
        "dataset": {"ImageFolder": {"root": "/nowhere"}}}
    distiller = Distillation(config)
    distiller.student_model = tiny_mlp(seed=0)
    distiller.teacher_model = tiny_mlp(seed=1)
    with pytest.raises(ConfigError) as info:
        distiller.fit()
    message = str(info.value)
    assert "distillation.train.dataloader.dataset.ImageFolder" in message
    assert "not built in" in message and "distiller.train_dataloader" in message
