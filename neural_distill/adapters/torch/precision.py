"""Mixed precision for the PyTorch built-in loop: autocast, and loss scaling where fp16 needs it.

The student's and the teachers' forward passes and the loss run under ``torch.autocast`` with
the configured dtype; parameters, gradients and the optimizer stay float32. fp16 gradients
underflow without loss scaling, so fp16 on CUDA uses ``torch.amp.GradScaler``; bf16 has
float32's range and needs none.
"""

import contextlib

import torch

from neural_distill.errors import ConfigError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    def __init__(self, precision, device):
        self.name = precision
        self.device_type = device.type
        dtype = _DTYPES.get(precision)
        if dtype is not None and not torch.amp.autocast_mode.is_autocast_available(
                device.type):
            raise ConfigError(f"distillation.train.precision: {precision} autocast is not "
                              f"available on {device.type}; use fp32")
        self.dtype = dtype
        self.scaler = (torch.amp.GradScaler(device.type)
                       if precision == "fp16" and device.type == "cuda" else None)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss):
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer):
        """Before clipping: gradients in their true scale."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer):
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)  # skips the step when the scaled gradients overflowed
        self.scaler.update()


def teacher_autocast(precision, device):
    """``model.teacher_precision``: a factory of the context the teachers' forward runs in.

    ``fp32`` turns the student's autocast off for the teacher; ``bf16``/``fp16`` autocast it
    alone. Gradients never reach the teacher either way (its forward is under no_grad)."""
    device_type = torch.device(device).type
    dtype = _DTYPES.get(precision)
    if dtype is not None and not torch.amp.autocast_mode.is_autocast_available(device_type):
        raise ConfigError(f"model.teacher_precision: {precision} autocast is not available on "
                          f"{device_type}; use fp32")

    def context():
        if dtype is None:
            return torch.autocast(device_type, enabled=False)
        return torch.autocast(device_type, dtype=dtype)

    return context
