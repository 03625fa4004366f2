"""The PyTorch adapter: how the framework-neutral experiment talks to torch models."""

import copy
import os
import random

import numpy as np
import torch

from ...batches import split_batch
from ...errors import DataError, ModelError
from . import checks as torch_checks
from . import data, loop
from .criteria import build_criterion
from .outputs import call_model, logits_of, to_device


class _TeacherState:
    """What entering teacher mode changed, so that exiting restores it exactly."""

    def __init__(self, modes, device):
        # Every submodule's own flag: a teacher in train mode may hold a frozen (eval)
        # BatchNorm, and teacher.train(flag) would overwrite that.
        self.modes = modes
        self.device = device


class TorchAdapter:
    name = "torch"
    checkpoint_suffix = ".pt"

    # ---------------------------------------------------------------- devices
    @staticmethod
    def model_device(model):
        for tensor in model.parameters():
            return tensor.device
        for tensor in model.buffers():
            return tensor.device
        return torch.device("cpu")

    @staticmethod
    def resolve_device(spec, where):
        if spec in ("gpu", "cuda") or spec.startswith("cuda:"):
            if not torch.cuda.is_available():
                raise ModelError(f"{where}: device '{spec}' was asked for but torch sees no "
                                 f"CUDA device. Use device: cpu (or auto).")
            return torch.device("cuda" if spec == "gpu" else spec)
        if spec == "mps":
            return torch_checks.mps_device(where)
        if spec == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device("cpu")

    @staticmethod
    def move_to_device(module, device):
        if isinstance(module, torch.nn.Module):
            module.to(device)

    # ---------------------------------------------------------------- teacher
    def enter_teacher_mode(self, teacher, device):
        """Eval mode (frozen BatchNorm statistics, no dropout) on the student's device.

        Gradients are never computed for the teacher (it runs under no_grad), so its
        ``requires_grad`` flags are left exactly as the user set them.
        """
        state = _TeacherState([m.training for m in teacher.modules()], self.model_device(teacher))
        teacher.eval()
        if state.device != device:
            teacher.to(device)
        return state

    def exit_teacher_mode(self, teacher, state):
        if self.model_device(teacher) != state.device:
            teacher.to(state.device)
        for module, training in zip(teacher.modules(), state.modes):
            module.training = training

    @staticmethod
    def teacher_forward(teacher, inputs):
        if teacher.training:  # a user loop may have called .train() on everything
            teacher.eval()
        with torch.no_grad():
            return call_model(teacher, inputs)

    def teachers_forward(self, teachers, inputs, weights=None):
        """The teacher's output; with several teachers, their (weighted) mean logits."""
        if len(teachers) == 1:
            return self.teacher_forward(teachers[0], inputs)
        logits = [logits_of(self.teacher_forward(t, inputs), f"teacher[{i}] output")
                  for i, t in enumerate(teachers)]
        if weights is None:
            return torch.stack(logits).mean(0)
        if len(weights) != len(teachers):
            raise ModelError(f"teacher_weights: expected {len(teachers)} weights (one per "
                             f"teacher), got {len(weights)}")
        total = float(sum(weights))
        return sum(w / total * z for w, z in zip(weights, logits))

    def dry_run(self, student, teachers, dataloader, criterion):
        """Run every model once on the first batch (no gradient) and let the criterion
        build what depends on feature shapes. The student's BatchNorm statistics are not
        touched (eval mode)."""
        try:
            batch = next(iter(dataloader))
        except StopIteration:
            raise DataError("train_dataloader is empty") from None
        inputs, _ = self.split_batch(batch)
        inputs = to_device(inputs, self.model_device(student))
        was_training = student.training
        student.eval()
        try:
            with torch.no_grad():
                call_model(student, inputs)
                for teacher in teachers:
                    call_model(teacher, inputs)
        finally:
            student.train(was_training)
        criterion.prepare()

    @staticmethod
    def has_parameters(module):
        return isinstance(module, torch.nn.Module) and any(True for _ in module.parameters())

    @staticmethod
    def as_teacher_output(teacher_output, student_output):
        """Cached teacher outputs (tensors or arrays) on the student's device, no gradient."""
        device = logits_of(student_output, "student output").device
        if isinstance(teacher_output, np.ndarray):
            teacher_output = torch.from_numpy(teacher_output)
        return to_device(teacher_output, device)

    # ---------------------------------------------------------------- criterion
    @staticmethod
    def build_criterion(name, args):
        return build_criterion(name, args)

    @staticmethod
    def check_criterion(criterion):
        for method in ("distillation_loss", "combine"):
            if not callable(getattr(criterion, method, None)):
                raise ModelError(
                    f"distiller.criterion: expected a neural_distill criterion such as "
                    f"PyTorchKnowledgeDistillationLoss (with .{method}), got "
                    f"{type(criterion).__name__}")

    # ---------------------------------------------------------------- running losses
    @staticmethod
    def new_running_losses():
        # Sums stay tensors on the device: reading them (a sync) happens only when shown.
        return {"count": 0, "loss": 0.0, "student_loss": 0.0, "distillation_loss": 0.0,
                "student_count": 0}

    @staticmethod
    def accumulate_losses(running, loss, student_loss, kd_loss):
        running["count"] += 1
        running["loss"] = running["loss"] + loss.detach()
        running["distillation_loss"] = running["distillation_loss"] + kd_loss.detach()
        if student_loss is not None:
            running["student_loss"] = running["student_loss"] + student_loss.detach()
            running["student_count"] += 1

    @staticmethod
    def read_running_losses(running):
        count = running["count"]
        if not count:
            return {}
        values = {"loss": float(running["loss"]) / count,
                  "distillation_loss": float(running["distillation_loss"]) / count}
        if running["student_count"]:
            values["student_loss"] = float(running["student_loss"]) / running["student_count"]
        return values

    # ---------------------------------------------------------------- batches
    @staticmethod
    def split_batch(batch, where="train_dataloader"):
        """(inputs, labels) of a batch (``neural_distill.batches``); labels None if unlabeled."""
        return split_batch(batch, lambda b: isinstance(b, torch.Tensor), where)

    to_device = staticmethod(to_device)
    call_model = staticmethod(call_model)
    logits_of = staticmethod(logits_of)

    # ---------------------------------------------------------------- weights
    @staticmethod
    def snapshot(model):
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    @staticmethod
    def copy_with_state(model, state):
        clone = copy.deepcopy(model)
        if state is not None:
            clone.load_state_dict(state)
        clone.eval()
        return clone

    @staticmethod
    def save_weights(model, path):
        torch.save(model.state_dict(), path)

    @staticmethod
    def load_weights(model, path, where):
        """Load a state dict saved with torch.save; only tensors are unpickled (weights_only)."""
        if not os.path.isfile(path):
            raise ModelError(f"{where}: checkpoint {path} not found")
        state = torch_checks.load_state_dict_file(path, where)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(f"{where}: checkpoint {path} does not match "
                             f"{type(model).__name__}: {exc}") from None

    @staticmethod
    def to_numpy(value):
        return value.detach().cpu().numpy()

    # ---------------------------------------------------------------- training
    @staticmethod
    def seed(seed):
        random.seed(seed)
        torch.manual_seed(seed)

    @staticmethod
    def build_dataloader(loader_config, where, seed, base_dir):
        return data.build_dataloader(loader_config, where, seed, base_dir)

    def evaluate(self, model, dataloader, metric):
        """``metric`` over ``dataloader``; the model's train/eval mode is restored after."""
        was_training = model.training
        device = self.model_device(model)
        metric.reset()
        model.eval()
        try:
            with torch.no_grad():
                for batch in dataloader:
                    inputs, labels = self.split_batch(batch, "eval_dataloader")
                    if labels is None:
                        raise DataError("eval_dataloader: batches need labels to compute the "
                                        "metric; got inputs only")
                    output = call_model(model, to_device(inputs, device))
                    metric.update(self.to_numpy(logits_of(output, "student output")),
                                  self.to_numpy(torch.as_tensor(labels)))
        finally:
            model.train(was_training)
        return metric.result()

    def run_builtin_loop(self, distiller):
        loop.run(self, distiller)


ADAPTER = TorchAdapter()
