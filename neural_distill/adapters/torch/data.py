"""Building PyTorch dataloaders from the ``dataloader`` section of a config."""

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ...errors import ConfigError
from ...loop_common import check_dataloader_section
from ...factories import resolve


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
    path = params["path"]
    if not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    if not os.path.isfile(path):
        raise ConfigError(f"{where}.dataset.npz.path: file {path} not found")
    with np.load(path, allow_pickle=False) as arrays:
        for key in (params["input_key"], params["label_key"]):
            if key is not None and key not in arrays.files:
                raise ConfigError(f"{where}.dataset.npz: {path} has no array '{key}'; it holds "
                                  f"{sorted(arrays.files)}")
        inputs = torch.from_numpy(np.ascontiguousarray(arrays[params["input_key"]]))
        if params["label_key"] is None:
            return _InputsOnly(inputs)
        labels = torch.from_numpy(np.ascontiguousarray(arrays[params["label_key"]]))
    if labels.shape[0] != inputs.shape[0]:
        raise ConfigError(f"{where}.dataset.npz: {params['input_key']} has {inputs.shape[0]} "
                          f"samples but {params['label_key']} has {labels.shape[0]}")
    return TensorDataset(inputs, labels)


def _factory(params, where, base_dir):
    factory = resolve(params["name"], f"{where}.dataset.factory.name", base_dir)
    return factory(**params["kwargs"])


DATASETS = {"dummy": _dummy, "npz": _npz, "factory": _factory}


def build_dataloader(config, where, seed, base_dir):
    """A DataLoader from a validated ``dataloader`` section; shuffling is seeded."""
    name, params = check_dataloader_section(config, where, DATASETS)
    dataset = DATASETS[name](params, where, base_dir)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=config["batch_size"], shuffle=config["shuffle"],
                      drop_last=config["last_batch"] == "no_rollover",
                      num_workers=config["num_workers"], generator=generator)
