"""Checkpoint files: atomic writes, corrupt files, changed teachers, full disks (issue 12)."""

import errno
import glob
import logging
import os

import pytest

from helpers import base_config, make_blobs, make_teacher_bn, tiny_mlp
from neural_distill import Distillation
from neural_distill.run.checkpoints import CheckpointError, atomic_write, list_checkpoints

torch = pytest.importorskip("torch")


def _distiller(workspace, resume=None, epochs=3, teacher=None, **workspace_keys):
    x, y = make_blobs(n=64)
    conf = base_config(workspace, distillation={"train": {"epoch": epochs}},
                       tuning={"workspace": {"path": workspace, "resume": resume,
                                             **workspace_keys}})
    distiller = Distillation(conf)
    distiller.student_model = tiny_mlp(dropout=0.2)
    distiller.teacher_model = teacher if teacher is not None else make_teacher_bn()
    data = torch.utils.data.TensorDataset(torch.as_tensor(x), torch.as_tensor(y))
    distiller.train_dataloader = torch.utils.data.DataLoader(data, batch_size=16, shuffle=True)
    distiller.eval_dataloader = torch.utils.data.DataLoader(data, batch_size=64)
    return distiller


def _run_folder(workspace):
    folders = glob.glob(os.path.join(workspace, "run-*"))
    assert len(folders) == 1, folders
    return folders[0]


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_every_epoch_keep_the_last_two_and_name_themselves(workspace):
    distiller = _distiller(workspace)
    distiller.fit()
    names = [os.path.basename(p) for p in list_checkpoints(_run_folder(workspace))]
    assert names == ["checkpoint-e0002-s000000008.pt", "checkpoint-e0003-s000000012.pt"]
    assert not glob.glob(os.path.join(_run_folder(workspace), ".tmp-*"))


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(workspace, tmp_path, caplog):
    reference = _distiller(str(tmp_path / "reference"))
    reference.fit()
    first = _distiller(workspace, epochs=3)
    first.fit()
    folder = _run_folder(workspace)
    latest = list_checkpoints(folder)[-1]
    with open(latest, "r+b") as handle:  # truncated, as by a crash mid-copy
        handle.truncate(os.path.getsize(latest) // 2)
    resumed = _distiller(workspace, resume="auto")
    with caplog.at_level(logging.WARNING, logger="neural_distill"):
        resumed.fit()
    assert "unreadable" in caplog.text and os.path.basename(latest) in caplog.text
    assert resumed.workspace.path == folder
    # Resumed after epoch 2: the last epoch is trained again and ends where the reference did.
    assert _same(resumed.student_model.state_dict(), reference.student_model.state_dict())
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in reference.history]


def test_resume_refuses_a_changed_teacher_and_says_what_changed(workspace):
    _distiller(workspace, epochs=1).fit()
    teacher = make_teacher_bn()
    with torch.no_grad():
        teacher.fc1.weight.add_(0.01)
    distiller = _distiller(workspace, resume="auto", teacher=teacher)
    with pytest.raises(CheckpointError, match=r"teacher_model\[0\]: its weights differ"):
        distiller.fit()
    assert teacher.training, "the refusal left the teacher in eval mode"
    changed = _distiller(workspace, resume="auto", epochs=2)
    with pytest.raises(CheckpointError, match=r"distillation.train.epoch: 1 -> 2"):
        changed.fit()
    forced = _distiller(workspace, resume="auto", epochs=2, resume_ignore_changes=True)
    forced.fit()
    assert [r["epoch"] for r in forced.history] == [1, 2]


def test_a_named_checkpoint_that_is_corrupt_is_a_clear_error(workspace, tmp_path):
    bad = tmp_path / "checkpoint-e0001-s000000004.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable.*truncated or corrupt"):
        _distiller(workspace, resume=str(bad)).fit()


def test_full_disk_keeps_the_previous_file_intact(tmp_path):
    path = tmp_path / "checkpoint-e0001-s000000004.pt"
    path.write_bytes(b"previous checkpoint")

    def fills_the_disk(temporary):
        with open(temporary, "wb") as handle:
            handle.write(b"half a check")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CheckpointError, match="No space left on device.*previous file"):
        atomic_write(str(path), fills_the_disk)
    assert path.read_bytes() == b"previous checkpoint"
    assert os.listdir(tmp_path) == [path.name]


def test_best_student_is_written_when_it_improves_and_kept_when_training_fails(workspace):
    distiller = _distiller(workspace, epochs=3)
    original = distiller.on_epoch_begin

    def fails_in_epoch_2(epoch):
        if epoch == 2:
            raise RuntimeError("the node went away")
        return original(epoch)

    distiller.on_epoch_begin = fails_in_epoch_2
    with pytest.raises(RuntimeError):
        distiller.fit()
    saved = torch.load(os.path.join(_run_folder(workspace), "best_student.pt"),
                       weights_only=True)
    assert _same(saved, distiller.state.best_weights)


def test_a_non_finite_loss_stops_the_run_with_the_best_student_saved(workspace):
    from neural_distill import DataError

    distiller = _distiller(workspace, epochs=3)
    student = distiller.student_model
    original_forward = student.forward

    def diverges_in_epoch_2(x):
        output = original_forward(x)
        return output * float("nan") if distiller.state.epoch == 1 else output

    student.forward = diverges_in_epoch_2
    with pytest.raises(DataError, match="the training loss became nan at epoch 1, step 0"):
        distiller.fit()
    saved = torch.load(os.path.join(_run_folder(workspace), "best_student.pt"),
                       weights_only=True)
    assert distiller.state.epochs_done == 1
    assert all(torch.isfinite(v).all() for v in saved.values())
    assert _same(saved, distiller.state.best_weights)
