"""Writing an offline teacher cache (``neural_distill.teacher_cache``): the teachers run once
over the training data.

::

    neural-distill cache-teacher distill.yaml     # or, in Python:
    write_offline_cache(distiller, folder)

Later runs name the folder under ``distillation.train.teacher_cache.path`` and never build the
teacher (docs/teacher_cache.md).

A language model's per-token outputs (a per-token criterion over ``[batch, positions, vocab]``
logits) are streamed to disk shard by shard (``teacher_cache/token_shards.py``): a corpus
larger than memory can be cached, and a writer interrupted and run again resumes from its
last complete shard.
"""

import numpy as np
from tqdm.auto import tqdm

from neural_distill.adapters import adapter_for_model
from neural_distill.criterion.specs import criterion_name_and_args
from neural_distill.errors import ConfigError, DataError, ModelError
from neural_distill.teacher_cache.cache import TeacherCache
from neural_distill.run.fitting import cache_options
from neural_distill.language.tokens import TokenBatch, counted_token_array, is_causal_lm
from neural_distill.teacher_cache.keys import token_keys
from neural_distill.teacher_cache.run_cache import (
    codec_for, numpy_inputs, teacher_fingerprint, token_codec_for)
from neural_distill.teacher_cache.token_records import TokenRecords, counted_records
from neural_distill.teacher_cache.token_shards import SHARD_BYTES, TokenShardWriter


def write_offline_cache(distiller, folder=None, dataloader=None, progress_bar=True,
                        shard_bytes=SHARD_BYTES):
    """Run ``distiller``'s teachers over its training data and write the cache to ``folder``.

    ``folder`` defaults to ``distillation.train.teacher_cache.path``; ``dataloader`` to
    ``distiller.train_dataloader`` or the one the config describes. ``shard_bytes``: per-token
    records buffered before a shard is written (what an interruption can cost at most).
    Returns the written index.
    """
    teachers = distiller.teachers
    if not teachers:
        raise ModelError("write_offline_cache: no teacher model. Set distiller.teacher_model "
                         "(or model.teacher in the config) to the teacher whose outputs to "
                         "cache.")
    options = cache_options(distiller)
    folder = folder or options.offline_folder
    if folder is None:
        raise ConfigError(f"{distiller.conf_source}: distillation.train.teacher_cache.path: "
                          f"where should the cache be written? Set it to a folder (or pass "
                          f"folder=...).")
    adapter = adapter_for_model(teachers[0], "teacher_model")
    loader = dataloader if dataloader is not None else (
        distiller.train_dataloader
        or distiller.run.config_dataloader("distillation.train", adapter))
    if loader is None:
        raise DataError("write_offline_cache: no training data. Set "
                        "distiller.train_dataloader or name a dataset under "
                        "distillation.train.dataloader.dataset.")
    criterion = distiller.criterion or adapter.build_criterion(
        *criterion_name_and_args(distiller.conf.distillation.train.criterion))
    codec = codec_for(options, criterion)
    mark = teacher_fingerprint(adapter, teachers, distiller.teacher_weights, codec)
    token_codec = token_codec_for(adapter, criterion, codec)
    tokens = None if token_codec is None else _TokenWriting(
        folder, mark, codec, TokenRecords(token_codec),
        is_causal_lm(distiller.student_model or teachers[0]), adapter, shard_bytes)
    cache = TeacherCache(codec, mark, max_bytes=float("inf"))
    device = adapter.model_device(teachers[0])
    states = [adapter.enter_teacher_mode(teacher, device) for teacher in teachers]
    bar = tqdm(loader, desc="teacher outputs", disable=not progress_bar, leave=False,
               dynamic_ncols=True)
    try:
        for batch in bar:
            inputs, labels = adapter.split_batch(batch)
            if hasattr(adapter, "to_device"):
                inputs = adapter.to_device(inputs, device)
            arrays = numpy_inputs(adapter, inputs)
            if tokens is not None and tokens.writer is not None:  # per-token outputs
                if tokens.skips(arrays, labels):
                    continue
            elif cache.lookup(arrays) is not None:
                continue
            output = adapter.logits_of(
                adapter.teachers_forward(teachers, inputs, distiller.teacher_weights),
                "teacher output")
            if tokens is not None and tokens.take(arrays, labels, output):
                bar.set_postfix(tokens=tokens.writer.tokens,
                                bytes_per_token=tokens.writer.bytes_per_token, refresh=False)
                continue
            cache.add(adapter.to_numpy(output))
    finally:
        bar.close()
        for teacher, state in zip(teachers, states):
            adapter.exit_teacher_mode(teacher, state)
    if tokens is not None and tokens.writer is not None:
        index = tokens.writer.close(tokens.records.vocab)
    else:
        index = cache.save(folder)
    index["folder"] = folder  # for the caller; not part of the file
    return index


class _TokenWriting:
    """The per-token side of ``write_offline_cache``: which batches are per-token (decided by
    the first teacher output: ``[batch, positions, vocab]``), their keys, and the stream of
    shards. ``per_sample`` turns true when the outputs have no token axis (a sequence
    classifier): the per-sample cache takes over."""

    def __init__(self, folder, fingerprint, codec, records, causal, adapter, shard_bytes):
        self.folder, self.fingerprint, self.codec = folder, fingerprint, codec
        self.shard_bytes = shard_bytes
        self.records, self.causal, self.adapter = records, causal, adapter
        self.writer = None
        self.per_sample = False

    def _counted(self, arrays, labels, batch_seq):
        return counted_token_array(TokenBatch(arrays, labels, self.causal), batch_seq,
                                   self.adapter.to_numpy)

    def skips(self, arrays, labels):
        """Whether every sample of the batch is already written (a resumed writer)."""
        if not self.writer.done_keys:
            return False
        batch_seq = _token_shape(arrays)
        if batch_seq is None:
            return False
        keys, _ = token_keys(arrays, self._counted(arrays, labels, batch_seq))
        return all(key in self.writer.done_keys for key in keys)

    def take(self, arrays, labels, logits):
        """Stream the batch's per-token records (``logits``: the teachers' output tensor);
        False when the output is per sample."""
        shape = tuple(logits.shape)
        if self.per_sample or len(shape) != 3:
            self.per_sample = self.writer is None
            return False
        valid = self._counted(arrays, labels, shape[:2])
        keys, counts = token_keys(arrays, valid)
        records = counted_records(self.adapter, self.records, logits, valid)
        if self.writer is None:
            self.writer = TokenShardWriter(self.folder, {
                "fingerprint": self.fingerprint, "codec": self.codec.describe(),
                "token_codec": self.records.codec.describe()}, self.shard_bytes)
        self.writer.add(keys, counts, records)
        return True


def _token_shape(arrays):
    """``[batch, positions]`` of a batch's token inputs, or None."""
    if isinstance(arrays, dict):
        for name in ("attention_mask", "input_ids"):
            if name in arrays and np.ndim(arrays[name]) == 2:
                return tuple(np.shape(arrays[name]))
        return None
    return tuple(np.shape(arrays)) if np.ndim(arrays) == 2 else None
