"""A small tree of validation nodes on top of the ``schema`` library.

``schema`` checks single values well, but its messages for nested documents do not name the
key path, and it stops at the first problem. These nodes walk a document, check each leaf with a
``schema.Schema``, fill defaults, and collect *every* problem with its dotted key path, so one
run of ``neural-distill validate`` shows the user all there is to fix.
"""

import copy
import difflib
import math
import re

from schema import And, Or, Schema, SchemaError

_MISSING = object()


def describe(value):
    """How a received value is shown in error messages: short and unambiguous."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's 4,300-digit conversion limit
        text = f"<an int of about {value.bit_length() * 0.30103:.0f} digits>"
    return text if len(text) <= 60 else text[:57] + "..."


# What users write for our keys (other frameworks' spellings): too far apart for difflib.
ALIASES = {"lr": "learning_rate", "learningrate": "learning_rate", "epochs": "epoch",
           "numepochs": "epoch", "nepochs": "epoch", "maxepochs": "epoch",
           "numtrainepochs": "epoch", "wd": "weight_decay", "decay": "weight_decay",
           "l2": "weight_decay", "weightdecay": "weight_decay", "batchsize": "batch_size",
           "bs": "batch_size", "seed": "random_seed"}


def _folded(name):
    return str(name).lower().replace("_", "").replace("-", "")


def suggest(name, candidates):
    candidates = [str(c) for c in candidates]
    folded = _folded(name)
    alias = ALIASES.get(folded)
    known = [c for c in candidates if c == alias or _folded(c) == folded]
    close = known or difflib.get_close_matches(str(name), candidates, n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def number(minimum=None, exclusive=False):
    """A schema for an int or float (never a bool, never NaN) with an optional lower bound."""
    checks = [Or(int, float), lambda v: not isinstance(v, bool), lambda v: v == v]
    if minimum is not None:
        checks.append((lambda v: v > minimum) if exclusive else (lambda v: v >= minimum))
    return And(*checks)


def integer(minimum=None):
    checks = [int, lambda v: not isinstance(v, bool)]
    if minimum is not None:
        checks.append(lambda v: v >= minimum)
    return And(*checks)


class Range:
    """The values training can use, past a leaf's basic check: finite and within bounds.

    A value can be of the right kind and still be useless (a temperature of 1e30, a learning
    rate of inf, a seed NumPy cannot take); the message then says which range is supported.
    ``docs/configuration.md`` lists every range.
    """

    def __init__(self, low, high, low_open=False, high_open=False, hint=""):
        self.low, self.high = low, high
        self.low_open, self.high_open = low_open, high_open
        self.hint = hint

    def __str__(self):
        def show(bound):
            return str(bound) if isinstance(bound, int) else f"{bound:g}"
        return (f"{'(' if self.low_open else '['}{show(self.low)}, {show(self.high)}"
                f"{')' if self.high_open else ']'}")

    def contains(self, value):
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return ((value > self.low if self.low_open else value >= self.low)
                and (value > self.low if self.low_open else value >= self.low)
                and (value < self.high if self.high_open else value <= self.high))

    def __call__(self, value):
        if self.contains(value):
            return None
        return f"outside the supported range {self}{self.hint}"


def _string_hint(value):
    """Why a string was given where a number was expected, when that is guessable."""
    if not isinstance(value, str):
        return ""
    if re.fullmatch(r"[-+]?[0-9]+(:[0-5]?[0-9])+(\.[0-9]*)?", value.strip()):
        return (" (YAML 1.1 reads this as a base-60 number, 1:30 as 90; write the number "
                "itself)")
    try:
        return " (quoted, so it is text: remove the quotes)" if math.isfinite(float(value)) \
            else ""
    except ValueError:
        return ""


class Problems:
    """Collects problems as (key path, message) while a document is walked."""

    def __init__(self):
        self.items = []

    def add(self, path, message):
        self.items.append((path, message))


def _join(path, key):
    return f"{path}.{key}" if path else str(key)


class Node:
    """Base of the validation nodes: ``validate`` returns the cleaned value or _MISSING."""

    default = _MISSING

    def validate(self, value, path, problems):  # pragma: no cover - interface
        raise NotImplementedError

    def default_value(self):
        return copy.deepcopy(self.default)


class Leaf(Node):
    """One value checked by a ``schema`` expression; ``expected`` is the human wording.

    ``limit``, when given, is called with a value that passed the check and returns why it is
    still unusable (e.g. a ``Range``), or None.
    """

    def __init__(self, check, expected, default=_MISSING, limit=None):
        self.schema = Schema(check)
        self.expected = expected
        self.default = default
        self.limit = limit

    def validate(self, value, path, problems):
        try:
            cleaned = self.schema.validate(value)
        except SchemaError:
            problems.add(path, f"expected {self.expected}, got {describe(value)}"
                               f"{_string_hint(value)}")
            return _MISSING
        reason = self.limit(cleaned) if self.limit is not None else None
        if reason:
            problems.add(path, f"expected {self.expected}, got {describe(value)}: {reason}")
            return _MISSING
        return cleaned


class Section(Node):
    """A mapping with a fixed set of keys; unknown keys are errors with a suggestion."""

    def __init__(self, fields, required=(), default=_MISSING, allow_none=True, check=None):
        self.fields = fields
        self.required = set(required)
        self.default = default
        # YAML writes an empty section as `key:` (None); treat it as an empty mapping.
        self.allow_none = allow_none
        # Cross-field check: called with (cleaned dict, path, problems) once the fields pass.
        self.check = check

    def validate(self, value, path, problems):
        if value is None and self.allow_none:
            value = {}
        if not isinstance(value, dict):
            problems.add(path or "<top level>", f"expected a mapping of keys, got {describe(value)}")
            return _MISSING
        cleaned = {}
        ok = True
        for key, item in value.items():
            if key not in self.fields:
                problems.add(_join(path, key), "unknown key." + suggest(key, self.fields)
                             + f" Allowed keys here: {', '.join(sorted(self.fields))}")
                ok = False
                continue
            result = self.fields[key].validate(item, _join(path, key), problems)
            if result is _MISSING:
                ok = False
            else:
                cleaned[key] = result
        for key, node in self.fields.items():
            if key in cleaned or key in value:
                continue
            if key in self.required:
                problems.add(_join(path, key), "required key is missing")
                ok = False
            elif node.default is not _MISSING:
                # Defaults go through the node too, so nested defaults get filled in.
                cleaned[key] = node.validate(node.default_value(), _join(path, key), problems)
        if ok and self.check is not None:
            self.check(cleaned, path, problems)
        return cleaned if ok else _MISSING


class OneOf(Node):
    """A mapping with exactly one key naming a choice, e.g. ``optimizer: {SGD: {...}}``.

    ``choices`` maps each name to the node that validates its parameters.
    """

    def __init__(self, choices, what, default=_MISSING, other=None):
        self.choices = choices
        self.what = what
        self.default = default
        # When set, names outside ``choices`` are accepted and validated by this node; the
        # place that uses the value reports them (e.g. datasets another system provided,
        # which only matter when no dataloader object is given).
        self.other = other

    def validate(self, value, path, problems):
        if isinstance(value, str) and value in self.choices:
            value = {value: None}  # `metric: Accuracy` is shorthand for `metric: {Accuracy: }`
        if not isinstance(value, dict) or len(value) != 1:
            problems.add(path, f"expected exactly one {self.what} out of "
                               f"{{{', '.join(self.choices)}}}, got {describe(value)}")
            return _MISSING
        (name, params), = value.items()
        close = suggest(name, self.choices)
        if name not in self.choices and self.other is not None and not close:
            # (a name close to a built-in one is far more likely a typo than a foreign name)
            result = self.other.validate(params, _join(path, name), problems)
            return _MISSING if result is _MISSING else {name: result}
        if name not in self.choices:
            problems.add(_join(path, name), f"unknown {self.what}." + close
                         + f" Expected one of {{{', '.join(self.choices)}}}")
            return _MISSING
        result = self.choices[name].validate(params, _join(path, name), problems)
        return _MISSING if result is _MISSING else {name: result}


class AnyMapping(Node):
    """A free-form mapping (or None) whose content is checked where it is used."""

    def __init__(self, default=_MISSING):
        self.default = default

    def validate(self, value, path, problems):
        if value is None:
            return {}
        if not isinstance(value, dict):
            problems.add(path, f"expected a mapping, got {describe(value)}")
            return _MISSING
        return copy.deepcopy(value)
