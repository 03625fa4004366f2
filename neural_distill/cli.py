"""Command line: ``neural-distill run CONFIG`` and ``neural-distill validate CONFIG``.

``run`` needs an experiment described completely in YAML: the models are named under
``model.student`` / ``model.teacher`` as ``module:attribute`` (or ``file.py:attribute``,
relative to the config file) factories, and the data under
``distillation.train.dataloader.dataset`` (and ``evaluation.accuracy.dataloader.dataset``).
"""

import argparse
import os
import sys

from .config.loader import load_config
from .errors import ConfigError, NeuralDistillError
from .factories import resolve


def _factory_spec(spec):
    if isinstance(spec, str):
        return spec, {}, None
    return spec["factory"], dict(spec.get("kwargs") or {}), spec.get("checkpoint")


def build_model(config, role, source):
    """Call the factory named under ``model.<role>``; load its checkpoint if one is given."""
    spec = config.model.get(role)
    where = f"{source}: model.{role}"
    if spec is None:
        raise ConfigError(f"{where}: required by `neural-distill run` (a 'module:attribute' "
                          f"factory returning the {role} model)")
    base_dir = os.path.dirname(os.path.abspath(source)) if not source.startswith("<") else None
    name, kwargs, checkpoint = _factory_spec(spec)
    model = resolve(name, f"{where}.factory", base_dir)(**kwargs)
    if checkpoint:
        from .adapters import adapter_for_model

        path = checkpoint if os.path.isabs(checkpoint) or base_dir is None else os.path.join(
            base_dir, checkpoint)
        adapter_for_model(model, f"model.{role}").load_weights(model, path, f"{where}.checkpoint")
    return model


def _check_factories(config, source):
    """Resolve (without calling) every factory a config names; returns problem lines."""
    problems = []
    base_dir = os.path.dirname(os.path.abspath(source)) if not source.startswith("<") else None
    for role in ("student", "teacher"):
        spec = config.model.get(role)
        if spec is not None:
            try:
                resolve(_factory_spec(spec)[0], f"{source}: model.{role}.factory", base_dir)
            except ConfigError as exc:
                problems.append(str(exc))
    return problems


def cmd_validate(args):
    try:
        config, source = load_config(args.config)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 1
    problems = _check_factories(config, source)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(f"{source}: OK")
    return 0


def cmd_run(args):
    from .distillation import Distillation

    distiller = Distillation(args.config)
    source = distiller.conf_source
    distiller.student_model = build_model(distiller.conf, "student", source)
    distiller.teacher_model = build_model(distiller.conf, "teacher", source)
    distiller.fit()
    print(f"best score: {distiller.best_score}")
    print(f"workspace: {distiller.workspace.path}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="neural-distill", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run an experiment described in a YAML file")
    run.add_argument("config")
    run.set_defaults(func=cmd_run)
    check = commands.add_parser("validate", help="check a YAML file and print every problem")
    check.add_argument("config")
    check.set_defaults(func=cmd_validate)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except NeuralDistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
