"""What a pruning group is and how much it prunes when: framework-neutral, no tensors.

A *group* is one set of layers pruned the same way (one entry of INC's ``pruning_configs``, or
one ITREX ``PrunerConfig``). Its sparsity grows from ``initial`` to ``target`` between ``start``
and ``end`` (optimizer steps, or epochs for ITREX configs), along ``decay``:

- ``cube`` (default; Zhu & Gupta 2017): ``s(t) = target + (initial - target) * (1 - t)^3``,
  fast early, when the network still has redundancy to give, and slow near the target;
- ``linear``: ``initial + (target - initial) * t``;
- ``cos``: ``initial + (target - initial) * (1 - cos(pi t)) / 2``;
- ``exp``: the kept fraction shrinks geometrically, ``1 - (1 - initial)^(1-t) (1 - target)^t``,

with ``t = (k - start) / (end - start)`` clipped to [0, 1]. Masks are recomputed at ``start``,
every ``frequency`` units after it and at ``end``; ``end == start`` prunes in one shot.
"""

import math
import re

from neural_distill.errors import ConfigError

DECAYS = ("cube", "linear", "cos", "exp")
PRUNING_TYPES = ("magnitude", "snip_momentum", "snip")
SCOPES = ("local", "global")
_BLOCK = re.compile(r"^(\d+)x(\d+)$")
_N_OF_M = re.compile(r"^(\d+):(\d+)$")


class Pattern:
    """A sparsity pattern: ``unstructured``, ``NxM`` blocks or ``N:M`` (N kept of every M).

    ``NxM``: blocks of N consecutive rows (output channels / neurons) by M consecutive columns
    (inputs; a convolution's input channels x kernel positions) are zeroed together.
    ``N:M``: of every M consecutive weights along the input axis at most N stay non-zero
    (2:4 is what sparse tensor cores run); its sparsity is ``1 - N/M`` whatever the target.
    """

    def __init__(self, text):
        self.text = str(text)
        self.rows = self.cols = 1
        self.keep = self.every = None
        block, n_of_m = _BLOCK.match(self.text), _N_OF_M.match(self.text)
        if self.text == "unstructured":
            pass
        elif block:
            self.rows, self.cols = int(block.group(1)), int(block.group(2))
        elif n_of_m:
            self.keep, self.every = int(n_of_m.group(1)), int(n_of_m.group(2))
        if (self.text != "unstructured" and not block and not n_of_m) or self.rows < 1 or \
                self.cols < 1 or (self.every is not None and not 0 < self.keep < self.every):
            raise ConfigError(
                f"pattern: expected 'unstructured', 'NxM' (e.g. '4x1': blocks of 4 output "
                f"rows x 1 input column) or 'N:M' with 0 < N < M (e.g. '2:4': 2 kept of every "
                f"4), got {self.text!r}")

    @property
    def n_of_m(self):
        return self.every is not None

    def __repr__(self):
        return f"Pattern({self.text!r})"


def check_pattern(text):
    """None if ``text`` is a pattern, else why not (for the schema nodes)."""
    try:
        Pattern(text)
    except ConfigError as exc:
        return str(exc)
    return None


class Group:
    """One pruning group, normalised from either API (see the module docstring)."""

    def __init__(self, target, pruning_type="magnitude", pattern="unstructured", start=0,
                 end=0, frequency=1, scope="local", op_names=(), excluded_op_names=(),
                 unit="step", initial=0.0, decay="cube", min_ratio=0.0, max_ratio=0.98,
                 where="pruning"):
        self.target = float(target)
        self.pruning_type = pruning_type
        self.pattern = Pattern(pattern)
        self.start, self.end, self.frequency = int(start), int(end), int(frequency)
        self.scope = scope
        self.op_names = list(op_names)
        self.excluded_op_names = list(excluded_op_names)
        self.unit = unit
        self.initial = float(initial)
        self.decay = decay
        self.min_ratio, self.max_ratio = float(min_ratio), float(max_ratio)
        self.where = where
        if self.end < self.start:
            raise ConfigError(f"{where}: end ({self.end}) is before start ({self.start}); the "
                              f"sparsity grows from start to end")

    def fraction(self, k):
        """How far along the schedule unit ``k`` is, in [0, 1]."""
        if self.end == self.start:
            return 1.0 if k >= self.start else 0.0
        return min(1.0, max(0.0, (k - self.start) / (self.end - self.start)))

    def sparsity(self, k, target=None):
        """The sparsity the schedule asks for at unit ``k``."""
        target = self.target if target is None else target
        t, initial = self.fraction(k), self.initial
        if self.decay == "linear":
            return initial + (target - initial) * t
        if self.decay == "cos":
            return initial + (target - initial) * (1 - math.cos(math.pi * t)) / 2
        if self.decay == "exp":
            return 1 - (1 - initial) ** (1 - t) * (1 - min(target, 1 - 1e-12)) ** t
        return target + (initial - target) * (1 - t) ** 3

    def due(self, k):
        """Whether the masks are recomputed at unit ``k``."""
        if k < self.start or k > self.end:
            return False
        return k == self.end or (k - self.start) % self.frequency == 0

    def __repr__(self):
        return (f"Group(target={self.target}, type={self.pruning_type}, "
                f"pattern={self.pattern.text}, {self.unit}s {self.start}..{self.end}, "
                f"scope={self.scope})")


# Leaf names of the layers that make a model's output: left dense unless named in op_names.
HEAD_NAMES = ("lm_head", "classifier", "head", "score", "qa_outputs", "output_layer", "fc_out")


def matches(name, patterns):
    """Whether a module path matches one of ``patterns`` (full-match regular expressions; a
    trailing ``.weight`` names the module)."""
    for pattern in patterns:
        pattern = pattern[:-len(".weight")] if pattern.endswith(".weight") else pattern
        if name == pattern or re.fullmatch(pattern, name):
            return True
    return False
