"""Which process of a multi-process run this is, without importing any framework.

Launchers announce the layout in the environment: ``torchrun`` (and ``accelerate launch``) set
``RANK``/``WORLD_SIZE``; TensorFlow's multi-worker strategy reads ``TF_CONFIG``. Only the main
process writes the run folder, logs and saved students: every other process trains the same
model on its share of the data and writes nothing.
"""

import json
import os


def world_size():
    """Processes in the run (1 when not launched by a multi-process launcher)."""
    if "WORLD_SIZE" in os.environ:
        return max(int(os.environ["WORLD_SIZE"]), 1)
    cluster = _tf_config().get("cluster", {})
    return max(sum(len(cluster.get(kind, [])) for kind in ("chief", "worker")), 1)


def rank():
    """This process's number, 0 for the main process."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    task = _tf_config().get("task", {})
    if not task:
        return 0
    # With a chief, the chief is the main process; without one, worker 0 is.
    has_chief = bool(_tf_config().get("cluster", {}).get("chief"))
    if task.get("type") == "chief":
        return 0
    return int(task.get("index", 0)) + (1 if has_chief else 0)


def is_main_process():
    return rank() == 0


def _tf_config():
    try:
        config = json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    except json.JSONDecodeError:
        return {}
    return config if isinstance(config, dict) else {}


def local_processes():
    """Processes of this run on this machine (torchrun's LOCAL_WORLD_SIZE)."""
    return max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)


def cpu_threads(setting):
    """Intra-op threads for one process: ``threads`` from the config ('auto' or a count).

    'auto' takes half of this machine's cores, shared among its processes, at least one: on a
    busy machine a framework's default (every core) oversubscribes it, and a small model then
    runs many times slower than on one thread.
    """
    if setting != "auto":
        return int(setting)
    return max(1, (os.cpu_count() or 1) // (2 * local_processes()))
