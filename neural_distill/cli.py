"""Command line: neural-distill run | validate | report | plan | cache-teacher.

Every user mistake (a bad config, a missing file, a model that does not fit) ends in one
paragraph on stderr and exit status 1; anything else is a bug of ours (or of the factory code a
config names) and gives a one-line notice and status 2, with the traceback behind --debug.
"""

import argparse
import os
import sys

import numpy as np
import yaml

from neural_distill.core import rng
from neural_distill.config.loader import read_yaml, validate
from neural_distill.core.backends import imported_backends
from neural_distill.errors import ConfigError, NeuralDistillError
from neural_distill.core.logging_utils import quiet_third_party_import_noise
from neural_distill.report.runs import build_model
from neural_distill.commands.run_models import build_run_models, seeding_adapter
from neural_distill.commands.validate_run import check_for_run

DESCRIPTION = """\
Knowledge distillation from a YAML experiment file.

  neural-distill validate CONFIG      check the file (add --for-run for what 'run' needs)
  neural-distill run CONFIG           train the student; prints a summary and the run folder
  neural-distill report RUN_FOLDER    teacher vs student: table, report.html, PNG plots
                                      (--require EXPR: a fidelity gate for CI)
  neural-distill plan CONFIG          sizes, step memory and time, cache advice; no training
  neural-distill cache-teacher CONFIG run the teacher once; later runs read its outputs

'run' and 'validate --import' execute the Python factories the config names (model.student,
model.teacher, dataset factories): run them only on files you trust. Relative paths in the
config, including tuning.workspace.path, start at the config file's folder.
"""

USER_ERRORS = (NeuralDistillError, OSError, UnicodeDecodeError, yaml.YAMLError)


# ---------------------------------------------------------------------- overrides
def _parse_set(text):
    key, sep, value = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text}: expected KEY=VALUE with a dotted key path, e.g. "
                          f"--set distillation.train.epoch=3")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: the value {value!r} is not valid YAML "
                          f"({getattr(exc, 'problem', exc)})") from None
    return key, parsed


def apply_override(document, key, value):
    """Set ``a.b.c`` in a raw config document, creating sections on the way."""
    node = document
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            section = ".".join(parts[:depth + 1])
            raise ConfigError(f"--set {key}: {section} is a value ({child!r}), not a section, "
                              f"so it has no key '{parts[depth + 1]}'")
        node = child
    node[parts[-1]] = value


def load_with_overrides(path, settings, extra=()):
    """The validated config of ``path`` with ``--set`` and option overrides applied.

    Problems are reported like the file's own, by key path, so a bad --set value reads
    ``distill.yaml: distillation.train.epoch: expected an int >= 1, got 0``.
    """
    document = read_yaml(path)
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a YAML mapping of sections (model, distillation, "
                          f"...) at the top, got {type(document).__name__}")
    for key, value in [_parse_set(text) for text in settings or ()] + list(extra):
        apply_override(document, key, value)
    return validate(document, path)


def _as_conf(config, source):
    from neural_distill.config.conf import DistillationConf

    conf = DistillationConf.__new__(DistillationConf)
    conf.usr_cfg, conf.source = config, source
    return conf


def _option_overrides(args):
    """Overrides from the dedicated options; --workspace is relative to where you are."""
    pairs = []
    if getattr(args, "device", None):
        pairs.append(("device", args.device))
    if getattr(args, "workspace", None):
        pairs.append(("tuning.workspace.path", os.path.abspath(args.workspace)))
    if getattr(args, "seed", None) is not None:
        pairs.append(("tuning.random_seed", args.seed))
    if getattr(args, "resume", None):
        pairs.append(("tuning.workspace.resume", args.resume))
    if getattr(args, "quiet", False):
        pairs.append(("distillation.train.progress_bar", False))
    if getattr(args, "threads", None) is not None:
        pairs.append(("threads", args.threads))
    return pairs


def _resolve_workspace(config, source):
    """A relative workspace path starts at the config file's folder, like every other path."""
    workspace = config.tuning.workspace
    if not os.path.isabs(workspace.path):
        base = os.path.dirname(os.path.abspath(source))
        workspace.path = os.path.normpath(os.path.join(base, workspace.path))


# ---------------------------------------------------------------------- commands
def cmd_validate(args):
    config = load_with_overrides(args.config, args.set, _option_overrides(args))
    problems = check_for_run(config, args.config, for_run=args.for_run,
                             import_factories=args.import_factories)
    if problems:
        raise ConfigError("\n".join(problems), problems=problems)
    scope = ("everything `neural-distill run` needs" if args.for_run else
             "schema and factory names; add --for-run to check what `run` needs")
    print(f"{args.config}: OK ({scope})")
    return 0


