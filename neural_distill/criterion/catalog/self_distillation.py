"""SelfKnowledgeDistillationLoss: the student's deepest head teaches its shallower heads."""

from neural_distill.config.criterion_args import (
    CriterionSpec, flag, loss_type_list, per_mapping_lengths, temperature, weight_list)
from neural_distill.config.layer_mappings import SelfMappingsNode

SPEC = CriterionSpec(
    "SelfKnowledgeDistillationLoss",
    {"layer_mappings": SelfMappingsNode(),
     "temperature": temperature(default=1.0),
     "loss_types": loss_type_list("self"),
     "loss_weights": weight_list(),
     "add_origin_loss": flag(False)},
    needs_teacher=False, required=("layer_mappings",), check=per_mapping_lengths("group"),
    order=2, summary="self-distillation: the student's deepest head teaches its shallower heads")
