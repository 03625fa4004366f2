"""``DistillationConf``: a validated experiment configuration, loaded once and reusable."""

import copy

import yaml

from neural_distill.config.loader import DotDict, LoadedConfig, load_config, to_plain


class DistillationConf(LoadedConfig):
    """A distillation experiment configuration.

    Accepts a YAML path, a dict, or None (all defaults). The validated configuration, with
    defaults filled in, is ``usr_cfg`` (keys readable as attributes).
    """

    def __init__(self, cfg=None):
        self.usr_cfg, self.source = load_config(cfg)

    def to_dict(self):
        return to_plain(self.usr_cfg)

    def to_yaml(self):
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def copy(self):
        clone = DistillationConf.__new__(DistillationConf)
        clone.usr_cfg = DotDict.wrap(copy.deepcopy(self.to_dict()))
        clone.source = self.source
        return clone

    def __repr__(self):
        return f"DistillationConf(source={self.source!r})"
