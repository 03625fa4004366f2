"""torchao's PT2E entry points, imported on first use."""

import logging
import types
import warnings

from neural_distill.errors import FrameworkNotInstalledError


def _torchao():
    """torchao's PT2E entry points, imported on first use.

    Importing torchao logs warnings about its CUDA-only kernels (they cannot load with a CPU
    torch, and nothing here needs them) and deprecation notices from torch's pytree registry and
    torch.jit; they are quieted for the import only.
    """
    loggers = [logging.getLogger("torchao"), logging.getLogger("torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            # torchao still decorates a few modules with torch.jit.script_method.
            warnings.filterwarnings("ignore", category=DeprecationWarning,
                                    message=r".*torch\.jit\.script_method")
            from torchao.quantization import pt2e
            from torchao.quantization.pt2e import fake_quantize, lowering, quantize_pt2e
            from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer
    except ImportError as exc:
        raise FrameworkNotInstalledError("torchao (PT2E quantization)", "quantization") from exc
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    return types.SimpleNamespace(pt2e=pt2e, fake_quantize=fake_quantize, lowering=lowering,
                                 quantize_pt2e=quantize_pt2e, x86=x86_inductor_quantizer)

