"""``neural-distill report`` on the command line: the table or ``--json``, and the gate's exit
status (0 every requirement holds, 1 one failed, 2 one could not be read)."""

import json
import math
import os
import sys

from neural_distill.config.loader import read_yaml, validate
from neural_distill.errors import NeuralDistillError
from neural_distill.report import gate
from neural_distill.report.build import metric_name, report


def _plain(value):
    """JSON for other tools: NaN and infinities (not JSON) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _check_names_early(requirements, run_dir, latency_batch):
    """Names checked from the run's config alone: a typo costs no framework import and no
    model build. A folder that is no run is left to the report, which says so."""
    path = os.path.join(run_dir, "config.yaml")
    if not requirements or not os.path.isfile(path):
        return
    try:
        config = validate(read_yaml(path), path)
    except (NeuralDistillError, OSError, ValueError):
        return
    gate.check_names(requirements, metric_name(config), latency_batch)


def run_report(args):
    try:
        # A typo should not cost building and evaluating two models.
        _check_names_early(gate.parse_all(args.require), args.run_dir, args.batch_size)
        figures = report(args.run_dir, config=args.config, latency_batch=args.batch_size,
                         repeats=args.repeats, echo=not args.json, require=args.require)
    except gate.RequirementError as exc:
        print(f"neural-distill: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        document = dict(figures, requirements=list(figures.verdicts), passed=figures.passed,
                        files=list(figures.files))
        print(json.dumps(_plain(document), indent=1))
    failures = figures.failures()
    for line in failures:
        print(f"neural-distill: requirement failed: {line}", file=sys.stderr)
    return 1 if failures else 0
