"""The first-batch checks use the first training batch (issue 19): the user's loader is
iterated once per epoch, a stream loses no epoch, and neither model runs an extra forward."""

import pytest

from neural_distill import Distillation
from neural_distill.errors import DataError, ModelError

torch = pytest.importorskip("torch")


class Counting(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


class EpochStream(torch.utils.data.IterableDataset):
    """Three epochs of a stream: each iter() yields the next epoch's 4 batches (tagged)."""

    def __init__(self):
        self.epochs_started = 0
        self.tags = []

    def __iter__(self):
        epoch, self.epochs_started = self.epochs_started, self.epochs_started + 1
        generator = torch.Generator().manual_seed(epoch)
        for step in range(4):
            self.tags.append((epoch, step))
            yield torch.randn(8, 4, generator=generator), torch.randint(0, 3, (8,))


class CountingSampler(torch.utils.data.Sampler):
    def __init__(self, n):
        self.n, self.iterations = n, 0

    def __len__(self):
        return self.n

    def __iter__(self):
        self.iterations += 1
        return iter(torch.randperm(self.n).tolist())


def _distiller(workspace, epochs, criterion=None):
    torch.manual_seed(0)
    train = {"epoch": epochs, "progress_bar": False,
             "optimizer": {"SGD": {"learning_rate": 0.1}}}
    if criterion:
        train["criterion"] = criterion
    distiller = Distillation({"distillation": {"train": train},
                              "tuning": {"workspace": {"path": workspace}}})
    distiller.student_model = Counting(torch.nn.Linear(4, 3))
    distiller.teacher_model = Counting(torch.nn.Linear(4, 3))
    return distiller


def test_a_stream_of_three_epochs_trains_exactly_its_three_epochs(workspace):
    stream = EpochStream()
    distiller = _distiller(workspace, epochs=3)
    distiller.train_dataloader = torch.utils.data.DataLoader(stream, batch_size=None)
    distiller.fit()
    assert stream.epochs_started == 3
    assert stream.tags == [(e, s) for e in range(3) for s in range(4)]
    assert distiller.run.state.global_step == 12
    # No extra forward: one student and one teacher call per training step (no evaluation).
    assert distiller.student_model.calls == 12
    assert distiller.teacher_model.calls == 12


def test_a_counting_sampler_sees_one_iter_per_epoch(workspace):
    sampler = CountingSampler(32)
    data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randint(0, 3, (32,)))
    distiller = _distiller(workspace, epochs=2)
    distiller.train_dataloader = torch.utils.data.DataLoader(data, batch_size=8, sampler=sampler)
    distiller.fit()
    assert sampler.iterations == 2
    assert distiller.student_model.calls == 8 and distiller.teacher_model.calls == 8


def test_a_one_shot_iterator_is_checked_and_fully_trained(workspace):
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    distiller = _distiller(workspace, epochs=1)
    distiller.train_dataloader = iter(batches)
    distiller.fit()
    assert distiller.run.state.global_step == 3


def test_the_first_training_batch_is_still_checked_before_its_loss(workspace):
    distiller = _distiller(workspace, epochs=1)
    distiller.teacher_model = torch.nn.Linear(4, 5)
    distiller.train_dataloader = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
    with pytest.raises(ModelError, match="predicts 3 classes but teacher_model predicts 5"):
        distiller.fit()
    distiller = _distiller(workspace, epochs=1)
    distiller.train_dataloader = [(torch.randn(8, 4), torch.full((8,), 7))]
    with pytest.raises(DataError, match="label"):
        distiller.fit()


def test_a_feature_criterion_builds_its_matchers_from_the_first_training_batch(workspace):
    stream = EpochStream()
    distiller = _distiller(workspace, epochs=2, criterion={
        "IntermediateLayersKnowledgeDistillationLoss": {
            "layer_mappings": [["inner", "inner"]], "add_origin_loss": True}})
    distiller.train_dataloader = torch.utils.data.DataLoader(stream, batch_size=None)
    distiller.fit()
    assert stream.epochs_started == 2 and len(stream.tags) == 8
