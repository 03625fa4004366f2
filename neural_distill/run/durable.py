"""Durable runs: checkpoints of a built-in loop's run, resuming it, and nothing lost on a stop.

A checkpoint (``run/checkpoints.py`` writes it atomically) holds everything that decides how the run
continues: the student's weights, the criterion's (trained matchers), the optimizer's state, the
run state (epoch, step, best score and best weights, running losses, history, every random
generator), where the loop is in the data order (the generators' state at the start of the
epoch, and the number of steps done in it), and fingerprints of the teachers and the config.

Resuming (``tuning.workspace.resume: auto | PATH``) loads it into the freshly set-up run and
continues in the same run folder: the loop skips the finished epochs, replays the epoch's data
order, skips the batches already trained on, then restores the random generators as they were
at the checkpoint, so a PyTorch run ends bit-identical to one that was never interrupted.

The built-in loop calls three things: :meth:`RunLifecycle.track` (after its optimizer exists),
``skip_epoch`` and ``batches``. Checkpoints are written from the ``on_step_end`` and
``on_epoch_end`` hooks.
"""

import logging
import os
import signal
import threading

from neural_distill.core import rng
from neural_distill.run.checkpoints import (
    CheckpointError, atomic_write, checkpoint_name, list_checkpoints, prune, read_latest, read_one,
    run_folders)
from neural_distill.run.checkpoint_writer import BackgroundWriter, SyncWriter
from neural_distill.config.loader import to_plain
from neural_distill.core.process import is_main_process, world_size
from neural_distill.core.run_record import representable
from neural_distill.run.workspace import RUN_INFO, Workspace

FORMAT = 1
logger = logging.getLogger("neural_distill")


class ResumedWorkspace(Workspace):
    """An existing run folder, continued."""

    def __init__(self, path):  # noqa: D107 - the base class would create a new folder
        self.path = os.path.abspath(path)
        self.metrics_file = os.path.join(self.path, "metrics.jsonl")
        self.writes = is_main_process()
        self._tensorboard = None

    def rewrite_metrics(self, history):
        """metrics.jsonl as of the checkpoint: records written after it are dropped."""
        if os.path.exists(self.metrics_file):
            os.remove(self.metrics_file)
        for record in history:
            self.log_metrics(record)


def _config_without_workspace(conf):
    # Plain data only: a checkpoint stores tensors and plain values, and a callable layer
    # process (which cannot be pickled safely) is compared by its qualified name.
    plain, _ = representable(to_plain(conf))
    plain.get("tuning", {}).pop("workspace", None)
    # Progress display does not change what is trained.
    plain.get("distillation", {}).get("train", {}).pop("progress_bar", None)
    return plain


