"""DecoupledKnowledgeDistillationLoss (DKD, Zhao et al., CVPR 2022): ``w0 * CE(z_s, y) +
w1 * (alpha * TCKD + beta * NCKD)`` (docs/criteria.md)."""

from neural_distill.config.criterion_args import (CriterionSpec, flag, non_negative, temperature,
                                                  two_weights)

SPEC = CriterionSpec(
    "DecoupledKnowledgeDistillationLoss",
    {"alpha": non_negative(1.0),
     "beta": non_negative(8.0),
     "temperature": temperature(default=4.0),
     "loss_weights": two_weights(default=[1.0, 1.0]),
     "logit_standardization": flag(False)},
    needs_teacher=True, teacher_cache="logits", order=3,
    summary="decoupled KD: target-class and non-target-class terms, weighted apart")
