"""Language models (docs/language_models.md): the per-token term over the valid tokens, the
model's own loss in fit(), on-policy distillation, vocabulary mismatch, teacher precision.

Every loss is checked against tests/np_reference.py; models are two-layer GPT-2s built from a
config (no download).
"""

import warnings

import numpy as np
import pytest
import torch

import np_reference as ref
from helpers import assert_states_identical, state_arrays
from neural_distill import Distillation
from neural_distill.criterion import PyTorchKnowledgeDistillationLoss
from neural_distill.errors import ConfigError, ModelError
from neural_distill.language.tokens import TokenBatch

transformers = pytest.importorskip("transformers")

VOCAB = 12


def tiny_lm(layers=1, width=16, vocab=VOCAB, seed=0, positions=32):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(n_layer=layers, n_embd=width, n_head=2, vocab_size=vocab,
                                     n_positions=positions, bos_token_id=0, eos_token_id=1,
                                     pad_token_id=1)
    return transformers.GPT2LMHeadModel(config)


def random_logits(shape, seed):
    return np.random.default_rng(seed).normal(scale=2.0, size=shape).astype(np.float32)


# Two rows of six tokens: row 0 has a two-token prompt (-100) and one padded position; row 1
# a one-token prompt and no padding.
LABELS = np.array([[-100, -100, 4, 5, 6, -100],
                   [-100, 3, 2, 7, 8, 9]])
MASK = np.array([[1, 1, 1, 1, 1, 0],
                 [1, 1, 1, 1, 1, 1]])
RULES = {  # name: (labels, attention_mask, causal)
    "causal_labels": (LABELS, MASK, True),
    "token_labels": (LABELS, MASK, False),
    "attention_mask": (None, MASK, True),
    "all_positions": (None, None, True),
}


def _tokens(labels, mask, causal):
    inputs = {"input_ids": torch.zeros(2, 6, dtype=torch.long)}
    if mask is not None:
        inputs["attention_mask"] = torch.as_tensor(mask)
    return TokenBatch(inputs, None if labels is None else torch.as_tensor(labels), causal)


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("kd_type,temperature", [("KL", 1.0), ("KL", 3.0), ("CE", 2.0),
                                                 ("MSE", 1.0)])
def test_per_token_term_matches_the_numpy_reference(rule, kd_type, temperature):
    labels, mask, causal = RULES[rule]
    student, teacher = random_logits((2, 6, 5), 0), random_logits((2, 6, 5), 1)
    criterion = PyTorchKnowledgeDistillationLoss(temperature, ["CE", kd_type], [0.5, 0.5])
    got = criterion.distillation_loss(torch.tensor(student), torch.tensor(teacher),
                                      tokens=_tokens(labels, mask, causal))
    keep = ref.valid_tokens(2, 6, labels, mask, causal)
    assert keep.sum() < 12 or rule == "all_positions"
    assert float(got) == pytest.approx(ref.token_kd(kd_type, student, teacher, temperature, keep),
                                       rel=1e-5)


@pytest.mark.parametrize("rule", ["causal_labels", "attention_mask"])
@pytest.mark.parametrize("kd_type,beta", [("RKL", 0.5), ("JSD", 0.5), ("JSD", 0.1),
                                          ("JSD", 0.0), ("JSD", 1.0)])
def test_reverse_kl_and_jsd_count_the_valid_tokens_only(rule, kd_type, beta):
    # The loss catalog's divergences (issue 21) over the per-token rows (issue 22): one
    # NumPy reference written from TRL's formulas, applied to the kept tokens only.
    import np_reference_catalog as cat

    labels, mask, causal = RULES[rule]
    student, teacher = random_logits((2, 6, 5), 2), random_logits((2, 6, 5), 3)
    criterion = PyTorchKnowledgeDistillationLoss(2.0, ["CE", kd_type], [0.5, 0.5], beta=beta)
    got = criterion.distillation_loss(torch.tensor(student), torch.tensor(teacher),
                                      tokens=_tokens(labels, mask, causal))
    keep = ref.valid_tokens(2, 6, labels, mask, causal).astype(bool)
    s_rows, t_rows = student[keep], teacher[keep]
    expected = (cat.reverse_kl(s_rows, t_rows, 2.0) if kd_type == "RKL"
                else cat.generalized_jsd(s_rows, t_rows, 2.0, beta))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # Logits where no token counts change nothing.
    student[~keep] += 50.0
    again = criterion.distillation_loss(torch.tensor(student), torch.tensor(teacher),
                                        tokens=_tokens(labels, mask, causal))
    assert float(again) == pytest.approx(float(got), rel=1e-6)


