"""A built-in-loop step's student forward for Hugging Face models over dict batches.

Two things differ from a classifier's step (docs/language_models.md):

- the student's own loss is the model's (``outputs.loss``, computed by the model from
  ``labels`` with its own causal shift and -100 handling) whenever the criterion's student loss
  is cross-entropy, the batch has labels and the model takes ``labels``: a cross-entropy of our
  own against unshifted labels would teach a causal LM to copy the current token;
- with ``distillation.train.on_policy``, a drawn share of the batches is replaced by
  completions generated from the batch's prompts (``on_policy.py``).
"""

import inspect

from neural_distill.criterion.base import FeatureCriterionSpec
from neural_distill.criterion.logit_specs import KnowledgeDistillationSpec
from neural_distill.adapters.torch.on_policy import OnPolicy
from neural_distill.adapters.torch.outputs import call_model
from neural_distill.language.tokens import IGNORE_INDEX


def takes_labels(model):
    """Whether ``model``'s forward accepts a ``labels`` keyword (Hugging Face models do)."""
    model = getattr(model, "module", model)  # DDP
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return "labels" in parameters


def student_loss_is_cross_entropy(criterion):
    if isinstance(criterion, KnowledgeDistillationSpec):
        return criterion.loss_types[0] == "CE"
    return isinstance(criterion, FeatureCriterionSpec)  # their origin loss is cross-entropy


class LanguageModelBatches:
    """``forward(model, inputs, labels) -> (inputs, output, student_loss, labels)``.

    Args:
        student: the unwrapped student (its ``generate`` makes on-policy completions).
        criterion: the run's criterion (is its student loss cross-entropy?).
        teachers: the teacher models (the first generates for ``seq_kd``).
        on_policy: the ``distillation.train.on_policy`` section, or None.
        seed: the run's seed (which batches are generated is reproducible).
    """

    def __init__(self, student, criterion, teachers, on_policy=None, seed=0):
        self.criterion = criterion
        self.model_loss = student_loss_is_cross_entropy(criterion) and takes_labels(student)
        self.on_policy = (OnPolicy(on_policy, student, list(teachers), seed)
                          if on_policy else None)

    def forward(self, model, inputs, labels, checked=None):
        """``(inputs, output, loss, labels)`` of the student on a batch; ``checked(inputs,
        output)`` (the run's first-batch checks) runs on the output before a loss is taken,
        except when the model computes its own loss in the same call."""
        checked = checked or (lambda inputs, output, generated_labels=None: None)
        generated = False
        if self.on_policy is not None and isinstance(inputs, dict):
            inputs, labels, generated = self.on_policy.maybe_generate(inputs, labels)
        # A generated batch is the one trained: its labels are checked instead of the data's.
        checked_labels = labels if generated else None
        if generated and not self.on_policy.seq_kd:
            # The labels are the student's own samples: only the teacher's term teaches.
            output = call_model(model, inputs)
            checked(inputs, output, labels)
            return inputs, output, None, labels
        if self.model_loss and labels is not None and isinstance(inputs, dict):
            if not bool((labels != IGNORE_INDEX).any()):
                # Every label is -100: the model's mean would be 0/0 (NaN, NaN gradients);
                # the batch is taught by the teacher alone, as an unlabeled one.
                output = call_model(model, inputs)
                checked(inputs, output, checked_labels)
                return inputs, output, None, labels
            output = call_model(model, {**inputs, "labels": labels})
            checked(inputs, output, checked_labels)
            loss = getattr(output, "loss", None)
            if loss is None and isinstance(output, dict):
                loss = output.get("loss")
            return inputs, output, loss, labels
        output = call_model(model, inputs)
        checked(inputs, output, checked_labels)
        return inputs, output, self.criterion.student_loss(output, labels), labels
