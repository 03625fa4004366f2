"""Data-parallel PyTorch training under ``torchrun``: nothing here is a scheme of our own.

``torch.distributed`` does the work: the process group comes from the environment ``torchrun``
sets (gloo on CPU, nccl on GPU), the student is wrapped in ``DistributedDataParallel``, and
config-built loaders read their shard through a ``DistributedSampler``. Teachers are never
wrapped: each process holds a frozen replica and runs it on its own shard. Parameters that
live outside the student (trained feature matchers) have their gradients averaged by
``all_reduce`` in a post-accumulate hook, exactly what DDP does for the student's own.
``distillation.train.distributed.strategy: fsdp`` shards the student instead (``fsdp.py``).
"""

import atexit
import datetime
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from neural_distill.errors import ModelError
from neural_distill.core.logging_utils import get_logger
from neural_distill.core.process import world_size


def launched():
    """True in a process started by torchrun (or accelerate) with more than one process."""
    return world_size() > 1


def active():
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_process_group(device):
    """Join the launcher's process group (once); returns the device this process trains on."""
    if not launched():
        return device
    if not dist.is_available():
        raise ModelError("this run was started by torchrun with several processes, but this "
                         "torch build has no torch.distributed support")
    if device.type == "cuda":
        # One GPU per process: the launcher's LOCAL_RANK picks it.
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=30))
        # The group we created is ours to close. Left to interpreter finalization, gloo's
        # worker threads can outlive Python and the process dies with SIGABRT ("terminate
        # called without an active exception") after a run that succeeded.
        atexit.register(_leave_process_group)
    return device


def _leave_process_group():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_student(student, device, settings=None):
    """The student as the loop trains it when several processes run: DDP-wrapped, or sharded
    in place with FSDP (``settings``: ``distillation.train.distributed``)."""
    settings = settings or {}
    if not active() or isinstance(student, DistributedDataParallel):
        return student
    if not any(p.requires_grad for p in student.parameters()):
        return student
    if settings.get("strategy", "ddp") == "fsdp":
        # torch's FSDP takes a second to import: only when asked for
        from neural_distill.adapters.torch import fsdp
        return fsdp.shard_student(student, device,
                                  settings.get("reshard_after_forward", True))
    return DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda"
                                   else None)


def check_fsdp_optimizer(optimizer, student):
    """A user's optimizer was built on the parameters FSDP is about to replace: refused."""
    from neural_distill.adapters.torch import fsdp
    fsdp.check_user_optimizer(optimizer, student)


def track_optimizer(optimizer, student, criterion):
    """A sharded student's optimizer: its state is gathered and loaded by parameter name."""
    fsdp = sharding()
    if fsdp is not None and fsdp.is_sharded(student):
        fsdp.track_optimizer(optimizer, student, criterion)


def sharding():
    """Our FSDP module when a run has loaded it (sharded models and optimizers are known
    there), else None: nothing can be sharded before it is imported."""
    return sys.modules.get(__package__ + ".fsdp")


def average_gradients_of(module):
    """Average the gradients of ``module``'s parameters across processes as they arrive."""
    if not active() or not isinstance(module, torch.nn.Module):
        return []
    size = dist.get_world_size()

    def average(parameter):
        dist.all_reduce(parameter.grad)
        parameter.grad.div_(size)

    return [p.register_post_accumulate_grad_hook(average)
            for p in module.parameters() if p.requires_grad]


def shard_loader(loader, seed, built_from_config):
    """Each process's share of ``loader``: config-built loaders get a DistributedSampler."""
    if not active() or not isinstance(loader, DataLoader):
        return loader
    if isinstance(loader.sampler, DistributedSampler):
        return _EpochSetting(loader)
    if not built_from_config:
        get_logger().warning(
            "train_dataloader is not sharded: under torchrun every process trains on all of it, "
            "so each epoch sees the data %d times. Give it a "
            "torch.utils.data.DistributedSampler (or build it from the config's dataloader "
            "section, which does).", dist.get_world_size())
        return loader
    sampler = DistributedSampler(loader.dataset, shuffle=isinstance(loader.sampler, RandomSampler),
                                 seed=seed, drop_last=loader.drop_last)
    return _EpochSetting(DataLoader(
        loader.dataset, batch_size=loader.batch_size, sampler=sampler,
        drop_last=loader.drop_last, num_workers=loader.num_workers,
        collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
        # The same generator: iterating a loader without one draws from the global RNG, which
        # would shift everything seeded after it (e.g. the matchers' initial weights).
        generator=loader.generator))


class _EpochSetting:
    """Iterates a loader, telling its DistributedSampler the epoch, so every epoch reshuffles
    (the same way on every process). ``epoch`` is the one the next iteration uses: a resumed
    run sets it back to the interrupted epoch's (``sampler_epoch`` / ``set_sampler_epoch``)."""

    def __init__(self, loader):
        self.loader = loader
        self.epoch = 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.loader.sampler.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)


def sampler_epoch(loader):
    """The epoch a sharded loader's next pass shuffles with, or None for any other loader."""
    return loader.epoch if isinstance(loader, _EpochSetting) else None


def set_sampler_epoch(loader, epoch):
    if isinstance(loader, _EpochSetting):
        loader.epoch = int(epoch)


def mean_over_processes(values):
    """{name: float} averaged over processes (each process's running losses)."""
    if not active() or not values:
        return values
    names = sorted(values)
    tensor = torch.tensor([float(values[n]) for n in names], dtype=torch.float64)
    dist.all_reduce(tensor)
    tensor /= dist.get_world_size()
    return dict(zip(names, tensor.tolist()))