def _set_threads(threads):
    """Before a framework is imported the environment decides; torch can also change later."""
    if threads is None:
        return
    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[name] = str(threads)
    for backend in imported_backends():
        backend.module("adapter").ADAPTER.set_threads(threads)


def _quiet(args):
    if args.quiet:
        import logging

        logging.getLogger("neural_distill").setLevel(logging.WARNING)


def cmd_run(args):
    from neural_distill.distillation import Distillation
    from neural_distill.report.summary import summary_lines

    config = load_with_overrides(args.config, args.set, _option_overrides(args))
    _resolve_workspace(config, args.config)
    if config.get("threads") is None:
        # A run owns its process: on a busy machine torch's default (every core) can make a
        # small model many times slower than one thread (docs/distributed.md).
        config["threads"] = "auto"
    problems = check_for_run(config, args.config, for_run=True, import_factories=False)
    if problems:
        raise ConfigError("\n".join(problems), problems=problems)
    _quiet(args)
    distiller = Distillation(_as_conf(config, args.config))
    distiller.log_summary = False  # printed below, on stdout
    build_run_models(distiller, config, args.config)
    _set_threads(args.threads)  # the factories may have imported torch just now
    distiller.fit()
    if not distiller.workspace.writes:
        return 0  # under torchrun, the main process writes and reports
    run_dir = distiller.workspace.path
    teacher = config.model.get("teacher")
    if distiller.teacher_model is not None and not (
            isinstance(teacher, dict) and teacher.get("checkpoint")):
        # The factory may train or randomly initialise it: keep the teacher that taught, so
        # the report scores that one.
        distiller.adapter.save_weights(
            distiller.teacher_model,
            os.path.join(run_dir, "teacher" + distiller.adapter.checkpoint_suffix))
    print("\n".join(summary_lines(distiller.run.score_name(), distiller.best_score,
                                   getattr(distiller, "teacher_score", None), run_dir,
                                   f"neural-distill report {run_dir}")))
    return 0


def cmd_cache_teacher(args):
    from neural_distill.commands.cache_teacher import write_offline_cache
    from neural_distill.distillation import Distillation

    config = load_with_overrides(args.config, args.set, _option_overrides(args))
    _resolve_workspace(config, args.config)
    if config.model.get("teacher") is None:
        raise ConfigError(f"{args.config}: model.teacher: missing; cache-teacher builds the "
                          f"teacher from this factory and runs it over the training data")
    _quiet(args)
    distiller = Distillation(_as_conf(config, args.config))
    base_dir = os.path.dirname(os.path.abspath(args.config))
    rng.seed_run(config.tuning, seeding_adapter(config))  # the teacher run would build
    distiller.teacher_model = build_model(config, "teacher", args.config, base_dir)
    folder = os.path.abspath(args.output) if args.output else None
    index = write_offline_cache(distiller, folder, progress_bar=not args.quiet)
    compression = index["codec"]["compression"]
    if index.get("layout") == "tokens":  # a language model's per-token records
        print(f"teacher cache: {index['samples']} samples, {index['tokens']} counted tokens, "
              f"{index['bytes_per_token']} bytes per token ({compression}), "
              f"{len(index['shards'])} shards written to {index['folder']}")
    else:
        samples = sum(shard["count"] for shard in index["shards"])
        record_bytes = np.dtype(index["dtype"]).itemsize * int(np.prod(index["record_shape"]))
        print(f"teacher cache: {samples} samples, {record_bytes} bytes per sample "
              f"({compression}), written to {index['folder']}")
    print(f"next: neural-distill run {args.config}   (reads it: "
          f"distillation.train.teacher_cache.path)")
    return 0


def cmd_report(args):
    from neural_distill.report.gate_cli import run_report

    return run_report(args)


def cmd_plan(args):
    from neural_distill.plan.command import run_plan

    return run_plan(args, load_with_overrides(args.config, args.set, _option_overrides(args)))


