"""The reference API's module-level configuration object, ``conf``, filled attribute by attribute.

INC 1.x scripts build an experiment without a YAML file::

    from neural_distill.config import conf        # was: neural_compressor.conf.config
    conf.model.framework = "pytorch"
    conf.distillation.train.end_epoch = 3
    conf.distillation.train.optimizer = {"SGD": {"learning_rate": 0.001}}
    distiller = Distillation(conf)

Reading a key that is not set creates an empty section, so a chain of attribute assignments
needs no set-up. ``Distillation(conf)`` validates the document like any dict, so a misspelt
section is reported there ("did you mean"), not silently kept. ``conf`` is one object per
process, as in the reference API: ``conf.clear()`` starts a new experiment.
"""

import copy

from neural_distill.config.loader import DotDict


class DefaultConf(DotDict):
    """A dict whose missing keys, read as attributes or items, become empty sections."""

    def __getitem__(self, key):
        if key not in self:
            dict.__setitem__(self, key, DefaultConf())
        return dict.__getitem__(self, key)

    def __getattr__(self, name):
        # Python's own protocols (copy, pickle, hasattr checks) probe dunder and private names;
        # creating a section for each would put them in the user's experiment.
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __setitem__(self, key, value):
        dict.__setitem__(self, key, DefaultConf.wrap(value) if isinstance(value, dict)
                         else value)

    def __setattr__(self, name, value):
        self[name] = value

    def __deepcopy__(self, memo):
        return DefaultConf({k: copy.deepcopy(v, memo) for k, v in self.items()})

    def __repr__(self):
        return f"DefaultConf({dict.__repr__(self)})"


# One per process: scripts of the reference API import it and fill it in place.
conf = DefaultConf()


class _ArgumentsView(DotDict):
    """A criterion config's arguments as INC's ``config.<name>`` node: the values are the
    config's own objects (a change inside a list is the config's change), and assigning a key
    sets the config's attribute, validated as any assignment is."""

    def __init__(self, owner):
        dict.__init__(self, {name: getattr(owner, name) for name in owner._FIELDS})
        object.__setattr__(self, "_owner", owner)

    def __setitem__(self, key, value):
        setattr(self._owner, key, value)
        dict.__setitem__(self, key, getattr(self._owner, key))

    def __setattr__(self, name, value):
        self[name] = value


def config_view(criterion_config):
    """``{<criterion name>: {argument: value}}``, INC's ``.config`` of a criterion config."""
    return DotDict({criterion_config.yaml_name: _ArgumentsView(criterion_config)})
