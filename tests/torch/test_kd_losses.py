"""Golden tests of PyTorchKnowledgeDistillationLoss against an independent NumPy reference.

The reference (tests/np_reference.py) is written from the formulas of DESIGN.md section 2 alone,
in float64, without looking at (or calling) the library's implementation; the TensorFlow parity
tests check against the same reference.
"""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import np_reference as ref  # noqa: E402
from neural_distill import ConfigError  # noqa: E402
from neural_distill.criterion import PyTorchKnowledgeDistillationLoss  # noqa: E402

RTOL = 1e-5
ATOL = 1e-7


# ---------------------------------------------------------------------------- inputs
def logits_pair(shape=(6, 5), seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    student = (rng.normal(size=shape) * scale).astype(np.float32)
    teacher = (rng.normal(size=shape) * scale).astype(np.float32)
    return student, teacher


def labels_for(student_type, shape, seed=1):
    rng = np.random.default_rng(seed)
    if student_type == "CE":
        return rng.integers(0, shape[-1], size=shape[:-1]).astype(np.int64)
    return rng.normal(size=shape).astype(np.float32)  # regression targets, same shape


def t(a):
    return torch.from_numpy(np.asarray(a))


def value(loss):
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0, "loss must be a scalar tensor"
    return float(loss.detach())


# ---------------------------------------------------------------------------- golden tests
COMBOS = list(itertools.product(["CE", "MSE"], ["CE", "KL", "MSE"], [1.0, 2.0, 4.0]))


@pytest.mark.parametrize("student_type,kd_type,temperature", COMBOS)
@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.2, 1.5)])
def test_combined_loss_matches_reference(student_type, kd_type, temperature, weights):
    student, teacher = logits_pair(seed=int(temperature))
    labels = labels_for(student_type, student.shape)
    criterion = PyTorchKnowledgeDistillationLoss(
        temperature=temperature, loss_types=[student_type, kd_type], loss_weights=list(weights))

    got = criterion(t(student), t(teacher), t(labels))

    expected = ref.total(student_type, kd_type, weights, student, teacher, labels, temperature)
    np.testing.assert_allclose(value(got), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kd_type", ["CE", "KL", "MSE"])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_distillation_term_matches_reference(kd_type, temperature):
    student, teacher = logits_pair(shape=(7, 4), seed=3)
    criterion = PyTorchKnowledgeDistillationLoss(temperature=temperature,
                                                 loss_types=["CE", kd_type])
    got = criterion.distillation_loss(t(student), t(teacher))
    np.testing.assert_allclose(value(got), ref.kd(kd_type, student, teacher, temperature),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("student_type", ["CE", "MSE"])
def test_student_term_matches_reference(student_type):
    student, _ = logits_pair(shape=(9, 4), seed=4)
    labels = labels_for(student_type, student.shape, seed=5)
    criterion = PyTorchKnowledgeDistillationLoss(loss_types=[student_type, "KL"])
    got = criterion.student_loss(t(student), t(labels))
    np.testing.assert_allclose(value(got), ref.student_term(student_type, student, labels),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kd_type", ["CE", "KL"])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kd_gradient_matches_analytic(kd_type, temperature):
    # d/dz_s of T^2 * mean_batch sum_c p_t (log p_t - log p_s) is T * (p_s - p_t) / N, and
    # the CE form has the same gradient: the T^2 factor keeps it O(1) as T grows.
    student, teacher = logits_pair(shape=(5, 6), seed=6)
    z_s = t(student).clone().requires_grad_(True)
    criterion = PyTorchKnowledgeDistillationLoss(temperature=temperature,
                                                 loss_types=["CE", kd_type])
    criterion.distillation_loss(z_s, t(teacher)).backward()
    expected = temperature * (ref.tempered(student, temperature, True)
                              - ref.tempered(teacher, temperature, True)) / student.shape[0]
    np.testing.assert_allclose(z_s.grad.numpy(), expected, rtol=1e-4, atol=1e-7)


def test_kl_is_zero_for_identical_outputs_and_positive_otherwise():
    student, teacher = logits_pair(seed=8)
    criterion = PyTorchKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", "KL"])
    assert abs(value(criterion.distillation_loss(t(teacher), t(teacher)))) < 1e-6
    assert value(criterion.distillation_loss(t(student), t(teacher))) > 1e-3


# ---------------------------------------------------------------------------- probabilities
@pytest.mark.parametrize("student_type,kd_type", [("CE", "KL"), ("CE", "CE"), ("CE", "MSE"),
                                                  ("MSE", "KL")])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_probability_outputs_match_reference(student_type, kd_type, temperature):
    z_s, z_t = logits_pair(shape=(6, 5), seed=9, scale=1.5)
    p_s = ref.softmax(z_s.astype(np.float64)).astype(np.float32)
    p_t = ref.softmax(z_t.astype(np.float64)).astype(np.float32)
    labels = labels_for(student_type, p_s.shape, seed=10)
    weights = (0.4, 0.6)
    criterion = PyTorchKnowledgeDistillationLoss(
        temperature=temperature, loss_types=[student_type, kd_type],
        loss_weights=list(weights), from_logits=False)

    got = criterion(t(p_s), t(p_t), t(labels))

    expected = ref.total(student_type, kd_type, weights, p_s, p_t, labels, temperature,
                        from_logits=False)
    np.testing.assert_allclose(value(got), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("temperature", [2.0, 4.0])
def test_probability_temperature_is_a_power_never_a_division(temperature):
    z_s, z_t = logits_pair(shape=(6, 5), seed=11, scale=1.5)
    p_s, p_t = ref.softmax(z_s.astype(np.float64)), ref.softmax(z_t.astype(np.float64))
    criterion = PyTorchKnowledgeDistillationLoss(temperature=temperature,
                                                 loss_types=["CE", "KL"], from_logits=False)
    got = value(criterion.distillation_loss(t(p_s.astype(np.float32)),
                                            t(p_t.astype(np.float32))))

    # p^(1/T) renormalised is softmax(log p / T): the same as feeding log p as logits.
    as_logits = PyTorchKnowledgeDistillationLoss(temperature=temperature,
                                                 loss_types=["CE", "KL"], from_logits=True)
    via_logits = value(as_logits.distillation_loss(t(np.log(p_s).astype(np.float32)),
                                                   t(np.log(p_t).astype(np.float32))))
    np.testing.assert_allclose(got, via_logits, rtol=1e-5)

    # The wrong recipe, softmax(p / T), gives a clearly different number.
    wrong = ref.kd("KL", p_s, p_t, temperature, from_logits=True)
    assert abs(got - wrong) > 10 * RTOL * abs(got)


def test_probabilities_with_hard_zeros_stay_finite():
    p_s = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]], dtype=np.float32)
    p_t = np.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]], dtype=np.float32)
    z = t(p_s).clone().requires_grad_(True)
    criterion = PyTorchKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", "KL"],
                                                 from_logits=False)
    loss = criterion(z, t(p_t), torch.tensor([1, 2]))
    loss.backward()
    assert np.isfinite(value(loss))
    assert torch.isfinite(z.grad).all()


