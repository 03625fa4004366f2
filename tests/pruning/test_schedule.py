"""The sparsity schedules and patterns (framework-neutral), against their formulas."""

import math

import pytest

from neural_distill.config import PrunerConfig, WeightPruningConfig
from neural_distill.errors import ConfigError, ModelError
from neural_distill.pruning.run import pruner_for
from neural_distill.pruning.schedule import Group, Pattern


def test_cubic_schedule_from_start_to_end():
    group = Group(target=0.8, start=10, end=20)
    for k in range(0, 30):
        t = min(1.0, max(0.0, (k - 10) / 10))
        assert group.sparsity(k) == pytest.approx(0.8 * (1 - (1 - t) ** 3))
    assert [k for k in range(30) if group.due(k)] == list(range(10, 21))
    sparse = Group(target=0.8, start=10, end=20, frequency=4)
    assert [k for k in range(30) if sparse.due(k)] == [10, 14, 18, 20]
    one_shot = Group(target=0.5, start=3, end=3)
    assert one_shot.sparsity(2) == 0.0 and one_shot.sparsity(3) == 0.5


@pytest.mark.parametrize("decay,formula", [
    ("linear", lambda t: 0.1 + 0.7 * t),
    ("cos", lambda t: 0.1 + 0.7 * (1 - math.cos(math.pi * t)) / 2),
    ("exp", lambda t: 1 - 0.9 ** (1 - t) * 0.2 ** t),
])
def test_other_decays(decay, formula):
    group = Group(target=0.8, initial=0.1, start=0, end=8, decay=decay)
    for k in range(9):
        assert group.sparsity(k) == pytest.approx(formula(k / 8))
    assert group.sparsity(8) == pytest.approx(0.8)


def test_patterns():
    assert (Pattern("4x1").rows, Pattern("4x1").cols) == (4, 1)
    assert Pattern("2:4").n_of_m and Pattern("2:4").keep == 2
    for bad in ("4y1", "0x2", "4:2", "2:2"):
        with pytest.raises(ConfigError, match="pattern"):
            Pattern(bad)


def test_configs_become_groups():
    (group,) = WeightPruningConfig([{"start_step": 0, "end_step": 2}], target_sparsity=0.64,
                                   pruning_scope="local").groups()
    assert (group.target, group.start, group.end, group.scope, group.pattern.text,
            group.pruning_type, group.unit) == (0.64, 0, 2, "local", "4x1", "snip_momentum",
                                                "step")
    (group,) = PrunerConfig(target_sparsity_ratio=0.5, epoch_range=[1, 4]).groups()
    assert (group.unit, group.start, group.end, group.pruning_type) == (
        "epoch", 1, 3, "magnitude")
    config = WeightPruningConfig(target_sparsity=0.3, pattern="unstructured")
    assert WeightPruningConfig.from_yaml(config.to_yaml()) == config


def test_keras_students_are_refused_with_a_reason():
    with pytest.raises(ModelError, match="implemented for PyTorch"):
        pruner_for([], "tensorflow", None, "pruning")
