"""The catalog's newer losses in PyTorch against the NumPy reference of the papers' formulas
(tests/np_reference_catalog.py): reverse KL, generalized JSD, logit standardization, DKD,
DIST, and the AT / SP / RKD feature relations. Each: the forward value and the gradient with
respect to the student (central differences of the float64 reference)."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import np_reference as ref  # noqa: E402
import np_reference_catalog as cat  # noqa: E402
from helpers import base_config, make_blobs, tensor_loader, tiny_mlp  # noqa: E402
from neural_distill import ConfigError, Distillation  # noqa: E402
from neural_distill.adapters.torch import losses  # noqa: E402
from neural_distill.criterion import (  # noqa: E402
    PyTorchDecoupledKnowledgeDistillationLoss, PyTorchDISTLoss,
    PyTorchIntermediateLayersKnowledgeDistillationLoss, PyTorchKnowledgeDistillationLoss)

RTOL, ATOL = 1e-5, 1e-6
GRAD_RTOL, GRAD_ATOL = 1e-3, 1e-5


def pair(shape=(6, 5), seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    return ((rng.normal(size=shape) * scale).astype(np.float32),
            (rng.normal(size=shape) * scale).astype(np.float32))


def check(loss_of_student, reference_of_student, student):
    """Value and gradient of a torch loss of the student against a float64 reference."""
    s = torch.tensor(student, requires_grad=True)
    loss = loss_of_student(s)
    assert loss.dim() == 0
    np.testing.assert_allclose(float(loss.detach()), reference_of_student(student),
                               rtol=RTOL, atol=ATOL)
    loss.backward()
    assert torch.isfinite(s.grad).all()
    np.testing.assert_allclose(s.grad.numpy(), cat.numerical_gradient(reference_of_student,
                                                                     student),
                               rtol=GRAD_RTOL, atol=GRAD_ATOL)


# ---------------------------------------------------------------------------- divergences
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_reverse_kl(temperature):
    s, t = pair()
    kd = PyTorchKnowledgeDistillationLoss(temperature=temperature, loss_types=["CE", "RKL"])
    check(lambda x: kd.distillation_loss(x, torch.tensor(t)),
          lambda x: cat.reverse_kl(x, t, temperature), s)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_generalized_jsd(beta):
    s, t = pair(seed=3)
    kd = PyTorchKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", "JSD"], beta=beta)
    check(lambda x: kd.distillation_loss(x, torch.tensor(t)),
          lambda x: cat.generalized_jsd(x, t, 2.0, beta), s)


def test_jsd_ends_are_the_two_kls_and_the_middle_is_symmetric():
    s, t = pair(seed=4)
    s_, t_ = torch.tensor(s), torch.tensor(t)
    assert float(losses.generalized_jsd(s_, t_, beta=0.0)) == pytest.approx(
        float(losses.kl_divergence(s_, t_)))
    assert float(losses.generalized_jsd(s_, t_, beta=1.0)) == pytest.approx(
        float(losses.reverse_kl_divergence(s_, t_)))
    assert float(losses.generalized_jsd(s_, t_, beta=0.5)) == pytest.approx(
        float(losses.generalized_jsd(t_, s_, beta=0.5)), rel=1e-5)
    # Rows of [rows, classes]: the mean over rows, whatever the rows come from (per-token use).
    batch = losses.reverse_kl_divergence(s_.reshape(2, 3, 5), t_.reshape(2, 3, 5))
    assert float(batch) == pytest.approx(float(losses.reverse_kl_divergence(s_, t_)))


# ---------------------------------------------------------------------------- standardization
@pytest.mark.parametrize("kd_type", ["KL", "CE", "JSD"])
def test_kd_with_logit_standardization(kd_type):
    s, t = pair(seed=5, scale=4.0)
    kd = PyTorchKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", kd_type],
                                          logit_standardization=True, beta=0.5)

    def reference(x):
        z_s, z_t = cat.standardize(x), cat.standardize(t)
        if kd_type == "JSD":
            return cat.generalized_jsd(z_s, z_t, 2.0, 0.5)
        return ref.kd(kd_type, z_s, z_t, 2.0)
    check(lambda x: kd.distillation_loss(x, torch.tensor(t)), reference, s)


def test_standardization_ignores_the_logits_scale_and_shift():
    s, t = pair(seed=6)
    kd = PyTorchKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", "KL"],
                                          logit_standardization=True)
    base = float(kd.distillation_loss(torch.tensor(s), torch.tensor(t)))
    moved = float(kd.distillation_loss(torch.tensor(3 * s + 1), torch.tensor(0.5 * t - 2)))
    assert moved == pytest.approx(base, rel=1e-4)


# ---------------------------------------------------------------------------- DKD
@pytest.mark.parametrize("alpha,beta,temperature,standardize", [
    (1.0, 8.0, 4.0, False), (0.5, 2.0, 1.0, False), (1.0, 8.0, 2.0, True)])
def test_dkd(alpha, beta, temperature, standardize):
    s, t = pair(shape=(7, 6), seed=7)
    y = np.random.default_rng(8).integers(0, 6, size=7)
    dkd = PyTorchDecoupledKnowledgeDistillationLoss(
        alpha=alpha, beta=beta, temperature=temperature, logit_standardization=standardize)

    def reference(x):
        if standardize:
            return cat.dkd(cat.standardize(x), cat.standardize(t), y, alpha, beta, temperature)
        return cat.dkd(x, t, y, alpha, beta, temperature)
    check(lambda x: dkd.distillation_loss(x, torch.tensor(t), torch.tensor(y)), reference, s)


def test_dkd_combines_with_the_students_cross_entropy():
    s, t = pair(shape=(5, 4), seed=9)
    y = np.array([0, 1, 2, 3, 1])
    dkd = PyTorchDecoupledKnowledgeDistillationLoss(loss_weights=[0.3, 2.0])
    got = float(dkd(torch.tensor(s), torch.tensor(t), torch.tensor(y)))
    expected = (0.3 * ref.student_term("CE", s, y) + 2.0 * cat.dkd(s, t, y, 1.0, 8.0, 4.0))
    assert got == pytest.approx(expected, rel=1e-5)


def test_dkd_without_labels_uses_the_teachers_top1_and_warns_once():
    s, t = pair(seed=10)
    dkd = PyTorchDecoupledKnowledgeDistillationLoss()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = float(dkd.distillation_loss(torch.tensor(s), torch.tensor(t)))
        dkd.distillation_loss(torch.tensor(s), torch.tensor(t))
    said = [w for w in caught if "top-1" in str(w.message)]
    assert len(said) == 1
    assert first == pytest.approx(cat.dkd(s, t, t.argmax(-1), 1.0, 8.0, 4.0), rel=1e-5)


# ---------------------------------------------------------------------------- DIST
@pytest.mark.parametrize("beta,gamma,temperature", [(1.0, 1.0, 1.0), (2.0, 0.5, 4.0)])
def test_dist(beta, gamma, temperature):
    s, t = pair(shape=(8, 5), seed=11)
    dist = PyTorchDISTLoss(beta=beta, gamma=gamma, temperature=temperature)
    check(lambda x: dist.distillation_loss(x, torch.tensor(t)),
          lambda x: cat.dist(x, t, beta, gamma, temperature), s)


# ---------------------------------------------------------------------------- features
def features(shape_s, shape_t, seed=12):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape_s).astype(np.float32),
            rng.normal(size=shape_t).astype(np.float32))


def test_attention_transfer_with_different_channel_counts():
    s, t = features((4, 3, 5, 5), (4, 6, 5, 5))
    check(lambda x: losses.feature_attention(x, torch.tensor(t)),
          lambda x: cat.attention(x, t, channel_axis=1), s)


def test_attention_transfer_names_a_spatial_mismatch():
    s, t = features((2, 3, 4, 4), (2, 3, 5, 5))
    with pytest.raises(Exception, match="spatial sizes must agree"):
        losses.feature_attention(torch.tensor(s), torch.tensor(t))


def test_similarity_preserving_with_different_feature_sizes():
    s, t = features((6, 3, 4), (6, 10))
    check(lambda x: losses.feature_similarity(x, torch.tensor(t)),
          lambda x: cat.similarity(x, t), s)


@pytest.mark.parametrize("weights", [(25.0, 50.0), (1.0, 0.0)])
def test_relational_kd(weights):
    s, t = features((5, 4), (5, 7), seed=13)
    check(lambda x: losses.feature_relational(x, torch.tensor(t), *weights),
          lambda x: cat.relational(x, t, *weights), s)


class _TwoConv(torch.nn.Module):
    def __init__(self, channels, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(1, channels, 3, padding=1)
        self.head = torch.nn.Linear(channels * 16, 3)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))


@pytest.mark.parametrize("loss_type", ["AT", "SP", "RKD"])
def test_relation_types_on_the_intermediate_criterion_need_no_matcher(loss_type):
    student, teacher = _TwoConv(2, 0), _TwoConv(5, 1)
    criterion = PyTorchIntermediateLayersKnowledgeDistillationLoss(
        layer_mappings=[["conv", "conv"]], loss_types=[loss_type], loss_weights=[2.0],
        rkd_weights=[3.0, 4.0])
    criterion.attach(student, [teacher])
    x = torch.randn(4, 1, 4, 4)
    with torch.no_grad():
        student(x), teacher(x)
    criterion.prepare()
    assert list(criterion.parameters()) == []  # relations compare shapes that may differ
    student(x), teacher(x)
    s_feat = criterion._student_capture.get("conv").detach().numpy()
    t_feat = criterion._teacher_captures[0].get("conv").detach().numpy()
    got = float(criterion.distillation_loss().detach())
    reference = {"AT": lambda: cat.attention(s_feat, t_feat, 1),
                 "SP": lambda: cat.similarity(s_feat, t_feat),
                 "RKD": lambda: cat.relational(s_feat, t_feat, 3.0, 4.0)}[loss_type]()
    assert got == pytest.approx(2.0 * reference, rel=1e-4)
    criterion.detach()


# ---------------------------------------------------------------------------- config
@pytest.mark.parametrize("build,message", [
    (lambda: PyTorchKnowledgeDistillationLoss(loss_types=["CE", "JSD"], beta=1.5), "beta"),
    (lambda: PyTorchKnowledgeDistillationLoss(from_logits=False, logit_standardization=True),
     "logit_standardization"),
    (lambda: PyTorchDecoupledKnowledgeDistillationLoss(alpha=-1), "alpha"),
    (lambda: PyTorchDISTLoss(temperature=0), "temperature"),
    (lambda: PyTorchIntermediateLayersKnowledgeDistillationLoss(
        layer_mappings=[["a", "b"]], rkd_weights=[1.0]), "rkd_weights"),
])
def test_bad_arguments_are_named(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


# ---------------------------------------------------------------------------- labels reach DKD
def _dkd_distiller(workspace, x, y):
    conf = base_config(workspace, distillation={"train": {"criterion": {
        "DecoupledKnowledgeDistillationLoss": {"alpha": 1.0, "beta": 2.0, "temperature": 2.0,
                                               "loss_weights": [1.0, 0.5]}}, "epoch": 1}})
    distiller = Distillation(conf)
    distiller.student_model = tiny_mlp(seed=0)
    distiller.teacher_model = tiny_mlp(hidden=32, seed=1)
    distiller.train_dataloader = tensor_loader(x, y, batch_size=32)
    return distiller


def test_the_hook_passes_labels_to_dkd(workspace):
    x, y = make_blobs(n=32, seed=0)
    distiller = _dkd_distiller(workspace, x, y)
    xs, ys = torch.tensor(x), torch.tensor(y)
    with torch.no_grad():
        s = distiller.student_model(xs).numpy()
        t = distiller.teacher_model(xs).numpy()
    student_loss = torch.tensor(0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "top-1" fallback when labels are given
        loss = distiller.on_after_compute_loss(xs, torch.tensor(s), student_loss, labels=ys)
    assert float(loss) == pytest.approx(0.25 + 0.5 * cat.dkd(s, t, y, 1.0, 2.0, 2.0), rel=1e-5)


def test_the_built_in_loop_passes_labels(workspace):
    x, y = make_blobs(n=64, seed=1)
    distiller = _dkd_distiller(workspace, x, y)
    seen = []
    original = distiller.on_after_compute_loss

    def spy(*args, **kwargs):
        seen.append(args[4] if len(args) > 4 else kwargs.get("labels"))
        return original(*args, **kwargs)

    distiller.on_after_compute_loss = spy
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*top-1.*")
        distiller.fit()
    assert seen and all(labels is not None for labels in seen)
    assert sorted(torch.cat(seen).tolist()) == sorted(y.tolist())
