"""On-policy distillation (GKD, Agarwal et al. 2024) for causal LMs, in PyTorch.

With probability ``fraction`` a batch's completions are replaced: the prompt of each row (its
tokens before the first label that is not -100; a row without labels is all prompt) is given
to the student's ``generate`` (the teacher's with ``seq_kd``), and the batch becomes prompt +
generated completion, labelled -100 on the prompt and after the end-of-sequence token. The
per-token rule (language/tokens.py) then takes the divergence over the generated tokens: the
student learns where its own samples go, which is what it will meet at inference time.

Prompts are left-padded for generation (rows of a batch have prompts of different lengths), so
the new batch carries ``position_ids`` counted over real tokens only, for the student's and the
teacher's forward alike.
"""

import random

import torch

from neural_distill.errors import DataError
from neural_distill.language.tokens import IGNORE_INDEX, GeneratedBatch


def _prompt_lengths(input_ids, attention_mask, labels):
    """Tokens before the first label that is not -100 (a row without any: its real tokens)."""
    real = attention_mask.sum(-1)
    if labels is None or tuple(labels.shape) != tuple(input_ids.shape):
        return real
    labelled = labels != IGNORE_INDEX
    first = torch.where(labelled.any(-1), labelled.int().argmax(-1), real)
    return first.clamp(min=1)  # generate() needs at least one token to start from


def _token_id(model, name):
    for config in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(config, name, None)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is not None:
            return int(value)
    return None


class OnPolicy:
    """Args: the ``on_policy`` section ``{fraction, max_new_tokens, temperature, seq_kd}``,
    the student, the teachers and the run's seed."""

    def __init__(self, settings, student, teachers, seed=0):
        self.fraction = float(settings.get("fraction", 0.5))
        self.max_new_tokens = int(settings.get("max_new_tokens", 64))
        self.temperature = float(settings.get("temperature", 1.0))
        self.seq_kd = bool(settings.get("seq_kd", False))
        self.student = student
        self.teachers = teachers
        self.random = random.Random(seed)
        self.generated_batches = 0
        if self.seq_kd and not teachers:
            raise DataError("distillation.train.on_policy.seq_kd: true needs a teacher model to "
                            "generate the completions; set distiller.teacher_model")

    def maybe_generate(self, inputs, labels):
        """``(inputs, labels, generated)``: the batch, or with probability ``fraction`` its
        prompts completed by the student (the teacher with ``seq_kd``)."""
        if self.fraction <= 0 or self.random.random() >= self.fraction:
            return inputs, labels, False
        if "input_ids" not in inputs:
            raise DataError(f"distillation.train.on_policy: a batch needs input_ids to "
                            f"generate from; it has {sorted(inputs)}")
        inputs, labels = self.generate(inputs, labels)
        self.generated_batches += 1
        return GeneratedBatch(inputs), labels, True

    def generate(self, inputs, labels):
        model = self.teachers[0] if self.seq_kd else self.student
        input_ids = inputs["input_ids"]
        attention = inputs.get("attention_mask")
        if attention is None:
            attention = torch.ones_like(input_ids)
        lengths = _prompt_lengths(input_ids, attention, labels)
        rows, width = input_ids.shape[0], int(lengths.max())
        pad = _token_id(model, "pad_token_id")
        eos = _token_id(model, "eos_token_id")
        pad = pad if pad is not None else (eos if eos is not None else 0)
        prompt = input_ids.new_full((rows, width), pad)
        prompt_mask = attention.new_zeros((rows, width))
        for row, length in enumerate(lengths.tolist()):  # left-padded, as generate() expects
            prompt[row, width - length:] = input_ids[row, :length]
            prompt_mask[row, width - length:] = 1
        sample = self.temperature > 0
        options = dict(max_new_tokens=self.max_new_tokens, do_sample=sample, pad_token_id=pad,
                       eos_token_id=eos)
        if sample:
            # The model's own distribution, not a top-k/top-p truncation of it.
            options.update(temperature=self.temperature, top_k=0, top_p=1.0)
        was_training = model.training
        model.eval()  # no dropout in the samples
        try:
            with torch.no_grad():
                sequences = model.generate(input_ids=prompt, attention_mask=prompt_mask,
                                           **options)
        finally:
            model.train(was_training)
        completion = sequences[:, width:]
        kept = torch.ones_like(completion, dtype=torch.bool)
        if eos is not None and completion.shape[1]:
            # Tokens after the first end-of-sequence are padding (the EOS itself is learned).
            ended = (completion == eos).int().cumsum(-1)
            kept = (ended == 0) | ((ended == 1) & (completion == eos))
        new_mask = torch.cat([prompt_mask, kept.to(prompt_mask.dtype)], dim=1)
        new_labels = torch.cat([torch.full_like(prompt, IGNORE_INDEX),
                                torch.where(kept, completion, IGNORE_INDEX)], dim=1)
        new_inputs = {"input_ids": torch.where(new_mask.bool(), sequences, pad),
                      "attention_mask": new_mask,
                      "position_ids": (new_mask.long().cumsum(-1) - 1).clamp(min=0)}
        return new_inputs, new_labels
