"""A student sharded with FSDP (``torch.distributed.fsdp.fully_shard``) under ``torchrun``.

``distillation.train.distributed.strategy: fsdp`` shards the student's parameters, gradients
and optimizer state across the processes instead of replicating them (DDP): each direct child
of the student that holds parameters becomes one FSDP unit (its parameters are all-gathered
for its forward and backward, then freed), and the root takes whatever is left. Teachers are
never sharded: each process keeps its frozen replica, as under DDP.

Sharding is in place (``fully_shard`` changes the module's class and turns its parameters
into ``DTensor`` shards), so everything that reads or writes the student's weights goes
through here: full state dicts are gathered (every process takes part, one tensor at a time,
onto the CPU) for the best student and checkpoints, and loaded back into the shards on resume.
The plain module the user gave is kept as a *skeleton* (its structure, no weights): the best
student is built from it, so ``fit()`` still returns the user's own class.
"""

import copy
import weakref

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_optimizer_state_dict,
                                                     set_model_state_dict,
                                                     set_optimizer_state_dict)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from neural_distill.errors import ModelError
from neural_distill.core.logging_utils import get_logger

# The plain skeleton of each sharded student, and the modules each optimizer trains (its
# checkpointed state is named by their parameter names). Weak: nothing here outlives a run.
_SKELETONS = weakref.WeakKeyDictionary()
_OPTIMIZED = weakref.WeakKeyDictionary()
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def is_sharded(model):
    return isinstance(model, FSDPModule)


def units(student):
    """(name, submodule) of the FSDP units below the root: direct children with parameters."""
    return [(name, child) for name, child in student.named_children()
            if any(True for _ in child.parameters())]


def shard_student(student, device, reshard_after_forward=True):
    """Shard ``student`` in place across the process group; returns it."""
    if is_sharded(student):
        return student
    _SKELETONS[student] = _skeleton(student)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    sharded = []
    for name, child in units(student):
        sharded.append(name)
        fully_shard(child, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(student, mesh=mesh, reshard_after_forward=reshard_after_forward)
    get_logger().info("student sharded with FSDP across %d processes: %s and the root",
                      dist.get_world_size(), ", ".join(sharded) or "no submodule")
    return student


def _skeleton(student):
    """A copy of ``student`` with its structure and hooks but weights on the meta device
    (no memory): deepcopy is told each tensor's copy in advance."""
    memo = {}
    for tensor in list(student.parameters()) + list(student.buffers()):
        empty = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = (torch.nn.Parameter(empty, requires_grad=tensor.requires_grad)
                            if isinstance(tensor, torch.nn.Parameter) else empty)
    return copy.deepcopy(student, memo)


def track_optimizer(optimizer, student, criterion):
    """Remember what ``optimizer`` trains, so its state can be gathered and loaded by name."""
    modules = torch.nn.ModuleDict({"student": student})
    if isinstance(criterion, torch.nn.Module) and any(True for _ in criterion.parameters()):
        modules["criterion"] = criterion
    _OPTIMIZED[optimizer] = modules


def check_user_optimizer(optimizer, student):
    """An optimizer built before sharding would step parameters the student no longer has."""
    if optimizer is not None and not is_sharded(student):
        raise ModelError(
            "distiller.optimizer: under distillation.train.distributed.strategy: fsdp the "
            "student's parameters are replaced by shards when training starts, so an optimizer "
            "built beforehand would update nothing. Leave distiller.optimizer unset and "
            "describe it in distillation.train.optimizer instead.")


def full_state(model):
    """The full (unsharded) state dict of a sharded ``model`` on the CPU, in every process."""
    state = {}
    for name, tensor in model.state_dict().items():
        if isinstance(tensor, DTensor):
            tensor = tensor.full_tensor()  # a collective: every process gathers this tensor
        state[name] = tensor.detach().to("cpu", copy=True)
    return state


def load_full_state(model, state):
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))


def plain_copy(model, state):
    """The user's own class (the skeleton) holding the full weights ``state`` (its tensors,
    not copies of them: ``state`` is already a copy of the shards)."""
    clone = copy.deepcopy(_SKELETONS[model])
    _drop_removed_hooks(clone, model)
    # No state (nothing was evaluated): the weights as they are now, gathered.
    clone.load_state_dict(full_state(model) if state is None else state, assign=True)
    clone.eval()
    return clone


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
               "_backward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks")


def _drop_removed_hooks(clone, model):
    """The skeleton was copied with the hooks of that moment (the criterion's feature hooks
    among them): keep only those the model still has (hook ids are unique in a process)."""
    for (_, copied), (_, live) in zip(clone.named_modules(), model.named_modules()):
        for attribute in _HOOK_DICTS:
            hooks, kept = getattr(copied, attribute, None), getattr(live, attribute, {})
            if hooks is None:
                continue
            for key in [k for k in hooks if k not in kept]:
                del hooks[key]
                for extra in ("_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                              "_forward_pre_hooks_with_kwargs"):
                    getattr(copied, extra, {}).pop(key, None)


def trains_sharded(optimizer):
    return optimizer in _OPTIMIZED


def optimizer_state(optimizer):
    """The optimizer's full state (parameters named, not numbered) on rank 0, empty elsewhere;
    every process must call this (the shards are gathered)."""
    return get_optimizer_state_dict(_OPTIMIZED[optimizer], optimizer, options=_FULL)


def load_optimizer_state(optimizer, state):
    """Load a full state written by :func:`optimizer_state` into the sharded optimizer (every
    process reads the checkpoint and keeps its own shard)."""
    set_optimizer_state_dict(_OPTIMIZED[optimizer], optimizer, state,
                             options=StateDictOptions(full_state_dict=True))