# ---------------------------------------------------------------------- parser
def _int_at_least(minimum):
    """An argparse type: an integer >= ``minimum``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)
_seed = _int_at_least(0)


def _common(parser):
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an unexpected error")


def _config_options(parser):
    parser.add_argument("config", help="the experiment's YAML file")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override one key, e.g. --set distillation.train.epoch=3 "
                             "(VALUE is read as YAML; repeatable; validated like the file)")
    parser.add_argument("--device", help="override device: cpu, gpu, cuda, cuda:N, mps, auto")
    parser.add_argument("--workspace", metavar="PATH",
                        help="override tuning.workspace.path (relative to the current folder)")
    parser.add_argument("--seed", type=_seed, help="override tuning.random_seed")


def build_parser():
    from neural_distill.version import __version__

    parser = argparse.ArgumentParser(prog="neural-distill", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"neural-distill {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="train the student of an experiment described in a YAML file",
        description="Train the student. Executes the factories the config names; relative "
                    "paths (also tuning.workspace.path) start at the config file's folder.")
    _config_options(run)
    run.add_argument("--threads", type=_positive_int, help="CPU threads for the framework")
    run.add_argument("--quiet", action="store_true",
                     help="no progress bar and no per-epoch lines; the summary is still printed")
    run.add_argument("--resume", nargs="?", const="auto", metavar="auto|PATH",
                     help="set tuning.workspace.resume: 'auto' (the default when the flag is "
                          "given alone) or a checkpoint path")
    _common(run)
    run.set_defaults(func=cmd_run)

    check = commands.add_parser(
        "validate", help="check a YAML file and print every problem",
        description="Check a YAML file and print every problem. Factory names are checked "
                    "without importing anything unless --import is given.")
    _config_options(check)
    check.add_argument("--for-run", action="store_true",
                       help="also check what 'neural-distill run' needs (model factories, "
                            "training data)")
    check.add_argument("--import", dest="import_factories", action="store_true",
                       help="import the factory modules to check their attributes (runs their "
                            "code: only for files you trust)")
    _common(check)
    check.set_defaults(func=cmd_validate, threads=None, quiet=False)

    cache = commands.add_parser(
        "cache-teacher", help="run the teacher once over the training data and store its "
                              "outputs for later runs",
        description="Run the teacher (model.teacher) over the training data once and write its "
                    "outputs to distillation.train.teacher_cache.path (or --output), so later "
                    "runs never build the teacher. Executes the factories the config names.")
    _config_options(cache)
    cache.add_argument("--output", metavar="FOLDER",
                       help="where to write (default: distillation.train.teacher_cache.path, "
                            "relative to the config file)")
    cache.add_argument("--threads", type=_positive_int, help="CPU threads for the framework")
    cache.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(cache)
    cache.set_defaults(func=cmd_cache_teacher)

    report = commands.add_parser(
        "report", help="teacher vs student report of a finished run folder",
        description="Evaluate the teacher and the best student of a run folder on the "
                    "evaluation data; write report.html, report.json and PNG plots into it "
                    "and print the table. Executes the model factories its config names.")
    report.add_argument("run_dir", metavar="RUN_FOLDER")
    report.add_argument("--config", help="the original config file, when the run folder has "
                                          "no run_info.json (runs made from Python)")
    report.add_argument("--batch-size", type=_positive_int, default=64,
                        help="the larger batch size timed besides batch 1 (default 64)")
    report.add_argument("--repeats", type=_positive_int, default=20,
                        help="timed forward passes per model and batch size (default 20)")
    report.add_argument("--threads", type=_positive_int, help="CPU threads for the framework")
    report.add_argument("--require", action="append", metavar="EXPR",
                        help="a requirement, e.g. 'agreement>=0.95' or 'top1>=0.98*teacher.top1' "
                             "(repeatable; exit 1 when one fails, 2 when one is malformed)")
    report.add_argument("--json", action="store_true",
                        help="print the figures and the verdicts as JSON instead of the table")
    _common(report)
    report.set_defaults(func=cmd_report)

    plan = commands.add_parser(
        "plan", help="sizes, memory and time of a training step, before a run",
        description="Build the models from the config's factories (no training) and print "
                    "their sizes, a training step's memory, the teacher's share of a step's "
                    "time, the teacher cache's size, and whether to cache the teacher.")
    _config_options(plan)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument("--threads", type=_positive_int, help="CPU threads for the framework")
    _common(plan)
    plan.set_defaults(func=cmd_plan)
    return parser


def _paragraph(exc):
    if isinstance(exc, ConfigError) and len(exc.problems) > 1:
        return "\n".join(exc.problems)
    if isinstance(exc, NeuralDistillError):
        return str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return (f"a file could not be read as UTF-8 text ({exc.reason} at byte {exc.start}). "
                f"Save the config as UTF-8.")
    if isinstance(exc, OSError):
        name = f"{exc.filename}: " if exc.filename else ""
        return f"{name}{exc.strerror or exc}"
    return str(exc)


def main(argv=None):
    args = build_parser().parse_args(argv)
    # Before the factories import transformers (and through it torchao).
    quiet_third_party_import_noise()
    _set_threads(getattr(args, "threads", None))
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("neural-distill: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if args.debug:
            raise
        print(f"neural-distill: error: {_paragraph(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: say so, traceback behind --debug
        if args.debug:
            raise
        print(f"neural-distill: unexpected {type(exc).__name__}: {exc}\nThis is a bug in "
              f"neural_distill or in the factory code the config names. Run again with --debug "
              f"for the traceback.", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
