"""``Criterion``: the reference documents' one-class description of a distillation criterion.

::

    from neural_distill import Criterion, DistillationConfig

    criterion = Criterion(name="KnowledgeLoss", temperature=2.0, loss_types=["CE", "KL"],
                          loss_weight_ratio=[0.5, 0.5])
    d_conf = DistillationConfig(criterion=criterion)   # stored as KnowledgeDistillationLossConfig

``name`` picks the criterion config it stands for: ``"KnowledgeLoss"`` ->
``KnowledgeDistillationLossConfig``, ``"IntermediateLayersLoss"`` ->
``IntermediateLayersKnowledgeDistillationLossConfig`` (their YAML names are accepted too). The
arguments are validated by that config when the Criterion is built, so a mistake is reported
where it was written, with the same message as in the YAML.

Nothing here imports a deep-learning framework.
"""

import difflib

from neural_distill.errors import ConfigError
from neural_distill.config.python_api import (IntermediateLayersKnowledgeDistillationLossConfig,
                         KnowledgeDistillationLossConfig)

_KNOWLEDGE = "KnowledgeLoss"
_INTERMEDIATE = "IntermediateLayersLoss"
# The reference documents' short names first; the criterion configs' YAML names mean the same.
_NAMES = {
    _KNOWLEDGE: _KNOWLEDGE,
    _INTERMEDIATE: _INTERMEDIATE,
    KnowledgeDistillationLossConfig.yaml_name: _KNOWLEDGE,
    IntermediateLayersKnowledgeDistillationLossConfig.yaml_name: _INTERMEDIATE,
}


def _known_name(name):
    """ITREX's spellings: a ``DistillationCriterionMode`` member (its value is a YAML name) and
    any letter case of a name (``"KNOWLEDGELOSS"``, ITREX's default)."""
    name = getattr(name, "value", name)
    if isinstance(name, str) and name not in _NAMES:
        folded = {known.lower(): known for known in _NAMES}
        return folded.get(name.lower(), name)
    return name


class Criterion:
    """The criterion of a distillation, in the reference documents' form.

    Args:
        name: ``"KnowledgeLoss"`` (logit distillation, the default) or
            ``"IntermediateLayersLoss"`` (intermediate-layer distillation).
        temperature: KnowledgeLoss only (default 1.0).
        loss_types: KnowledgeLoss: ``[student_type, kd_type]`` (default ``["CE", "CE"]``).
            IntermediateLayersLoss: one feature loss per mapping or one for all, in
            {MSE, L1, KL, cosine} (default MSE: the documents' ``["CE", "CE"]`` compares no
            features and is rejected).
        loss_weight_ratio: KnowledgeLoss: ``[w_student, w_distillation]`` (default
            ``[0.5, 0.5]``). IntermediateLayersLoss: one weight per mapping (default 1/n).
        layer_mappings: IntermediateLayersLoss only: which student layer learns from which
            teacher layer (``neural_distill.config.layer_mappings``); empty: generated for the
            layers both models have (PyTorch).
        add_origin_loss: IntermediateLayersLoss only: also add the student's own loss.
            KnowledgeLoss always adds it, weighted by ``loss_weight_ratio[0]``.

    An argument left as None takes the chosen criterion's default. One that the chosen criterion
    does not have is an error when it would change something (``layer_mappings`` for
    KnowledgeLoss, a temperature other than 1 for IntermediateLayersLoss), instead of being
    silently dropped.
    """

    def __init__(self, name=_KNOWLEDGE, temperature=None, loss_types=None,
                 loss_weight_ratio=None, layer_mappings=None, add_origin_loss=None):
        name = _known_name(name)
        if not isinstance(name, str) or name not in _NAMES:
            folded = {known.lower(): known for known in _NAMES}
            close = difflib.get_close_matches(str(name).lower(), list(folded), 1)
            hint = f" Did you mean '{folded[close[0]]}'?" if close else ""
            raise ConfigError(f"Criterion: name: expected one of {{{', '.join(_NAMES)}}}, got "
                              f"{name!r}.{hint}")
        self.name = _NAMES[name]
        where = f"Criterion(name={name!r})"
        try:
            if self.name == _KNOWLEDGE:
                if layer_mappings:
                    raise ConfigError(
                        f"{where}: layer_mappings: is a parameter of IntermediateLayersLoss; "
                        f"KnowledgeLoss distills the final outputs. Use "
                        f"Criterion(name='IntermediateLayersLoss', layer_mappings=...).")
                if add_origin_loss:
                    raise ConfigError(
                        f"{where}: add_origin_loss: is a parameter of IntermediateLayersLoss; "
                        f"KnowledgeLoss always adds the student's own loss, weighted by "
                        f"loss_weight_ratio[0]. Remove add_origin_loss.")
                given = {"temperature": temperature, "loss_types": loss_types,
                         "loss_weight_ratio": loss_weight_ratio}
                self._config = KnowledgeDistillationLossConfig(
                    **{k: v for k, v in given.items() if v is not None})
            else:
                if temperature is not None and temperature != 1.0:
                    raise ConfigError(
                        f"{where}: temperature: is a parameter of KnowledgeLoss; the feature "
                        f"losses of IntermediateLayersLoss have no temperature. Remove it.")
                given = {"layer_mappings": layer_mappings, "loss_types": loss_types,
                         "loss_weight_ratio": loss_weight_ratio,
                         "add_origin_loss": add_origin_loss}
                self._config = IntermediateLayersKnowledgeDistillationLossConfig(
                    **{k: v for k, v in given.items() if v is not None})
        except ConfigError as exc:
            if str(exc).startswith(where):
                raise
            # The config names itself; say which Criterion call it came from.
            raise ConfigError(f"{where}: {exc}", exc.problems) from None

    # The arguments as the chosen config holds them (defaults filled in).
    @property
    def temperature(self):
        return getattr(self._config, "temperature", None)

    @property
    def loss_types(self):
        return self._config.loss_types

    @property
    def loss_weight_ratio(self):
        return self._config.loss_weights

    @property
    def layer_mappings(self):
        return getattr(self._config, "layer_mappings", [])

    @property
    def add_origin_loss(self):
        return getattr(self._config, "add_origin_loss", False)

    def to_loss_config(self):
        """A new criterion config of the same meaning (what ``DistillationConfig`` stores)."""
        return type(self._config)(**self._config.arguments())

    def __eq__(self, other):
        if not isinstance(other, Criterion):
            return NotImplemented
        return self._config == other._config

    __hash__ = None

    def __repr__(self):
        return f"Criterion(name={self.name!r}) -> {self._config!r}"
