"""The YAML ``pruning:`` section (and ``WeightPruningConfig``'s arguments): INC's names.

Kept apart from ``pruning_configs.py`` so that ``schema.py`` can use the nodes without
importing the loader that imports it.
"""

import copy

from schema import And, Or

from neural_distill.config.nodes import (_MISSING, Leaf, Node, Problems, Section, integer,
                                         number)
from neural_distill.pruning.schedule import DECAYS, PRUNING_TYPES, SCOPES, check_pattern

_OP_LIST = Leaf(lambda v: isinstance(v, (list, tuple)) and all(isinstance(n, str) and n
                                                               for n in v),
                "a list of layer names or regular expressions (e.g. 'layer1.*')", default=[])
_RATIO = And(number(0), lambda v: v <= 1)
_OP_TYPES = ("Conv", "Linear")

# The settings one group may give; outside pruning_configs they are every group's defaults.
_GROUP_FIELDS = {
    "target_sparsity": Leaf(And(number(0), lambda v: v < 1), "a sparsity in [0, 1)",
                            default=0.9),
    "pruning_type": Leaf(Or(*PRUNING_TYPES), f"one of {{{', '.join(PRUNING_TYPES)}}} (INC's "
                         f"progressive and pattern_lock types are not implemented)",
                         default="snip_momentum"),
    "pattern": Leaf(And(str, lambda v: check_pattern(v) is None),
                    "'unstructured', 'NxM' (e.g. '4x1') or 'N:M' (e.g. '2:4')", default="4x1"),
    "op_names": _OP_LIST,
    "excluded_op_names": _OP_LIST,
    "start_step": Leaf(integer(0), "a step >= 0", default=0),
    "end_step": Leaf(integer(0), "a step >= 0", default=0),
    "pruning_scope": Leaf(Or(*SCOPES), "'local' (every layer at the target) or 'global' "
                          "(one threshold over the group's layers)", default="global"),
    "pruning_frequency": Leaf(integer(1), "an int >= 1 (steps between mask updates)",
                              default=1),
    "min_sparsity_ratio_per_op": Leaf(_RATIO, "a ratio in [0, 1]", default=0.0),
    "max_sparsity_ratio_per_op": Leaf(_RATIO, "a ratio in [0, 1]", default=0.98),
    "sparsity_decay_type": Leaf(Or(*DECAYS), f"one of {{{', '.join(DECAYS)}}}",
                                default="cube"),
    "pruning_op_types": Leaf(lambda v: isinstance(v, (list, tuple)) and v
                             and all(t in _OP_TYPES for t in v),
                             "a non-empty list out of ['Conv', 'Linear']",
                             default=["Conv", "Linear"]),
}


class _GroupList(Node):
    """``pruning_configs``: a list of group mappings, each checked without defaults (a key
    left out takes the value given outside the list)."""

    default = [{}]

    def __init__(self):
        self.section = Section(_GROUP_FIELDS)

    def validate(self, value, path, problems):
        if not isinstance(value, (list, tuple)) or not value:
            problems.add(path, f"expected a non-empty list of mappings (one per group of "
                               f"layers), got {value!r}")
            return _MISSING
        cleaned, ok = [], True
        for index, item in enumerate(value):
            local = Problems()
            self.section.validate(item, f"{path}[{index}]", local)
            for entry in local.items:
                problems.add(*entry)
            ok = ok and not local.items
            cleaned.append(copy.deepcopy(dict(item or {})))
        return cleaned if ok else _MISSING


PRUNING = Section({"pruning_configs": _GroupList(), **_GROUP_FIELDS})
PRUNING_DOCUMENT = Section({"pruning": PRUNING}, required=("pruning",))
