"""Resolving the ``module:attribute`` names a config may use for models and datasets.

Only names written explicitly under documented keys are resolved, and only by import: YAML
itself never builds Python objects.
"""

import importlib
import importlib.util
import os
import sys

from neural_distill.errors import ConfigError


def resolve(name, where, base_dir=None):
    """The object named by ``'package.module:attr'`` or ``'path/to/file.py:attr'``.

    A ``.py`` path is taken relative to ``base_dir`` (the config file's folder).
    """
    module_name, sep, attribute = name.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{where}: expected 'module:attribute' or 'file.py:attribute', "
                          f"got {name!r}")
    if module_name.endswith(".py"):
        path = module_name if os.path.isabs(module_name) else os.path.join(
            base_dir or os.getcwd(), module_name)
        if not os.path.isfile(path):
            raise ConfigError(f"{where}: file {path} not found (from {name!r})")
        unique = "_nd_factory_" + os.path.splitext(os.path.basename(path))[0]
        module = sys.modules.get(unique)
        if module is None or getattr(module, "__file__", None) != path:
            spec = importlib.util.spec_from_file_location(unique, path)
            module = importlib.util.module_from_spec(spec)
            # The file's own folder goes on sys.path so it can import its neighbours.
            sys.path.insert(0, os.path.dirname(path))
            try:
                sys.modules[unique] = module
                spec.loader.exec_module(module)
            finally:
                sys.path.remove(os.path.dirname(path))
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"{where}: cannot import module '{module_name}' ({exc}). Is it "
                              f"installed or on PYTHONPATH?") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{where}: module '{module_name}' has no attribute '{attribute}'") \
            from None
