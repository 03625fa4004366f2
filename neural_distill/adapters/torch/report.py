"""What the run report needs from a PyTorch model: outputs over the evaluation data, its size
and its latency. The figures themselves are computed on NumPy (``neural_distill.report``)."""

import os
import tempfile
import time

import torch

from neural_distill.core import batches
from neural_distill.adapters.torch.adapter import ADAPTER
from neural_distill.adapters.torch.outputs import call_model, logits_of, to_device


def _device(model):
    return ADAPTER.model_device(model)


class _EvalMode:
    """Eval mode for a while, then every submodule's own flag back (a teacher in train mode
    may hold a frozen BatchNorm: ``model.train(flag)`` would overwrite it)."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.modes = [m.training for m in self.model.modules()]
        self.model.eval()

    def __exit__(self, *exc):
        for module, training in zip(self.model.modules(), self.modes):
            module.training = training


def outputs_and_labels(model, dataloader, what):
    """The model's logits over every batch, and the labels, as NumPy arrays."""
    device = _device(model)

    def logits_of_inputs(inputs):
        output = call_model(model, to_device(inputs, device))
        return logits_of(output, f"{what} output").float().cpu().numpy()

    with _EvalMode(model):
        with torch.no_grad():
            return batches.logits_and_labels(ADAPTER, dataloader, logits_of_inputs)


def batch_outputs(model, dataloader, what):
    """Per batch: (logits, labels, attention_mask, input_ids) as NumPy arrays (None where the
    batch has none); a sequence model's logits keep their [batch, seq, vocab] shape."""
    device = _device(model)
    results = []
    with _EvalMode(model):
        with torch.no_grad():
            for batch in dataloader:
                inputs, labels = ADAPTER.split_batch(batch, "eval_dataloader")
                output = call_model(model, to_device(inputs, device))
                logits = logits_of(output, f"{what} output").float().cpu().numpy()
                extra = [inputs.get(key) if isinstance(inputs, dict) else None
                         for key in ("attention_mask", "input_ids")]
                results.append((logits, *[None if v is None else ADAPTER.to_numpy(v)
                                          for v in (labels, *extra)]))
    return results


def first_inputs(dataloader):
    return batches.first_inputs(ADAPTER, dataloader)


def take(inputs, n):
    """The first ``n`` samples of a batch (repeated when the batch is smaller)."""
    def rows(tensor):
        tensor = torch.as_tensor(tensor)
        if tensor.shape[0] < n:
            tensor = tensor.repeat(-(-n // tensor.shape[0]), *([1] * (tensor.dim() - 1)))
        return tensor[:n]

    return batches.map_inputs(rows, inputs)


def latency(model, inputs, repeats):
    """Seconds per forward pass (inference mode), one per repeat, after two warm-up calls."""
    device = _device(model)
    inputs = to_device(inputs, device)
    timings = []
    with _EvalMode(model):
        with torch.inference_mode():
            for i in range(repeats + 2):
                start = time.perf_counter()
                call_model(model, inputs)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if i >= 2:
                    timings.append(time.perf_counter() - start)
    return timings


def parameter_count(model):
    return int(sum(p.numel() for p in model.parameters()))


def bytes_on_disk(model):
    """Size of the model's state dict as saved by ``torch.save`` (what best_student.pt holds)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.pt")
        ADAPTER.save_weights(model, path)
        return os.path.getsize(path)


def sparsity(model):
    """The fraction of zero weights over the model's Conv and Linear layers."""
    from neural_distill.adapters.torch.pruning import model_sparsity

    return model_sparsity(model)


def compressed_bytes(model):
    """Size of the saved state dict once deflate-compressed (zip level 9): what pruned zeros
    save on disk or over the network."""
    import zipfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.pt")
        ADAPTER.save_weights(model, path)
        archive = os.path.join(folder, "model.zip")
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as handle:
            handle.write(path, "model.pt")
        return os.path.getsize(archive)
