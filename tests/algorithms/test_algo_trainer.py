"""The Trainer: events fired to algorithms in the documented order, checkpoints, metrics log,
evaluation, and clear errors."""

import json
import os

import pytest

torch = pytest.importorskip("torch")

from helpers import make_blobs, tensor_loader, tiny_mlp  # noqa: E402
from neural_distill import ConfigError, DataError, ModelError  # noqa: E402
from neural_distill.algorithms import Algorithm  # noqa: E402
from neural_distill.events import Event  # noqa: E402
from neural_distill.trainer import Trainer  # noqa: E402


def _loader(n=16, batch_size=8):
    return tensor_loader(*make_blobs(n=n), batch_size=batch_size)


class EventLog(Algorithm):
    def __init__(self):
        self.events = []

    def match(self, event, state):
        return True

    def apply(self, event, state, logger):
        self.events.append(event)
        logger.log_metrics({"seen": 1.0})


def test_algorithms_see_every_event_in_the_documented_order():
    log = EventLog()
    Trainer(model=tiny_mlp(), train_dataloader=_loader(), max_duration="2ep", algorithms=[log],
            progress_bar=False).fit()
    step = [Event.STEP_BEGIN, Event.AFTER_COMPUTE_LOSS, Event.BEFORE_OPTIMIZER_STEP,
            Event.AFTER_OPTIMIZER_STEP, Event.STEP_END]
    epoch = [Event.EPOCH_BEGIN, *step, *step, Event.EPOCH_END]
    assert log.events == [Event.TRAIN_BEGIN, *epoch, *epoch, Event.TRAIN_END]


def test_checkpoints_metrics_log_and_evaluation(tmp_path):
    folder = tmp_path / "run"
    model = tiny_mlp()
    trainer = Trainer(model=model, train_dataloader=_loader(), eval_dataloader=_loader(n=8),
                      max_duration="3ba", algorithms=[EventLog()], save_folder=str(folder),
                      save_interval="2ba", progress_bar=False, seed=0)
    history = trainer.fit()
    # Every 2 batches, and at the end: file names carry epochs done and batches done.
    assert [os.path.basename(p) for p in trainer.saved_checkpoints] == ["ep0-ba2.pt",
                                                                       "ep2-ba3.pt"]
    final = torch.load(trainer.saved_checkpoints[-1], weights_only=True)
    assert final["epoch"] == 2 and final["step"] == 3
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in final["state_dict"].items())
    lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert lines == [json.loads(json.dumps(r)) for r in history] and len(lines) == 2
    assert {"loss", "seen", "eval_loss", "accuracy"} <= set(lines[0])
    assert lines[0]["seen"] == 1.0 and 0.0 <= lines[-1]["accuracy"] <= 1.0


def test_loss_fn_and_a_non_scalar_loss():
    calls = []

    def loss_fn(outputs, targets):
        calls.append(1)
        return torch.nn.functional.cross_entropy(outputs, targets)

    Trainer(model=tiny_mlp(), train_dataloader=_loader(), max_duration="1ba", loss_fn=loss_fn,
            progress_bar=False).fit()
    assert calls == [1]
    per_sample = Trainer(model=tiny_mlp(), train_dataloader=_loader(), max_duration="1ba",
                         progress_bar=False, loss_fn=lambda o, t: torch.nn.functional.cross_entropy(
                             o, t, reduction="none"))
    with pytest.raises(ModelError, match=r"training loss must be a scalar tensor, got \(8,\)"):
        per_sample.fit()


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(max_duration=None), ConfigError, "expected a positive duration"),
    (dict(max_duration="0ba"), ConfigError, "expected a positive duration"),
    (dict(save_filename="{step}.pt", save_folder="x"), ConfigError, "{epoch} and {batch}"),
    (dict(algorithms=[object()]), ConfigError, "match.*apply"),
    (dict(model="resnet"), ModelError, "torch.nn.Module, got str"),
    (dict(train_dataloader=None), DataError, "train_dataloader is required"),
])
def test_bad_arguments(kwargs, error, message):
    arguments = dict(model=tiny_mlp(), train_dataloader=_loader(), max_duration="1ep") | kwargs
    with pytest.raises(error, match=message):
        Trainer(**arguments)


def test_unlabeled_batches_need_a_loss():
    x, _ = make_blobs(n=8)
    trainer = Trainer(model=tiny_mlp(), train_dataloader=tensor_loader(x, batch_size=8),
                      max_duration="1ep", progress_bar=False)
    with pytest.raises(DataError, match="no targets.*loss_fn"):
        trainer.fit()


class GradientClipping(Algorithm):
    """The example of docs/algorithms.md."""

    def __init__(self, max_norm=1.0):
        self.max_norm = max_norm

    def match(self, event, state):
        return event == Event.BEFORE_OPTIMIZER_STEP

    def apply(self, event, state, logger):
        norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), self.max_norm)
        logger.log_metrics({"grad_norm": norm})


def test_the_documented_user_algorithm_acts_before_the_optimizer_step():
    norms = []
    model = tiny_mlp()

    class AfterClip(Algorithm):
        def match(self, event, state):
            return event == Event.BEFORE_OPTIMIZER_STEP

        def apply(self, event, state, logger):
            grads = [p.grad.norm() for p in state.model.parameters()]
            norms.append(torch.stack(grads).norm().item())

    history = Trainer(model=model, train_dataloader=_loader(), max_duration="1ep",
                      algorithms=[GradientClipping(1e-3), AfterClip()], progress_bar=False).fit()
    assert len(norms) == 2 and max(norms) <= 1e-3 * (1 + 1e-4)
    assert history[0]["grad_norm"] > 1e-3  # the norm before clipping, averaged over the epoch


class NoLength:
    """A re-iterable loader without __len__ (like an IterableDataset's)."""

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        return iter(self.loader)


def test_batch_budget_over_a_loader_without_length():
    trainer = Trainer(model=tiny_mlp(), train_dataloader=NoLength(_loader()), max_duration="5ba",
                      progress_bar=False)
    history = trainer.fit()
    assert trainer.state.step == 5 and [r["step"] for r in history] == [2, 4, 5]
    with pytest.raises(DataError, match="empty"):
        Trainer(model=tiny_mlp(), train_dataloader=NoLength([]), max_duration="5ba",
                progress_bar=False).fit()
