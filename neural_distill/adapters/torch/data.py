"""Building PyTorch dataloaders from the ``dataloader`` section of a config."""

import weakref

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from neural_distill.run.loop_common import check_dataloader_section, dataset_from_factory, read_npz


class _InputsOnly(Dataset):
    """A dataset of inputs without labels: a transfer set for pure distillation."""

    def __init__(self, inputs):
        self.inputs = inputs

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        return self.inputs[index]


def _dummy(params, where, base_dir):
    generator = torch.Generator().manual_seed(params["seed"])
    dtype = getattr(torch, params["dtype"])
    shape = params["shape"]
    inputs = torch.rand(shape, generator=generator, dtype=dtype)
    inputs = inputs * (params["high"] - params["low"]) + params["low"]
    if not params["label"]:
        return _InputsOnly(inputs)
    labels = torch.randint(0, params["num_classes"], (shape[0],), generator=generator)
    return TensorDataset(inputs, labels)


def _npz(params, where, base_dir):
    arrays = read_npz(params, where, base_dir)
    if not isinstance(arrays, tuple):
        return _InputsOnly(torch.from_numpy(arrays))
    return TensorDataset(*(torch.from_numpy(a) for a in arrays))


DATASETS = {"dummy": _dummy, "npz": _npz, "factory": dataset_from_factory}

# Loaders this module built: under torchrun they are ours to shard; a user's loader is not.
_BUILT_FROM_CONFIG = weakref.WeakSet()


def built_from_config(loader):
    return loader in _BUILT_FROM_CONFIG


def build_dataloader(config, where, seed, base_dir):
    """A DataLoader from a validated ``dataloader`` section; shuffling is seeded."""
    name, params = check_dataloader_section(config, where, DATASETS)
    dataset = DATASETS[name](params, where, base_dir)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=config["batch_size"], shuffle=config["shuffle"],
                        drop_last=config["last_batch"] == "no_rollover",
                        num_workers=config["num_workers"], generator=generator)
    if config.get("distributed") is not False:
        _BUILT_FROM_CONFIG.add(loader)
    return loader
