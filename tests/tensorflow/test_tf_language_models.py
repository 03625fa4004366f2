"""Per-token distillation of a Keras model with a sequence axis (docs/language_models.md):
the term over the batch's valid tokens, against tests/np_reference.py, eager and compiled."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import np_reference as ref  # noqa: E402
from neural_distill import Distillation  # noqa: E402
from neural_distill.criterion import TensorflowKnowledgeDistillationLoss  # noqa: E402
from neural_distill.errors import ModelError  # noqa: E402
from neural_distill.language.tokens import TokenBatch  # noqa: E402

VOCAB = 7
LABELS = np.array([[-100, -100, 4, 5, 6, -100],
                   [-100, 3, 2, 1, 0, 6]])
MASK = np.array([[1, 1, 1, 1, 1, 0],
                 [1, 1, 1, 1, 1, 1]])


def tagger(seed, causal, scale=0.05):
    """[batch, seq] token ids -> [batch, seq, VOCAB] logits."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((6,), dtype="int32"), keras.layers.Embedding(VOCAB, 8),
        keras.layers.Dense(16, activation="tanh"),
        keras.layers.Dense(VOCAB, kernel_initializer=keras.initializers.RandomNormal(
            stddev=scale))])
    model.nd_causal_lm = causal
    return model


def _logits(seed):
    return np.random.default_rng(seed).normal(scale=2.0, size=(2, 6, VOCAB)).astype(np.float32)


@pytest.mark.parametrize("rule", ["causal", "token", "mask"])
@pytest.mark.parametrize("kd_type,temperature", [("KL", 1.0), ("KL", 3.0), ("CE", 2.0),
                                                 ("MSE", 1.0)])
def test_the_hook_takes_the_term_over_the_valid_tokens(workspace, rule, kd_type, temperature):
    distiller = Distillation({
        "distillation": {"train": {"criterion": {"KnowledgeDistillationLoss": {
            "temperature": temperature, "loss_types": ["CE", kd_type],
            "loss_weights": [0.25, 0.75]}}}},
        "tuning": {"workspace": {"path": workspace}}})
    distiller.student_model = tagger(0, causal=rule == "causal")
    ids = np.random.default_rng(1).integers(0, VOCAB, size=(2, 6)).astype(np.int32)
    inputs = {"input_ids": tf.constant(ids), "attention_mask": tf.constant(MASK)}
    labels = None if rule == "mask" else tf.constant(LABELS)
    student = distiller.student_model(ids)
    teacher = _logits(2)
    loss = distiller.on_after_compute_loss(inputs, student, tf.constant(0.5),
                                           tf.constant(teacher), labels=labels)
    keep = ref.valid_tokens(2, 6, None if rule == "mask" else LABELS, MASK, rule == "causal")
    expected = 0.25 * 0.5 + 0.75 * ref.token_kd(kd_type, student.numpy(), teacher,
                                                temperature, keep)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kd_type,beta", [("RKL", 0.5), ("JSD", 0.5), ("JSD", 0.2)])
def test_reverse_kl_and_jsd_count_the_valid_tokens_only(kd_type, beta):
    import np_reference_catalog as cat

    criterion = TensorflowKnowledgeDistillationLoss(2.0, ["CE", kd_type], [0.5, 0.5], beta=beta)
    student, teacher = _logits(5), _logits(6)
    keep = ref.valid_tokens(2, 6, LABELS, MASK, causal=True).astype(bool)
    expected = (cat.reverse_kl(student[keep], teacher[keep], 2.0) if kd_type == "RKL"
                else cat.generalized_jsd(student[keep], teacher[keep], 2.0, beta))

    def term(s, t, labels):
        return criterion.distillation_loss(s, t, tokens=TokenBatch({}, labels, True))

    compiled = tf.function(term)(tf.constant(student), tf.constant(teacher),
                                 tf.constant(LABELS))
    assert float(compiled) == pytest.approx(expected, rel=1e-5)


