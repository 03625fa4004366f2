"""The fidelity gate: requirements such as ``agreement>=0.95`` or ``top1>=0.98*teacher.top1``
checked against a report's figures (``neural-distill report RUN --require EXPR``).

A requirement is ``FIGURE OP BOUND``: FIGURE is a short name of a figure of the report's table
(the student's value unless written ``teacher.NAME``); OP is one of ``>= <= > <``; BOUND is a
number, a figure (``teacher.top1``) or a number times a figure (``0.98*teacher.top1``).
Latencies are in milliseconds, as the table prints them.
"""

import difflib
import math
import re

from neural_distill.errors import ConfigError


class RequirementError(ConfigError):
    """A requirement that cannot be read: malformed, or naming no figure of the report.

    The command line exits with status 2 for it (1 means a requirement was read and failed).
    """


# short name -> (table row, key in the report's per-model figures, scale to the table's unit)
_MODEL_FIGURES = {
    "ece": ("expected calibration error", "ece", 1.0),
    "parameters": ("parameters", "parameters", 1.0),
    "bytes": ("bytes on disk", "bytes_on_disk", 1.0),
    "latency_b1": ("latency, batch 1 (ms, median)", "latency_batch_1_s", 1000.0),
}
# Figures that compare the two models: one value, no teacher's own.
_PAIR_FIGURES = {
    "agreement": ("top-1 agreement (share of samples, or of valid tokens)", "agreement"),
    "kl": ("mean KL(teacher||student), nats", "mean_kl_teacher_student"),
    "min_class_agreement": ("agreement of the worst-agreeing class", "min_class_agreement"),
}
_OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b, "<": lambda a, b: a < b}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_REF = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?"
_SYNTAX = re.compile(
    rf"^\s*(?P<lhs>{_REF})\s*(?P<op>>=|<=|>|<)\s*(?:(?P<factor>{_NUMBER})\s*\*\s*(?P<ref>{_REF})"
    rf"|(?P<ref2>{_REF})\s*\*\s*(?P<factor2>{_NUMBER})|(?P<number>{_NUMBER})|(?P<ref3>{_REF}))"
    rf"\s*$")
SYNTAX_HELP = ("expected FIGURE OP BOUND, e.g. 'agreement>=0.95', 'top1>=0.98*teacher.top1' or "
               "'latency_b1<=0.5*teacher.latency_b1' (OP: >= <= > <; BOUND: a number, a figure, "
               "or a number times a figure; FIGURE: the metric's name (e.g. top1) or metric, "
               "ece, parameters, bytes, latency_b1, latency_bN, agreement, kl, "
               "min_class_agreement, with teacher. for the teacher's value)")


class Requirement:
    """One parsed requirement; ``check(figures)`` gives its verdict (a dict)."""

    def __init__(self, text, lhs, op, factor, ref):
        self.text, self.lhs, self.op, self.factor, self.ref = text, lhs, op, factor, ref

    def names(self):
        return [self.lhs] + ([self.ref] if self.ref else [])

    def check(self, figures):
        value = figure_value(figures, self.lhs)
        bound = self.factor * (figure_value(figures, self.ref) if self.ref else 1.0)
        passed = bool(math.isfinite(value) and math.isfinite(bound)
                      and _OPS[self.op](value, bound))
        return {"requirement": self.text, "figure": self.lhs, "value": value, "op": self.op,
                "bound": bound, "passed": passed}


def parse(text):
    """A :class:`Requirement` from ``text``; :class:`RequirementError` when malformed."""
    match = _SYNTAX.match(text or "")
    if not match:
        raise RequirementError(f"--require {text!r}: cannot read it; {SYNTAX_HELP}")
    parts = match.groupdict()
    if parts["number"] is not None:
        factor, ref = float(parts["number"]), None
    elif parts["ref3"] is not None:
        factor, ref = 1.0, parts["ref3"]
    else:
        factor = float(parts["factor"] if parts["factor"] is not None else parts["factor2"])
        ref = parts["ref"] or parts["ref2"]
    return Requirement(text.strip(), parts["lhs"], parts["op"], factor, ref)


def parse_all(texts):
    return [parse(text) for text in texts or ()]


def figure_names(metric_name, latency_batch):
    """{short name: what it is} of every figure a requirement may name."""
    names = {metric_name: f"the configured metric ({metric_name})",
             "metric": f"the configured metric (here {metric_name})"}
    names.update({short: row for short, (row, _, _) in _MODEL_FIGURES.items()})
    names[f"latency_b{latency_batch}"] = f"latency, batch {latency_batch} (ms, median)"
    names.update({short: row for short, (row, _) in _PAIR_FIGURES.items()})
    return names


def _split(name):
    role, dot, short = name.partition(".")
    return (role, short) if dot else ("student", name)


def check_names(requirements, metric_name, latency_batch):
    """Raise :class:`RequirementError` for a name that is no figure, listing the valid ones."""
    known = figure_names(metric_name, latency_batch)
    valid = ", ".join(sorted(known)) + "; prefix teacher. or student. for one model's value"
    for requirement in requirements:
        for name in requirement.names():
            role, short = _split(name)
            where = f"--require {requirement.text!r}"
            if role not in ("student", "teacher"):
                raise RequirementError(f"{where}: '{name}' is not a figure: the prefix before "
                                       f"the dot must be teacher or student. Valid names: "
                                       f"{valid}")
            if short not in known:
                close = difflib.get_close_matches(short, list(known), 1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise RequirementError(f"{where}: unknown figure '{short}'{hint}. Valid names: "
                                       f"{valid}")
            if role == "teacher" and short in _PAIR_FIGURES:
                raise RequirementError(f"{where}: '{short}' compares student and teacher, so "
                                       f"there is no teacher.{short}; write '{short}' alone")


def figure_value(figures, name):
    """The value of a figure named in a requirement, in the table's unit (latency in ms)."""
    role, short = _split(name)
    if short in _PAIR_FIGURES:
        return float(figures[_PAIR_FIGURES[short][1]])
    model = figures[role]
    if short == "metric":
        return float(model[figures["metric"]])
    if short in _MODEL_FIGURES:
        _, key, scale = _MODEL_FIGURES[short]
        return float(model[key]) * scale
    if short.startswith("latency_b"):
        return float(model[f"latency_batch_{short[len('latency_b'):]}_s"]) * 1000.0
    return float(model[short])


def evaluate(requirements, figures):
    """The verdicts of ``requirements`` (parsed) on a report's figures, in order."""
    return [requirement.check(figures) for requirement in requirements]


def _number(value):
    return f"{value:.6g}"


def verdict_line(verdict, status=True):
    """``agreement = 0.9375, needs >= 0.95 (agreement>=0.95): FAILED``."""
    line = (f"{verdict['figure']} = {_number(verdict['value'])}, needs {verdict['op']} "
            f"{_number(verdict['bound'])} ({verdict['requirement']})")
    if status:
        line += ": ok" if verdict["passed"] else ": FAILED"
    return line
