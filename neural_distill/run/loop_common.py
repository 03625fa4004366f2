"""What the built-in loops of every framework share: the epochs and steps with their hooks,
the learning-rate schedule, the progress bar's refresh, and reading a config's dataloader
section."""

import math
import os
import zipfile
import zlib

import numpy as np

from neural_distill.errors import ConfigError, DataError
from neural_distill.core.factories import resolve

# How often (in steps) the progress bar shows fresh losses; reading them syncs the device.
REFRESH_EVERY = 20


def epoch_range(train):
    """The epochs of a validated ``distillation.train`` section."""
    start = train["start_epoch"]
    if "end_epoch" in train:
        return range(start, train["end_epoch"])
    return range(start, start + train.get("epoch", 1))


def limit_steps(steps, iteration):
    """Steps per epoch: the loader's length (None if unknown), at most ``iteration``."""
    if iteration:
        return iteration if steps is None else min(steps, iteration)
    return steps


class LearningRateSchedule:
    """The learning rate after ``progress`` epochs, for a base learning rate.

    Cosine decays per step (smooth even over few epochs) after an optional linear warm-up,
    down to ``min_learning_rate``; step multiplies by ``gamma`` every ``step_size`` epochs.
    Progress is given explicitly, so stopping early or resuming never desynchronises it.
    """

    def __init__(self, schedule_config, total_epochs):
        (self.name, self.params), = schedule_config.items()
        self.total_epochs = total_epochs

    @property
    def constant(self):
        return self.name == "constant"

    def factor(self, progress):
        p = self.params
        if self.name == "step":
            return p["gamma"] ** int(progress // p["step_size"])
        if self.name == "cosine":
            warmup = p["warmup_epochs"]
            if warmup and progress < warmup:
                return max(progress, 1e-3) / warmup
            span = max(self.total_epochs - warmup, 1e-9)
            done = min(max(progress - warmup, 0.0) / span, 1.0)
            return 0.5 * (1 + math.cos(math.pi * done))
        return 1.0

    def learning_rate(self, base, progress):
        factor = self.factor(progress)
        floor = self.params.get("min_learning_rate", 0.0) if self.name == "cosine" else 0.0
        return floor + (base - floor) * factor if base > floor else base * factor


def run_epochs(distiller, loader, train, steps, schedule, train_step, progress):
    """A config's epochs (``distillation.train``) run by :func:`drive_epochs`, then
    ``on_train_end``. ``schedule`` sets the learning rate before each step; ``progress``
    (``distiller.run.track(optimizer)``) says which epochs and batches are left when a run
    resumes from a checkpoint."""
    epochs = epoch_range(train)
    drive_epochs(distiller, loader, epochs, train_step, total_epochs=epochs.stop, steps=steps,
                 iteration=train.get("iteration"), schedule=schedule,
                 learning_rate=lambda: schedule.current, show_bar=train.progress_bar,
                 progress=progress)
    distiller.on_train_end()


def drive_epochs(hooks, loader, epochs, train_step, *, total_epochs=None, steps=None,
                 iteration=None, max_batches=None, schedule=None, learning_rate=None,
                 show_bar=True, progress=None, begin_epoch=None, end_epoch=None):
    """The epochs and steps of every built-in loop, firing ``hooks``' events in the documented
    order; returns the number of batches trained.

    ``train_step(batch)`` does the framework's part of one step, between ``on_step_begin`` and
    ``on_step_end``: the forward, ``on_after_compute_loss``, the backward pass and, when due,
    the optimizer hooks around the update. ``begin_epoch()`` runs after ``on_epoch_begin``
    (e.g. the model back in training mode), ``end_epoch()`` before ``on_epoch_end`` (e.g. the
    optimizer step of an epoch's last, incomplete accumulation group).

    ``hooks`` has the ``Event`` methods and ``running_losses()``; ``on_train_begin`` and
    ``on_train_end`` are the caller's. ``epochs``: the epoch numbers (any iterable, endless
    with ``max_batches``); ``total_epochs`` is shown as the last one. ``steps``: batches per
    epoch if known (for the bar and the schedule). ``iteration``: at most this many batches
    per epoch; ``max_batches``: in all (the epoch it ends in still ends, no further one
    starts). ``schedule.step(progress_in_epochs)`` runs before every step; the bar shows
    ``learning_rate()``. ``progress``: a resumed run's position (``durable``):
    ``skip_epoch(index)`` and ``batches(loader, index)`` yielding ``(batch_id, batch)`` past
    what was trained; None trains every batch.
    """
    # Here, not at import: tqdm.auto (and its package-metadata lookup) is tens of ms.
    from tqdm.auto import tqdm

    done = 0
    for epoch_index, epoch in enumerate(epochs):
        if max_batches is not None and done >= max_batches:
            break
        if progress is not None and progress.skip_epoch(epoch_index):
            continue
        hooks.on_epoch_begin(epoch)
        if begin_epoch is not None:
            begin_epoch()
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{total_epochs or '?'}",
                   disable=not show_bar, leave=False, dynamic_ncols=True)
        done_before = done
        batches = (enumerate(loader) if progress is None
                   else progress.batches(loader, epoch_index))
        for batch_id, batch in batches:
            if (iteration and batch_id >= iteration) or (
                    max_batches is not None and done >= max_batches):
                break
            if schedule is not None:
                schedule.step(epoch_index + (batch_id / steps if steps else 0.0))
            hooks.on_step_begin(batch_id)
            train_step(batch)
            hooks.on_step_end()
            done += 1
            if batch_id % REFRESH_EVERY == 0 and (show_bar or batch_id == 0):
                refresh_progress(bar, hooks.running_losses(), learning_rate(), epoch, batch_id)
            bar.update()
        bar.close()
        if end_epoch is not None:
            end_epoch()
        if done == done_before and max_batches is not None:
            # An endless run on an empty loader would spin forever without a single step.
            raise DataError("train_dataloader yielded no batch in an epoch; it is empty")
        hooks.on_epoch_end()
    return done