def test_compiled_and_eager_agree_and_invalid_positions_do_not_count():
    criterion = TensorflowKnowledgeDistillationLoss(2.0, ["CE", "KL"], [0.5, 0.5])
    student, teacher = _logits(3), _logits(4)
    keep = ref.valid_tokens(2, 6, LABELS, MASK, causal=True)
    expected = ref.token_kd("KL", student, teacher, 2.0, keep)

    def term(s, t, labels):
        return criterion.distillation_loss(s, t, tokens=TokenBatch({}, labels, True))

    eager = term(tf.constant(student), tf.constant(teacher), tf.constant(LABELS))
    compiled = tf.function(term)(tf.constant(student), tf.constant(teacher),
                                 tf.constant(LABELS))
    assert float(eager) == pytest.approx(expected, rel=1e-5)
    assert float(compiled) == pytest.approx(expected, rel=1e-5)
    changed = student.copy()
    changed[~keep] *= -7.0
    assert float(term(tf.constant(changed), tf.constant(teacher), tf.constant(LABELS))) == \
        pytest.approx(expected, rel=1e-5)
    nothing = term(tf.constant(student), tf.constant(teacher),
                   tf.constant(np.full((2, 6), -100)))
    assert float(nothing) == 0.0


@pytest.mark.parametrize("student_size,teacher_size", [(5, 7), (7, 5)])
def test_vocabulary_mismatch_both_ways(student_size, teacher_size):
    rng = np.random.default_rng(5)
    student = rng.normal(size=(2, 6, student_size)).astype(np.float32)
    teacher = rng.normal(size=(2, 6, teacher_size)).astype(np.float32)
    strict = TensorflowKnowledgeDistillationLoss(1.0, ["CE", "KL"], [0.5, 0.5])
    with pytest.raises(ModelError, match="vocab_mismatch: truncate"):
        strict.distillation_loss(tf.constant(student), tf.constant(teacher))
    lenient = TensorflowKnowledgeDistillationLoss(1.0, ["CE", "KL"], [0.5, 0.5],
                                                  vocab_mismatch="truncate")
    with pytest.warns(UserWarning, match="compared over the first 5 ids"):
        got = lenient.distillation_loss(tf.constant(student), tf.constant(teacher),
                                        tokens=TokenBatch({}, tf.constant(LABELS), True))
    keep = ref.valid_tokens(2, 6, LABELS, None, causal=True)
    assert float(got) == pytest.approx(
        ref.token_kd("KL", student[..., :5], teacher[..., :5], 1.0, keep), rel=1e-5)


def test_keras_distillation_model_counts_the_labelled_tokens_only():
    from neural_distill.integrations.keras import DistillationModel

    student, teacher = tagger(0, causal=False, scale=2.0), tagger(1, causal=False, scale=2.0)
    model = DistillationModel(student, teacher, criterion=TensorflowKnowledgeDistillationLoss(
        2.0, ["CE", "KL"], [0.0, 1.0]))
    ids = np.random.default_rng(6).integers(0, VOCAB, size=(2, 6)).astype(np.int32)
    y_pred = student(ids)
    loss = model.compute_loss(tf.constant(ids), tf.constant(LABELS), y_pred)
    keep = ref.valid_tokens(2, 6, LABELS, causal=False)  # a tagger: labels[t] itself
    expected = ref.token_kd("KL", y_pred.numpy(), teacher(ids).numpy(), 2.0, keep)
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    every = ref.token_kd("KL", y_pred.numpy(), teacher(ids).numpy(), 2.0, np.ones((2, 6), bool))
    assert float(loss) != pytest.approx(every, rel=1e-2)


def test_on_policy_is_refused_for_a_keras_model(workspace):
    from neural_distill.errors import ConfigError

    distiller = Distillation({"distillation": {"train": {
        "epoch": 1, "progress_bar": False, "on_policy": {"fraction": 1.0}}},
        "tuning": {"workspace": {"path": workspace}}})
    distiller.student_model = tagger(0, causal=True)
    distiller.teacher_model = tagger(1, causal=True)
    ids = np.zeros((4, 6), np.int32)
    distiller.train_dataloader = tf.data.Dataset.from_tensor_slices((ids, ids)).batch(2)
    with pytest.raises(ConfigError, match="on_policy: .*PyTorch only"):
        distiller.fit()
