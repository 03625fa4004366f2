"""The PyTorch adapter: how the framework-neutral experiment talks to torch models."""

import contextlib
import copy
import hashlib
import os
import random

import numpy as np
import torch

from neural_distill.core.batches import split_batch
from neural_distill.errors import ModelError
from neural_distill.adapters.base import BackendAdapter
from neural_distill.adapters.torch import checks as torch_checks
from neural_distill.adapters.torch import data, distributed, loop, tokens
from neural_distill.adapters.torch.outputs import call_model, logits_of, to_device
from neural_distill.adapters.torch.state import RunningLosses
from neural_distill.adapters.torch.precision import teacher_autocast


class _TeacherState:
    """What entering teacher mode changed, so that exiting restores it exactly."""

    def __init__(self, modes, device):
        # Every submodule's own flag: a teacher in train mode may hold a frozen (eval)
        # BatchNorm, and teacher.train(flag) would overwrite that.
        self.modes = modes
        self.device = device


class TorchAdapter(BackendAdapter):
    name = "torch"
    state_suffix = ".pt"
    criterion_example = "PyTorchKnowledgeDistillationLoss"
    checks_first_step_outputs = True  # adapters/torch/loop.py calls check_first_output
    reads_token_records = True  # criteria.py reads TokenTargets (teacher_cache/token_records.py)

    @staticmethod
    def set_threads(threads):
        torch.set_num_threads(threads)

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

    def teacher_precision(self, precision, device):
        """The teachers' forward under autocast to bf16/fp16, or out of the student's autocast
        (fp32). Their weights are never cast: the teacher is not modified; a teacher loaded in
        bf16 by the user keeps its own memory saving."""
        if precision is None:
            return None
        return teacher_autocast(precision, device)

    @staticmethod
    def teacher_forward(teacher, inputs):
        if teacher.training:  # a user loop may have called .train() on everything
            teacher.eval()
        with torch.no_grad():
            return call_model(teacher, inputs)

    @staticmethod
    def mean_tensors(tensors, weights=None):
        if weights is None:
            return torch.stack(tensors).mean(0)
        return sum(w * z for w, z in zip(weights, tensors))

    @staticmethod
    def peek_batch(dataloader):
        # A shuffling DataLoader draws its order from its generator (or torch's global one)
        # when iterated: both are put back, so the peek does not change what is trained.
        generator = getattr(dataloader, "generator", None)
        state = generator.get_state() if isinstance(generator, torch.Generator) else None
        with torch.random.fork_rng(devices=[]):
            batch = next(iter(dataloader))
        if state is not None:
            generator.set_state(state)
        return batch

    def inference_forward(self, model, inputs):
        with torch.no_grad():
            return call_model(model, to_device(inputs, self.model_device(model)))

    predict = inference_forward

    @staticmethod
    @contextlib.contextmanager
    def evaluation_mode(model):
        was_training = model.training
        model.eval()
        try:
            yield
        finally:
            model.train(was_training)

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
    # ---------------------------------------------------------------- running losses
    @staticmethod
    def mean_over_processes(values):
        return distributed.mean_over_processes(values)

    @staticmethod
    def new_running_losses():
        return RunningLosses()

    @staticmethod
    def reduce_mean(tensor):
        return tensor.mean()

    # ---------------------------------------------------------------- batches
    @staticmethod
    def split_batch(batch, where="train_dataloader"):
        """(inputs, labels) of a batch (``neural_distill.core.batches``); labels None if unlabeled."""
        return split_batch(batch, lambda b: isinstance(b, torch.Tensor), where)

    logits_of = staticmethod(logits_of)
    # Per-token cache records, selected on the logits' device (teacher_cache/token_records.py).
    counted_rows = staticmethod(tokens.counted_rows)
    top_k_log_probs = staticmethod(tokens.top_k_log_probs)

    # ---------------------------------------------------------------- weights
    @staticmethod
    def is_sharded(model):
        """Sharded with FSDP: reading its weights is a collective every process joins."""
        fsdp = distributed.sharding()
        return fsdp is not None and fsdp.is_sharded(model)

    def snapshot(self, model):
        if self.is_sharded(model):
            return distributed.sharding().full_state(model)
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def copy_with_state(self, model, state):
        if self.is_sharded(model):  # the user's own class, not the sharded one
            return distributed.sharding().plain_copy(model, state)
        clone = copy.deepcopy(model, _detached_attributes(model))
        if state is not None:
            clone.load_state_dict(state)
        clone.eval()
        return clone

    def load_snapshot(self, model, state):
        if self.is_sharded(model):
            distributed.sharding().load_full_state(model, state)
        else:
            model.load_state_dict(state)

    @staticmethod
    def fingerprint(model):
        digest = hashlib.sha256()
        for name, tensor in model.state_dict().items():
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    @staticmethod
    def save_weights(model, path):
        torch.save(model.state_dict(), path)

    @staticmethod
    def load_weights_file(model, path, where):
        """Load a state dict saved with torch.save; only tensors are unpickled (weights_only)."""
        state = torch_checks.load_state_dict_file(path, where)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(f"{where}: checkpoint {path} does not match "
                             f"{type(model).__name__}: {exc}") from None

    @staticmethod
    def to_numpy(value):
        value = torch.as_tensor(value).detach().cpu()
        if value.dtype == torch.bfloat16:  # NumPy has no bfloat16
            value = value.float()
        return value.numpy()

    def named_arrays(self, model):
        return [(name, self.to_numpy(tensor)) for name, tensor in model.state_dict().items()]

    # ---------------------------------------------------------------- training
    @staticmethod
    def seed(seed):
        random.seed(seed)
        torch.manual_seed(seed)

    @staticmethod
    def make_deterministic():
        # cuBLAS needs a fixed workspace for deterministic matrix products (CUDA >= 10.2).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False

    @staticmethod
    def rng_state():
        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @staticmethod
    def model_rng_state(model):
        """None: torch modules (Dropout & co.) draw from the global generators."""
        return None

    @staticmethod
    def set_model_rng_state(model, state):
        """Nothing to restore (see model_rng_state)."""

    @staticmethod
    def set_rng_state(state):
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    @staticmethod
    def _generators(loader):
        """The loader's own generators (its shuffling and worker seeds come from them; with
        none, from torch's global generator, which the run state captures)."""
        found = []
        for owner in (loader, getattr(loader, "sampler", None),
                      getattr(loader, "batch_sampler", None),
                      getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
            generator = getattr(owner, "generator", None)
            if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
                found.append(generator)
        return found

    def data_order_state(self, loader):
        """What decides the order of the loader's next pass: its generators' states, and for a
        loader sharded under torchrun the DistributedSampler's epoch (its shuffle seed)."""
        generators = [g.get_state() for g in self._generators(loader)]
        epoch = distributed.sampler_epoch(loader)
        return generators if epoch is None else {"generators": generators,
                                                 "sampler_epoch": epoch}

    def set_data_order_state(self, loader, state):
        if isinstance(state, dict):
            distributed.set_sampler_epoch(loader, state["sampler_epoch"])
            state = state["generators"]
        for generator, saved in zip(self._generators(loader), state or []):
            generator.set_state(saved)

    @staticmethod
    def advance_data_order(loader):
        """Nothing: the resumed epoch's order comes from the saved generator states."""

    @staticmethod
    def optimizer_state(optimizer):
        fsdp = distributed.sharding()
        if fsdp is not None and fsdp.trains_sharded(optimizer):
            return fsdp.optimizer_state(optimizer)  # full, parameters named; rank 0 only
        return optimizer.state_dict()

    @staticmethod
    def load_optimizer_state(optimizer, state):
        fsdp = distributed.sharding()
        if fsdp is not None and fsdp.trains_sharded(optimizer):
            fsdp.load_optimizer_state(optimizer, state)
        else:
            optimizer.load_state_dict(state)

    def owned_copy(self, tree):
        if isinstance(tree, torch.Tensor):
            return tree.detach().clone()
        if isinstance(tree, dict):
            return {key: self.owned_copy(value) for key, value in tree.items()}
        if isinstance(tree, (list, tuple)):
            return type(tree)(self.owned_copy(value) for value in tree)
        return tree

    @staticmethod
    def write_state(state, path):
        torch.save(state, path)

    @staticmethod
    def read_state(path):
        return torch.load(path, map_location="cpu", weights_only=True)

    @staticmethod
    def build_dataloader(loader_config, where, seed, base_dir):
        return data.build_dataloader(loader_config, where, seed, base_dir)

    def run_builtin_loop(self, distiller):
        loop.run(self, distiller)


def _detached_attributes(model):
    """A deepcopy memo giving detached copies of the tensors a model keeps from its last
    forward with gradients (``self.last = out``): deepcopy refuses non-leaf tensors."""
    return {id(value): value.detach().clone() for module in model.modules()
            for value in vars(module).values()
            if isinstance(value, torch.Tensor) and value.grad_fn is not None}


ADAPTER = TorchAdapter()
