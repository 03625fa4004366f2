"""NLPTrainer.distill on a causal LM: the per-token term over the valid tokens, on-policy.

Tiny GPT-2s from a config (nothing downloaded), dropout off, a few optimizer steps.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import np_reference as ref  # noqa: E402
from neural_distill.config import (DistillationConfig,  # noqa: E402
                                   KnowledgeDistillationLossConfig)
from neural_distill.integrations.transformers import NLPTrainer  # noqa: E402

VOCAB, SEQ = 16, 8


def gpt2(layers, seed):
    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=layers, n_embd=16, n_head=2, vocab_size=VOCAB, n_positions=16,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=1,
        pad_token_id=1))


class Rows(torch.utils.data.Dataset):
    """Prompts of 3 tokens (-100), an answer, and 0-2 padded positions at the end."""

    def __init__(self, count=16):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(2, VOCAB, (count, SEQ), generator=g)
        self.mask = torch.ones_like(self.ids)
        for i in range(count):
            self.mask[i, SEQ - i % 3:] = 0
        self.labels = self.ids.masked_fill(self.mask == 0, -100)
        self.labels[:, :3] = -100

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i],
                "labels": self.labels[i]}


def _trainer(tmp_path, student, max_steps):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=max_steps,
        learning_rate=1e-3, report_to=[], use_cpu=True, save_strategy="no",
        logging_strategy="no", disable_tqdm=True, seed=3)
    return NLPTrainer(model=student, args=args, train_dataset=Rows())


def test_distill_takes_the_term_over_the_valid_tokens_of_a_causal_lm(tmp_path):
    student, teacher = gpt2(1, 0), gpt2(2, 1)
    trainer = _trainer(tmp_path, student, max_steps=1)
    seen = []
    original = NLPTrainer.compute_loss

    def recording(self, model, inputs, *args, **kwargs):
        loss = original(self, model, inputs, *args, **kwargs)
        seen.append(({k: v.clone() for k, v in inputs.items()},
                     (loss[0] if isinstance(loss, tuple) else loss).item()))
        return loss

    initial = gpt2(1, 0).train()
    trainer.compute_loss = recording.__get__(trainer)
    trainer.distill(DistillationConfig(criterion=KnowledgeDistillationLossConfig(
        temperature=2.0, loss_types=["CE", "KL"], loss_weights=[0.4, 0.6])),
        teacher_model=teacher)
    inputs, loss = seen[0]
    features = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        output = initial(**inputs)
        teacher_logits = teacher.eval()(**features).logits.numpy()
    labels = inputs["labels"].numpy()
    keep = ref.valid_tokens(*labels.shape, labels, causal=True)
    assert keep.sum() < keep.size  # prompt and padding are left out
    expected = 0.4 * ref.causal_lm_cross_entropy(output.logits.numpy(), labels) \
        + 0.6 * ref.token_kd("KL", output.logits.numpy(), teacher_logits, 2.0, keep)
    assert loss == pytest.approx(expected, rel=1e-4)


def test_distill_on_policy_generates_from_the_prompts(tmp_path):
    student, teacher = gpt2(1, 0), gpt2(2, 1)
    calls = []
    generate = student.generate

    def counted(*args, **kwargs):
        calls.append(kwargs["input_ids"].clone())
        return generate(*args, **kwargs)

    student.generate = counted
    trainer = _trainer(tmp_path, student, max_steps=2)
    trainer.distill(DistillationConfig(
        criterion=KnowledgeDistillationLossConfig(loss_types=["CE", "KL"]),
        on_policy={"fraction": 1.0, "max_new_tokens": 3}), teacher_model=teacher)
    assert len(calls) == 2
    assert all(prompt.shape == (8, 3) for prompt in calls)  # the tokens before the labels
    history = trainer.distillation_history
    assert history and all(np.isfinite(r["loss"]) for r in history if "loss" in r)


class _Forwards:
    def __init__(self, model):
        self.calls = 0
        self.handle = model.register_forward_hook(lambda *_: self._count())

    def _count(self):
        self.calls += 1


def _epochs_trainer(tmp_path, student, epochs):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4,
        num_train_epochs=epochs, learning_rate=1e-3, report_to=[], use_cpu=True,
        save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=3)
    return NLPTrainer(model=student, args=args, train_dataset=Rows())


def test_distill_with_a_top_k_token_cache_runs_the_teacher_in_the_first_epoch_only(tmp_path):
    # Shuffled by the Trainer's sampler, padded as the rows are: 4 batches an epoch.
    student, teacher = gpt2(1, 0), gpt2(2, 1)
    forwards = _Forwards(teacher)
    trainer = _epochs_trainer(tmp_path, student, epochs=3)
    trainer.distill(DistillationConfig(
        criterion=KnowledgeDistillationLossConfig(temperature=2.0, loss_types=["CE", "KL"]),
        teacher_cache={"enabled": True, "compression": "topk", "top_k": 4}),
        teacher_model=teacher)
    forwards.handle.remove()
    assert forwards.calls == 4
    epochs = [r for r in trainer.distillation_history if "teacher_cache_hit_rate" in r]
    assert [r["teacher_cache_hit_rate"] for r in epochs] == [0.0, 1.0, 1.0]
    assert all(r["teacher_cache_bytes_per_token"] <= 2.5 * 4 + 16 for r in epochs)


def test_distill_reads_an_offline_token_cache_without_a_teacher(tmp_path, workspace):
    from neural_distill import Distillation, write_offline_cache

    folder = str(tmp_path / "cache")
    cache = {"compression": "topk", "top_k": 4, "path": folder}
    criterion = {"temperature": 2.0, "loss_types": ["CE", "KL"]}
    writer = Distillation({"distillation": {"train": {
        "criterion": {"KnowledgeDistillationLoss": criterion}, "teacher_cache": cache}},
        "tuning": {"workspace": {"path": workspace}}})
    writer.student_model, writer.teacher_model = gpt2(1, 0), gpt2(2, 1)
    writer.train_dataloader = torch.utils.data.DataLoader(Rows(), batch_size=5)
    index = write_offline_cache(writer, progress_bar=False)
    assert index["samples"] == 16
    trainer = _epochs_trainer(tmp_path, gpt2(1, 0), epochs=2)
    trainer.distill(DistillationConfig(
        criterion=KnowledgeDistillationLossConfig(**criterion), teacher_cache=cache))
    epochs = [r for r in trainer.distillation_history if "teacher_cache_hit_rate" in r]
    assert [r["teacher_cache_hit_rate"] for r in epochs] == [1.0, 1.0]
