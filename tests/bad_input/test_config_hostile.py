"""Hostile or huge configuration files (issue 11, item 11): each ends in a ConfigError that says
what is wrong, never in a hang, a RecursionError, a crash of the YAML C parser, or code run from
the file."""

import os
import re

import pytest
import yaml

from neural_distill import ConfigError, DistillationConf
from neural_distill.config import yaml_reader
from neural_distill.config.python_api import DistillationConfig

ALIAS_BOMB = "\n".join(
    ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]"
       for i in range(8)]) + "\n"


def config_error(tmp_path, content):
    path = tmp_path / "distill.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        DistillationConf(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


def test_alias_bomb_is_refused(tmp_path):
    assert len(ALIAS_BOMB) < 700  # 9**9 = 387 million strings once expanded
    message = config_error(tmp_path, ALIAS_BOMB)
    assert "expands to more than 100,000 values" in message
    assert "aliases" in message


def test_alias_that_contains_itself_is_refused(tmp_path):
    message = config_error(tmp_path, "tuning:\n  accuracy_criterion: &c {x: [*c]}\n")
    assert "tuning.accuracy_criterion.x[0]" in message
    assert "an alias refers to the collection that contains it" in message


def test_ordinary_aliases_still_work(tmp_path):
    path = tmp_path / "distill.yaml"
    path.write_text("distillation:\n  train:\n    dataloader: &d {batch_size: 8}\n"
                    "evaluation:\n  accuracy:\n    dataloader: *d\n", encoding="utf-8")
    conf = DistillationConf(str(path))
    assert conf.usr_cfg.evaluation.accuracy.dataloader.batch_size == 8


@pytest.mark.parametrize("depth", [100, 3000, 300_000])
def test_deep_flow_nesting_is_refused(tmp_path, depth):
    # 300,000 levels crashed the YAML C parser (stack overflow); 3,000 hit RecursionError.
    message = config_error(tmp_path, "tuning:\n  exit_policy: " + "[" * depth + "]" * depth + "\n")
    assert "nesting deeper than 64 levels" in message and "line 2" in message


def test_deep_block_nesting_is_refused(tmp_path):
    text = "tuning:\n  exit_policy:\n" + "".join(
        " " * (4 + 2 * level) + f"k{level}:\n" for level in range(200))
    message = config_error(tmp_path, text)
    assert "nesting deeper than 64 levels" in message


def test_nesting_built_from_aliases_is_refused(tmp_path):
    levels = ["l0: &l0 [[[[[[[[[[1]]]]]]]]]]"] + [
        f"l{i}: &l{i} [[[[[[[[[[*l{i - 1}]]]]]]]]]]" for i in range(1, 8)]
    message = config_error(tmp_path, "\n".join(levels) + "\n")
    assert "nesting deeper than 64 levels (counting what aliases expand to)" in message


def test_huge_file_is_refused_before_parsing(tmp_path):
    line = "# " + "x" * 97 + "\n"
    message = config_error(tmp_path, "tuning: {}\n" + line * 110_000)  # 11 MB
    assert "larger than 1,048,576 bytes" in message and "Is this the right file?" in message


def test_huge_yaml_text_in_the_python_api_is_refused():
    with pytest.raises(ConfigError, match="at most 1,048,576 bytes"):
        DistillationConfig.from_yaml("model: {}\n" + "# padding\n" * 200_000)


def test_python_object_tag_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    message = config_error(tmp_path, (
        f"tuning:\n  exit_policy: !!python/object/apply:os.system ['touch {marker}']\n"))
    assert "not valid YAML" in message and "line 2" in message
    assert "could not determine a constructor" in message
    assert not marker.exists()


def test_integer_too_long_to_convert(tmp_path):
    message = config_error(tmp_path, "tuning:\n  random_seed: " + "9" * 5000 + "\n")
    assert "not valid YAML (line 2, column 16): cannot read '999" in message
    assert "4300 digits" in message


