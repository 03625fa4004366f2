"""The criterion configs of the Python config API: ``KnowledgeDistillationLossConfig``,
``IntermediateLayersKnowledgeDistillationLossConfig``, ``SelfKnowledgeDistillationLossConfig``.

Each is validated by the node of its catalog spec (``criterion/catalog/``), the node of the YAML
section of the same name. Its fields are the spec's arguments. A criterion of the catalog
without a hand-written class here gets one generated from its spec (``<name>Config``, keyword
arguments only), so adding a criterion needs no change in this file. Nothing here imports a
deep-learning framework.
"""

import copy

from neural_distill.criterion.catalog import CATALOG
from neural_distill.errors import ConfigError
from neural_distill.config.compression_schema import CRITERION, PYTHON_CRITERIA
from neural_distill.config.inc_conf import config_view
from neural_distill.config.loader import to_plain, validate
from neural_distill.config.nodes import OneOf, Section
from neural_distill.config.yaml_config import YamlConfig


class _CriterionConfig(YamlConfig):
    """A criterion section: ``{<yaml name>: {arguments}}`` in the YAML.

    An argument left as None takes the default of the criterion's catalog spec, the one place
    defaults are written (``criterion/catalog/<module>.py``).
    """

    yaml_name = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # The fields are the spec's arguments, in its order; an argument left as None takes the
        # spec's default.
        spec = CATALOG[cls.yaml_name]
        cls._FIELDS = tuple(spec.args)
        cls._DEFAULT_WEIGHTS = spec.defaults().get("loss_weights")

    def _init_criterion(self, values, loss_weight_ratio):
        if loss_weight_ratio is not None:
            # The reference documents call loss_weights "loss_weight_ratio"; both are accepted,
            # but two different values cannot both be meant.
            given = values.get("loss_weights")
            if given is not None and to_plain(given) != to_plain(self._DEFAULT_WEIGHTS) \
                    and to_plain(given) != to_plain(loss_weight_ratio):
                raise ConfigError(
                    f"{type(self).__name__}: loss_weight_ratio: is another name for loss_weights;"
                    f" got loss_weights={to_plain(given)!r} and loss_weight_ratio="
                    f"{to_plain(loss_weight_ratio)!r}. Give only one of them.")
            values["loss_weights"] = loss_weight_ratio
        self._store(values)

    _DEFAULT_WEIGHTS = None  # the spec's default loss_weights, set per class

    def _validated(self, values):
        given = {k: to_plain(v) for k, v in values.items() if v is not None}
        return dict(validate(given, type(self).__name__, PYTHON_CRITERIA[self.yaml_name]))

    @property
    def loss_weight_ratio(self):
        """The reference documents' name for ``loss_weights``."""
        return self.loss_weights

    @loss_weight_ratio.setter
    def loss_weight_ratio(self, value):
        self.loss_weights = value

    @property
    def config(self):
        """INC's node of the config: ``{<criterion name>: {argument: value}}``, live."""
        return config_view(self)

    def arguments(self):
        """The criterion's arguments, defaults filled in (what the YAML section holds)."""
        return {name: copy.deepcopy(getattr(self, name)) for name in self._FIELDS
                if getattr(self, name) is not None}

    def to_dict(self):
        return {self.yaml_name: to_plain(self.arguments())}

    @classmethod
    def _from_document(cls, document, source):
        if isinstance(document, dict) and set(document) != {cls.yaml_name}:
            document = {cls.yaml_name: document}  # the arguments alone are accepted too
        node = OneOf({cls.yaml_name: PYTHON_CRITERIA[cls.yaml_name]}, "criterion")
        (_, args), = validate(document, source, node).items()
        return cls(**dict(args))


class KnowledgeDistillationLossConfig(_CriterionConfig):
    """Logit distillation: ``w0 * student_loss + w1 * D(z_s, z_t)`` (docs/criteria.md).

    Args:
        temperature: > 0.
        loss_types: ``[student_type, kd_type]``, student in {CE, MSE}, kd in
            {CE, KL, MSE, RKL, JSD}.
        loss_weights: ``[w0, w1]`` (``loss_weight_ratio`` is accepted as another name).
        from_logits: False when the models output probabilities.
        logit_standardization: z-score each sample's logits before the temperature.
        beta: the generalized JSD's mixing weight in [0, 1] (kd type JSD).
        vocab_mismatch: ``'error'`` (default) or ``'truncate'`` when the teacher's and the
            student's logits differ in size (docs/language_models.md).
    """

    yaml_name = "KnowledgeDistillationLoss"

    def __init__(self, temperature=None, loss_types=None, loss_weights=None,
                 from_logits=None, loss_weight_ratio=None, logit_standardization=None,
                 beta=None, vocab_mismatch=None):
        self._init_criterion({"temperature": temperature, "loss_types": loss_types,
                              "loss_weights": loss_weights, "from_logits": from_logits,
                              "logit_standardization": logit_standardization, "beta": beta,
                              "vocab_mismatch": vocab_mismatch},
                             loss_weight_ratio)


