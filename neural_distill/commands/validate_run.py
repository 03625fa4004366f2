"""What ``neural-distill validate`` checks beyond the schema, without running any code.

Factory names are checked by locating their file or top-level package (``importlib`` finds a
package without executing it); importing them (and so running the config's code) happens only
when asked for. ``for_run`` adds what ``neural-distill run`` needs that a file used from Python
may leave out (its models and data can be assigned in code): the model factories, training data
that can be built from the config (built-in dataset, no ``transform``/``filter``),
and the files the config names (a template may name files not made yet).
"""

import importlib.util
import os

from neural_distill.pruning.student import prune_spec
from neural_distill.teacher_cache.options import TeacherCacheOptions, teacher_runs
from neural_distill.errors import ConfigError
from neural_distill.core.factories import resolve
from neural_distill.run.loop_common import check_dataloader_section

_BUILT_IN = ("dummy", "npz", "factory")
_LOADERS = (("distillation.train", "training"), ("evaluation.accuracy", "evaluation"))


def _section(config, dotted):
    node = config
    for key in dotted.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _check_name(name, where, base_dir, import_factories):
    """A problem line for a 'module:attribute' name that cannot be found, else None."""
    if import_factories:
        try:
            resolve(name, where, base_dir)
        except ConfigError as exc:
            return str(exc)
        return None
    module, _, _ = name.partition(":")
    if module.endswith(".py"):
        path = module if os.path.isabs(module) else os.path.join(base_dir, module)
        if not os.path.isfile(path):
            return f"{where}: file {path} not found (from {name!r})"
        return None
    top = module.split(".")[0]
    try:
        found = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return (f"{where}: no module '{top}' found (from {name!r}). Is it installed or on "
                f"PYTHONPATH?")
    return None


def check_for_run(config, source, for_run=False, import_factories=False):
    """Problem lines (``source: key.path: message``) for a validated config; [] if none."""
    base_dir = os.path.dirname(os.path.abspath(source))
    problems = []
    models = config.get("model", {})
    for role in ("student", "teacher"):
        spec = models.get(role)
        if spec is not None and prune_spec(spec) is not None:
            if models.get("teacher") is None:
                problems.append(f"{source}: model.student.prune_from_teacher: needs "
                                f"model.teacher (the student is cut from it)")
        elif spec is not None:
            name = spec if isinstance(spec, str) else spec["factory"]
            problems.append(_check_name(name, f"{source}: model.{role}.factory", base_dir,
                                        import_factories))
            checkpoint = None if isinstance(spec, str) else spec.get("checkpoint")
            if checkpoint and for_run:
                path = checkpoint if os.path.isabs(checkpoint) else os.path.join(base_dir,
                                                                                 checkpoint)
                if not os.path.isfile(path):
                    problems.append(f"{source}: model.{role}.checkpoint: file {path} not found")
        elif for_run and (role == "student" or _needs_teacher(config, base_dir)):
            problems.append(f"{source}: model.{role}: missing; `neural-distill run` builds the "
                            f"{role} from a 'module:attribute' or 'file.py:attribute' factory "
                            f"named here")
    for section, what in _LOADERS:
        loader = _section(config, section).get("dataloader") or {}
        where = f"{source}: {section}.dataloader"
        if "dataset" not in loader:
            if for_run and what == "training":
                problems.append(f"{where}.dataset: missing; `neural-distill run` reads the "
                                f"{what} data from the dataset named here (npz, factory, dummy)")
            continue
        problems += _dataset_problems(loader, where, base_dir, import_factories, for_run)
    return [p for p in problems if p]


def _needs_teacher(config, base_dir):
    train = _section(config, "distillation.train")
    options = TeacherCacheOptions.from_section(train.get("teacher_cache"), base_dir)
    return teacher_runs(train.get("criterion") or {}, options)


def _dataset_problems(loader, where, base_dir, import_factories, for_run):
    if not for_run:
        # From Python the dataloaders may be assigned in code: only the names are checked.
        factory = loader["dataset"].get("factory") if isinstance(loader["dataset"], dict) else None
        if isinstance(factory, dict) and "name" in factory:
            return [_check_name(factory["name"], f"{where}.dataset.factory.name", base_dir,
                                import_factories)]
        return []
    try:
        name, params = check_dataloader_section(loader, where, _BUILT_IN)
    except ConfigError as exc:
        return [str(exc)]
    if name == "npz":
        path = params["path"]
        path = path if os.path.isabs(path) else os.path.join(base_dir, path)
        if not os.path.isfile(path):
            return [f"{where}.dataset.npz.path: file {path} not found"]
    if name == "factory":
        return [_check_name(params["name"], f"{where}.dataset.factory.name", base_dir,
                            import_factories)]
    return []
