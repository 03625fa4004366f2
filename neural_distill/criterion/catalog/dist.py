"""DISTLoss (DIST, Huang et al., NeurIPS 2022): ``w0 * CE(z_s, y) + w1 * T^2 * (beta * inter +
gamma * intra)``, correlation of class probabilities per sample and per class (docs/criteria.md)."""

from neural_distill.config.criterion_args import (CriterionSpec, non_negative, temperature,
                                                  two_weights)

SPEC = CriterionSpec(
    "DISTLoss",
    {"beta": non_negative(1.0),
     "gamma": non_negative(1.0),
     "temperature": temperature(default=1.0),
     "loss_weights": two_weights(default=[1.0, 1.0])},
    needs_teacher=True, teacher_cache="logits", order=4,
    summary="DIST: Pearson correlation of class probabilities, across classes and samples")
