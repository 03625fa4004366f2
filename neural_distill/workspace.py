"""The workspace of one run: validated config, per-epoch metrics (JSON lines), best student.

Each run gets its own timestamped folder under ``tuning.workspace.path`` so no earlier result
is ever overwritten. Every record logged goes to ``metrics.jsonl`` and, with
``tuning.workspace.tensorboard: true``, to TensorBoard scalars under ``tensorboard/``.
"""

import datetime
import json
import math
import os

import yaml

from .config.loader import to_plain
from .process import is_main_process


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
        self.writes = is_main_process()
        if self.writes:
            os.makedirs(self.path, exist_ok=True)
        self.metrics_file = os.path.join(self.path, "metrics.jsonl")
        self._tensorboard = None

    def write_config(self, config):
        if not self.writes:
            return
        if config.get("tuning", {}).get("workspace", {}).get("tensorboard"):
            from .tensorboard_events import ScalarWriter

            self._tensorboard = ScalarWriter(os.path.join(self.path, "tensorboard"))
        with open(os.path.join(self.path, "config.yaml"), "w", encoding="utf-8") as handle:
            yaml.safe_dump(to_plain(config), handle, sort_keys=False)

    def log_metrics(self, record):
        if not self.writes:
            return
        # Recreated if someone cleaned the workspace mid-run: losing a log line is worse.
        os.makedirs(self.path, exist_ok=True)
        with open(self.metrics_file, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({k: json_safe(v) for k, v in record.items()}) + "\n")
        if self._tensorboard is not None:
            # One point per epoch: the x axis is the epoch, as in metrics.jsonl.
            self._tensorboard.add_scalars(
                {k: v for k, v in record.items() if k not in ("epoch", "step")},
                step=record.get("epoch", 0))

    def file(self, name):
        return os.path.join(self.path, name)
