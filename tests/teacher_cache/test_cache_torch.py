"""The teacher cache in the PyTorch built-in loop, in user loops, and offline."""

import os

import numpy as np
import pytest
import torch

from neural_distill import Distillation
from neural_distill.commands.cache_teacher import write_offline_cache
from neural_distill.errors import ConfigError, DataError, ModelError
from tests.helpers import (assert_states_identical, base_config, make_blobs, state_arrays,
                           tensor_loader, tiny_mlp, trained_teacher)


class CountingTeacher(torch.nn.Module):
    """Wraps a teacher and counts the samples it is run on."""

    def __init__(self, teacher):
        super().__init__()
        self.teacher = teacher
        self.samples = 0

    def forward(self, x):
        self.samples += x.shape[0]
        return self.teacher(x)


def _distiller(workspace, teacher, loader, epochs=3, **cache):
    config = base_config(workspace, distillation={"train": {"epoch": epochs,
                                                            "teacher_cache": cache}})
    distiller = Distillation(config)
    distiller.student_model = tiny_mlp()
    distiller.teacher_model = teacher
    distiller.train_dataloader = loader
    return distiller


def test_dense_cache_trains_bit_identically_and_runs_the_teacher_once(workspace, data):
    x, y, teacher = data
    before = state_arrays(teacher)
    plain = _distiller(workspace, teacher, tensor_loader(x, y)).fit()
    counting = CountingTeacher(teacher)
    distiller = _distiller(workspace, counting, tensor_loader(x, y), enabled=True)
    cached = distiller.fit()
    for a, b in zip(plain.state_dict().values(), cached.state_dict().values()):
        assert torch.equal(a, b)
    assert counting.samples == len(x)  # epoch 1 only
    rates = [r["teacher_cache_hit_rate"] for r in distiller.history if "time_s" in r]
    assert rates == [0.0, 1.0, 1.0]
    assert_states_identical(before, state_arrays(teacher))


def test_shuffled_batches_still_hit(workspace, data):
    x, y, teacher = data
    counting = CountingTeacher(teacher)
    _distiller(workspace, counting, tensor_loader(x, y, shuffle=True), enabled=True).fit()
    assert counting.samples == len(x)


def test_augmented_inputs_switch_the_cache_off_and_keep_training(workspace, data, caplog):
    x, y, teacher = data

    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return torch.as_tensor(x[i]) + 0.01 * torch.randn(x.shape[1]), int(y[i])

    counting = CountingTeacher(teacher)
    distiller = _distiller(workspace, counting, torch.utils.data.DataLoader(Noisy(), 32),
                           epochs=3, enabled=True)
    distiller.fit()
    assert counting.samples == 3 * len(x)
    assert "differ every epoch" in caplog.text
    assert not distiller.step.cache.active


def test_topk_cache_gives_the_same_targets_every_epoch(workspace, data):
    x, y, teacher = data
    config = dict(enabled=True, compression="topk", top_k=1)
    first = _distiller(workspace, teacher, tensor_loader(x, y), **config).fit()
    again = _distiller(workspace, teacher, tensor_loader(x, y), **config).fit()
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="KL and CE on logits only"):
        d = _distiller(workspace, teacher, tensor_loader(x, y), **config)
        d.conf.distillation.train.criterion.KnowledgeDistillationLoss.loss_types = ["CE", "MSE"]
        d.fit()


def test_hooks_in_a_user_loop_use_the_cache(workspace, data):
    x, y, teacher = data
    counting = CountingTeacher(teacher)
    distiller = _distiller(workspace, counting, None, enabled=True)
    student = distiller.student_model
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    distiller.on_train_begin()
    for epoch in range(2):
        distiller.on_epoch_begin(epoch)
        for batch_id, (inputs, labels) in enumerate(tensor_loader(x, y)):
            distiller.on_step_begin(batch_id)
            out = student(inputs)
            loss = distiller.on_after_compute_loss(
                inputs, out, torch.nn.functional.cross_entropy(out, labels))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            distiller.on_step_end()
        distiller.on_epoch_end()
    distiller.on_train_end()
    assert counting.samples == len(x)


def test_offline_cache_serves_a_run_without_a_teacher(workspace, data, tmp_path):
    x, y, teacher = data
    folder = str(tmp_path / "cache")
    writer = _distiller(workspace, teacher, tensor_loader(x, y), path=folder)
    index = write_offline_cache(writer, progress_bar=False)
    assert index["shards"][0]["count"] == len(x)
    online = _distiller(workspace, teacher, tensor_loader(x, y), epochs=2).fit()

    reader = _distiller(workspace, None, tensor_loader(x, y, shuffle=True), epochs=2,
                        path=folder)
    reader.train_dataloader = tensor_loader(x, y)
    offline = reader.fit()
    for a, b in zip(online.state_dict().values(), offline.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)

    changed = trained_teacher(x, y, seed=5)
    with pytest.raises(DataError, match="another teacher"):
        _distiller(workspace, changed, tensor_loader(x, y), path=folder).fit()
    with pytest.raises(DataError, match="does not have"):
        _distiller(workspace, None, tensor_loader(x + 1, y), path=folder).fit()
    records = os.path.join(folder, "records_00000.npy")
    with open(records, "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\xff\xff\xff\xff")
    with pytest.raises(DataError, match="corrupt"):
        _distiller(workspace, None, tensor_loader(x, y), path=folder).fit()


def test_offline_cache_needs_a_teacher_and_a_folder(workspace, data):
    x, y, teacher = data
    with pytest.raises(ModelError, match="no teacher model"):
        write_offline_cache(_distiller(workspace, None, tensor_loader(x, y)))
    with pytest.raises(ConfigError, match="teacher_cache.path"):
        write_offline_cache(_distiller(workspace, teacher, tensor_loader(x, y)))


def test_cli_cache_teacher_then_run_without_building_the_teacher(tmp_path):
    import subprocess
    import sys
    import textwrap

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    x, y = make_blobs(n=64)
    np.savez(tmp_path / "data.npz", x=x.astype(np.float32), y=y)
    (tmp_path / "project.py").write_text(textwrap.dedent("""
        import os
        import torch

        def student():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                       torch.nn.Linear(16, 3))

        def teacher():
            # Marks each time the teacher is built: a run reading the cache must not build it.
            open("teacher_built", "a").write("x")
            torch.manual_seed(1)
            return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(),
                                       torch.nn.Linear(32, 3))
    """))
    (tmp_path / "distill.yaml").write_text(textwrap.dedent("""
        model: {student: project.py:student, teacher: project.py:teacher}
        distillation:
          train:
            epoch: 2
            criterion: {KnowledgeDistillationLoss: {temperature: 2.0, loss_types: [CE, KL]}}
            dataloader: {batch_size: 16, dataset: {npz: {path: data.npz}}}
            teacher_cache: {path: teacher_outputs, compression: float16}
        tuning: {workspace: {path: ws}}
    """))
    env = dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL="3")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "neural_distill.cli", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)

    cached = cli("cache-teacher", "distill.yaml", "--quiet")
    assert cached.returncode == 0, cached.stderr
    assert "64 samples, 6 bytes per sample (float16)" in cached.stdout
    assert (tmp_path / "teacher_outputs" / "index.json").is_file()
    assert (tmp_path / "teacher_built").read_text() == "x"
    run = cli("run", "distill.yaml", "--quiet")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "teacher_built").read_text() == "x"  # not built again