# ---------------------------------------------------------------------------- labels
def test_ignored_labels_are_left_out_of_the_student_term():
    student, teacher = logits_pair(shape=(8, 4), seed=12)
    labels = labels_for("CE", student.shape, seed=13)
    labels[[1, 4, 5]] = -100
    criterion = PyTorchKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", "KL"],
                                                 loss_weights=[0.3, 0.7])
    np.testing.assert_allclose(value(criterion.student_loss(t(student), t(labels))),
                               ref.student_term("CE", student, labels), rtol=RTOL)
    got = criterion(t(student), t(teacher), t(labels))
    np.testing.assert_allclose(value(got), ref.total("CE", "KL", (0.3, 0.7), student, teacher,
                                                    labels, 2.0), rtol=RTOL, atol=ATOL)


def test_all_ignored_labels_give_a_zero_student_term_not_nan():
    student, teacher = logits_pair(shape=(5, 4), seed=14)
    labels = np.full((5,), -100, dtype=np.int64)
    z = t(student).clone().requires_grad_(True)
    criterion = PyTorchKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", "KL"],
                                                 loss_weights=[0.3, 0.7])
    student_term = criterion.student_loss(z, t(labels))
    assert value(student_term) == 0.0
    total = criterion(z, t(teacher), t(labels))
    np.testing.assert_allclose(value(total), 0.7 * ref.kd("KL", student, teacher, 2.0),
                               rtol=RTOL, atol=ATOL)
    total.backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("kd_type", ["CE", "KL", "MSE"])
def test_no_labels_gives_the_weighted_distillation_term_alone(kd_type):
    student, teacher = logits_pair(shape=(6, 3), seed=15)
    criterion = PyTorchKnowledgeDistillationLoss(temperature=4.0, loss_types=["CE", kd_type],
                                                 loss_weights=[0.25, 0.6])
    assert criterion.student_loss(t(student), None) is None
    got = criterion(t(student), t(teacher), None)
    np.testing.assert_allclose(value(got), 0.6 * ref.kd(kd_type, student, teacher, 4.0),
                               rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------- sequences
@pytest.mark.parametrize("kd_type", ["CE", "KL", "MSE"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_sequence_logits_are_batch_times_seq_samples(kd_type, temperature):
    student, teacher = logits_pair(shape=(3, 4, 5), seed=16)
    labels = labels_for("CE", student.shape, seed=17)
    labels[0, 1] = -100
    labels[2, 3] = -100
    criterion = PyTorchKnowledgeDistillationLoss(temperature=temperature,
                                                 loss_types=["CE", kd_type],
                                                 loss_weights=[0.5, 0.5])
    got = criterion(t(student), t(teacher), t(labels))
    expected = ref.total("CE", kd_type, (0.5, 0.5), student.reshape(12, 5),
                        teacher.reshape(12, 5), labels.reshape(12), temperature)
    np.testing.assert_allclose(value(got), expected, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------- arguments
def test_defaults_follow_the_yaml_defaults():
    criterion = PyTorchKnowledgeDistillationLoss()
    assert criterion.temperature == 1.0
    assert criterion.loss_types == ["CE", "CE"]
    assert criterion.loss_weights == [0.5, 0.5]
    assert criterion.from_logits is True


@pytest.mark.parametrize("kwargs,fragments", [
    ({"temperature": -1}, ["temperature", "expected a number > 0, got -1"]),
    ({"temperature": 0}, ["temperature", "expected a number > 0, got 0"]),
    ({"loss_types": ["CE", "XE"]}, ["loss_types", "['CE', 'XE']", "KL"]),
    ({"loss_weights": [0.5]}, ["loss_weights", "two numbers", "[0.5]"]),
    ({"loss_weights": [0.5, -1]}, ["loss_weights", "[0.5, -1]"]),
])
def test_bad_arguments_raise_config_error(kwargs, fragments):
    with pytest.raises(ConfigError) as info:
        PyTorchKnowledgeDistillationLoss(**kwargs)
    message = str(info.value)
    assert "PyTorchKnowledgeDistillationLoss" in message
    for fragment in fragments:
        assert fragment in message
