"""One loss pipeline (issue 20): the Trainer algorithm makes its loss in ``DistillationStep``,
the weighting of every path is a ``LossBalancer``, and temperatures follow the catalog's rule."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import make_blobs, tensor_loader, tiny_mlp  # noqa: E402
from neural_distill import ConfigError  # noqa: E402
from neural_distill.algorithms.distillation import Distillation, KLDivergence  # noqa: E402
from neural_distill.config.python_api import KnowledgeDistillationLossConfig  # noqa: E402
from neural_distill.criterion.balancer import LossBalancer  # noqa: E402
from neural_distill.run.step import DistillationStep  # noqa: E402
from neural_distill.trainer import Trainer  # noqa: E402


def _np_balance(student, kd, w_student, w_kd, use_student=True):
    """Independent reference: the weighted sum of the two losses, either may be missing."""
    parts = []
    if student is not None and use_student:
        parts.append(w_student * np.float64(student))
    if kd is not None:
        parts.append(w_kd * np.float64(kd))
    return sum(parts) if parts else None


@pytest.mark.parametrize("student,kd", [(1.5, 0.25), (None, 0.25), (1.5, None), (None, None)])
@pytest.mark.parametrize("weights,use_student", [((0.1, 0.9), True), ((1.0, 1.0), True),
                                                 ((2.0, 0.0), True), ((0.3, 0.7), False)])
def test_the_balancer_weighs_like_the_numpy_reference(student, kd, weights, use_student):
    balancer = LossBalancer(*weights, use_student_loss=use_student)
    as_tensor = (lambda v: None if v is None else torch.tensor(v, dtype=torch.float64))
    got = balancer(as_tensor(student), as_tensor(kd))
    expected = _np_balance(student, kd, *weights, use_student)
    if expected is None:
        assert got is None
    else:
        np.testing.assert_allclose(float(got), expected, rtol=1e-12)
    assert balancer.needs_distillation == (weights[1] != 0)


@pytest.mark.parametrize("weight", [-0.5, float("nan"), True, "1"])
def test_a_bad_weight_is_an_error_naming_its_owner(weight):
    with pytest.raises(ConfigError, match=r"Mine: expected the distillation loss weight to be "
                                          r"a number >= 0"):
        LossBalancer(1.0, weight, owner="Mine")


def test_the_criterion_weighs_through_its_balancer():
    from neural_distill.criterion import PyTorchKnowledgeDistillationLoss

    criterion = PyTorchKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", "KL"],
                                                 loss_weights=[0.25, 0.75])
    balancer = criterion.loss_balancer
    assert (balancer.student_weight, balancer.distillation_weight) == (0.25, 0.75)
    s, k = torch.tensor(2.0), torch.tensor(4.0)
    assert float(criterion.combine(s, k)) == pytest.approx(0.25 * 2 + 0.75 * 4)
    assert float(criterion.combine(None, k)) == pytest.approx(0.75 * 4)


def test_the_algorithm_makes_its_loss_in_the_distillation_step(monkeypatch):
    """Every AFTER_COMPUTE_LOSS of the algorithm is one DistillationStep call, and the loss it
    leaves in the state is the step's result."""
    calls, results = [], []
    original = DistillationStep.__call__

    def spy(self, *args, **kwargs):
        calls.append(self)
        results.append(original(self, *args, **kwargs))
        return results[-1]

    monkeypatch.setattr(DistillationStep, "__call__", spy)
    seen = []

    class Last:  # runs after Distillation: sees the loss it made
        def match(self, event, state):
            return event.value == "on_after_compute_loss"

        def apply(self, event, state, logger):
            seen.append(state.loss)

    x, y = make_blobs(n=16)
    student = tiny_mlp(seed=0)
    algorithm = Distillation(tiny_mlp(seed=1), KLDivergence(2.0))
    Trainer(model=student, train_dataloader=tensor_loader(x, y, batch_size=8), max_duration="1ep",
            algorithms=[algorithm, Last()], progress_bar=False,
            optimizers=torch.optim.SGD(student.parameters(), lr=0.1)).fit()
    assert len(calls) == 2 and all(step is algorithm.step for step in calls)
    assert all(a is b for a, b in zip(seen, results))
    assert algorithm.step.balancer is algorithm.balancer
    assert (algorithm.org_loss_weight, algorithm.kd_loss_weight) == (0.1, 0.9)


@pytest.mark.parametrize("value", [0.001, 1e9, 0.0, -1.0, float("inf"), True, "4"])
def test_kl_divergence_takes_the_catalogs_temperatures_with_the_same_message(value):
    with pytest.raises(ConfigError) as catalog:
        KnowledgeDistillationLossConfig(temperature=value)
    with pytest.raises(ConfigError) as ours:
        KLDivergence(value)
    expected = str(catalog.value).split("temperature: ", 1)[1]
    assert str(ours.value) == f"KLDivergence: temperature: {expected}"


@pytest.mark.parametrize("value", [0.01, 1000, 4])
def test_kl_divergence_accepts_the_catalogs_bounds(value):
    assert KLDivergence(value).temperature == float(value)
