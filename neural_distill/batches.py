"""Reading (inputs, labels) out of a batch, the same way for every framework."""

from .errors import DataError


def split_batch(batch, is_single_input, where="train_dataloader"):
    """(inputs, labels) of a batch; labels is None for an unlabeled batch.

    ``is_single_input(batch)`` says whether the batch is one input tensor (the framework's
    tensor or array types). A tensor is inputs alone; (x,) too; (x, y) is inputs and labels;
    (a, b, ..., y) is positional inputs and labels; a dict gives its "labels"/"label" entry as
    labels and the rest as keyword inputs.
    """
    if is_single_input(batch):
        return batch, None
    if isinstance(batch, dict):
        inputs = dict(batch)
        labels = inputs.pop("labels", None)
        if labels is None:
            labels = inputs.pop("label", None)
        return inputs, labels
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1:
            return batch[0], None
        if len(batch) == 2:
            return batch[0], batch[1]
        if len(batch) > 2:
            return tuple(batch[:-1]), batch[-1]
    raise DataError(f"{where}: cannot read a batch of type {type(batch).__name__}; expected a "
                    f"tensor, an (inputs, labels) tuple, or a dict of tensors")


def is_one_shot(loader):
    """A generator or iterator: iterating it a second time yields nothing. Decided from the
    type alone: calling iter() on a DataLoader would start its worker processes."""
    return hasattr(type(loader), "__next__")
