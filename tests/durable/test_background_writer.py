"""Checkpoints written off the training thread (issue 19): one write at a time, in order,
flushed when the run ends, errors raised on the training thread, the state copied first."""

import glob
import os
import threading
import time

import pytest

from neural_distill.run.checkpoint_writer import BackgroundWriter

torch = pytest.importorskip("torch")


def test_a_second_write_waits_for_the_first_and_errors_reach_the_caller():
    writer, order, release = BackgroundWriter(), [], threading.Event()

    def slow():
        release.wait(5)
        order.append("first")

    writer.submit(slow)
    assert writer.busy
    threading.Timer(0.05, release.set).start()
    writer.submit(lambda: order.append("second"))  # returns once the first is written
    assert order[0] == "first"
    writer.wait()
    assert order == ["first", "second"] and not writer.busy

    def fails():
        raise OSError(28, "No space left on device")

    writer.submit(fails)
    with pytest.raises(OSError, match="No space"):
        writer.wait()
    writer.submit(fails)
    writer.wait(raise_errors=False)  # logged: another error is already being raised
    writer.wait()  # nothing left


def _fit(workspace, writer=None, epochs=2):
    from neural_distill import Distillation

    torch.manual_seed(0)
    settings = {"path": workspace}
    if writer:
        settings["checkpoint_writer"] = writer
    distiller = Distillation({
        "distillation": {"train": {"epoch": epochs, "progress_bar": False,
                                   "optimizer": {"SGD": {"learning_rate": 0.1,
                                                         "momentum": 0.9}}}},
        "tuning": {"workspace": settings}})
    distiller.student_model = torch.nn.Linear(4, 3)
    distiller.teacher_model = torch.nn.Linear(4, 3)
    x = torch.randn(32, 4)
    distiller.train_dataloader = [(x[i:i + 8], torch.randint(0, 3, (8,))) for i in (0, 8, 16)]
    distiller.fit()
    return distiller


@pytest.mark.parametrize("mode, on_main_thread", [(None, False), ("sync", True)])
def test_checkpoints_are_written_by_the_writer_thread_and_flushed_at_the_end(
        workspace, monkeypatch, mode, on_main_thread):
    from neural_distill.adapters.torch.adapter import ADAPTER

    threads, original = [], ADAPTER.write_state

    def slow_write(state, path):
        threads.append(threading.current_thread() is threading.main_thread())
        time.sleep(0.05)  # still in flight when the loop goes on
        original(state, path)

    monkeypatch.setattr(ADAPTER, "write_state", slow_write)
    distiller = _fit(workspace, mode)
    assert threads == [on_main_thread] * 2  # one checkpoint per epoch
    # fit() returned: the last checkpoint is on disk, complete, with no temporary file left.
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(
        distiller.workspace.path, "*checkpoint*")))
    assert names == ["checkpoint-e0001-s000000003.pt", "checkpoint-e0002-s000000006.pt"]
    state = torch.load(os.path.join(distiller.workspace.path, names[-1]), weights_only=True)
    assert state["run_state"]["global_step"] == 6


def test_the_optimizer_state_is_copied_before_training_goes_on():
    from neural_distill.adapters.torch.adapter import ADAPTER

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    copy = ADAPTER.owned_copy(ADAPTER.optimizer_state(optimizer))
    before = copy["state"][0]["momentum_buffer"].clone()
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()  # updates the live momentum buffers in place
    assert torch.equal(copy["state"][0]["momentum_buffer"], before)
    assert not torch.equal(optimizer.state_dict()["state"][0]["momentum_buffer"], before)


def test_a_failed_background_write_fails_the_run_clearly(workspace, monkeypatch):
    from neural_distill.adapters.torch.adapter import ADAPTER
    from neural_distill.errors import NeuralDistillError

    def full_disk(state, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ADAPTER, "write_state", full_disk)
    with pytest.raises(NeuralDistillError, match="No space left on device"):
        _fit(workspace, epochs=1)
