"""IntermediateLayersKnowledgeDistillationLoss: ``sum_i w_i * D_i(M_i(F_s_i), F_t_i)``."""

from neural_distill.config.criterion_args import (
    CriterionSpec, flag, is_weight, loss_type_list, per_mapping_lengths, weight_list,
    weights_limit)
from neural_distill.config.layer_mappings import LayerMappingsNode
from neural_distill.config.nodes import Leaf, Section

_ARGS = {"layer_mappings": LayerMappingsNode(),
         "loss_types": loss_type_list("feature"),
         "loss_weights": weight_list(),
         "add_origin_loss": flag(False),
         # RKD's [distance, angle] weights (Park et al.'s 25 and 50), for loss_types RKD.
         "rkd_weights": Leaf(lambda v: isinstance(v, list) and len(v) == 2
                             and all(is_weight(w) for w in v),
                             "a list of two numbers >= 0 [distance_weight, angle_weight]",
                             default=[25.0, 50.0], limit=weights_limit)}
_PER_MAPPING = per_mapping_lengths("mapping")


def _auto_mapping_lengths(cleaned, path, problems):
    """Without layer_mappings one loss type / weight applies to every generated mapping."""
    if "layer_mappings" in cleaned:
        _PER_MAPPING(cleaned, path, problems)
        return
    for key in ("loss_types", "loss_weights"):
        given = cleaned.get(key)
        if given is not None and len(given) != 1:
            problems.add(f"{path}.{key}", f"expected 1 entry (without layer_mappings the "
                                          f"mappings are generated and share one {key[5:-1]}), "
                                          f"got {len(given)}")


SPEC = CriterionSpec(
    "IntermediateLayersKnowledgeDistillationLoss", _ARGS,
    needs_teacher=True, teacher_cache="features", required=("layer_mappings",),
    check=_PER_MAPPING,
    # The Python config API may leave out layer_mappings: with a QAT model they are generated
    # for the layers the float teacher and its quantized copy share. An experiment file has no
    # way to generate them, so there the key stays required.
    python_node=Section(_ARGS, check=_auto_mapping_lengths),
    order=1, summary="intermediate-layer distillation: sum_i w_i * D_i(M_i(F_s_i), F_t_i)")