class IntermediateLayersKnowledgeDistillationLossConfig(_CriterionConfig):
    """Intermediate-layer distillation: ``sum_i w_i * D_i(M_i(F_s_i), F_t_i)``.

    Args:
        layer_mappings: which student layer learns from which teacher layer (the forms of
            ``neural_distill.config.layer_mappings``). Empty: generated for the layers that
            exist in both models (for a QAT model: every layer of the float teacher that its
            quantized copy still has), e.g. ``[["features.0"], ["head"]]``.
        loss_types: one of {MSE, L1, KL, cosine, AT, SP, RKD} per mapping, or one for all
            (default MSE).
            The reference documents' default ``['CE', 'CE']`` is not a feature loss; it is
            rejected with the same message as in the YAML.
        loss_weights: one weight per mapping, or one for all (default: 1 / number of mappings).
        add_origin_loss: also add the student's own loss.
        rkd_weights: ``[distance_weight, angle_weight]`` of the RKD loss type.
    """

    yaml_name = "IntermediateLayersKnowledgeDistillationLoss"

    def __init__(self, layer_mappings=(), loss_types=None, loss_weights=None,
                 add_origin_loss=None, loss_weight_ratio=None, rkd_weights=None):
        self._init_criterion({"layer_mappings": layer_mappings, "loss_types": loss_types,
                              "loss_weights": loss_weights, "add_origin_loss": add_origin_loss,
                              "rkd_weights": rkd_weights}, loss_weight_ratio)

    def _validated(self, values):
        values = dict(values)
        if values.get("layer_mappings") is not None and len(values["layer_mappings"]) == 0:
            del values["layer_mappings"]  # empty: generated when the models are known
        cleaned = super()._validated(values)
        cleaned.setdefault("layer_mappings", [])
        return cleaned

    @property
    def automatic_mappings(self):
        return not self.layer_mappings

    def arguments(self):
        args = super().arguments()
        if not args.get("layer_mappings"):
            args.pop("layer_mappings", None)  # the YAML form of "generate them"
        return args


class SelfKnowledgeDistillationLossConfig(_CriterionConfig):
    """Self-distillation: the student's deepest head teaches its shallower heads.

    Args:
        layer_mappings: groups of ``[student_key, teacher_key]`` pairs naming outputs of the
            student itself (keys of its dict output, or module paths). Required: there is no
            second model to generate them from.
        temperature: > 0, for the KL / CE groups.
        loss_types: one of {CE, KL, L2, MSE} per group (default KL).
        loss_weights: one weight per group (default: 1 / number of groups).
        add_origin_loss: also add the student's own loss.
    """

    yaml_name = "SelfKnowledgeDistillationLoss"

    def __init__(self, layer_mappings=(), temperature=None, loss_types=None, loss_weights=None,
                 add_origin_loss=None, loss_weight_ratio=None):
        self._init_criterion({"layer_mappings": layer_mappings, "temperature": temperature,
                              "loss_types": loss_types, "loss_weights": loss_weights,
                              "add_origin_loss": add_origin_loss}, loss_weight_ratio)


def _generated_config_class(spec):
    """``<name>Config`` for a catalog criterion without a hand-written class."""
    def __init__(self, loss_weight_ratio=None, **arguments):
        if loss_weight_ratio is not None and "loss_weights" not in spec.args:
            raise ConfigError(f"{spec.config_class_name}: loss_weight_ratio: unknown argument. "
                              f"Allowed arguments: {', '.join(spec.args)}")
        self._init_criterion(arguments, loss_weight_ratio)

    doc = (f"{spec.summary or spec.name} (generated from its catalog spec).\n\n"
           f"Keyword arguments: {', '.join(spec.args)}.")
    return type(spec.config_class_name, (_CriterionConfig,),
                {"yaml_name": spec.name, "__init__": __init__, "__doc__": doc,
                 "__module__": __name__})


# The classes written above (before any is generated).
_WRITTEN = {cls.yaml_name: cls for cls in _CriterionConfig.__subclasses__()}
# Criterion name -> its config class, for every criterion of the catalog.
CRITERION_CONFIGS = {name: _WRITTEN.get(name) or _generated_config_class(spec)
                     for name, spec in CATALOG.items()}


def criterion_config_from_section(section, source, path="criterion"):
    """A criterion config from a YAML criterion section ``{name: {arguments}}``."""
    checked = validate({path: section}, source, Section({path: CRITERION}, required=(path,)))
    (name, args), = checked[path].items()
    return CRITERION_CONFIGS[name](**dict(args))
