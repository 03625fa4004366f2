"""Pruning configs: INC's ``WeightPruningConfig``, ITREX's ``PrunerConfig`` and the YAML
``pruning:`` section they both stand for (docs/pruning.md).

::

    from neural_distill.config import WeightPruningConfig
    p_conf = WeightPruningConfig([{"start_step": 0, "end_step": 2}], target_sparsity=0.64,
                                 pruning_scope="local")
    manager = prepare_compression(model, [d_conf, p_conf])

    from neural_distill.config import DistillationConfig, PrunerConfig
    d_conf = DistillationConfig(criterion=..., pruner_config=PrunerConfig(
        prune_type="BasicMagnitude", target_sparsity_ratio=0.5, epoch_range=[0, 2]))

Both become ``neural_distill.pruning.schedule.Group`` objects (``groups()``), which the pruning
part of ``prepare_compression`` and the ``pruning:`` section of an experiment drive.
Nothing here imports a framework.
"""

import copy

from neural_distill.config.loader import to_plain, validate
from neural_distill.config.pruning_schema import _GROUP_FIELDS, PRUNING, PRUNING_DOCUMENT
from neural_distill.config.yaml_config import YamlConfig
from neural_distill.errors import ConfigError
from neural_distill.pruning.schedule import Group

def groups_from_section(section, where="pruning"):
    """The Groups of a validated ``pruning`` section (global values filled into each group)."""
    shared = {k: v for k, v in section.items() if k != "pruning_configs"}
    result = []
    for index, local in enumerate(section.get("pruning_configs") or [{}]):
        merged = {**shared, **(local or {})}
        result.append(Group(
            target=merged["target_sparsity"], pruning_type=merged["pruning_type"],
            pattern=merged["pattern"], start=merged["start_step"], end=merged["end_step"],
            frequency=merged["pruning_frequency"], scope=merged["pruning_scope"],
            op_names=merged["op_names"], excluded_op_names=merged["excluded_op_names"],
            decay=merged["sparsity_decay_type"], min_ratio=merged["min_sparsity_ratio_per_op"],
            max_ratio=merged["max_sparsity_ratio_per_op"], unit="step",
            where=f"{where}.pruning_configs[{index}]"))
        result[-1].op_types = tuple(merged["pruning_op_types"])
    return result


def _listed(value):
    """Tuples become lists; anything else (a lone string) is left for validation to refuse."""
    return list(value) if isinstance(value, tuple) else value


class WeightPruningConfig(YamlConfig):
    """Sparsity during training, with INC's arguments (``neural_compressor.config``).

    Args:
        pruning_configs: a list of dicts, one per group of layers (``op_names`` picks them);
            a key a dict leaves out takes the value given to the constructor. ``[{}]``: one
            group, every Conv and Linear layer but the head.
        target_sparsity: the fraction of zero weights at ``end_step``, in [0, 1).
        pruning_type: ``"snip_momentum"`` (|weight x gradient|, averaged with momentum 0.9
            over steps) or ``"magnitude"`` (|weight|); ``"snip"``: |weight x gradient| of
            the last step.
        pattern: ``"4x1"`` / any ``"NxM"`` block, ``"unstructured"`` or ``"N:M"`` (``"2:4"``).
        op_names / excluded_op_names: module paths or regular expressions.
        start_step / end_step / pruning_frequency: the schedule, in optimizer steps.
        pruning_scope: ``"local"`` (each layer at the target) or ``"global"``.
        min_sparsity_ratio_per_op / max_sparsity_ratio_per_op: bounds per layer (global).
        sparsity_decay_type: ``"cube"`` (default), ``"linear"``, ``"cos"`` or ``"exp"``.
        pruning_op_types: ``["Conv", "Linear"]`` or one of them.

    YAML form: the experiment file's ``pruning:`` section, with the same keys.
    """

    _FIELDS = ("pruning_configs",) + tuple(_GROUP_FIELDS)

    def __init__(self, pruning_configs=None, target_sparsity=0.9, pruning_type="snip_momentum",
                 pattern="4x1", op_names=(), excluded_op_names=(), start_step=0, end_step=0,
                 pruning_scope="global", pruning_frequency=1, min_sparsity_ratio_per_op=0.0,
                 max_sparsity_ratio_per_op=0.98, sparsity_decay_type="cube",
                 pruning_op_types=("Conv", "Linear"), **unknown):
        if unknown:
            from neural_distill.config.nodes import suggest

            name = sorted(unknown)[0]
            raise ConfigError(f"WeightPruningConfig: unknown argument '{name}'."
                              f"{suggest(name, self._FIELDS)} Allowed: "
                              f"{', '.join(self._FIELDS)}")
        self._store({"pruning_configs": [{}] if pruning_configs is None else pruning_configs,
                     "target_sparsity": target_sparsity, "pruning_type": pruning_type,
                     "pattern": pattern, "op_names": _listed(op_names),
                     "excluded_op_names": _listed(excluded_op_names), "start_step": start_step,
                     "end_step": end_step, "pruning_scope": pruning_scope,
                     "pruning_frequency": pruning_frequency,
                     "min_sparsity_ratio_per_op": min_sparsity_ratio_per_op,
                     "max_sparsity_ratio_per_op": max_sparsity_ratio_per_op,
                     "sparsity_decay_type": sparsity_decay_type,
                     "pruning_op_types": _listed(pruning_op_types)})

    def _validated(self, values):
        return to_plain(validate(to_plain(values), "WeightPruningConfig", PRUNING))

    def to_dict(self):
        return {"pruning": {name: copy.deepcopy(getattr(self, name)) for name in self._FIELDS}}

    def groups(self):
        section = {name: getattr(self, name) for name in self._FIELDS}
        return groups_from_section(section, "WeightPruningConfig")

    @classmethod
    def _from_document(cls, document, source):
        checked = to_plain(validate(document, source, PRUNING_DOCUMENT))
        return cls(**checked["pruning"])