def _differences(old, new, path=""):
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            found += _differences(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        return found
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


class NoCheckpoints:
    """What a loop gets when the run is not checkpointed: every epoch, every batch."""

    @staticmethod
    def skip_epoch(epoch_index):
        return False

    @staticmethod
    def batches(loader, epoch_index):
        return enumerate(loader)


class Durability:
    """Checkpoints and resume for one run of a built-in loop."""

    def __init__(self, lifecycle):
        self.run = lifecycle
        self.distiller = lifecycle.distiller
        self.adapter = self.distiller.adapter
        settings = self.distiller.conf.tuning.workspace
        self.every_epochs = settings.get("checkpoint_every_epochs", 1)
        self.every_steps = settings.get("checkpoint_every_steps", 0)
        self.keep = settings.get("keep_checkpoints", 2)
        self.resume = settings.get("resume")
        self.ignore_changes = settings.get("resume_ignore_changes", False)
        self.root = settings.path
        self.suffix = self.adapter.state_suffix
        self.optimizer = None
        self.epoch_index = 0
        self.epoch_rng = None
        self.pending = None  # the position of a resumed checkpoint, until the loop reaches it
        self.resumed_from = None
        self.interrupted = False
        self._previous_sigint = None
        self._fingerprint = None
        # Off the training thread where the backend can copy the state it saves.
        background = (settings.get("checkpoint_writer", "background") == "background"
                      and self.adapter.owned_copy({}) is not None)
        self.writer = BackgroundWriter() if background else SyncWriter()

    # ------------------------------------------------------------------ resume
    def fingerprint(self):
        if self._fingerprint is None:  # the teachers never change: hashed once per run
            self._fingerprint = {
                "teachers": [self.adapter.fingerprint(t) for t in self.distiller.teachers],
                "config": _config_without_workspace(self.distiller.conf)}
        return self._fingerprint

    def find(self):
        """``(path, contents)`` of the checkpoint to resume from, or None (a fresh start)."""
        if not self.resume:
            return None
        if self.resume == "auto":
            for folder in run_folders(self.root):
                found = read_latest(list_checkpoints(folder), self.adapter.read_state)
                if found is not None:
                    return self._checked(*found)
            logger.info("resume: auto: no checkpoint under %s; starting a new run", self.root)
            return None
        path = os.path.abspath(self.resume)
        return self._checked(path, read_one(path, self.adapter.read_state))

    def _checked(self, path, contents):
        if not isinstance(contents, dict) or contents.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a neural_distill checkpoint of format {FORMAT}")
        saved, now = contents["fingerprint"], self.fingerprint()
        problems = []
        if len(saved["teachers"]) != len(now["teachers"]):
            problems.append(f"the number of teachers: {len(saved['teachers'])} -> "
                            f"{len(now['teachers'])}")
        else:
            problems += [f"teacher_model[{i}]: its weights differ from the checkpoint's teacher"
                         for i, (a, b) in enumerate(zip(saved["teachers"], now["teachers"]))
                         if a != b]
        problems += [f"config {line}" for line in _differences(saved["config"], now["config"])]
        # The weights resume under any number of processes (FSDP's are saved whole), but the
        # batch of a step and each process's data shard change with it (older checkpoints do
        # not say).
        saved_size = contents.get("world_size")
        if saved_size is not None and saved_size != world_size():
            logger.warning("resuming %s, written by %d processes, with %d: each optimizer step "
                           "now sees %s samples and the rest of the epoch is split anew, so the "
                           "run will not match an uninterrupted one", path, saved_size,
                           world_size(), "more" if world_size() > saved_size else "fewer")
        if problems and not self.ignore_changes:
            raise CheckpointError(
                f"cannot resume from {path}: the experiment changed since it was written:\n  "
                + "\n  ".join(problems) + "\nRestore the original teacher/config, start a new "
                "run (tuning.workspace.resume: null), or set "
                "tuning.workspace.resume_ignore_changes: true to resume anyway.")
        if problems:
            logger.warning("resuming from %s although the experiment changed: %s", path,
                           "; ".join(problems))
        return path, contents

    def workspace(self, found):
        if found is None:
            return Workspace(self.root)
        return ResumedWorkspace(os.path.dirname(found[0]))

    def restore(self, found, state):
        """Load a checkpoint into the set-up run (models built, matchers created)."""
        path, contents = found
        d, adapter = self.distiller, self.adapter
        adapter.load_snapshot(d.student_model, contents["student"])
        # Nothing draws from these before the resumed step (the dry run is inference-only).
        adapter.set_model_rng_state(d.student_model, contents.get("student_rng"))
        if contents.get("criterion") is not None:
            adapter.load_snapshot(d.criterion, contents["criterion"])
        state.load_state(contents["run_state"], adapter, restore_rng=False)
        self.run.workspace.rewrite_metrics(state.history)
        self.pending = dict(contents["position"], rng=contents["run_state"]["rng"],
                            optimizer=contents.get("optimizer"))
        self.resumed_from = path
        logger.info("resumed from %s (epoch %d, step %d of the run)", path,
                    self.pending["epoch_index"], state.global_step)

    # ------------------------------------------------------------------ the loop's side
    def attach(self, optimizer):
        self.optimizer = optimizer
        if self.pending is not None and self.pending.get("optimizer") is not None:
            self.adapter.load_optimizer_state(optimizer, self.pending["optimizer"])
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def skip_epoch(self, epoch_index):
        if self.pending is None or epoch_index >= self.pending["epoch_index"]:
            return False
        self.run.take_prepared(None)  # opened before the resume: its order is not this run's
        self.adapter.advance_data_order(self.distiller.train_dataloader)
        return True

    def batches(self, loader, epoch_index):
        """``enumerate(loader)``, continuing where a resumed checkpoint stopped."""
        self.epoch_index = epoch_index
        pending = self.pending if (self.pending is not None
                                   and self.pending["epoch_index"] == epoch_index) else None
        skip = 0
        prepared = self.run.take_prepared(loader)
        batches = loader
        if pending is not None:
            # The data order of the interrupted epoch: its generators as they were when it began.
            rng.restore(pending["epoch_rng"]["rng"], self.adapter)
            self.adapter.set_data_order_state(loader, pending["epoch_rng"]["data"])
            skip = pending["steps_in_epoch"]
            self.run.state.steps_in_epoch = skip  # on_epoch_begin just reset it
            self.epoch_rng = pending["epoch_rng"]
        elif prepared is not None:  # opened for the first-batch checks: trained on, not redone
            self.epoch_rng, batches = prepared.epoch_rng, prepared.batches()
        else:
            self.epoch_rng = {"rng": rng.capture(self.adapter),
                              "data": self.adapter.data_order_state(loader)}
        for batch_id, batch in enumerate(batches):
            if batch_id < skip:
                continue
            if pending is not None:
                self._continue(pending)
                pending = None
            yield batch_id, batch
        if pending is not None:  # the checkpoint was taken after the epoch's last batch
            self._continue(pending)

    def _continue(self, pending):
        if pending["steps_in_epoch"]:
            # Dropout & co. as at the checkpoint. At an epoch's start there is nothing to do:
            # the generators were restored before the loader drew this epoch's order.
            rng.restore(pending["rng"], self.adapter)
        self.pending = None

    # ------------------------------------------------------------------ writing
    def after_step(self):
        state = self.run.state
        if self.every_steps and state.global_step % self.every_steps == 0:
            self.save(self.epoch_index, state.steps_in_epoch, self.epoch_rng)
        if self.interrupted:
            self.save(self.epoch_index, state.steps_in_epoch, self.epoch_rng)
            self.flush()
            if self.run.state.best_weights is not None:
                self.run.save_best()
            logger.warning("interrupted: checkpoint and best student saved in %s",
                           self.run.workspace.path)
            self.detach()
            raise KeyboardInterrupt

    def after_epoch(self):
        state = self.run.state
        if self.every_epochs and state.epochs_done % self.every_epochs == 0:
            # The next epoch starts from here: its data order comes from the generators now.
            self.save(self.epoch_index + 1, 0, {"rng": rng.capture(self.adapter),
                                                "data": self.adapter.data_order_state(
                                                    self.distiller.train_dataloader)})

    def save(self, epoch_index, steps_in_epoch, epoch_rng):
        d, adapter, state = self.distiller, self.adapter, self.run.state
        writes = self.run.workspace.writes  # the main process of a multi-process run writes
        # A sharded (FSDP) student is gathered by every process, the writer keeping the whole.
        if not writes and not adapter.is_sharded(d.student_model):
            return None
        student = adapter.snapshot(d.student_model)
        optimizer = (adapter.optimizer_state(self.optimizer)
                     if self.optimizer is not None else None)
        if not writes:
            return None
        contents = {
            "format": FORMAT,
            "student": student,
            "student_rng": adapter.model_rng_state(d.student_model),
            "criterion": (adapter.snapshot(d.criterion) if adapter.has_parameters(d.criterion)
                          else None),
            "optimizer": optimizer,
            "run_state": state.to_state(adapter),
            "position": {"epoch_index": epoch_index, "steps_in_epoch": steps_in_epoch,
                         "epoch_rng": epoch_rng},
            "fingerprint": (None if isinstance(self.writer, BackgroundWriter)
                            else self.fingerprint()),
            "world_size": world_size(),
        }
        folder = self.run.workspace.path
        path = os.path.join(folder, checkpoint_name(epoch_index, state.global_step, self.suffix))
        if isinstance(self.writer, BackgroundWriter):
            # The optimizer's state dict holds its live buffers; the rest is fresh already
            # (snapshots are clones, the best weights are replaced, never updated in place).
            contents["optimizer"] = adapter.owned_copy(contents["optimizer"])
        keep = self.keep

        def write():
            if contents["fingerprint"] is None:
                # Hashed here, off the training thread: the teachers never change.
                contents["fingerprint"] = self.fingerprint()
            atomic_write(path, lambda temporary: adapter.write_state(contents, temporary))
            prune(folder, keep)

        self.writer.submit(write)
        return path

    def flush(self, raise_errors=True):
        """Wait for the checkpoint being written (the run ends, fails or stops)."""
        self.writer.wait(raise_errors)

    # ------------------------------------------------------------------ Ctrl-C
    def _on_sigint(self, signum, frame):
        if self.interrupted:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.interrupted = True
        logger.warning("Ctrl-C: finishing this step, then saving a checkpoint and the best "
                       "student (press Ctrl-C again to stop at once)")

    def detach(self):
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None


# ---------------------------------------------------------------------------- other trainers
TRAINER_STATE_FILE = "neural_distill_state.pt"


def save_run(lifecycle, folder):
    """A trainer's checkpoint folder gets our part of the run: the criterion's trained state,
    the run state (epoch and step counts, best score and weights, history) and the run
    folder. The trainer saves the rest (student, optimizer, its own RNGs)."""
    d = lifecycle.distiller
    adapter = d.adapter
    contents = {
        "format": FORMAT,
        "criterion": (adapter.snapshot(d.criterion) if adapter.has_parameters(d.criterion)
                      else None),
        "run_state": lifecycle.state.to_state(),
        "workspace": lifecycle.workspace.path if lifecycle.workspace is not None else None,
    }
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, TRAINER_STATE_FILE)
    atomic_write(path, lambda temporary: adapter.write_state(contents, temporary))
    return path


