"""Reading and validating experiment configurations.

A configuration is read with YAML's safe loader (no tags that build Python objects, see
``yaml_reader``) and validated completely before any model is touched.
"""

import copy
import os

from neural_distill.errors import ConfigError
from neural_distill.config.nodes import _MISSING, Problems
from neural_distill.config.schema import TOP_LEVEL
from neural_distill.config.yaml_reader import (
    MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, decode, parse_yaml)


class DotDict(dict):
    """A dict whose keys can also be read as attributes: ``conf.distillation.train.epoch``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"configuration has no key '{name}'") from None

    def __setattr__(self, name, value):
        self[name] = value

    def __deepcopy__(self, memo):
        return DotDict({k: copy.deepcopy(v, memo) for k, v in self.items()})

    @classmethod
    def wrap(cls, value):
        if isinstance(value, dict):
            return cls({k: cls.wrap(v) for k, v in value.items()})
        if isinstance(value, list):
            return [cls.wrap(v) for v in value]
        return value


def to_plain(value):
    """DotDicts and tuples back to plain dicts and lists (for YAML dumps and JSON)."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def read_yaml(path):
    """The raw document of a YAML file; problems name the file, line and column.

    The file must be UTF-8 YAML of at most ``yaml_reader.MAX_FILE_BYTES``; duplicate keys,
    base-60 numbers, alias bombs and deep nesting are refused (``yaml_reader``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: configuration file not found. Expected a path to a YAML "
                          f"file (or pass a dict).")
    try:
        with open(path, "rb") as handle:
            # One byte past the limit is enough to know the file is too large.
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: "
                          f"{exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: the file is larger than {MAX_FILE_BYTES:,} bytes, the most a "
                          f"configuration may be. Is this the right file?")
    return parse_text(decode(data, path), path)


def parse_text(text, source):
    """The raw document of YAML text (``{}`` when empty); problems raise ConfigError."""
    document = parse_yaml(text, source)
    return {} if document is None else document


def validate(document, source="<dict>", node=TOP_LEVEL):
    """Validate a raw document; returns it with defaults filled in, as a DotDict.

    Raises one ConfigError listing every problem, each as ``source: key.path: message``.
    """
    problems = Problems()
    cleaned = node.validate(document, "", problems)
    if problems.items or cleaned is _MISSING:
        lines = [f"{source}: {path}: {message}" for path, message in problems.items]
        header = (lines[0] if len(lines) == 1 else
                  f"{source}: {len(lines)} problems in the configuration:\n  " + "\n  ".join(lines))
        raise ConfigError(header, problems=lines)
    return DotDict.wrap(cleaned)


class LoadedConfig:
    """A configuration validated once (``usr_cfg``) and where it came from (``source``);
    ``DistillationConf`` is one. Defined here so the loader needs nothing above it."""

    usr_cfg = None
    source = None


def check_size(document, source):
    """A document given in Python obeys the same limits as a file (iteratively: a structure
    that contains itself, or one 10,000 levels deep, must not end in RecursionError)."""
    stack, count = [(document, 0)], 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise ConfigError(f"{source}: nesting deeper than {MAX_DEPTH} levels (or a dict or "
                              f"list that contains itself); a configuration is never this deep.")
        if count > MAX_NODES:
            raise ConfigError(f"{source}: more than {MAX_NODES:,} values; a configuration is "
                              f"never this large.")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1) for item in value)


def load_config(source):
    """A validated configuration from a YAML path, a dict, or a DistillationConf.

    Returns ``(config, source_name)``; the user's file is never written to.
    """
    if isinstance(source, LoadedConfig):
        return copy.deepcopy(source.usr_cfg), source.source
    if isinstance(source, dict):
        check_size(source, "<dict>")
        return validate(copy.deepcopy(to_plain(source)), "<dict>"), "<dict>"
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        return validate(read_yaml(name), name), name
    if source is None:
        return validate({}, "<defaults>"), "<defaults>"
    raise ConfigError(f"Distillation(config): expected a path to a YAML file, a dict or a "
                      f"DistillationConf, got {type(source).__name__}")
