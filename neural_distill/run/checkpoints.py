"""Checkpoint files: written atomically, found again, pruned, read with a fallback.

A file is written under a temporary name in the same folder, flushed and fsynced, then renamed
over its final name (and the folder fsynced), so a crash, a kill or a full disk never leaves a
half-written file under a checkpoint's name: the previous checkpoint stays intact.

The format of the contents is the backend's (``adapter.write_state`` / ``read_state``); this
module only knows the names: ``checkpoint-e<epoch>-s<global step><suffix>`` in a run folder.
"""

import errno
import logging
import os
import re

from neural_distill.errors import NeuralDistillError

PREFIX = "checkpoint"
_NAME = re.compile(r"^checkpoint-e(\d+)-s(\d+)(\..+)$")
logger = logging.getLogger("neural_distill")


class CheckpointError(NeuralDistillError):
    """A checkpoint could not be written or read, or does not fit the run."""


def _fsync_folder(folder):
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without folder handles: the rename is all we can do
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def atomic_write(path, write):
    """``write(temporary_path)`` then flush, fsync and rename to ``path``.

    The temporary name ends with the final name, so writers that insist on a suffix (Keras'
    ``.weights.h5``) accept it. On any failure the temporary file is removed and ``path`` is
    as it was; an OSError (a full disk) becomes a CheckpointError saying so.
    """
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".tmp-{os.getpid()}-{name}")
    try:
        write(temporary)
        with open(temporary, "rb+") as handle:
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        try:
            if os.path.exists(temporary):
                os.remove(temporary)
        except OSError:  # a folder made read-only: nothing could be written there either
            pass
        if isinstance(exc, RuntimeError) and _WRITER_FAILURE.search(str(exc)):
            # torch's zip writer says "file write failed" for a full disk or a read-only
            # folder: the folder tells which.
            code = _probe_folder(folder)
            exc = OSError(code, os.strerror(code))
            exc.filename = path
        if isinstance(exc, OSError):
            raise CheckpointError(
                f"could not write {path}: {exc.strerror or exc}. The previous file (if any) is "
                f"intact. Free disk space in {folder} (or make it writable again), or set "
                f"tuning.workspace.path elsewhere."
            ) from exc
        raise
    _fsync_folder(folder)
    return path


_WRITER_FAILURE = re.compile(r"PytorchStreamWriter|file write failed|inline_container|"
                             r"cannot be opened|unexpected pos")


def _probe_folder(folder):
    """The errno a failed write in ``folder`` most likely had: no permission, a read-only
    file system, a full disk, or an input/output error otherwise."""
    if not os.access(folder, os.W_OK):
        return errno.EACCES
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: no statvfs on Windows
        return errno.EIO
    if stats.f_flag & getattr(os, "ST_RDONLY", 1):
        return errno.EROFS
    if stats.f_bavail * stats.f_frsize < (1 << 20):
        return errno.ENOSPC
    return errno.EIO


def checkpoint_name(epoch_index, global_step, suffix):
    return f"{PREFIX}-e{epoch_index:04d}-s{global_step:09d}{suffix}"


def list_checkpoints(folder):
    """The checkpoint files of one run folder, oldest first (by global step, then epoch)."""
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = _NAME.match(name)
        if match:
            found.append((int(match.group(2)), int(match.group(1)), os.path.join(folder, name)))
    return [path for _, _, path in sorted(found)]


def run_folders(root):
    """The run folders under a workspace root, newest first (their names are timestamps)."""
    if not os.path.isdir(root):
        return []
    return [os.path.join(root, name) for name in sorted(os.listdir(root), reverse=True)
            if name.startswith("run-") and os.path.isdir(os.path.join(root, name))]


def prune(folder, keep):
    """Delete all but the newest ``keep`` checkpoints of ``folder``."""
    for path in list_checkpoints(folder)[:-keep]:
        try:
            os.remove(path)
        except OSError:
            pass


def _why(exc):
    """The first line of a reader's error (torch's run on for paragraphs of advice that does
    not apply to a damaged file)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:160]}"


def read_latest(paths, read):
    """``(path, contents)`` of the newest of ``paths`` that ``read`` accepts, or None.

    An unreadable (truncated, corrupt) checkpoint is skipped with a warning: the previous one
    is used instead.
    """
    for path in reversed(paths):
        try:
            return path, read(path)
        except Exception as exc:  # noqa: BLE001 - any failure to read means "not intact"
            logger.warning("checkpoint %s is unreadable (%s); trying the previous one", path,
                           _why(exc))
    return None


def read_one(path, read):
    """The contents of a checkpoint the user named; a CheckpointError if it is unreadable."""
    if not os.path.isfile(path):
        raise CheckpointError(f"tuning.workspace.resume: checkpoint {path} not found. Give a "
                              f"checkpoint file, or 'auto' to use the latest valid one.")
    try:
        return read(path)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"tuning.workspace.resume: checkpoint {path} is unreadable "
                              f"({_why(exc)}); it is truncated or corrupt. Resume from an "
                              f"earlier checkpoint or use 'auto'.") from None
