"""``neural-distill report`` on the command line: the table or ``--json``, and the gate's exit
status (0 every requirement holds, 1 one failed, 2 one could not be read)."""

import json
import math
import sys

from neural_distill.report import gate
from neural_distill.report.build import report


def _plain(value):
    """JSON for other tools: NaN and infinities (not JSON) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def run_report(args):
    try:
        # Syntax first: a typo should not cost building and evaluating two models.
        gate.parse_all(args.require)
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
