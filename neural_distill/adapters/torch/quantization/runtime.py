"""Loading an exported int8 program, lowering it to oneDNN int8 kernels, timing it."""

import json
import os
import re
import statistics
import time
import zipfile

import torch

from neural_distill.errors import ConfigError, ModelError
from neural_distill.adapters.torch.quantization.backend import _torchao
from neural_distill.adapters.torch.quantization.capture import normalize_example_inputs
from neural_distill.adapters.torch.quantization.export import quiet_copies


def lower_to_x86(quantized, example_inputs):
    """The int8 q/dq model lowered to oneDNN int8 kernels (specialized to this input shape).

    torchao's lowering turns flatten into ``view``, which fails on the channels-last output of
    the int8 convolutions; ``reshape`` computes the same and copies only when it must.
    """
    ao = _torchao()
    args, kwargs = normalize_example_inputs(example_inputs, "lower_to_x86: example_inputs")
    if kwargs:
        raise ConfigError("lower_to_x86: example_inputs: torchao's x86 lowering takes positional "
                          "inputs only; got keyword inputs. Pass a tensor or a tuple.")
    with torch.no_grad(), quiet_copies():
        lowered = ao.lowering.lower_pt2e_quantized_to_x86(quantized, args)
    for node in lowered.graph.nodes:
        if node.op == "call_function" and node.target is torch.ops.aten.view.default:
            node.target = torch.ops.aten.reshape.default
    lowered.recompile()
    return lowered


# What a program written by ``export`` holds, relative to the archive's root folder. Anything
# else (legacy ``.pt`` weight files, AOTInductor or ExecuTorch payloads, pickled objects) is
# refused: torch.export.load would unpickle it.
_ARCHIVE_FILES = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/[\w.-]+\.json|data/weights/(weight_\d+|[\w.-]+_weights_config\.json)"
    r"|data/constants/(tensor_\d+|[\w.-]+_constants_config\.json)"
    r"|data/sample_inputs/[\w.-]+\.pt|extra/[\w./-]+)")


def _refuse(path, what):
    return ModelError(
        f"load_int8: {path}: {what}. torch.export.load would unpickle it, and unpickling runs "
        f"any code the file's author put in it, so the file is refused. load_int8 reads programs "
        f"written by manager.export() (plain tensors and JSON only); re-export the model from "
        f"its training code, and load files only from sources you trust.")


def check_archive(path):
    """Refuse a ``.pt2`` archive that torch.export.load would read with pickle.

    torch.export.load unpickles (``torch.load(weights_only=False)`` or ``pickle.loads``) every
    weight or constant whose config says ``use_pickle``, custom and opaque objects, legacy
    ``.pt`` weight files, and sample inputs that do not load as plain tensors. Programs written
    by ``export`` contain none of these: plain tensor files, JSON configs and an empty
    sample-inputs record.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"load_int8: {path}: not a torch.export program (.pt2 zip archive): "
                         f"{exc}. Pass a file written by manager.export().") from None
    with archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        roots = {name.split("/", 1)[0] for name in names}
        if len(roots) != 1 or any("/" not in name for name in names):
            raise ModelError(f"load_int8: {path}: not a torch.export program: expected every "
                             f"file under one root folder. Pass a file written by "
                             f"manager.export().")
        for name in names:
            inner = name.split("/", 1)[1]
            if not _ARCHIVE_FILES.fullmatch(inner):
                raise _refuse(path, f"it contains '{inner}', which is not plain tensor data "
                                    f"or JSON")
            if inner.startswith("data/sample_inputs/") and archive.getinfo(name).file_size:
                # torch.export.load retries a sample-input record that is not plain tensors
                # with weights_only=False; export() never stores one.
                raise _refuse(path, f"it stores example inputs ('{inner}'), which may be a "
                                    f"pickle")
            if inner.endswith("_config.json"):
                _check_payload_config(path, inner, archive.read(name))


def _check_payload_config(path, inner, raw):
    try:
        entries = json.loads(raw.decode("utf-8"))["config"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise _refuse(path, f"'{inner}' is not a valid payload config") from None
    if not isinstance(entries, dict):
        raise _refuse(path, f"'{inner}' is not a valid payload config")
    for key, entry in entries.items():
        if not isinstance(entry, dict):
            raise _refuse(path, f"'{inner}': entry '{key}' is not a valid payload record")
        if entry.get("use_pickle"):
            raise _refuse(path, f"'{inner}' marks '{key}' as use_pickle (a pickled tensor or "
                                f"object)")
        file_name = str(entry.get("path_name", ""))
        if not (file_name.startswith("weight_") or file_name.startswith("tensor_")):
            raise _refuse(path, f"'{inner}': '{key}' is stored as '{file_name}', a custom or "
                                f"opaque object that is unpickled")


def load_int8(path, example_inputs=None):
    """Load a model written by ``export``.

    With ``example_inputs``: lowered to int8 oneDNN kernels for inputs of that shape (the fast
    path). Without: the portable q/dq module, which computes the same numbers with float kernels.
    The file is checked first (:func:`check_archive`): one that torch.export.load would unpickle
    is refused with a ModelError.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelError(f"load_int8: {path} not found")
    check_archive(path)
    _torchao()  # registers the quantized_decomposed ops the program refers to
    with quiet_copies():
        module = torch.export.load(path).module()
    if example_inputs is None:
        return module
    return lower_to_x86(module, example_inputs)


def int8_kernels(model):
    """The oneDNN int8 ops a lowered model calls (empty for a float or q/dq model)."""
    return sorted({str(node.target) for node in model.graph.nodes
                   if node.op == "call_function" and str(node.target).startswith("onednn.q")})


def measure_latency(model, example_inputs, repeats=30, warmup=5):
    """Median milliseconds per call of ``model`` on ``example_inputs`` (no gradient)."""
    args, kwargs = normalize_example_inputs(example_inputs, "measure_latency")
    times = []
    with torch.no_grad():
        for index in range(warmup + repeats):
            start = time.perf_counter()
            model(*args, **kwargs)
            if index >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3