_ITREX_TYPES = {"BasicMagnitude": "magnitude"}
_ITREX_METHODS = ("per_tensor",)


class PrunerConfig:
    """One pruner with ITREX's arguments (``intel_extension_for_transformers``), for
    ``DistillationConfig(pruner_config=...)``. Its schedule is in epochs.

    Args:
        epoch_range: ``[start, end]``: the masks are recomputed at the beginning of epochs
            ``start .. end - 1`` (every ``update_frequency``), reaching the target at ``end - 1``.
        initial_sparsity_ratio / target_sparsity_ratio: sparsity at the first / last of them.
        update_frequency: epochs between mask updates.
        prune_type: ``"BasicMagnitude"`` (unstructured, by |weight|).
        method: ``"per_tensor"``: every layer at the target ratio.
        names: weight or module names (``"bert.encoder.layer.0.output.dense.weight"``);
            empty: every Conv and Linear layer but the head.
        parameters: accepted for ITREX compatibility; must be None.
    """

    def __init__(self, epoch_range=(0, 4), initial_sparsity_ratio=0.0,
                 target_sparsity_ratio=0.97, update_frequency=1, prune_type="BasicMagnitude",
                 method="per_tensor", names=(), parameters=None):
        where = "PrunerConfig"
        problems = []
        if not (isinstance(epoch_range, (list, tuple)) and len(epoch_range) == 2
                and all(isinstance(e, int) and not isinstance(e, bool) and e >= 0
                        for e in epoch_range) and epoch_range[1] > epoch_range[0]):
            problems.append(f"epoch_range: expected [start, end] with 0 <= start < end, got "
                            f"{epoch_range!r}")
        for name, value in (("initial_sparsity_ratio", initial_sparsity_ratio),
                            ("target_sparsity_ratio", target_sparsity_ratio)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not 0 <= value < 1:
                problems.append(f"{name}: expected a ratio in [0, 1), got {value!r}")
        if isinstance(update_frequency, bool) or not isinstance(update_frequency, int) or \
                update_frequency < 1:
            problems.append(f"update_frequency: expected an int >= 1, got {update_frequency!r}")
        if prune_type not in _ITREX_TYPES:
            problems.append(f"prune_type: expected one of {{{', '.join(_ITREX_TYPES)}}} "
                            f"(PatternLock and GroupLasso are not implemented), got "
                            f"{prune_type!r}")
        if method not in _ITREX_METHODS:
            problems.append(f"method: expected 'per_tensor', got {method!r}")
        if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
            problems.append(f"names: expected a list of weight or module names, got {names!r}")
        if parameters is not None:
            problems.append("parameters: expected None (pruner parameters are not "
                            "implemented)")
        if problems:
            lines = [f"{where}: {p}" for p in problems]
            raise ConfigError("\n".join(lines), problems=lines)
        self.epoch_range = list(epoch_range)
        self.initial_sparsity_ratio = float(initial_sparsity_ratio)
        self.target_sparsity_ratio = float(target_sparsity_ratio)
        self.update_frequency = update_frequency
        self.prune_type = prune_type
        self.method = method
        self.names = list(names)
        self.parameters = None

    def groups(self):
        start, end = self.epoch_range
        group = Group(target=self.target_sparsity_ratio,
                      pruning_type=_ITREX_TYPES[self.prune_type], pattern="unstructured",
                      start=start, end=end - 1, frequency=self.update_frequency, scope="local",
                      op_names=self.names, unit="epoch", initial=self.initial_sparsity_ratio,
                      max_ratio=1.0, where="PrunerConfig")
        group.op_types = ("Conv", "Linear")
        return [group]

    def __repr__(self):
        return (f"PrunerConfig(epoch_range={self.epoch_range}, target_sparsity_ratio="
                f"{self.target_sparsity_ratio}, prune_type={self.prune_type!r}, "
                f"names={self.names})")


def pruning_groups(pruner_config, where):
    """The Groups of a ``pruner_config`` value: a PrunerConfig, a WeightPruningConfig or a
    list of them."""
    items = pruner_config if isinstance(pruner_config, (list, tuple)) else [pruner_config]
    result = []
    for item in items:
        if not isinstance(item, (PrunerConfig, WeightPruningConfig)):
            raise ConfigError(f"{where}: expected a PrunerConfig, a WeightPruningConfig or a "
                              f"list of them, got {type(item).__name__}. Build one with "
                              f"neural_distill.config.PrunerConfig(prune_type='BasicMagnitude',"
                              f" target_sparsity_ratio=0.5)")
        result += item.groups()
    return result