def test_the_causal_rule_is_the_shifted_label_rule():
    keep = ref.valid_tokens(2, 6, LABELS, MASK, causal=True)
    # Row 0 predicts tokens 2..4 from positions 1..3; the last position never counts.
    assert keep.tolist() == [[False, True, True, True, False, False],
                             [True, True, True, True, True, False]]


def test_logits_at_positions_that_do_not_count_do_not_change_the_loss():
    student, teacher = random_logits((2, 6, 5), 2), random_logits((2, 6, 5), 3)
    criterion = PyTorchKnowledgeDistillationLoss(2.0, ["CE", "KL"], [0.5, 0.5])
    tokens = _tokens(LABELS, MASK, True)
    keep = ref.valid_tokens(2, 6, LABELS, MASK, True)
    base = float(criterion.distillation_loss(torch.tensor(student), torch.tensor(teacher),
                                             tokens=tokens))
    changed = student.copy()
    changed[~keep] += random_logits(changed[~keep].shape, 4) * 10
    assert float(criterion.distillation_loss(torch.tensor(changed), torch.tensor(teacher),
                                             tokens=tokens)) == pytest.approx(base, rel=1e-6)
    changed = student.copy()
    changed[keep] += 1.0 * random_logits(changed[keep].shape, 5)
    assert float(criterion.distillation_loss(torch.tensor(changed), torch.tensor(teacher),
                                             tokens=tokens)) != pytest.approx(base, rel=1e-3)


def test_a_batch_without_a_counted_token_teaches_nothing():
    criterion = PyTorchKnowledgeDistillationLoss(1.0, ["CE", "KL"], [0.5, 0.5])
    student = torch.tensor(random_logits((1, 3, 5), 6), requires_grad=True)
    labels = torch.full((1, 3), -100)
    loss = criterion.distillation_loss(student, torch.tensor(random_logits((1, 3, 5), 7)),
                                       tokens=TokenBatch({}, labels, True))
    loss.backward()
    assert loss.item() == 0.0 and float(student.grad.abs().sum()) == 0.0


def _lm_distiller(workspace, criterion=None, **train):
    return Distillation({
        "distillation": {"train": {
            "epoch": 1, "progress_bar": False, **train,
            "criterion": criterion or {"KnowledgeDistillationLoss": {
                "temperature": 2.0, "loss_types": ["CE", "KL"], "loss_weights": [0.3, 0.7]}}}},
        "tuning": {"workspace": {"path": workspace}}})


@pytest.mark.parametrize("labels_in", ["inputs", "argument"])
def test_the_hook_takes_the_tokens_from_a_dict_batch_and_weights_the_terms(workspace,
                                                                           labels_in):
    distiller = _lm_distiller(workspace)
    student = distiller.student_model = tiny_lm(seed=0)
    distiller.teacher_model = tiny_lm(layers=2, seed=1)
    ids = torch.tensor([[2, 3, 4, 5, 6, 1], [7, 8, 9, 10, 11, 2]])
    inputs = {"input_ids": ids, "attention_mask": torch.as_tensor(MASK)}
    labels = torch.as_tensor(LABELS)
    output = student(**inputs, labels=labels)
    teacher_logits = random_logits((2, 6, VOCAB), 8)
    if labels_in == "inputs":
        loss = distiller.on_after_compute_loss({**inputs, "labels": labels}, output,
                                               output.loss, torch.tensor(teacher_logits))
    else:
        loss = distiller.on_after_compute_loss(inputs, output, output.loss,
                                               torch.tensor(teacher_logits), labels=labels)
    logits = output.logits.detach().numpy()
    keep = ref.valid_tokens(2, 6, LABELS, MASK, causal=True)
    expected = (0.3 * ref.causal_lm_cross_entropy(logits, LABELS)
                + 0.7 * ref.token_kd("KL", logits, teacher_logits, 2.0, keep))
    assert float(loss) == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------- fit()
