"""The private optimizer of feature matchers created after the user's optimizer
(``neural_distill.run.matcher_training`` explains when and why)."""

import warnings

import torch

from neural_distill.core.logging_utils import get_logger
from neural_distill.adapters.torch.optim import build_optimizer


class MatcherOptimizer:
    def __init__(self, criterion, optimizer_config):
        self.criterion = criterion
        self.params = [p for p in criterion.parameters() if p.requires_grad]
        self.handed_over = False
        self.steps = 0
        self.optimizer = build_optimizer(optimizer_config, self.params) if self.params else None
        self._versions = self._read_versions()
        if self.params:
            get_logger().info(
                "feature matchers were created at the first training step, after your "
                "optimizer; they are trained by their own %s optimizer "
                "(distillation.train.optimizer) unless your optimizer updates "
                "criterion.parameters()", type(self.optimizer).__name__)

    def _read_versions(self):
        # Every in-place update of a tensor (an optimizer step) bumps its version counter:
        # a change we did not make means another optimizer updated the matchers.
        return [p._version for p in self.params]

    def step_if_due(self):
        """Step once if a gradient is waiting; False once the user's optimizer owns them."""
        if self.optimizer is None or self.handed_over:
            return False
        if self._read_versions() != self._versions:
            self.handed_over = True
            self.optimizer = None
            get_logger().info("your optimizer updates the feature matchers: their own "
                              "optimizer is no longer used")
            return False
        if all(p.grad is None for p in self.params):
            return True
        with torch.no_grad():
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        self._versions = self._read_versions()
        return True


def distillation_loss(trainer, criterion, student_output, teacher_output, optimizer_config):
    """``(loss, trainer)``, the backend's part of ``run.matcher_training.MatcherTraining``:
    ``criterion.distillation_loss``; when that call creates the matchers (first step), a
    MatcherOptimizer for them (``trainer``, None before)."""
    if not criterion.needs_preparation:
        return criterion.distillation_loss(student_output, teacher_output), trainer
    with warnings.catch_warnings():
        # The criterion's own warning says the matchers will not be trained; here they are.
        warnings.filterwarnings("ignore", message="feature matchers were created")
        loss = criterion.distillation_loss(student_output, teacher_output)
    if not criterion.needs_preparation:
        trainer = MatcherOptimizer(criterion, optimizer_config)
    return loss, trainer
