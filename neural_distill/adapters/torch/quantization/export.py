"""Writing a ``torch.export`` program (``.pt2``) and measuring what it stores."""

import contextlib
import os
import warnings

import torch

from neural_distill.core.exports import ExportInfo
from neural_distill.adapters.torch.quantization.capture import _export


@contextlib.contextmanager
def quiet_copies():
    """Deep-copying an exported module makes torch 2.13 warn that ``isinstance(treespec,
    LeafSpec)`` is deprecated (copy reconstructs the LeafSpec objects of its input/output specs);
    the warning is about torch's own code, so it is hidden while we copy."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)",
                                category=FutureWarning)
        yield



def tensor_bytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def module_weight_bytes(model):
    """Bytes of a model's parameters and buffers (the tensors a checkpoint stores)."""
    return tensor_bytes(list(model.state_dict().values()))


def program_weight_bytes(program):
    """Bytes of the tensors an ExportedProgram stores (parameters, buffers, constants)."""
    return tensor_bytes(list(program.state_dict.values()) + list(program.constants.values()))


def save_exported(model, path, args, kwargs, dynamic_shapes, float_model=None, int8=False):
    program = _export(model, args, kwargs, dynamic_shapes, "export")
    # torch.export.save would also store the example inputs (a batch of the user's data, and
    # with a sliced batch the whole storage behind it): the file is for the model alone.
    program.example_inputs = None
    # Per-node provenance (which pass created the node from which other node, source stack
    # traces) is for debugging the capture; it is most of a small model's file.
    for node in program.graph.nodes:
        for key in ("from_node", "stack_trace", "source_fn_stack", "torch_fn"):
            node.meta.pop(key, None)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    torch.export.save(program, path)
    return ExportInfo(path=path, file_bytes=os.path.getsize(path),
                      weight_bytes=program_weight_bytes(program),
                      float_weight_bytes=module_weight_bytes(float_model) if float_model is not None
                      else program_weight_bytes(program), int8=int8)

