"""PyTorch side of ``neural_distill.run.checks``: the checks that need torch tensors."""

import collections
import math
import pickle
import zipfile

import torch

from neural_distill.core import data_checks as checks
from neural_distill.errors import DataError, ModelError

# How a dict batch's entries reach the model, for core.data_checks.batch_structure_error.
DICT_INPUTS = ("keys", "as keyword arguments",
               "every other key to the model's forward as a keyword argument")


# ---------------------------------------------------------------------------- models
def shared_weights(student, teacher):
    """Names (in the student) of parameters and buffers that are also the teacher's."""
    teacher_tensors = {id(t) for t in teacher.parameters()} | {id(t) for t in teacher.buffers()}
    named = list(student.named_parameters(remove_duplicate=False)) + list(
        student.named_buffers(remove_duplicate=False))
    return [name for name, tensor in named if id(tensor) in teacher_tensors]


def check_model(model, role):
    """Weights on the meta device have no values: nothing can run or be copied."""
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if tensor.is_meta:
            raise ModelError(
                f"{role} has weights on the 'meta' device (e.g. '{name}'): they have shapes "
                f"but no values, so the model cannot run. Load its weights first (e.g. "
                f"model.to_empty(device='cpu') then load_state_dict, or from_pretrained without "
                f"device_map='meta').")


def mps_device(where):
    if not torch.backends.mps.is_available():
        raise ModelError(f"{where}: device 'mps' was asked for but torch sees no Apple MPS "
                         f"device on this machine. Use device: cpu (or auto).")
    return torch.device("mps")


# ---------------------------------------------------------------------------- first batch
def check_batch(student, batch):
    """Nothing to check before the forward pass: a batch the student cannot take fails it."""


def dtype_problem(student, teachers, exc):
    """A clear message when ``exc`` comes from a teacher and student of different dtypes."""
    if not isinstance(exc, RuntimeError) or not any(
            word in str(exc) for word in ("dtype", "scalar type", "Double", "Half", "BFloat16")):
        return None
    student_dtype = _float_dtype(student)
    for teacher in teachers:
        teacher_dtype = _float_dtype(teacher)
        if teacher_dtype is not None and teacher_dtype != student_dtype:
            return (f"teacher_model has {teacher_dtype} weights but the student has "
                    f"{student_dtype} weights, and the batches feed both the same inputs "
                    f"({exc}). Convert the teacher to the student's dtype (e.g. "
                    f"teacher.to({student_dtype})), or make the teacher cast its own inputs.")
    return None


def _float_dtype(model):
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return None


# ---------------------------------------------------------------------------- labels
def student_loss(loss_fn, logits, labels, from_logits):
    """``loss_fn(logits, labels)`` with the labels checked first (shapes only: no sync)."""
    loss_type = "MSE" if loss_fn.__name__ == "label_mse" else "CE"
    checks.check_label_shapes(tuple(logits.shape), tuple(labels.shape),
                              labels.is_floating_point(), loss_type)
    try:
        return loss_fn(logits, labels, from_logits=from_logits)
    except IndexError as exc:  # cross_entropy on CPU: "Target 7 is out of bounds."
        bad = labels[(labels != -100) & ((labels < 0) | (labels >= logits.shape[-1]))]
        if bad.numel():
            raise DataError(checks.label_range_message(int(bad.reshape(-1)[0]),
                                                       logits.shape[-1])) from exc
        raise


# ---------------------------------------------------------------------------- checkpoints
def load_state_dict_file(path, where):
    """A state dict from ``path``, loading tensors only (unpickling objects runs code)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelError(
            f"{where}: checkpoint {path} holds pickled Python objects (probably a whole model "
            f"saved with torch.save(model)), not a state dict; only tensors are loaded, because "
            f"unpickling can run code. Re-save it with torch.save(model.state_dict(), path).") \
            from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{where}: checkpoint {path} cannot be read ({exc}); it is truncated "
                         f"or not a torch checkpoint. Save it again with "
                         f"torch.save(model.state_dict(), path).") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        kind = type(state).__name__
        raise ModelError(f"{where}: checkpoint {path} holds a {kind}, not a state dict "
                         f"(a dict of tensors). Save it with "
                         f"torch.save(model.state_dict(), path).")
    return state


# ---------------------------------------------------------------------------- losses
def first_non_finite(tensors):
    """Index of the first floating tensor holding NaN/inf, or None (one sync, at train end)."""
    for index, tensor in enumerate(tensors):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return index
    return None


class LossFlag:
    """Finds the first non-finite loss without making the device wait at every step.

    On CPU (and any device without asynchronous copies) the scalar is read at once: the value
    exists already, reading it costs about a microsecond, and training stops before the
    backward pass. On CUDA the value is copied asynchronously into pinned memory and an event
    recorded; ``poll`` reads the copies whose event has completed, so the host never waits
    for the device except at epoch end (``wait=True``). The optimizer step of the bad step has
    run by then, which is harmless: the diverged weights are never returned.
    """

    RING = 8

    def __init__(self):
        self._pending = collections.deque()
        self._free = []

    def observe(self, loss, where):
        loss = loss.detach()
        if loss.device.type != "cuda":
            value = loss.item() if loss.numel() == 1 else float(loss.sum())
            return None if math.isfinite(value) else (value, where)
        # float32 keeps NaN and inf of any floating dtype; buffers are reused.
        host = self._free.pop() if self._free else torch.empty((), dtype=torch.float32,
                                                                pin_memory=True)
        host.copy_(loss.reshape(()) if loss.numel() == 1 else loss.sum(), non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._pending.append((host, event, where))
        # Bounded memory: with many steps in flight, wait for the oldest (steps ago).
        return self.poll(where, wait=len(self._pending) > self.RING, oldest_only=True)

    def poll(self, where, wait=False, oldest_only=False):
        while self._pending:
            host, event, at = self._pending[0]
            if not event.query():
                if not wait:
                    return None
                event.synchronize()
            self._pending.popleft()
            value = float(host)
            self._free.append(host)
            if not math.isfinite(value):
                self._pending.clear()
                return value, at
            if oldest_only:
                return None
        return None