def test_impossible_date(tmp_path):
    message = config_error(tmp_path, "version: 2021-02-30\n")
    assert "cannot read '2021-02-30' as timestamp: day is out of range for month" in message


@pytest.mark.parametrize("tagged, kind", [("!!bool maybe", "bool"), ("!!timestamp nope",
                                                                     "timestamp"),
                                          ("!!int x", "int"), ("!!float abc", "float")])
def test_explicit_tag_with_a_value_it_cannot_hold(tmp_path, tagged, kind):
    message = config_error(tmp_path, f"tuning:\n  exit_policy: {tagged}\n")
    assert f"not valid YAML (line 2, column 16): cannot read '{tagged.split()[1]}' as {kind}" \
        in message


def test_control_character(tmp_path):
    message = config_error(tmp_path, "model:\n  name: a\x07b\n")
    assert "not valid YAML (line 2, column 10): character '\\x07' is not allowed" in message


def test_several_documents_in_one_file(tmp_path):
    message = config_error(tmp_path, "model: {}\n---\ndevice: cpu\n")
    assert "not valid YAML (line 2, column 1)" in message
    assert "another document" in message


def test_c_loader_is_used_where_available():
    if getattr(yaml, "__with_libyaml__", False):
        assert issubclass(yaml_reader._Loader, yaml.CSafeLoader)
    else:  # pragma: no cover - PyYAML built without libyaml
        assert issubclass(yaml_reader._Loader, yaml.SafeLoader)


def test_template_reads_the_same_as_with_pyyaml(tmp_path):
    # The checks change nothing for an ordinary file: same document as PyYAML's safe loader.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    folder = os.path.join(root, "conf_templates")
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            text = handle.read()
        assert yaml_reader.parse_yaml(text, name) == yaml.safe_load(text), name


def test_dict_that_contains_itself(tmp_path):
    from neural_distill import Distillation

    document = {"tuning": {"exit_policy": {}}}
    document["tuning"]["exit_policy"]["again"] = document
    with pytest.raises(ConfigError, match="<dict>: nesting deeper than 64 levels .*contains "
                                          "itself"):
        Distillation(document)


def test_dict_nested_thousands_deep(tmp_path):
    document = {}
    for _ in range(5000):
        document = {"k": document}
    with pytest.raises(ConfigError, match="<dict>: nesting deeper than 64 levels"):
        DistillationConf({"tuning": {"exit_policy": document}})


PARITY_CASES = [
    ALIAS_BOMB, "a: &a [*a]\n", "a: " + "[" * 3000 + "]" * 3000 + "\n",
    "a: 1\nb: {c: 1, c: 2}\n", "epoch: 1:30\nlr: 1e-3\nn: 010\n", "a: !!bool maybe\n",
    "a: [1, 2\nb: 3\n", "model:\n  name: x\n framework: pytorch\n", "a: \x07\n",
    "a: !!python/object/apply:os.system [ls]\n", "a: 1\n---\nb: 2\n",
]


@pytest.mark.parametrize("text", PARITY_CASES, ids=range(len(PARITY_CASES)))
def test_pure_python_loader_gives_the_same_result(monkeypatch, text):
    def outcome():
        try:
            return repr(yaml_reader.parse_yaml(text, "f.yaml"))
        except ConfigError as exc:
            return str(exc)

    def comparable(result):
        # libyaml and PyYAML word syntax errors differently; the place must be the same.
        syntax = re.match(r"f\.yaml: not valid YAML \(line \d+, column \d+\)", result)
        return syntax.group(0) if syntax else result

    fast = outcome()
    monkeypatch.setattr(yaml_reader, "_Loader", yaml_reader._PythonLoader)
    assert comparable(outcome()) == comparable(fast)


def test_too_many_values_are_refused_before_composing(tmp_path):
    # Under the size limit, but composing 300,000 values would take the time of a huge file.
    message = config_error(tmp_path, "tuning:\n  exit_policy: [" + "1," * 300_000 + "1]\n")
    assert "more than 100,000 values (at line 2, column" in message
