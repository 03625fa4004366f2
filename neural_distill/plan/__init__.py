"""``neural-distill plan CONFIG``: sizes, a training step's memory and time, the teacher cache's
size and whether to cache the teacher, measured on the config's models before a run.

Importing this package loads no framework; ``plan()`` does, through the config's factories.
"""

import os

from neural_distill.plan.build import make_plan, plan_lines


def plan(config, base_dir=None):
    """The plan of a config (a YAML path, a dict or a ``DistillationConf``) as a dict.

    Relative factory and data paths start at the YAML file's folder, or at ``base_dir``
    (default: the current folder) for a dict.
    """
    from neural_distill.config.loader import load_config

    validated, source = load_config(config)
    if base_dir is None and not source.startswith("<"):
        base_dir = os.path.dirname(os.path.abspath(source))
    return make_plan(validated, source, base_dir or os.getcwd())


__all__ = ["plan", "make_plan", "plan_lines"]
