"""Reading (inputs, labels) out of a batch, the same way for every framework."""

from neural_distill.errors import DataError


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


def map_inputs(function, inputs):
    """``function`` applied to every tensor of a batch's inputs, keeping their structure (a
    tensor, a tuple/list of them, or a dict of them)."""
    if isinstance(inputs, dict):
        return {key: map_inputs(function, value) for key, value in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(map_inputs(function, value) for value in inputs)
    return function(inputs)


def logits_and_labels(adapter, dataloader, logits_of_inputs):
    """Logits over every batch of ``dataloader`` and its labels, as two NumPy arrays.

    ``logits_of_inputs(inputs)`` runs the model on one batch's inputs and returns its logits as
    a float32 NumPy array; the frameworks differ only there (device, eval mode, no-grad).
    """
    import numpy as np

    outputs, labels = [], []
    for batch in dataloader:
        inputs, batch_labels = adapter.split_batch(batch, "eval_dataloader")
        if batch_labels is None:
            raise DataError("eval_dataloader: the report needs labelled batches; got inputs only")
        outputs.append(logits_of_inputs(inputs))
        labels.append(np.asarray(adapter.to_numpy(batch_labels)))
    if not outputs:
        raise DataError("eval_dataloader: no batches; the report needs evaluation data")
    return np.concatenate(outputs), np.concatenate(labels).reshape(-1)


def first_inputs(adapter, dataloader, where="eval_dataloader"):
    """The inputs of ``dataloader``'s first batch (read through ``adapter.split_batch``)."""
    for batch in dataloader:
        return adapter.split_batch(batch, where)[0]
    raise DataError(f"{where}: no batches; the report needs evaluation data")
