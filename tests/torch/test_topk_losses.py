"""topk_divergence against an independent float64 NumPy reference of the bucket divergences.

The reference collapses the student's full softmax onto the k kept classes and one tail bucket
by summing probabilities directly (no log-sum-exp masking), then applies each divergence's
definition (DESIGN.md section 2 conventions: T^2, mean over rows, JSD's beta ends).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import np_reference as ref  # noqa: E402
from neural_distill.adapters.torch import losses  # noqa: E402
from neural_distill.adapters.torch.topk_losses import topk_divergence  # noqa: E402
from neural_distill.errors import ConfigError, ModelError  # noqa: E402
from neural_distill.teacher_cache.token_codec import TokenTopKCodec  # noqa: E402

torch.set_num_threads(1)


def reference_buckets(student, indices, temperature):
    q = ref.softmax(np.asarray(student, np.float64) / temperature)
    kept = np.take_along_axis(q, indices, axis=1)
    is_kept = np.zeros(q.shape, bool)
    np.put_along_axis(is_kept, indices, True, axis=1)
    tail = np.where(is_kept, 0.0, q).sum(axis=1)  # the others summed, no cancellation
    return np.concatenate([kept, tail[:, None]], axis=1)


def reference_divergence(kind, student, indices, log_probs, log_tail, temperature, beta=0.5):
    q = reference_buckets(student, indices, temperature)
    p = np.exp(np.concatenate([log_probs, log_tail[:, None]], axis=1).astype(np.float64))

    def kl(a, b):
        return np.sum(a * np.log(a / b), axis=1)

    if kind == "KL" or (kind == "JSD" and beta == 0.0):
        per_row = kl(p, q)
    elif kind == "RKL" or (kind == "JSD" and beta == 1.0):
        per_row = kl(q, p)
    elif kind == "CE":
        per_row = -np.sum(p * np.log(q), axis=1)
    else:
        m = beta * p + (1 - beta) * q
        per_row = beta * kl(p, m) + (1 - beta) * kl(q, m)
    return temperature ** 2 * per_row.mean()


def teacher_record(rng, rows, vocab, k, temperature, scale=2.0):
    """A teacher's top k (exact, float64 -> float32) from random logits."""
    z = rng.normal(size=(rows, vocab)) * scale / temperature
    log_p = ref.log_softmax(z)
    indices = np.argsort(-log_p, axis=1)[:, :k]
    kept = np.take_along_axis(log_p, indices, axis=1)
    log_tail = np.log(1.0 - np.exp(kept).sum(axis=1))
    return indices, kept.astype(np.float32), log_tail.astype(np.float32)


def as_torch(*arrays):
    return [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]


@pytest.mark.parametrize("kind,beta", [("KL", 0.5), ("RKL", 0.5), ("CE", 0.5), ("JSD", 0.5),
                                       ("JSD", 0.1), ("JSD", 0.0), ("JSD", 1.0)])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_each_kind_matches_the_numpy_reference(kind, beta, temperature):
    rng = np.random.default_rng(7)
    student = (rng.normal(size=(6, 20)) * 2).astype(np.float32)
    indices, log_probs, log_tail = teacher_record(rng, 6, 20, 5, temperature)
    got = topk_divergence(*as_torch(student, indices, log_probs, log_tail), kind,
                          temperature=temperature, beta=beta)
    want = reference_divergence(kind, student, indices, log_probs, log_tail, temperature, beta)
    assert got.dtype == torch.float32 and got.dim() == 0
    np.testing.assert_allclose(got.item(), want, rtol=1e-5, atol=1e-6)
    assert want > 1e-3  # a real distance, not two zeros agreeing


@pytest.mark.parametrize("kind", ["KL", "RKL", "JSD", "CE"])
def test_a_student_sure_of_the_kept_classes_keeps_a_finite_tail(kind):
    """The student's tail mass ~e^-150: 1 - sum q would be 0 in float32, the bucket is not."""
    rng = np.random.default_rng(12)
    indices, log_probs, log_tail = teacher_record(rng, 3, 40, 4, 1.0)
    student = rng.normal(size=(3, 40)).astype(np.float32)
    np.put_along_axis(student, indices, 150.0, axis=1)
    got = topk_divergence(*as_torch(student, indices, log_probs, log_tail), kind)
    want = reference_divergence(kind, student, indices, log_probs, log_tail, 1.0)
    assert np.isfinite(got.item()) and want > 1e-3
    if kind in ("KL", "CE"):  # the teacher's tail costs it ~150 nats, so the tail is really used
        assert want > 50.0
    np.testing.assert_allclose(got.item(), want, rtol=1e-5)


def test_jsd_ends_are_kl_and_reverse_kl():
    rng = np.random.default_rng(8)
    student = torch.from_numpy(rng.normal(size=(4, 12)).astype(np.float32))
    record = as_torch(*teacher_record(rng, 4, 12, 3, 1.0))
    for beta, kind in ((0.0, "KL"), (1.0, "RKL")):
        assert torch.equal(topk_divergence(student, *record, "JSD", beta=beta),
                           topk_divergence(student, *record, kind))


