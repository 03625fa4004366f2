"""The workspace of one run: validated config, per-epoch metrics (JSON lines), best student.

Each run gets its own timestamped folder under ``tuning.workspace.path`` so no earlier result
is ever overwritten. Every record logged goes to ``metrics.jsonl`` and, with
``tuning.workspace.tensorboard: true``, to TensorBoard scalars under ``tensorboard/``.
"""

import datetime
import errno
import json
import math
import os

from neural_distill.run.checkpoints import CheckpointError, atomic_write
from neural_distill.config.loader import to_plain
from neural_distill.errors import ConfigError
from neural_distill.core.process import is_main_process
from neural_distill.core.run_record import config_yaml

RUN_INFO = "run_info.json"


def json_safe(value):
    """``value`` as JSON can hold it: a non-finite float becomes its string ("nan", "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class Workspace:
    """The run folder. In a multi-process run only the main process has one (``writes``);
    the others train the same model and write nothing."""

    def __init__(self, root):
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        self.path = os.path.join(os.path.abspath(root), f"run-{stamp}")
        self.writes = is_main_process()  # only the main process of a multi-process run
        if self.writes:
            try:
                os.makedirs(self.path, exist_ok=True)
            except OSError as exc:  # not creatable: a file in the way, no permission, read-only
                raise ConfigError(file_error_message(root, exc, "creating the run folder")) \
                    from exc
        self.metrics_file = os.path.join(self.path, "metrics.jsonl")
        self._tensorboard = None

    def write_config(self, config):
        if not self.writes:
            return
        if config.get("tuning", {}).get("workspace", {}).get("tensorboard"):
            from neural_distill.core.tensorboard_events import ScalarWriter

            self._tensorboard = ScalarWriter(os.path.join(self.path, "tensorboard"))
        try:
            # config_yaml never fails on values YAML cannot hold (e.g. a callable process).
            with open(os.path.join(self.path, "config.yaml"), "w", encoding="utf-8") as handle:
                handle.write(config_yaml(to_plain(config)))
        except OSError as exc:
            raise ConfigError(file_error_message(self.path, exc, "writing config.yaml")) \
                from exc

    def write_run_info(self, source, seed, deterministic=False):
        """``run_info.json`` when the run starts (a killed run's folder has one too): the seed
        the run used and, for a config file, its path (``report`` reads factories relative to
        its folder)."""
        if not self.writes:
            return
        info = {"seed": seed, "deterministic": bool(deterministic)}
        if isinstance(source, str) and os.path.isfile(source):
            info["config"] = os.path.abspath(source)
        try:
            with open(self.file(RUN_INFO), "w", encoding="utf-8") as handle:
                json.dump(info, handle)
        except OSError as exc:
            raise ConfigError(file_error_message(self.path, exc, f"writing {RUN_INFO}")) \
                from exc

    def log_metrics(self, record):
        if not self.writes:
            return
        # Recreated if someone cleaned the workspace mid-run: losing a log line is worse.
        try:
            os.makedirs(self.path, exist_ok=True)
            with open(self.metrics_file, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({k: json_safe(v) for k, v in record.items()}) + "\n")
        except OSError as exc:
            raise ConfigError(file_error_message(self.path, exc, "writing metrics.jsonl")) \
                from exc
        if self._tensorboard is not None:
            # One point per epoch: the x axis is the epoch, as in metrics.jsonl.
            self._tensorboard.add_scalars(
                {k: v for k, v in record.items() if k not in ("epoch", "step")},
                step=record.get("epoch", 0))

    def file(self, name):
        return os.path.join(self.path, name)

    def save_weights(self, adapter, model, name):
        """Write ``model``'s weights to the file ``name`` atomically (temporary file, fsync,
        rename), so a crash or a full disk never leaves a truncated file; returns the path."""
        path = self.file(name)
        if not self.writes:  # another process of a multi-process run
            return path
        try:
            atomic_write(path, lambda temporary: adapter.save_weights(model, temporary))
        except CheckpointError as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError):
                raise ConfigError(file_error_message(self.path, cause, f"writing {name}")) \
                    from cause
            raise
        return path


def file_error_message(folder, exc, doing):
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        advice = "Free some disk space or choose a workspace on another disk"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "Choose a folder you can write to"
    else:
        advice = "Choose another folder"
    return (f"tuning.workspace.path: {doing} in {folder} failed: {reason}. {advice} "
            f"(tuning.workspace.path).")
