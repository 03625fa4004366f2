"""Pausing, freezing and inspecting the fake quantizers of a prepared model."""

import contextlib

import torch

from neural_distill.adapters.torch.quantization.backend import _torchao


@contextlib.contextmanager
def quantizers_paused(model, fake_quant=False):
    """Observers (and, with ``fake_quant``, fake quantization) off; flags restored exactly."""
    ao = _torchao()
    modules = [m for m in model.modules() if isinstance(m, ao.fake_quantize.FakeQuantizeBase)]
    saved = [(m.fake_quant_enabled.clone(), m.observer_enabled.clone()) for m in modules]
    for module in modules:
        module.disable_observer()
        if fake_quant:
            module.disable_fake_quant()
    try:
        yield
    finally:
        for module, (fq, observer) in zip(modules, saved):
            module.fake_quant_enabled.copy_(fq)
            module.observer_enabled.copy_(observer)


def freeze_observers(model):
    _torchao()
    for module in model.modules():
        if hasattr(module, "disable_observer") and hasattr(module, "observer_enabled"):
            module.disable_observer()



def _unobserved(model):
    """Names of the quantizers that have not seen a single value yet."""
    ao = _torchao()
    names = []
    for name, module in model.named_modules():
        if isinstance(module, ao.fake_quantize.FakeQuantizeBase):
            observer = getattr(module, "activation_post_process", None)
            low = getattr(observer, "min_val", None)
            if isinstance(low, torch.Tensor) and (low.numel() == 0 or bool(torch.isinf(low).any())):
                names.append(name)
    return names