def test_bucket_kl_equals_dense_kl_when_the_tail_is_empty():
    rng = np.random.default_rng(9)
    rows, vocab, k, temperature = 5, 30, 6, 2.0
    teacher = rng.normal(size=(rows, vocab)).astype(np.float32)
    for row in range(rows):  # k classes hold all but ~e^-30 of the mass (at T=2)
        teacher[row, rng.choice(vocab, k, replace=False)] += 80.0 + rng.normal(size=k) * 2
    student = (rng.normal(size=(rows, vocab)) * 2).astype(np.float32)
    codec = TokenTopKCodec(k, temperature, vocab)
    indices, log_probs, log_tail = codec.decode(codec.encode(teacher))
    assert log_tail.max() < -27  # the codec clamps the tail at 1e-12
    s, t = torch.from_numpy(student), torch.from_numpy(teacher)
    for kind, dense in (("KL", losses.kl_divergence), ("CE", losses.soft_cross_entropy)):
        bucket = topk_divergence(s, *as_torch(indices, log_probs, log_tail), kind,
                                 temperature=temperature)
        # The codec's quantization (bound s per value) is the only difference.
        np.testing.assert_allclose(bucket.item(), dense(s, t, temperature).item(),
                                   rtol=2e-3, atol=2e-3)


def test_gradients_reach_the_student_only_and_match_autograd_gradcheck():
    rng = np.random.default_rng(10)
    student = torch.tensor(rng.normal(size=(3, 7)), dtype=torch.float64, requires_grad=True)
    indices, log_probs, log_tail = as_torch(*teacher_record(rng, 3, 7, 3, 1.5))
    log_probs = log_probs.double().requires_grad_(True)
    for kind in ("KL", "RKL", "CE", "JSD"):
        assert torch.autograd.gradcheck(
            lambda x: topk_divergence(x, indices, log_probs, log_tail.double(), kind,
                                      temperature=1.5, beta=0.3),
            (student,), eps=1e-6, atol=1e-7)
    loss = topk_divergence(student, indices, log_probs, log_tail.double(), "KL")
    loss.backward()
    assert log_probs.grad is None and student.grad.abs().sum() > 0


def test_low_precision_students_are_computed_in_float32():
    rng = np.random.default_rng(11)
    student = torch.from_numpy(rng.normal(size=(4, 16)).astype(np.float32))
    record = as_torch(*teacher_record(rng, 4, 16, 4, 1.0))
    full = topk_divergence(student, *record, "KL")
    half = topk_divergence(student.to(torch.bfloat16), *record, "KL")
    assert half.dtype == torch.float32
    np.testing.assert_allclose(half.item(), full.item(), rtol=5e-2)


def test_no_rows_gives_a_zero_with_a_grad_path():
    student = torch.zeros((0, 10), requires_grad=True)
    loss = topk_divergence(student, torch.zeros((0, 3), dtype=torch.int64), torch.zeros((0, 3)),
                           torch.zeros(0), "KL", temperature=2.0)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert student.grad.shape == (0, 10)


def test_unknown_kind_and_mismatched_shapes_are_clear_errors():
    student = torch.zeros((2, 10))
    record = (torch.zeros((2, 3), dtype=torch.int64), torch.zeros((2, 3)), torch.zeros(2))
    with pytest.raises(ConfigError, match="MSE"):
        topk_divergence(student, *record, "MSE")
    with pytest.raises(ModelError, match=r"\(3, 10\)"):
        topk_divergence(torch.zeros((3, 10)), *record, "KL")


@pytest.mark.parametrize("k,tolerance", [(8, 0.05), (32, 0.005)])
def test_a_decoded_record_teaches_what_the_dense_kl_teaches_when_the_tail_is_small(k, tolerance):
    """Through the whole path a cache takes (top k picked on the device, encoded, decoded),
    the student's gradient from the bucket KL is the dense KL's, to within the tail's mass."""
    from neural_distill.adapters.torch.tokens import top_k_log_probs

    torch.manual_seed(0)
    vocab, rows = 256, 32
    teacher = torch.randn(rows, vocab)
    teacher[:, :14] += 12 + 3 * torch.randn(rows, 14)  # a task's 14 tokens carry the mass
    student = (0.5 * torch.randn(rows, vocab)).requires_grad_()
    codec = TokenTopKCodec(k, 1.0, vocab)
    indices, log_probs, log_tail = codec.decode(
        codec.encode_selected(*top_k_log_probs(teacher, k, 1.0)))
    topk_divergence(student, torch.as_tensor(indices), torch.as_tensor(log_probs),
                    torch.as_tensor(log_tail), "KL").backward()
    bucket, student.grad = student.grad.clone(), None
    losses.kl_divergence(student, teacher).backward()
    dense = student.grad
    assert float((bucket - dense).norm() / dense.norm()) < tolerance
