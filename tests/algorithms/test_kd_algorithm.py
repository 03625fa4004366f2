"""The Distillation algorithm: its loss math, its window, teacher sampling, the teacher untouched,
and clear errors for bad input."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import np_reference as ref  # noqa: E402
from helpers import make_blobs, make_teacher_bn, tensor_loader, tiny_mlp  # noqa: E402
from neural_distill import ConfigError, ModelError  # noqa: E402
from neural_distill.algorithms.distillation import Distillation, KLDivergence  # noqa: E402
from neural_distill.events import Event  # noqa: E402
from neural_distill.trainer import Trainer  # noqa: E402


def _loader(n=32, batch_size=8, seed=0):
    x, y = make_blobs(n=n, seed=seed)
    return tensor_loader(x, y, batch_size=batch_size)


def _trainer(student, algorithms=(), duration="1ep", loader=None, **kwargs):
    kwargs.setdefault("optimizers", torch.optim.SGD(student.parameters(), lr=0.1))
    return Trainer(model=student, train_dataloader=loader or _loader(), max_duration=duration,
                   algorithms=algorithms, progress_bar=False, **kwargs)


def _count_calls(model):
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    return calls


class Recorder:
    """A user algorithm: the loss it sees at AFTER_COMPUTE_LOSS, per step."""

    def __init__(self):
        self.losses = {}

    def match(self, event, state):
        return event == Event.AFTER_COMPUTE_LOSS

    def apply(self, event, state, logger):
        self.losses[state.step] = state.loss.item()


@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 5)])
def test_kl_divergence_matches_the_numpy_reference(temperature, shape):
    rng = np.random.default_rng(0)
    s, t = rng.normal(0, 3, size=shape), rng.normal(0, 3, size=shape)
    got = KLDivergence(temperature)(torch.tensor(s), torch.tensor(t))
    assert got.dim() == 0
    np.testing.assert_allclose(got.item(), ref.kd("KL", s, t, temperature), rtol=1e-5)


def test_one_step_is_the_weighted_sum_of_both_losses():
    x, y = make_blobs(n=8)
    teacher, student = tiny_mlp(seed=1), tiny_mlp(seed=0)
    hand = tiny_mlp(seed=0)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    out = hand(xt)
    kd = F.kl_div(F.log_softmax(out / 2, -1), F.log_softmax(teacher(xt).detach() / 2, -1),
                  reduction="batchmean", log_target=True) * 4
    (0.3 * F.cross_entropy(out, yt) + 0.7 * kd).backward()
    with torch.no_grad():
        for p in hand.parameters():
            p -= 0.1 * p.grad

    algorithm = Distillation(teacher, KLDivergence(2.0), kd_loss_weight=0.7, org_loss_weight=0.3)
    _trainer(student, [algorithm], "1ba", tensor_loader(x, y, batch_size=8)).fit()
    for p, q in zip(student.parameters(), hand.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_kd_loss_weight_zero_is_exactly_plain_training():
    teacher = tiny_mlp(seed=1)
    calls = _count_calls(teacher)
    plain, distilled = tiny_mlp(seed=0), tiny_mlp(seed=0)
    shuffled = dict(loader=tensor_loader(*make_blobs(n=48), batch_size=8, shuffle=True))
    _trainer(plain, duration="2ep", seed=3, **shuffled).fit()
    algorithm = Distillation(teacher, KLDivergence(4.0), kd_loss_weight=0.0, org_loss_weight=1.0)
    _trainer(distilled, [algorithm], duration="2ep", seed=3, **shuffled).fit()
    for p, q in zip(plain.state_dict().values(), distilled.state_dict().values()):
        assert torch.equal(p, q)
    assert not calls  # no teacher forward when its term weighs nothing


def test_window_switches_the_term_on_and_off_at_the_right_step():
    teacher = tiny_mlp(seed=1)
    before, after = Recorder(), Recorder()
    trainer = _trainer(tiny_mlp(seed=0), [before, Distillation(
        teacher, KLDivergence(2.0), start_dur=0.3, end_dur=0.6), after], duration="10ba")
    teacher_steps = []
    teacher.register_forward_hook(lambda *_: teacher_steps.append(trainer.state.step))
    trainer.fit()  # 4 batches per epoch: 10 batches span 3 epochs
    assert teacher_steps == [3, 4, 5]
    assert sorted(before.losses) == list(range(10))
    for step in range(10):
        if step in (3, 4, 5):
            assert after.losses[step] != pytest.approx(before.losses[step])
        else:
            assert after.losses[step] == before.losses[step]


def test_3ba_runs_exactly_three_batches_across_epochs():
    student = tiny_mlp(seed=0)
    calls = _count_calls(student)
    trainer = _trainer(student, duration="3ba", loader=_loader(n=16, batch_size=8))
    history = trainer.fit()
    assert len(calls) == 3 and trainer.state.step == 3
    assert [r["step"] for r in history] == [2, 3]  # the epoch it ends in still ends


def test_int_duration_is_epochs():
    trainer = _trainer(tiny_mlp(seed=0), duration=2)
    trainer.fit()
    assert trainer.state.step == 8 and trainer.state.epoch == 2


def _sampled_sequence(seed):
    teachers = [tiny_mlp(seed=s) for s in (1, 2, 3)]
    trainer = _trainer(tiny_mlp(seed=0), [Distillation(
        teachers, torch.nn.MSELoss(), n_teachers_to_sample=1)], "8ba", seed=seed)
    used = []
    for i, teacher in enumerate(teachers):
        teacher.register_forward_hook(lambda *_, i=i: used.append((trainer.state.step, i)))
    trainer.fit()
    assert [step for step, _ in used] == list(range(8))  # one teacher per step
    return [i for _, i in used]


def test_teacher_sampling_is_reproducible_with_a_seed():
    first = _sampled_sequence(seed=5)
    assert _sampled_sequence(seed=5) == first
    assert _sampled_sequence(seed=6) != first
    assert len(set(first)) > 1


def test_teachers_are_bit_identical_and_get_their_mode_back():
    teachers = [make_teacher_bn(seed=1), make_teacher_bn(seed=2)]
    teachers[1].eval()
    before = [{k: v.clone() for k, v in t.state_dict().items()} for t in teachers]
    _trainer(tiny_mlp(seed=0), [Distillation(teachers, KLDivergence(3.0))], "2ep").fit()
    for teacher, saved in zip(teachers, before):
        assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in saved.items())
        assert all(p.grad is None for p in teacher.parameters())
    assert teachers[0].training and not teachers[1].training


# ---------------------------------------------------------------- bad input
def test_end_dur_not_after_start_dur_is_an_error():
    with pytest.raises(ConfigError, match=r"end_dur \(0.5\) must be greater than start_dur"):
        Distillation(tiny_mlp(), KLDivergence(), start_dur=0.5, end_dur=0.5)


def test_unknown_duration_unit_is_an_error():
    with pytest.raises(ConfigError, match="unknown unit 'epochs' in '3epochs'.*'ep'.*'ba'"):
        _trainer(tiny_mlp(), duration="3epochs")


def test_checkpoint_missing_is_an_error(tmp_path):
    with pytest.raises(ModelError, match="checkpoint .*nope.pt not found"):
        Distillation({str(tmp_path / "nope.pt"): tiny_mlp()}, KLDivergence())


def test_checkpoint_of_another_architecture_is_an_error(tmp_path):
    path = str(tmp_path / "wide.pt")
    torch.save(tiny_mlp(hidden=32).state_dict(), path)
    message = "(?s)does not match Sequential.*size mismatch.*same architecture"
    with pytest.raises(ModelError, match=message):
        Distillation({path: tiny_mlp(hidden=16)}, KLDivergence())


def test_plain_state_dict_checkpoint_loads(tmp_path):
    path, source = str(tmp_path / "plain.pt"), tiny_mlp(seed=4)
    torch.save(source.state_dict(), path)
    target = tiny_mlp(seed=5)
    Distillation({path: target}, KLDivergence())
    assert all(torch.equal(a, b) for a, b in zip(source.parameters(), target.parameters()))


class NotTensors:
    pass


@pytest.mark.parametrize("payload,message", [
    ([1, 2, 3], "holds a list, not a state dict"),
    (NotTensors(), "cannot be read as a tensors-only PyTorch checkpoint"),
])
def test_checkpoint_that_is_not_a_state_dict_is_an_error(tmp_path, payload, message):
    path = str(tmp_path / "odd.pt")
    torch.save(payload, path)
    with pytest.raises(ModelError, match=message):
        Distillation({path: tiny_mlp()}, KLDivergence())


def test_kd_loss_fn_returning_a_non_scalar_is_an_error():
    algorithm = Distillation(tiny_mlp(seed=1), torch.nn.MSELoss(reduction="none"))
    with pytest.raises(ModelError, match=r"kd_loss_fn must return a scalar tensor, got \(8, 3\)"):
        _trainer(tiny_mlp(seed=0), [algorithm], "1ba").fit()


@pytest.mark.parametrize("kwargs,message", [
    (dict(kd_loss_weight=-1), "kd_loss_weight to be a number >= 0"),
    (dict(start_dur=1.5), r"start_dur to be a fraction of max_duration in \[0, 1\]"),
    (dict(n_teachers_to_sample=2), r"from 1 to the number of teachers \(1\)"),
    (dict(kd_loss_fn="KL"), "kd_loss_fn must be a callable"),
])
def test_bad_arguments_are_errors(kwargs, message):
    arguments = dict(teachers=tiny_mlp(), kd_loss_fn=KLDivergence()) | kwargs
    with pytest.raises(ConfigError, match=message):
        Distillation(**arguments)


def test_same_loss_as_the_experiment_criterion_with_matching_weights():
    """docs/algorithms.md: Distillation.fit()'s counterpart computes the same loss."""
    from neural_distill.criterion import PyTorchKnowledgeDistillationLoss

    generator = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 5, generator=generator), torch.randn(6, 5, generator=generator)
    y = torch.randint(0, 5, (6,), generator=generator)
    criterion = PyTorchKnowledgeDistillationLoss(temperature=3.0, loss_types=["CE", "KL"],
                                                 loss_weights=[0.1, 0.9])
    expected = criterion.combine(criterion.student_loss(s, y), criterion.distillation_loss(s, t))
    ours = 0.1 * F.cross_entropy(s, y) + 0.9 * KLDivergence(3.0)(s, t)
    torch.testing.assert_close(ours, expected)
