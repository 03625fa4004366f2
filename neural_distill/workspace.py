"""The workspace of one run: validated config, per-epoch metrics (JSON lines), best student.

Each run gets its own timestamped folder under ``tuning.workspace.path`` so no earlier result
is ever overwritten.
"""

import datetime
import errno
import json
import math
import os

from .config.loader import to_plain
from .errors import ConfigError
from .run_record import config_yaml


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class Workspace:
    def __init__(self, root):
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        self.path = os.path.join(os.path.abspath(root), f"run-{stamp}")
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:  # not creatable: a file in the way, no permission, read-only
            raise ConfigError(file_error_message(root, exc, "creating the run folder")) \
                from exc
        self.metrics_file = os.path.join(self.path, "metrics.jsonl")

    def write_config(self, config):
        try:
            # config_yaml never fails on values YAML cannot hold (e.g. a callable process).
            with open(os.path.join(self.path, "config.yaml"), "w", encoding="utf-8") as handle:
                handle.write(config_yaml(to_plain(config)))
        except OSError as exc:
            raise ConfigError(file_error_message(self.path, exc, "writing config.yaml")) \
                from exc

    def log_metrics(self, record):
        # Recreated if someone cleaned the workspace mid-run: losing a log line is worse.
        try:
            os.makedirs(self.path, exist_ok=True)
            with open(self.metrics_file, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({k: _json_safe(v) for k, v in record.items()}) + "\n")
        except OSError as exc:
            raise ConfigError(file_error_message(self.path, exc, "writing metrics.jsonl")) \
                from exc

    def file(self, name):
        return os.path.join(self.path, name)

    def save_weights(self, adapter, model, name):
        """Write ``model``'s weights to the file ``name`` through a temporary file and a rename,
        so a full disk never leaves a truncated file; returns the path."""
        path = self.file(name)
        temporary = self.file(".tmp-" + name)
        try:
            adapter.save_weights(model, temporary)
            os.replace(temporary, path)
        except OSError as exc:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise ConfigError(file_error_message(self.path, exc, f"writing {name}")) from exc
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
