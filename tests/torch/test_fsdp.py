"""FSDP sharding of the student (``distillation.train.distributed.strategy: fsdp``), in one
process: a one-process gloo group, and the loop told it is distributed. What gets sharded, that
the teacher never is, and that fit() still returns (and saves) the user's own plain class with
the weights an unsharded run trains. The two-process runs are in tests/distributed."""

import glob
import os

import pytest
import torch
import torch.distributed as dist
from torch import nn

from neural_distill import Distillation
from neural_distill.adapters.torch import distributed
from neural_distill.errors import ModelError
from tests.helpers import (assert_states_identical, base_config, make_blobs, state_arrays,
                           tensor_loader, tiny_mlp, trained_teacher)

fsdp = pytest.importorskip("neural_distill.adapters.torch.fsdp")


@pytest.fixture
def one_process_group(tmp_path, monkeypatch):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0,
                            world_size=1)
    # The loop shards only when several processes run: one pretends to be several.
    monkeypatch.setattr(distributed, "active", lambda: True)
    yield
    dist.destroy_process_group()


class Student(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16))
        self.act = nn.Tanh()
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.act(self.body(x)))


def test_each_child_with_parameters_and_the_root_become_fsdp_units(one_process_group):
    student = Student()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    seen = []
    users_hook = student.head.register_forward_hook(lambda *_: seen.append("user"))
    criterions_hook = student.body.register_forward_hook(lambda *_: seen.append("criterion"))
    fsdp.shard_student(student, torch.device("cpu"))
    criterions_hook.remove()  # as the criterion does when the run ends
    sharded = {name for name, module in student.named_modules() if fsdp.is_sharded(module)}
    assert sharded == {"", "body", "head"}
    assert all(isinstance(p, torch.distributed.tensor.DTensor) for p in student.parameters())
    # The user's class comes back, plain, with the full weights.
    copy = fsdp.plain_copy(student, fsdp.full_state(student))
    assert type(copy) is Student and not any(fsdp.is_sharded(m) for m in copy.modules())
    copy(torch.zeros(2, 8))
    assert seen == ["user"]  # the run's hooks are gone from the returned copy, the user's stay
    users_hook.remove()
    assert_states_identical({k: v.numpy() for k, v in before.items()},
                            {k: v.numpy() for k, v in copy.state_dict().items()})


def _fit(workspace, strategy=None):
    x, y = make_blobs(n=64)
    teacher = trained_teacher(x, y)
    before = state_arrays(teacher)
    train = {"epoch": 2, "distributed": {"strategy": strategy}} if strategy else {"epoch": 2}
    distiller = Distillation(base_config(workspace, distillation={"train": train}))
    distiller.student_model = tiny_mlp()
    distiller.teacher_model = teacher
    distiller.train_dataloader = tensor_loader(x, y, batch_size=16)
    distiller.eval_dataloader = tensor_loader(x, y, batch_size=64)
    best = distiller.fit()
    assert_states_identical(before, state_arrays(teacher))
    return best, distiller, teacher


def test_fit_shards_the_student_not_the_teacher_and_returns_the_plain_best(workspace, tmp_path,
                                                                          one_process_group):
    best, distiller, teacher = _fit(workspace, "fsdp")
    assert fsdp.is_sharded(distiller.student_model)  # sharded in place, as fully_shard does
    assert not any(fsdp.is_sharded(m) for m in teacher.modules())
    assert type(best) is nn.Sequential and not any(fsdp.is_sharded(m) for m in best.modules())
    saved = torch.load(glob.glob(os.path.join(workspace, "run-*", "best_student.pt"))[0],
                       weights_only=True)
    assert all(type(t) is torch.Tensor for t in saved.values())
    for key, value in best.state_dict().items():
        torch.testing.assert_close(saved[key], value, rtol=0, atol=0)
    plain_workspace = tmp_path / "plain"
    plain_workspace.mkdir()
    plain, _, _ = _fit(str(plain_workspace))
    for a, b in zip(best.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_an_optimizer_built_before_sharding_is_refused(workspace, one_process_group):
    x, y = make_blobs(n=32)
    distiller = Distillation(base_config(workspace, distillation={"train": {
        "distributed": {"strategy": "fsdp"}}}))
    distiller.student_model = student = tiny_mlp()
    distiller.teacher_model = trained_teacher(x, y)
    distiller.train_dataloader = tensor_loader(x, y, batch_size=16)
    distiller.optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    with pytest.raises(ModelError, match="distillation.train.optimizer"):
        distiller.fit()


def test_the_distributed_section_is_validated():
    from neural_distill.errors import ConfigError
    with pytest.raises(ConfigError, match=r"distillation\.train\.distributed\.strategy.*'ddp' "
                                          r"or 'fsdp'"):
        Distillation({"distillation": {"train": {"distributed": {"strategy": "zero3"}}}})
    with pytest.raises(ConfigError, match="reshard_after_forward"):
        Distillation({"distillation": {"train": {"distributed": {"reshard_after_forward": 1}}}})


def test_clipping_and_bf16_work_on_the_sharded_student(workspace, one_process_group):
    x, y = make_blobs(n=64)
    distiller = Distillation(base_config(workspace, distillation={"train": {
        "epoch": 1, "max_grad_norm": 0.5, "precision": "bf16",
        "distributed": {"strategy": "fsdp", "reshard_after_forward": False}}}))
    distiller.student_model = tiny_mlp()
    distiller.teacher_model = trained_teacher(x, y)
    distiller.train_dataloader = tensor_loader(x, y, batch_size=16)
    best = distiller.fit()
    assert fsdp.is_sharded(distiller.student_model)
    assert all(torch.isfinite(p).all() for p in best.parameters())