def _counting_batches(rows=32, length=10, seed=0, batch_size=8):
    """Rows counting up mod VOCAB from a random start; the first 3 tokens are the prompt."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(2, VOCAB, (rows, 1), generator=g)
    ids = 2 + (starts - 2 + torch.arange(length)) % (VOCAB - 2)  # ids 0, 1: bos/eos
    labels = ids.clone()
    labels[:, :3] = -100
    return ids, [{"input_ids": ids[i:i + batch_size], "labels": labels[i:i + batch_size],
                  "attention_mask": torch.ones_like(ids[i:i + batch_size])}
                 for i in range(0, rows, batch_size)]


def test_fit_on_a_causal_lm_learns_the_next_token_with_the_models_own_loss(workspace):
    ids, batches = _counting_batches()
    distiller = _lm_distiller(workspace, epoch=12, optimizer={"Adam": {"learning_rate": 0.02}})
    distiller.student_model = tiny_lm(seed=0)
    teacher = distiller.teacher_model = tiny_lm(layers=2, seed=1)
    distiller.train_dataloader = batches
    before = state_arrays(teacher)
    seen = []
    original = distiller.on_after_compute_loss

    def spy(inputs, output, student_loss, teacher_output=None, labels=None):
        seen.append((output.logits.detach().numpy(), student_loss, labels))
        return original(inputs, output, student_loss, teacher_output, labels)

    distiller.on_after_compute_loss = spy
    model = distiller.fit()

    assert_states_identical(before, state_arrays(teacher))
    logits, student_loss, labels = seen[0]
    # The student's loss is the model's own, shifted one: not a CE against unshifted labels.
    assert float(student_loss) == pytest.approx(
        ref.causal_lm_cross_entropy(logits, labels.numpy()), rel=1e-5)
    losses = [record["student_loss"] for record in distiller.history]
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        greedy = model(input_ids=ids).logits.argmax(-1)
    next_token = float((greedy[:, 2:-1] == ids[:, 3:]).float().mean())
    same_token = float((greedy[:, 3:] == ids[:, 3:]).float().mean())
    assert next_token > 0.9 and same_token < 0.1


def test_fit_on_a_batch_whose_labels_are_all_ignored_uses_the_teacher_alone(workspace):
    ids, batches = _counting_batches(rows=16)
    batches[1]["labels"] = torch.full_like(batches[1]["labels"], -100)  # a transfer batch
    distiller = _lm_distiller(workspace, epoch=1)
    distiller.student_model = tiny_lm(seed=0)
    distiller.teacher_model = tiny_lm(layers=2, seed=1)
    distiller.train_dataloader = batches
    losses = []
    original = distiller.on_after_compute_loss

    def spy(inputs, output, student_loss, teacher_output=None, labels=None):
        losses.append(student_loss)
        return original(inputs, output, student_loss, teacher_output, labels)

    distiller.on_after_compute_loss = spy
    distiller.fit()
    assert losses[0] is not None and losses[1] is None
    assert np.isfinite(distiller.history[-1]["loss"])


def test_fit_bf16_with_accumulation_and_resume(workspace):
    _, batches = _counting_batches(rows=16)
    settings = dict(precision="bf16", gradient_accumulation_steps=2,
                    optimizer={"Adam": {"learning_rate": 0.02}})
    first = _lm_distiller(workspace, epoch=2, **settings)
    first.student_model = tiny_lm(seed=0)
    first.teacher_model = tiny_lm(layers=2, seed=1)
    first.train_dataloader = batches
    first.fit()
    assert all(np.isfinite(r["loss"]) for r in first.history)

    resumed = Distillation({
        "distillation": {"train": {"epoch": 4, "progress_bar": False, **settings,
                                   "criterion": {"KnowledgeDistillationLoss": {
                                       "temperature": 2.0, "loss_types": ["CE", "KL"],
                                       "loss_weights": [0.3, 0.7]}}}},
        "tuning": {"workspace": {"path": workspace, "resume": "auto",
                                 "resume_ignore_changes": True}}})  # epoch: 2 -> 4
    resumed.student_model = tiny_lm(seed=0)
    resumed.teacher_model = tiny_lm(layers=2, seed=1)
    resumed.train_dataloader = batches
    resumed.fit()
    records = [r for r in resumed.history if "loss" in r]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    # Epochs 1-2 come from the checkpoint, not from training again.
    assert [r["loss"] for r in records[:2]] == [r["loss"] for r in first.history[:2]]
    assert resumed.history[-1]["loss"] < first.history[0]["loss"]


# ---------------------------------------------------------------------------- on-policy
def test_on_policy_fraction_one_generates_every_step_and_distils_the_generated_tokens(
        workspace):
    _, batches = _counting_batches(rows=16)
    distiller = _lm_distiller(workspace, epoch=1, on_policy={
        "fraction": 1.0, "max_new_tokens": 4, "temperature": 1.0})
    student = distiller.student_model = tiny_lm(seed=0)
    distiller.teacher_model = tiny_lm(layers=2, seed=1)
    distiller.train_dataloader = batches
    calls = []
    generate = student.generate

    def counted(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape)
        return generate(*args, **kwargs)

    student.generate = counted
    seen = []
    original = distiller.on_after_compute_loss

    def spy(inputs, output, student_loss, teacher_output=None, labels=None):
        seen.append((inputs, output.logits.detach().numpy(), student_loss, labels))
        return original(inputs, output, student_loss, teacher_output, labels)

    distiller.on_after_compute_loss = spy
    distiller.fit()

    assert len(calls) == len(batches) == len(seen)
    assert all(shape == (8, 3) for shape in calls)  # the prompts: tokens before the labels
    teacher = distiller.teacher_model
    for inputs, logits, student_loss, labels in seen:
        assert student_loss is None  # its own samples are no targets: the teacher's term alone
        labels = labels.numpy()
        # -100 on the prompt; the generated tokens (up to 4, until the end token) are labels.
        assert (labels[:, :3] == -100).all() and (labels[:, 3] != -100).all()
        assert labels.shape[1] <= 3 + 4
    # The last step's term, recomputed by the reference over the generated tokens only.
    inputs, logits, _, labels = seen[-1]
    with torch.no_grad():
        teacher_logits = teacher(**inputs).logits.numpy()
    keep = ref.valid_tokens(*labels.shape, labels.numpy(), causal=True)
    got = distiller.criterion.distillation_loss(torch.tensor(logits), torch.tensor(teacher_logits),
                                                tokens=TokenBatch(inputs, labels, True))
    assert float(got) == pytest.approx(ref.token_kd("KL", logits, teacher_logits, 2.0, keep),
                                       rel=1e-4, abs=1e-7)
    assert distiller.history[0]["distillation_loss"] == pytest.approx(
        0.7 * float(got), rel=0.9)  # the run's term is of that size (an epoch's mean)


def test_seq_kd_has_the_teacher_generate_and_keeps_the_students_loss(workspace):
    _, batches = _counting_batches(rows=8)
    distiller = _lm_distiller(workspace, epoch=1, on_policy={
        "fraction": 1.0, "max_new_tokens": 3, "temperature": 0, "seq_kd": True})
    student = distiller.student_model = tiny_lm(seed=0)
    teacher = distiller.teacher_model = tiny_lm(layers=2, seed=1)
    distiller.train_dataloader = batches
    student.generate = None  # must not be called
    calls, generate = [], teacher.generate

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return generate(*args, **kwargs)

    teacher.generate = counted
    seen = []
    original = distiller.on_after_compute_loss

    def spy(inputs, output, student_loss, teacher_output=None, labels=None):
        seen.append((output.logits.detach().numpy(), student_loss, labels))
        return original(inputs, output, student_loss, teacher_output, labels)

    distiller.on_after_compute_loss = spy
    distiller.fit()
    assert len(calls) == 1 and calls[0]["do_sample"] is False  # temperature 0: greedy
    logits, student_loss, labels = seen[0]
    # Sequence-level KD: the student's own loss on the teacher's tokens is kept.
    assert float(student_loss) == pytest.approx(
        ref.causal_lm_cross_entropy(logits, labels.numpy()), rel=1e-5)


def test_on_policy_settings_are_validated(workspace):
    with pytest.raises(ConfigError, match=r"on_policy\.fraction: expected a number in \[0, 1\]"):
        _lm_distiller(workspace, on_policy={"fraction": 2})
    with pytest.raises(ConfigError, match="max_new_tokens"):
        _lm_distiller(workspace, on_policy={"max_new_tokns": 2})
    distiller = _lm_distiller(workspace, on_policy={"fraction": 1.0},
                              teacher_cache={"enabled": True})
    distiller.student_model = tiny_lm(seed=0)
    distiller.teacher_model = tiny_lm(layers=2, seed=1)
    distiller.train_dataloader = _counting_batches(rows=8)[1]
    with pytest.raises(ConfigError, match="on_policy.fraction 1 and teacher_cache.enabled"):
        distiller.fit()


# ------------------------------------------------------------------- vocabulary mismatch
@pytest.mark.parametrize("student_size,teacher_size", [(5, 7), (7, 5)])
def test_vocabulary_mismatch_is_an_error_by_default(student_size, teacher_size):
    criterion = PyTorchKnowledgeDistillationLoss(1.0, ["CE", "KL"], [0.5, 0.5])
    with pytest.raises(ModelError) as info:
        criterion.distillation_loss(torch.zeros(2, 3, student_size),
                                    torch.zeros(2, 3, teacher_size))
    message = str(info.value)
    assert f"{student_size} classes" in message and f"teacher's {teacher_size}" in message
    assert "vocab_mismatch: truncate" in message and "different tokenizers" in message


@pytest.mark.parametrize("student_size,teacher_size", [(5, 7), (7, 5)])
def test_vocabulary_mismatch_truncate_compares_the_common_ids(student_size, teacher_size):
    criterion = PyTorchKnowledgeDistillationLoss(2.0, ["CE", "KL"], [0.5, 0.5],
                                                 vocab_mismatch="truncate")
    student = random_logits((2, 6, student_size), 9)
    teacher = random_logits((2, 6, teacher_size), 10)
    tokens = _tokens(LABELS, MASK, True)
    with pytest.warns(UserWarning, match="vocab_mismatch: truncate") as caught:
        got = criterion.distillation_loss(torch.tensor(student), torch.tensor(teacher),
                                          tokens=tokens)
    keep = ref.valid_tokens(2, 6, LABELS, MASK, True)
    common = min(student_size, teacher_size)
    expected = ref.token_kd("KL", student[..., :common], teacher[..., :common], 2.0, keep)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # The warning says how much of the teacher's probability was outside the common ids.
    outside = ref.tempered(teacher, 2.0, True)[keep][:, common:].sum(-1).mean()
    assert f"{outside:.3g}" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once
        criterion.distillation_loss(torch.tensor(student), torch.tensor(teacher), tokens=tokens)


def test_vocab_mismatch_is_a_validated_criterion_key(workspace):
    with pytest.raises(ConfigError, match="vocab_mismatch: expected 'error' or 'truncate'"):
        _lm_distiller(workspace, criterion={"KnowledgeDistillationLoss": {
            "vocab_mismatch": "pad"}})


# ---------------------------------------------------------------------- teacher precision
def test_teacher_precision_runs_the_teacher_in_bf16_and_leaves_it_unchanged(workspace):
    distiller = Distillation({
        "model": {"teacher_precision": "bf16"},
        "distillation": {"train": {"epoch": 1, "progress_bar": False}},
        "tuning": {"workspace": {"path": workspace}}})
    distiller.student_model = tiny_lm(seed=0)
    teacher = distiller.teacher_model = tiny_lm(layers=2, seed=1)
    before = state_arrays(teacher)
    ids = torch.tensor([[2, 3, 4, 5]])
    distiller.on_train_begin()
    output = distiller.run.step.teacher_output({"input_ids": ids})
    assert output.logits.dtype == torch.bfloat16
    loss = distiller.on_after_compute_loss({"input_ids": ids},
                                           distiller.student_model(input_ids=ids), None)
    assert torch.isfinite(loss)
    distiller.on_train_end()
    assert_states_identical(before, state_arrays(teacher))
    assert next(teacher.parameters()).dtype == torch.float32