def refresh_progress(bar, losses, learning_rate, epoch, batch_id):
    """Show the running losses; a non-finite loss stops training with what to try."""
    if not math.isfinite(losses.get("loss", 0.0)):
        raise DataError(f"the training loss became {losses['loss']} at epoch {epoch}, step "
                        f"{batch_id}. Lower the learning rate, check the inputs for NaN/inf, or "
                        f"set distillation.train.max_grad_norm.")
    bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()} | {"lr": f"{learning_rate:.2e}"},
                    refresh=False)


def check_dataloader_section(config, where, built_in):
    """The dataset name and parameters of a dataloader section we can build, or a ConfigError."""
    for unsupported in ("transform", "filter"):
        if config.get(unsupported):
            raise ConfigError(f"{where}.{unsupported}: building {unsupported}s from the config "
                              f"is not supported. Apply it in your dataset (dataset.factory) or "
                              f"assign distiller.train_dataloader / eval_dataloader yourself.")
    (name, params), = config["dataset"].items()
    if name not in built_in:
        raise ConfigError(f"{where}.dataset.{name}: this dataset is not built in (built in: "
                          f"{', '.join(built_in)}). Assign the dataloader in Python "
                          f"(distiller.train_dataloader / eval_dataloader) or use "
                          f"dataset: {{factory: {{name: 'module:attribute'}}}}.")
    return name, params


def read_npz(params, where, base_dir):
    """``inputs`` or ``(inputs, labels)`` NumPy arrays from a config's ``npz`` dataset.

    The file is read without unpickling (a pickle can run code); anything else than an
    ``.npz`` archive of numeric arrays is a DataError that says how to save it.
    """
    path = params["path"]
    if not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    if not os.path.isfile(path):
        raise ConfigError(f"{where}.dataset.npz.path: file {path} not found")
    save_hint = "Save it with np.savez(path, x=inputs, y=labels)."
    try:
        arrays = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        # NumPy's own message suggests allow_pickle=True, which a config cannot (and must not)
        # ask for: a pickle can run code.
        reason = ("it is not NumPy data: reading it would mean unpickling it, which can run code"
                  if "pickle" in str(exc) else str(exc).split(";")[0])
        raise DataError(f"{where}.dataset.npz.path: {path} is not a NumPy .npz file ({reason})."
                        f" {save_hint}") from None
    if not isinstance(arrays, np.lib.npyio.NpzFile):
        raise DataError(f"{where}.dataset.npz.path: {path} holds a single array (a .npy file), "
                        f"not an .npz archive of named arrays. {save_hint}")
    with arrays:
        for key in (params["input_key"], params["label_key"]):
            if key is not None and key not in arrays.files:
                raise ConfigError(f"{where}.dataset.npz: {path} has no array '{key}'; it holds "
                                  f"{sorted(arrays.files)}")
        loaded = [_npz_array(arrays, key, path, where)
                  for key in (params["input_key"], params["label_key"]) if key is not None]
    inputs = loaded[0]
    if params["label_key"] is None:
        return inputs
    labels = loaded[1]
    if labels.shape[0] != inputs.shape[0]:
        raise ConfigError(f"{where}.dataset.npz: {params['input_key']} has {inputs.shape[0]} "
                          f"samples but {params['label_key']} has {labels.shape[0]}")
    return inputs, labels


def _npz_array(arrays, key, path, where):
    """One numeric array of an open .npz file, with at least a sample dimension."""
    try:
        array = arrays[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(f"{where}.dataset.npz: array '{key}' of {path} is an object array "
                            f"(dtype=object), which could only be read by unpickling, and "
                            f"unpickling can run code. Save numeric arrays instead, e.g. "
                            f"np.savez(path, {key}=np.asarray(values, dtype=np.float32)).") \
                from None
        raise DataError(f"{where}.dataset.npz: array '{key}' of {path} cannot be read "
                        f"({exc}); the file may be damaged. Save it again.") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{where}.dataset.npz: array '{key}' of {path} cannot be read "
                        f"({exc}); the file is truncated or damaged. Save it again.") from None
    if array.dtype.kind not in "biuf":
        raise DataError(f"{where}.dataset.npz: array '{key}' of {path} has dtype {array.dtype}; "
                        f"expected numbers (float or int). Convert it before saving.")
    if array.ndim == 0:
        raise DataError(f"{where}.dataset.npz: array '{key}' of {path} is a single number; "
                        f"expected one entry per sample along the first dimension.")
    return np.ascontiguousarray(array)


def dataset_from_factory(params, where, base_dir):
    """The dataset a config's ``factory`` entry builds (``module:attribute`` + kwargs)."""
    factory = resolve(params["name"], f"{where}.dataset.factory.name", base_dir)
    return factory(**params["kwargs"])
