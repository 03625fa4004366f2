"""What every Python config class shares: validated attributes, the YAML round trip, equality.

Nothing here imports a deep-learning framework.
"""

import copy
import os

import yaml

from neural_distill.errors import ConfigError
from neural_distill.config.loader import parse_text, read_yaml
from neural_distill.config.nodes import describe


def read_yaml_source(source, who):
    """A YAML document from a file path or from YAML text."""
    if isinstance(source, os.PathLike) or (
            isinstance(source, str) and "\n" not in source
            and (os.path.isfile(source) or source.endswith((".yaml", ".yml")))):
        return read_yaml(source), os.fspath(source)
    if isinstance(source, str):
        return parse_text(source, who), who  # same safety checks as a file
    raise ConfigError(f"{who}: expected a path to a YAML file or YAML text, got "
                      f"{type(source).__name__}")


def dump_yaml(document, who):
    try:
        return yaml.safe_dump(document, sort_keys=False)
    except yaml.representer.RepresenterError as exc:
        raise ConfigError(
            f"{who}: cannot be written as YAML: it holds a Python object "
            f"({describe(exc.args[1] if len(exc.args) > 1 else exc)}), e.g. a callable layer "
            f"process. Use an index or a key as the process to make it YAML-able.") from None


class YamlConfig:
    """Shared behaviour of the configs: validated attributes, YAML round trip, equality.

    Subclasses set ``_FIELDS`` (the YAML-backed constructor arguments, in order) and implement
    ``_validated(values)`` (returns the cleaned values or raises ConfigError) and ``to_dict``.
    Assigning a field re-validates the whole config, so a config object is never invalid.
    """

    _FIELDS = ()
    _RUNTIME = ()

    def _store(self, values):
        cleaned = self._validated(values)
        for name in self._FIELDS:
            object.__setattr__(self, name, cleaned.get(name))

    def __setattr__(self, name, value):
        if name in self._FIELDS:
            values = {field: getattr(self, field) for field in self._FIELDS}
            values[name] = value
            self._store(values)
        else:
            object.__setattr__(self, name, value)

    def to_yaml(self):
        return dump_yaml(self.to_dict(), type(self).__name__)

    @classmethod
    def from_yaml(cls, source, **runtime):
        """From a YAML file path or YAML text (runtime objects as keyword arguments)."""
        document, name = read_yaml_source(source, f"{cls.__name__}.from_yaml")
        return cls._from_document(document, name, **runtime)

    @classmethod
    def from_dict(cls, document, **runtime):
        return cls._from_document(copy.deepcopy(document), f"{cls.__name__}.from_dict",
                                  **runtime)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self.to_dict() == other.to_dict() and all(
            getattr(self, name) is getattr(other, name) for name in self._RUNTIME)

    __hash__ = None  # mutable

    def __repr__(self):
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS
                          if getattr(self, name) is not None)
        return f"{type(self).__name__}({shown})"