def restore_run(lifecycle, folder):
    """Continue the started run from what :func:`save_run` wrote in ``folder``; False when
    the folder holds nothing of ours (a checkpoint written without distillation)."""
    path = os.path.join(folder, TRAINER_STATE_FILE)
    if not os.path.isfile(path):
        logger.warning("%s has no %s: the distillation run state starts fresh", folder,
                       TRAINER_STATE_FILE)
        return False
    d = lifecycle.distiller
    contents = read_one(path, d.adapter.read_state)
    if contents.get("criterion") is not None:
        d.adapter.load_snapshot(d.criterion, contents["criterion"])
    lifecycle.state.load_state(contents["run_state"], restore_rng=False)
    saved = contents.get("workspace")
    if saved and os.path.isdir(saved) and lifecycle.workspace is not None \
            and os.path.abspath(saved) != lifecycle.workspace.path:
        fresh = lifecycle.workspace.path
        lifecycle.workspace = ResumedWorkspace(saved)
        made = os.listdir(fresh)
        if set(made) <= {"config.yaml", RUN_INFO}:  # the folder this start just made
            for name in made:
                os.remove(os.path.join(fresh, name))
            os.rmdir(fresh)
    if lifecycle.workspace is not None and hasattr(lifecycle.workspace, "rewrite_metrics"):
        lifecycle.workspace.rewrite_metrics(lifecycle.state.history)
    return True
