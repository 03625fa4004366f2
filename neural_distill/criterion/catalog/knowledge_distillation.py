"""KnowledgeDistillationLoss: ``w0 * student_loss + w1 * D(z_s, z_t)`` (docs/criteria.md)."""

from neural_distill.config.criterion_args import (CriterionSpec, flag, fraction, loss_type_pair,
                                                  needs_logits, temperature, two_weights)
from neural_distill.config.nodes import Leaf
from neural_distill.language.vocab import VOCAB_MISMATCH

SPEC = CriterionSpec(
    "KnowledgeDistillationLoss",
    {"temperature": temperature(default=1.0),
     "loss_types": loss_type_pair("student", "kd", default=["CE", "CE"]),
     "loss_weights": two_weights(default=[0.5, 0.5]),
     "from_logits": flag(True),
     # Sun et al., CVPR 2024: each row's logits z-scored before the temperature.
     "logit_standardization": flag(False),
     # The generalized JSD's mixing weight (read by loss_types [.., JSD] only).
     "beta": fraction(0.5),
     # Teacher and student logits of different sizes (docs/language_models.md).
     "vocab_mismatch": Leaf(lambda v: v in VOCAB_MISMATCH, "'error' or 'truncate'",
                            default="error")},
    needs_teacher=True, teacher_cache="logits", order=0, check=needs_logits,
    summary="logit distillation: w0 * student_loss + w1 * D(z_s, z_t)")
