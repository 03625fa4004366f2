"""Criterion arguments, declared once: the ``CriterionSpec`` a catalog module writes and the
argument nodes criteria share.

A criterion is one module of ``neural_distill/criterion/catalog/`` holding a ``SPEC``: its
name, its arguments (each a validation node with its default, type and allowed values), its
cross-argument check and whether it needs a teacher. Everything else is derived from the specs:
the YAML schema's criterion choices (``schema.CRITERIA``), the Python config API's nodes and
config classes (``compression_schema``, ``criterion_configs``), the validation of a criterion
class's constructor arguments (``criterion.specs.validated_criterion_args``) and the registry
of backend classes (``criterion.registry``). So the same mistake gets the same message from a
YAML file, a Python config and a criterion class of any framework.

Loss types are named in ``criterion/catalog/loss_types.py`` (one tuple per family); the nodes
below read them from there.

Nothing here imports a deep-learning framework.
"""

from neural_distill.criterion.catalog.loss_types import LOSS_TYPES
from neural_distill.config.nodes import _MISSING, Leaf, Range, Section, number

WEIGHT_MAX = 1000
TEMPERATURES = Range(0.01, 1000, hint=" (temperatures of 1 to 20 are usual)")


class CriterionSpec:
    """One criterion's framework-neutral description (see the module docstring).

    Args:
        name: the YAML name, e.g. ``"KnowledgeDistillationLoss"``; the Python config class is
            ``<name>Config`` and the backend classes ``PyTorch<name>`` / ``Tensorflow<name>``.
        args: ``{argument: node}`` in constructor order; a node's default is the argument's.
        needs_teacher: False when the criterion reads the student alone.
        required: arguments without a default that must be given.
        check: cross-argument check ``(cleaned, path, problems)`` once every argument passed.
        python_node: the node the Python config API uses when it differs from the YAML one.
        order: where it is listed in messages (lower first).
        summary: one line for docstrings and listings.
        teacher_cache: what the teacher-output cache can keep for it: ``"logits"``,
            ``"features"`` (logits and the teachers' captured features), or None (no cache).
    """

    def __init__(self, name, args, *, needs_teacher=True, required=(), check=None,
                 python_node=None, order=100, summary="", teacher_cache=None):
        self.name = name
        self.teacher_cache = teacher_cache
        self.args = dict(args)
        self.needs_teacher = needs_teacher
        self.required = tuple(required)
        self.node = Section(self.args, required=required, check=check)
        self.python_node = python_node if python_node is not None else self.node
        self.order = order
        self.summary = summary

    @property
    def config_class_name(self):
        return self.name + "Config"

    def defaults(self):
        """``{argument: default}`` for the arguments that have one."""
        return {key: node.default_value() for key, node in self.args.items()
                if node.default is not _MISSING}

    def __repr__(self):
        return f"CriterionSpec({self.name!r}, args={list(self.args)})"


# ----------------------------------------------------------------- nodes criteria share
def flag(default):
    return Leaf(bool, "true or false", default=default)


def temperature(default=1.0):
    return Leaf(number(0, exclusive=True), "a number > 0", default=default, limit=TEMPERATURES)


def non_negative(default, what="a number >= 0"):
    """A coefficient such as DKD's alpha/beta or DIST's beta/gamma."""
    return Leaf(number(0), what, default=default, limit=Range(0, WEIGHT_MAX))


def fraction(default):
    """A number in [0, 1], such as the generalized JSD's beta."""
    return Leaf(number(0), "a number in [0, 1]", default=default, limit=Range(0, 1))


def needs_logits(cleaned, path, problems):
    """Cross-check: logit standardization reads logits, not probabilities."""
    if cleaned.get("logit_standardization") and cleaned.get("from_logits") is False:
        problems.add(f"{path}.logit_standardization",
                     "expected from_logits: true: standardization rescales logits, and the "
                     "models output probabilities (from_logits: false); drop one of the two")


def is_weight(w):
    return isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0


def weights_limit(weights):
    """Weights must be finite, not absurd, and not all zero (nothing would be learned)."""
    bad = [w for w in weights if not Range(0, WEIGHT_MAX).contains(w)]
    if bad:
        return f"weight {bad[0]!r} is outside the supported range [0, {WEIGHT_MAX}]"
    if not any(weights):
        return "all weights are 0, so nothing would be trained; make at least one > 0"
    return None


def loss_type_pair(first_family, second_family, default):
    """``[first, second]``, each a loss type of its family (``loss_types.LOSS_TYPES``)."""
    first, second = LOSS_TYPES[first_family], LOSS_TYPES[second_family]

    def ok(v):
        return isinstance(v, list) and len(v) == 2 and v[0] in first and v[1] in second
    return Leaf(ok, f"a list of two loss types [student in {{{', '.join(first)}}}, "
                    f"distillation in {{{', '.join(second)}}}]", default=default)


def two_weights(default):
    def ok(v):
        return isinstance(v, list) and len(v) == 2 and all(is_weight(w) for w in v)
    return Leaf(ok, "a list of two numbers >= 0 [student_weight, distillation_weight]",
                default=default, limit=weights_limit)


def loss_type_list(family):
    """One or more loss types of ``family`` (``loss_types.LOSS_TYPES``)."""
    choices = LOSS_TYPES[family]
    return Leaf(lambda v: isinstance(v, list) and len(v) >= 1 and all(t in choices for t in v),
                f"a list of loss types out of {{{', '.join(choices)}}}")


def weight_list():
    return Leaf(lambda v: isinstance(v, list) and len(v) >= 1 and all(is_weight(w) for w in v),
                "a list of numbers >= 0", limit=weights_limit)


def per_mapping_lengths(what):
    """Cross-check: one loss type and one weight per mapping (or a single one for all)."""
    def check(cleaned, path, problems):
        count = len(cleaned.get("layer_mappings", []))
        for key in ("loss_types", "loss_weights"):
            given = cleaned.get(key)
            if given is not None and len(given) not in (1, count):
                problems.add(f"{path}.{key}", f"expected 1 or {count} entries (one per {what} "
                                              f"of layer_mappings), got {len(given)}")
    return check
