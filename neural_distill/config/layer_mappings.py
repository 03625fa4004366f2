"""Parsing ``layer_mappings``: which student feature learns from which teacher feature.

Accepted forms of one mapping (a layer is a module path or Keras layer name, ``""`` is the
whole model; a process selects from the layer's output: an int index, a dict key / attribute
name, a callable, or ``""``/None for the output as it is):

- ``[layer]``: the same layer name in both models
- ``[student_layer, teacher_layer]``
- ``[student_layer, student_process, teacher_layer, teacher_process]``
- ``[[student_layer(, process)], [teacher_layer(, process)]]``
- a side may also be a dict ``{layer: ..., process: ..., teacher: k}``; ``teacher`` picks one
  of several teachers (its index, or its key when teachers were given as a dict).

Self-distillation mappings are groups of ``[student_key, teacher_key]`` pairs naming outputs of
the student itself (``parse_self_mappings``).
"""

from dataclasses import dataclass
from typing import Any

from neural_distill.config.nodes import _MISSING, Node, describe


@dataclass(frozen=True)
class LayerRef:
    layer: str
    process: Any = None  # None, int, str or callable
    teacher: Any = 0     # which teacher (index or dict key); unused on the student side

    def label(self):
        shown = self.layer if self.layer else "<whole model>"
        if self.process not in (None, ""):
            name = getattr(self.process, "__name__", None) if callable(self.process) else None
            shown += f"[{name or self.process!r}]"
        return shown


@dataclass(frozen=True)
class LayerPair:
    student: LayerRef
    teacher: LayerRef


_FORMS = ("[layer], [student_layer, teacher_layer], [student_layer, student_process, "
          "teacher_layer, teacher_process], [[student_layer(, process)], "
          "[teacher_layer(, process)]]")


def _is_process(value):
    return value is None or isinstance(value, (str, int)) and not isinstance(value, bool) \
        or callable(value)


def _side(value, path, problems, role):
    """One side of a mapping as a LayerRef, or None after recording a problem."""
    if isinstance(value, str):
        return LayerRef(value)
    if isinstance(value, dict):
        unknown = set(value) - {"layer", "process", "teacher"}
        if unknown or not isinstance(value.get("layer"), str):
            problems.add(path, f"expected {{layer: name, process: ..., teacher: ...}} for the "
                               f"{role} side, got {describe(value)}")
            return None
        if role == "student" and "teacher" in value:
            problems.add(path, "the student side cannot name a teacher")
            return None
        return LayerRef(value["layer"], value.get("process"), value.get("teacher", 0))
    if isinstance(value, (list, tuple)) and 1 <= len(value) <= 2 and isinstance(value[0], str):
        process = value[1] if len(value) == 2 else None
        if not _is_process(process):
            problems.add(path, f"expected a process (an index, a key, a callable or ''), got "
                               f"{describe(process)}")
            return None
        return LayerRef(value[0], process)
    problems.add(path, f"expected a layer name or [layer, process] for the {role} side, got "
                       f"{describe(value)}")
    return None


def parse_mapping(entry, path, problems):
    if isinstance(entry, str):
        entry = [entry]
    if not isinstance(entry, (list, tuple)) or not entry:
        problems.add(path, f"expected one of {_FORMS}, got {describe(entry)}")
        return None
    strings = all(isinstance(x, str) for x in entry)
    if len(entry) == 1 and isinstance(entry[0], str):
        return LayerPair(LayerRef(entry[0]), LayerRef(entry[0]))
    if len(entry) == 2 and strings:
        return LayerPair(LayerRef(entry[0]), LayerRef(entry[1]))
    if len(entry) == 4 and isinstance(entry[0], str) and isinstance(entry[2], str):
        for index in (1, 3):
            if not _is_process(entry[index]):
                problems.add(f"{path}[{index}]", f"expected a process (an index, a key, a "
                                                 f"callable or ''), got {describe(entry[index])}")
                return None
        return LayerPair(LayerRef(entry[0], entry[1]), LayerRef(entry[2], entry[3]))
    if len(entry) == 2:
        student = _side(entry[0], f"{path}[0]", problems, "student")
        teacher = _side(entry[1], f"{path}[1]", problems, "teacher")
        if student is None or teacher is None:
            return None
        return LayerPair(student, teacher)
    problems.add(path, f"expected one of {_FORMS}, got {describe(entry)}")
    return None


class LayerMappingsNode(Node):
    """Schema node for ``layer_mappings`` (a non-empty list of mappings)."""

    def validate(self, value, path, problems):
        if not isinstance(value, (list, tuple)) or not value:
            problems.add(path, f"expected a non-empty list of layer mappings, each one of "
                               f"{_FORMS}, got {describe(value)}")
            return _MISSING
        parsed = [parse_mapping(entry, f"{path}[{i}]", problems) for i, entry in enumerate(value)]
        # The raw form is kept (it round-trips to YAML); criteria parse it with
        # parse_layer_mappings once validated.
        return _MISSING if any(p is None for p in parsed) else _as_lists(value)


class SelfMappingsNode(Node):
    """Schema node for self-distillation ``layer_mappings``: groups of [student, teacher] keys."""

    def validate(self, value, path, problems):
        if not isinstance(value, (list, tuple)) or not value:
            problems.add(path, f"expected a non-empty list of groups, each a list of "
                               f"[student_key, teacher_key] pairs, got {describe(value)}")
            return _MISSING
        groups = []
        for g, group in enumerate(value):
            if not isinstance(group, (list, tuple)) or not group:
                problems.add(f"{path}[{g}]", f"expected a list of [student_key, teacher_key] "
                                             f"pairs, got {describe(group)}")
                groups.append(None)
                continue
            pairs = []
            for p, pair in enumerate(group):
                if (isinstance(pair, (list, tuple)) and len(pair) == 2
                        and all(isinstance(k, str) for k in pair)):
                    pairs.append((pair[0], pair[1]))
                else:
                    problems.add(f"{path}[{g}][{p}]", f"expected [student_key, teacher_key], "
                                                      f"got {describe(pair)}")
                    pairs.append(None)
            groups.append(None if None in pairs else pairs)
        return _MISSING if None in groups else _as_lists(value)


def _as_lists(value):
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    return value


def parse_layer_mappings(value):
    """Validated ``layer_mappings`` as LayerPairs."""
    from neural_distill.config.nodes import Problems

    problems = Problems()
    pairs = [parse_mapping(entry, f"layer_mappings[{i}]", problems)
             for i, entry in enumerate(value)]
    if problems.items:  # validation runs first, so this only guards direct calls
        from neural_distill.errors import ConfigError

        raise ConfigError("; ".join(f"{p}: {m}" for p, m in problems.items))
    return pairs
