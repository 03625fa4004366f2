"""The teacher-output cache the distillation step consults before running the teacher.

Framework-neutral: it sees NumPy arrays only. The step hands it the batch's inputs; on a hit it
returns the teacher's logits for exactly those samples, in batch order, and the teacher is not
run at all. On a miss the step runs the teacher and gives the logits back with :meth:`add`.
A cache made with ``features=True`` also keeps the teachers' intermediate features: each
sample's record then holds its logits and every feature, flattened side by side, stored as they
are (no codec), and a hit returns ``[logits, feature, ...]``.
"""

import numpy as np

from neural_distill.errors import DataError
from neural_distill.core.logging_utils import get_logger
from neural_distill.teacher_cache.keys import sample_keys, token_keys, token_mask
from neural_distill.teacher_cache.shards import read_index, read_shards, write_shards
from neural_distill.teacher_cache.token_shards import TokenShardWriter, read_token_shards
from neural_distill.teacher_cache.store import RowStore
from neural_distill.teacher_cache.token_records import TokenRecords
from neural_distill.teacher_cache.token_store import TokenStore


class TeacherCache:
    """Cached teacher logits keyed by sample content (``keys.sample_keys``).

    Args:
        codec: how logits are stored (``codecs``).
        fingerprint: the teacher's fingerprint; an offline cache written for another refuses.
        max_bytes: memory bound of the stored records.
        spill_dir: where records past ``max_bytes`` go (memory-mapped ``.npy``); None = stop
            storing once full.
        min_hit_rate: from the second epoch on, when fewer of the samples looked up are found
            (a lower sample hit rate), the cache switches itself off.
        features: also keep the teachers' features (``add(logits, features)``); dense only.
        token_codec: ``vocab -> codec`` of per-token records (``token_records.py``), used when
            the step hands ``lookup`` the batch's counted tokens; None: per-token outputs are
            refused (the run goes on without the cache).
    """

    def __init__(self, codec, fingerprint, max_bytes=1 << 30, spill_dir=None, min_hit_rate=0.05,
                 offline_folder=None, features=False, token_codec=None):
        self.codec = codec
        self.fingerprint = fingerprint
        self.max_bytes = max_bytes
        self.spill_dir = spill_dir
        self.min_hit_rate = min_hit_rate
        self.offline = offline_folder is not None
        self.active = True
        self.storing = not self.offline
        self.classes = None
        self.store = None
        self.features = features
        self.parts = None            # with features: (per-sample shape, dtype) of each part
        self.epochs = []             # per-epoch {"lookups", "hits"}
        self._lookups = self._hits = 0
        self._samples = self._samples_found = 0  # what the off-switch reads
        self._pending_keys = None
        self._pending_width = None   # padded positions of the last miss's token inputs
        self.refused = None          # why the cache switched itself off for good, if it did
        self.tokens = (None if token_codec is None else TokenRecords(
            token_codec, max_bytes, None if spill_dir is None else spill_dir + "_tokens"))
        self._pending_tokens = None  # (keys, counts, valid) of the last per-token miss
        self._logger = get_logger()
        if offline_folder is not None:
            self._load(offline_folder)

    # ---------------------------------------------------------------- the step's side
    def lookup(self, inputs, valid=None):
        """The cached logits for this batch (float32 NumPy), or None on any miss.

        ``valid`` (a bool ``[batch, positions]`` array: the tokens a per-token loss counts)
        asks for per-token records (the student's vocabulary is compared with the records' by
        the criterion, under its ``vocab_mismatch``)."""
        if not self.active:
            return None
        if valid is not None and self.tokens is not None:
            return self._lookup_tokens(inputs, valid)
        if self.offline and self.tokens is not None and self.tokens.store is not None:
            raise DataError(
                "teacher_cache: the offline cache at distillation.train.teacher_cache.path holds "
                "per-token records of a language model, and this run's criterion does not read "
                "per-token outputs (a PyTorch KnowledgeDistillationLoss over token logits does)."
                " Write the cache for this run, or set teacher_cache.path to null.")
        keys = sample_keys(inputs)
        self._lookups += 1
        rows = self.store.rows_for(keys) if self.store is not None else None
        self._count_samples(keys, rows, self.store.index if self.store is not None else ())
        if rows is None:
            if self.offline:
                self._missing_from_offline()
            self._pending_keys = keys
            mask = token_mask(inputs)
            self._pending_width = None if mask is None else mask.shape[1]
            return None
        self._hits += 1
        if self.parts is not None:
            return self._split(self.store.take(rows))
        return self.codec.decode(self.store.take(rows), self.classes)

    def add(self, logits, features=None):
        """Store the logits the teacher just computed for the batch of the last miss (and,
        for a ``features`` cache, the teachers' features: one array per feature).

        Returns the logits the criterion should use: the same ones for a lossless codec; for a
        lossy one the decoded copy, so every epoch trains on the same targets.
        """
        pending, self._pending_tokens = self._pending_tokens, None
        if pending is not None:
            return self._add_tokens(np.asarray(logits, dtype=np.float32), *pending)
        keys, self._pending_keys = self._pending_keys, None
        width, self._pending_width = self._pending_width, None
        logits = np.asarray(logits, dtype=np.float32)
        if keys is None or len(keys) != logits.shape[0]:
            return logits
        per_token = self._per_token(width, logits, features) if width is not None else None
        if per_token is not None:
            self._refuse_token_outputs(*per_token)
            return logits
        if self.classes is None:
            self.classes = logits.shape[-1]
        if self.features:  # stored as they are: the codec is lossless (run_cache checks)
            records = (self._join([logits, *(np.asarray(f) for f in features or ())])
                       if self.storing else None)
        else:
            records = self.codec.encode(logits)
        if records is not None and self.storing:
            if self.store is None:
                self.store = RowStore(records.shape[1:], records.dtype, self.max_bytes,
                                      self.spill_dir)
                self._check_compression(logits.shape[1:])
            if records.shape[1:] != self.store.record_shape:
                self._stop_storing(
                    f"the teacher's output shape per sample changed from "
                    f"{self.store.record_shape} to {records.shape[1:]} (variable-length "
                    f"inputs?); outputs of other shapes are not cached")
            elif not self.store.add(keys, records):
                self._stop_storing(
                    f"max_bytes ({self.max_bytes} bytes) is reached after {len(self.store)} "
                    f"samples; raise distillation.train.teacher_cache.max_bytes or set "
                    f"spill: true to keep the rest on disk")
        return logits if self.codec.lossless else self.codec.decode(records, self.classes)

    # ------------------------------------------------------------ per-token records
    def _lookup_tokens(self, inputs, valid):
        self._lookups += 1
        try:
            keys, counts = token_keys(inputs, valid)
        except DataError as exc:
            if self.offline:
                raise
            self._refuse(str(exc).removeprefix("teacher_cache: "))
            return None
        store = self.tokens.store
        spans = store.spans_for(keys) if store is not None else None
        self._count_samples(keys, spans, store.spans if store is not None else ())
        if spans is None:
            if self.offline:
                self._missing_from_offline()
            self._pending_tokens = (keys, counts, valid)
            return None
        self._hits += 1
        return self.tokens.served(store.take(spans))

    @property
    def pending_tokens(self):
        """The counted-token mask of the last per-token miss (the step stores its records with
        :meth:`add_token_records`), or None."""
        return None if self._pending_tokens is None else self._pending_tokens[2]

    def add_token_records(self, records):
        """Store the last per-token miss's records (one per counted token, made by
        ``token_records.counted_records`` or ``tokens.encode``).

        Returns what the criterion should read for the batch: None for a lossless codec (the
        teacher's own output), else the decoded records (so every epoch trains on the same
        targets)."""
        keys, counts, _ = self._pending_tokens
        self._pending_tokens = None
        if self.storing and not self.tokens.store_records(keys, counts, records):
            self._stop_storing(
                f"max_bytes ({self.max_bytes} bytes) is reached after {len(self.tokens.store)} "
                f"samples; raise distillation.train.teacher_cache.max_bytes or set spill: true "
                f"to keep the rest on disk")
        return None if self.codec.lossless else self.tokens.served(records)

    def _add_tokens(self, logits, keys, counts, valid):
        if logits.ndim != 3 or logits.shape[:2] != valid.shape:
            self._refuse(f"the teacher's output {list(logits.shape)} has no [batch, positions"
                         f", vocab] layout matching the tokens {list(valid.shape)}")
            return logits
        self._pending_tokens = (keys, counts, valid)
        served = self.add_token_records(self.tokens.encode(logits, valid))
        return logits if served is None else served

    def _missing_from_offline(self):
        raise DataError(
            "teacher_cache: a training batch holds samples that the offline cache at "
            "distillation.train.teacher_cache.path does not have: the data differ from "
            "those the cache was written for (another dataset, another preprocessing, "
            "or random augmentation). Write the cache again for these data, or set "
            "teacher_cache.path to null to run the teacher.")

    def _join(self, parts):
        """One record per sample: every part flattened, side by side, in a dtype that holds
        each part exactly; None (and storing stops) when the parts cannot be stored."""
        count = parts[0].shape[0]
        if any(part.ndim == 0 or part.shape[0] != count for part in parts):
            self._stop_storing("a teacher feature's first axis is not the batch "
                               f"({[part.shape for part in parts]}); only per-sample features "
                               "can be cached (select or reshape them with a process)")
            return None
        layout = [(part.shape[1:], part.dtype.str) for part in parts]
        if self.parts is None:
            self.parts = layout
        elif layout != self.parts:
            self._stop_storing(f"the teachers' per-sample outputs changed from {self.parts} to "
                               f"{layout} (variable-length inputs?); others are not cached")
            return None
        dtype = np.result_type(np.float32, *(part.dtype for part in parts))
        return np.concatenate([part.reshape(count, -1).astype(dtype, copy=False)
                               for part in parts], axis=1)

    def _split(self, records):
        """``[logits, feature, ...]`` of stored records, each back in its own dtype and shape."""
        parts, start = [], 0
        for shape, dtype in self.parts:
            size = int(np.prod(shape))
            parts.append(records[:, start:start + size].reshape((len(records),) + tuple(shape))
                         .astype(dtype, copy=False))
            start += size
        return parts

    def _count_samples(self, keys, found, index):
        self._samples += len(keys)
        self._samples_found += (len(keys) if found is not None
                                else sum(key in index for key in keys))

    def end_epoch(self):
        """Close an epoch's statistics; switch the cache off when it does not pay.

        The off-switch reads the share of *samples* found, not of batches: a batch is served
        only when every sample is stored, so a run whose epoch 1 left some samples out
        (on-policy completions took their batches) serves few batches in epoch 2 while
        storing the rest, and serves all in epoch 3; random augmentation finds none."""
        stats = {"lookups": self._lookups, "hits": self._hits,
                 "hit_rate": self._hits / self._lookups if self._lookups else 0.0,
                 "sample_hit_rate": (self._samples_found / self._samples
                                     if self._samples else 0.0)}
        if self.tokens is not None and self.tokens.store is not None:
            stats["bytes_per_token"] = self.tokens.bytes_per_token
        self.epochs.append(stats)
        self._lookups = self._hits = self._samples = self._samples_found = 0
        if (self.active and not self.offline and len(self.epochs) >= 2
                and stats["lookups"] and stats["sample_hit_rate"] < self.min_hit_rate):
            self.active = self.storing = False
            self.store = None
            if self.tokens is not None:
                self.tokens.store = None
            self._logger.warning(
                "teacher_cache: %.1f%% of the samples of epoch %d were found in the cache: the "
                "training inputs differ every epoch (random augmentation, or new data), so "
                "stored outputs are never reused. The cache is off for the rest of the run.",
                100 * stats["sample_hit_rate"], len(self.epochs))
        return stats

    def _check_compression(self, sample_shape):
        # Top-k stores 2k + 1 floats per row: with few classes that is more than the logits.
        dense = int(np.prod(sample_shape)) * 4
        stored = self.codec.bytes_per_sample(sample_shape)
        if self.codec.name == "topk" and stored >= dense:
            self._logger.warning(
                "teacher_cache: topk with top_k %d stores %d bytes per sample, the dense "
                "logits take %d (%d classes): use compression: none (exact) or float16 "
                "(%d bytes) instead.", self.codec.k, stored, dense, sample_shape[-1], dense // 2)

    @staticmethod
    def _per_token(width, logits, features):
        """(what, shape) of the first output that has the token inputs' positions, or None."""
        if logits.ndim >= 3 and logits.shape[1] == width:
            return "the teacher's outputs", logits.shape
        for feature in features or ():
            shape = np.shape(feature)  # [batch, positions, hidden], [batch, heads, pos, pos]
            if len(shape) >= 3 and width in shape[1:-1]:
                return "the teachers' features", shape
        return None

    def _refuse_token_outputs(self, what, shape):
        # Keys ignore padding, but per-token outputs do not: a sentence padded to another
        # width in its next batch needs outputs at other positions. Per-token records
        # (token_records.py) place them by the batch's own mask, but only for a criterion that
        # says which tokens it reads (a per-token logit criterion).
        self._refuse(
            f"{what} are per token ({list(shape)}, with the {shape[0]} samples' padded "
            f"positions) and the token inputs are padded per batch (attention_mask), so a "
            f"sample's positions change with its batch. Per-token records serve a per-token "
            f"logit criterion (KnowledgeDistillationLoss over a language model's logits, in "
            f"PyTorch); other criteria are cached for per-sample outputs ([batch, classes]) "
            f"only")

    def _refuse(self, why):
        self.refused = why
        self.active = self.storing = False
        self.store = None
        if self.tokens is not None:
            self.tokens.store = None
        self._logger.warning("teacher_cache: off for this run: %s. The teacher runs on every "
                             "batch.", self.refused)

    def _stop_storing(self, why):
        self.storing = False
        self._logger.warning("teacher_cache: stops storing: %s", why)

    # ---------------------------------------------------------------- on disk
    def header(self):
        return {"fingerprint": self.fingerprint, "codec": self.codec.describe(),
                "classes": self.classes,
                "record_shape": list(self.store.record_shape) if self.store else None,
                "dtype": self.store.dtype.str if self.store else None}

    def token_header(self):
        """What identifies a per-token cache on disk (``token_shards``)."""
        return {"fingerprint": self.fingerprint, "codec": self.codec.describe(),
                "token_codec": self.tokens.codec.describe()}

    def save(self, folder):
        """Write what is stored as an offline cache (``shards``)."""
        if self.refused is not None:
            raise DataError(f"teacher_cache: nothing to write: {self.refused}.")
        if self.features:
            raise DataError("teacher_cache: offline caches hold the teachers' logits only, not "
                            "their intermediate features")
        if self.tokens is not None and self.tokens.store is not None:
            writer = TokenShardWriter(folder, self.token_header())
            keys, spans, rows = self.tokens.store.items()
            writer.add(keys, spans[:, 1], rows)
            return writer.close(self.tokens.vocab)
        if self.store is None or not len(self.store):
            raise DataError("teacher_cache: nothing to write; the teacher produced no outputs")
        keys, records = self.store.items()
        return write_shards(folder, keys, records, self.header())

    def _load(self, folder):
        index = read_index(folder)
        if self.fingerprint is not None and index.get("fingerprint") != self.fingerprint:
            raise DataError(
                f"teacher cache {folder}: it was written for another teacher or other cache "
                f"settings (fingerprint {index.get('fingerprint')}, this run "
                f"{self.fingerprint}). Write it again with `neural-distill cache-teacher`.")
        _same_settings(folder, index.get("codec"), self.codec.describe())
        if index.get("layout") == "tokens":
            self._load_tokens(folder, index)
            return
        self.classes = index["classes"]
        self.store = RowStore(tuple(index["record_shape"]), index["dtype"], float("inf"))
        for keys, records in read_shards(folder, index):
            self.store.add(keys, records)

    def _load_tokens(self, folder, index):
        if self.tokens is None:
            raise DataError(f"teacher cache {folder}: it holds per-token records of a language "
                            f"model, which this run's criterion does not read.")
        tokens = self.tokens
        tokens.vocab = self.classes = index["classes"]
        tokens.codec = tokens.codec_for_vocab(tokens.vocab)
        _same_settings(folder, index.get("token_codec"), tokens.codec.describe())
        tokens.store = TokenStore.from_segments(index["row_shape"], index["dtype"],
                                                read_token_shards(folder, index))


def _same_settings(folder, written, asked):
    """Raise unless a cache's recorded codec settings are the ones this run asks for."""
    if written != asked:
        raise DataError(
            f"teacher cache {folder}: written with {_differences(written, asked)}, but this run "
            f"asks for {_differences(asked, written)}. Use the same compression settings "
            f"(distillation.train.teacher_cache and the criterion's temperature), or write the "
            f"cache again.")


def _differences(settings, other=None):
    """``settings`` as ``key=value`` text, only the keys where ``other`` differs (if given)."""
    if not isinstance(settings, dict):
        return repr(settings)
    keys = [key for key in settings
            if other is None or not isinstance(other, dict) or other.get(key) != settings[key]]
    return ", ".join(f"{key}={settings[key]!r}" for key in keys) or repr(settings)
