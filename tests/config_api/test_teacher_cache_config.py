"""DistillationConfig(teacher_cache=...): the experiment file's distillation.train.teacher_cache."""

import pytest

from neural_distill.config import DistillationConfig
from neural_distill.errors import ConfigError


def test_teacher_cache_is_validated_and_round_trips_through_yaml():
    config = DistillationConfig(teacher_cache={"enabled": True, "compression": "topk",
                                               "top_k": 1})
    assert config.teacher_cache["top_k"] == 1 and config.teacher_cache["max_bytes"] == 1 << 30
    document = config.to_dict()
    assert document["distillation"]["train"]["teacher_cache"]["compression"] == "topk"
    assert DistillationConfig.from_yaml(config.to_yaml()) == config
    assert "teacher_cache" not in DistillationConfig().to_dict()["distillation"]["train"]


@pytest.mark.parametrize("section, message", [
    ({"compression": "top-k"}, "teacher_cache.compression"),
    ({"enabeld": True}, "teacher_cache.enabeld: unknown key. Did you mean 'enabled'"),
])
def test_a_bad_teacher_cache_names_the_key(section, message):
    with pytest.raises(ConfigError, match=message):
        DistillationConfig(teacher_cache=section)
