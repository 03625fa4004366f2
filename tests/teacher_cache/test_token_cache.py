"""The per-token teacher cache of language models (docs/teacher_cache.md, "Language models"):
records per counted token, keyed by the real tokens, served to batches shuffled and padded
differently every epoch; top-k records and their size; offline shards written as a stream.

Models are tiny GPT-2s built from a config (no download); the data are prompt/answer rows of
different lengths, padded per batch by the collate function, labels -100 on prompt and padding.
"""

import json
import os
import warnings

import numpy as np
import pytest
import torch

from helpers import assert_states_identical, state_arrays
from neural_distill import Distillation
from neural_distill.errors import DataError, ModelError

transformers = pytest.importorskip("transformers")

VOCAB = 40
PAD = 1


def tiny_lm(layers=1, width=16, seed=0, vocab=VOCAB):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(n_layer=layers, n_embd=width, n_head=2, vocab_size=vocab,
                                     n_positions=32, bos_token_id=0, eos_token_id=1,
                                     pad_token_id=PAD)
    return transformers.GPT2LMHeadModel(config)


def rows(count=24, seed=0):
    """(ids, prompt length) rows of 5 to 11 tokens: a prompt, then an answer counting up."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:  # distinct rows: one cache entry each
        length, prompt = int(rng.integers(5, 12)), int(rng.integers(2, 4))
        start = int(rng.integers(2, VOCAB))
        row = ([2 + (start - 2 + i) % (VOCAB - 2) for i in range(length)], prompt)
        if row not in out:
            out.append(row)
    return out


def collate(batch):
    """Pad to the batch's longest row (right padding), labels -100 on prompt and padding."""
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), PAD)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100)
    for i, (row, prompt) in enumerate(batch):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
        labels[i, prompt:len(row)] = torch.tensor(row[prompt:])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def loader(shuffle, seed=0, batch_size=5):
    return torch.utils.data.DataLoader(rows(), batch_size=batch_size, shuffle=shuffle,
                                       collate_fn=collate,
                                       generator=torch.Generator().manual_seed(seed))


def distiller_for(workspace, cache=None, epochs=3, kd_type="KL", temperature=2.0,
                  student=None, teacher=None):
    train = {"epoch": epochs, "progress_bar": False,
             "optimizer": {"Adam": {"learning_rate": 0.01}},
             "criterion": {"KnowledgeDistillationLoss": {
                 "temperature": temperature, "loss_types": ["CE", kd_type],
                 "loss_weights": [0.5, 0.5]}}}
    if cache is not None:
        train["teacher_cache"] = cache
    distiller = Distillation({"distillation": {"train": train},
                              "tuning": {"random_seed": 3, "workspace": {"path": workspace}}})
    distiller.student_model = student or tiny_lm(seed=0)
    distiller.teacher_model = teacher or tiny_lm(layers=2, width=24, seed=1)
    return distiller


class ForwardCount:
    """Counts a model's forward passes (a hook of the test's own, removed after)."""

    def __init__(self, model):
        self.calls = 0
        self._handle = model.register_forward_hook(self._count)

    def _count(self, *_):
        self.calls += 1

    def remove(self):
        self._handle.remove()


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("compression", ["none", "topk"])
def test_shuffled_re_padded_batches_run_the_teacher_in_the_first_epoch_only(workspace,
                                                                           compression):
    distiller = distiller_for(workspace, {"enabled": True, "compression": compression,
                                          "top_k": 8})
    distiller.train_dataloader = data = loader(shuffle=True)
    teacher = distiller.teacher_model
    before = state_arrays(teacher)
    count = ForwardCount(teacher)
    try:
        distiller.fit()
    finally:
        count.remove()
    assert count.calls == len(data)  # 5 batches, epoch 1
    assert [r["teacher_cache_hit_rate"] for r in distiller.history] == [0.0, 1.0, 1.0]
    per_token = {r["teacher_cache_bytes_per_token"] for r in distiller.history}
    if compression == "none":
        assert per_token == {VOCAB * 4}
    else:
        assert per_token == {distiller.run.step.cache.tokens.codec.token_bytes}
        assert per_token.pop() <= 2.5 * 8 + 16
    assert_states_identical(before, state_arrays(teacher))
    with open(os.path.join(distiller.run.workspace.path, "metrics.jsonl")) as handle:
        logged = [json.loads(line) for line in handle if "teacher_cache_hit_rate" in line]
    assert all("teacher_cache_bytes_per_token" in record for record in logged)


def test_a_dense_per_token_cache_trains_bit_identically_to_no_cache(tmp_path):
    students = []
    for cache in (None, {"enabled": True}):
        folder = tmp_path / ("cached" if cache else "plain")
        folder.mkdir()
        distiller = distiller_for(str(folder), cache, epochs=2)
        distiller.train_dataloader = loader(shuffle=False)
        students.append(state_arrays(distiller.fit()))
        if cache:
            assert distiller.history[-1]["teacher_cache_hit_rate"] == 1.0
    assert_states_identical(*students)


def test_the_same_sentence_padded_differently_finds_its_records():
    from neural_distill.teacher_cache.keys import token_keys

    batch = collate(rows(4))
    wider = {name: torch.nn.functional.pad(value, (0, 3), value=PAD if name == "input_ids"
                                           else (-100 if name == "labels" else 0))
             for name, value in batch.items()}
    numpy = {name: value.numpy() for name, value in batch.items() if name != "labels"}
    numpy_wide = {name: value.numpy() for name, value in wider.items() if name != "labels"}
    valid = batch["labels"].numpy()[:, 1:] != -100
    valid = np.concatenate([valid, np.zeros((4, 1), bool)], axis=1)
    valid_wide = np.concatenate([valid, np.zeros((4, 3), bool)], axis=1)
    keys, counts = token_keys(numpy, valid)
    again, counts_again = token_keys(numpy_wide, valid_wide)
    assert keys == again and counts.tolist() == counts_again.tolist()
    # Other counted tokens (other labels) are another entry.
    other = valid.copy()
    other[0, np.flatnonzero(other[0])[0]] = False
    assert token_keys(numpy, other)[0][0] != keys[0]
    # A counted padded position cannot be rebuilt.
    padded = valid.copy()
    padded[np.argmin(numpy["attention_mask"].sum(1))] = True
    with pytest.raises(DataError, match="padded positions"):
        token_keys(numpy, padded)


# ----------------------------------------------------------------------------- offline shards
def _write(workspace, folder, cache, dataloader=None, **options):
    from neural_distill import write_offline_cache

    distiller = distiller_for(workspace, {**cache, "path": str(folder)}, **options)
    distiller.train_dataloader = dataloader or loader(shuffle=False, batch_size=4)
    return write_offline_cache(distiller, progress_bar=False, shard_bytes=1500)


def _student_run(workspace, folder, cache, **options):
    """A run that reads the offline cache and has no teacher at all."""
    distiller = distiller_for(workspace, {**cache, "path": str(folder)}, **options)
    distiller.teacher_model = None
    distiller.train_dataloader = loader(shuffle=True, seed=5, batch_size=6)
    return distiller


@pytest.mark.parametrize("compression", ["none", "topk"])
def test_offline_shards_train_a_student_without_its_teacher(workspace, tmp_path, compression):
    folder = tmp_path / "cache"
    cache = {"compression": compression, "top_k": 4}
    index = _write(workspace, folder, cache)
    assert index["layout"] == "tokens" and len(index["shards"]) > 1  # streamed in shards
    assert index["samples"] == 24
    assert index["tokens"] == sum(len(ids) - prompt for ids, prompt in rows())
    assert not (folder / "progress.json").exists()
    rows_file = np.load(folder / index["shards"][0]["rows"], mmap_mode="r")
    assert rows_file.dtype == (np.float32 if compression == "none" else np.uint8)
    distiller = _student_run(workspace, folder, cache, epochs=2)
    distiller.fit()
    assert [r["teacher_cache_hit_rate"] for r in distiller.history] == [1.0, 1.0]
    assert distiller.history[0]["teacher_cache_bytes_per_token"] == index["bytes_per_token"]
    assert all(np.isfinite(r["distillation_loss"]) for r in distiller.history)


def test_a_dense_offline_cache_gives_the_teachers_own_targets(workspace, tmp_path):
    """The student trained from dense shards equals the one trained with its teacher."""
    folder = tmp_path / "cache"
    _write(workspace, folder, {})
    from_cache = distiller_for(workspace, {"path": str(folder)}, epochs=1)
    from_cache.teacher_model = None
    from_cache.train_dataloader = loader(shuffle=False, batch_size=4)
    with_teacher = distiller_for(workspace, None, epochs=1)
    with_teacher.train_dataloader = loader(shuffle=False, batch_size=4)
    assert_states_identical(state_arrays(from_cache.fit()), state_arrays(with_teacher.fit()))


@pytest.mark.parametrize("change,match", [
    ({"temperature": 3.0}, "temperature"),
    ({"top_k": 6}, "top_k"),
])
def test_other_settings_are_a_fingerprint_mismatch(workspace, tmp_path, change, match):
    folder = tmp_path / "cache"
    cache = {"compression": "topk", "top_k": 4}
    _write(workspace, folder, cache)
    options = {"temperature": change.get("temperature", 2.0)}
    distiller = _student_run(workspace, folder, {**cache, "top_k": change.get("top_k", 4)},
                             **options)
    with pytest.raises(DataError, match=match):
        distiller.fit()


def test_another_teacher_or_vocabulary_is_refused(workspace, tmp_path):
    folder = tmp_path / "cache"
    _write(workspace, folder, {"compression": "topk", "top_k": 4})
    other_teacher = distiller_for(workspace, {"compression": "topk", "top_k": 4,
                                              "path": str(folder)},
                                  teacher=tiny_lm(layers=2, width=24, seed=9))
    other_teacher.train_dataloader = loader(shuffle=False)
    with pytest.raises(DataError, match="another teacher"):
        other_teacher.fit()
    other_vocab = _student_run(workspace, folder, {"compression": "topk", "top_k": 4},
                               student=tiny_lm(seed=0, vocab=VOCAB + 8))
    with pytest.raises(ModelError, match="the student's logits have 48 classes"):
        other_vocab.fit()


def test_an_interrupted_writer_resumes_from_its_last_shard(workspace, tmp_path):
    folder = tmp_path / "cache"
    cache = {"compression": "topk", "top_k": 4}
    batches = list(loader(shuffle=False, batch_size=2))

    def interrupted():
        for number, batch in enumerate(batches):
            if number == 9:
                raise KeyboardInterrupt
            yield batch

    with pytest.raises(KeyboardInterrupt):
        _write(workspace, folder, cache, dataloader=interrupted())
    progress = json.loads((folder / "progress.json").read_text())
    written = sum(shard["samples"] for shard in progress["shards"])
    assert 0 < written < 18 and not (folder / "index.json").exists()
    with pytest.raises(DataError, match="interrupted .* run `neural-distill cache-teacher"
                                        "|interrupted.*resumes"):
        _student_run(workspace, folder, cache).fit()
    teacher = tiny_lm(layers=2, width=24, seed=1)
    count = ForwardCount(teacher)
    try:
        index = _write(workspace, folder, cache, dataloader=batches, teacher=teacher)
    finally:
        count.remove()
    # The batches of the kept shards are skipped (the first batch runs once to learn the
    # output's layout).
    assert count.calls <= len(batches) - written // 2 + 1
    assert index["samples"] == 24
    fresh = tmp_path / "fresh"
    again = _write(workspace, fresh, cache, dataloader=batches)
    assert again["tokens"] == index["tokens"]


def test_a_corrupt_shard_is_a_clear_error(workspace, tmp_path):
    folder = tmp_path / "cache"
    index = _write(workspace, folder, {})
    path = folder / index["shards"][-1]["rows"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    distiller = _student_run(workspace, folder, {})
    with pytest.raises(DataError, match="corrupt"):
        distiller.fit()


def test_cli_cache_teacher_streams_token_shards_and_a_run_reads_them(tmp_path):
    import subprocess
    import sys
    import textwrap

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # 30 distinct rows, 6 of them twice (in one batch or in two): each written once.
    ids = np.array([[2 + (start + i) % (VOCAB - 2) for i in range(8)] for start in range(30)])
    ids = np.concatenate([ids, ids[[0, 2, 4, 11, 20, 29]]])
    labels = ids.copy()
    labels[:, :3] = -100  # the prompt does not count
    np.savez(tmp_path / "tokens.npz", x=ids, y=labels)
    (tmp_path / "project.py").write_text(textwrap.dedent(f"""
        import torch
        import transformers

        def lm(layers, width, seed):
            torch.manual_seed(seed)
            return transformers.GPT2LMHeadModel(transformers.GPT2Config(
                n_layer=layers, n_embd=width, n_head=2, vocab_size={VOCAB}, n_positions=16))

        def student():
            return lm(1, 16, 0)

        def teacher():
            open("teacher_built", "a").write("x")
            return lm(2, 24, 1)
    """))
    (tmp_path / "distill.yaml").write_text(textwrap.dedent("""
        model: {student: project.py:student, teacher: project.py:teacher}
        distillation:
          train:
            epoch: 2
            criterion: {KnowledgeDistillationLoss: {temperature: 2.0, loss_types: [CE, KL],
                                                    loss_weights: [0.0, 1.0]}}
            dataloader: {batch_size: 8, dataset: {npz: {path: tokens.npz}}}
            teacher_cache: {path: teacher_outputs, compression: topk, top_k: 8}
        tuning: {workspace: {path: ws}}
    """))
    env = dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS="1")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "neural_distill.cli", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)

    cached = cli("cache-teacher", "distill.yaml", "--quiet")
    assert cached.returncode == 0, cached.stderr
    # 30 rows of 8 tokens; a causal LM's last position and the prompt's first 2 do not count.
    assert "30 samples, 150 counted tokens" in cached.stdout
    index = json.loads((tmp_path / "teacher_outputs" / "index.json").read_text())
    assert f"{index['bytes_per_token']} bytes per token (topk)" in cached.stdout
    assert index["bytes_per_token"] <= 2.5 * 8 + 16
    run = cli("run", "distill.yaml", "--quiet")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "teacher_built").read_text() == "x"  # not built again


# ----------------------------------------------------------------------------- the targets
@pytest.mark.parametrize("kd_type", ["KL", "RKL", "JSD"])
def test_top_k_targets_reach_the_counted_tokens_in_order(workspace, kd_type):
    """With k = vocab - 1 the tail bucket is one class: the bucket divergence is the dense
    one, so the cached loss equals the teacher's up to the quantization bound. Misplaced rows
    (another token's record) would not."""
    batch = collate(rows(6, seed=4))
    inputs = {name: value for name, value in batch.items() if name != "labels"}
    losses = []
    for cache in (None, {"enabled": True, "compression": "topk", "top_k": VOCAB - 1}):
        distiller = distiller_for(workspace, cache, kd_type=kd_type)
        distiller.on_train_begin()
        student = distiller.student_model
        output = student(**inputs)
        first = distiller.on_after_compute_loss(inputs, output, None, labels=batch["labels"])
        again = distiller.on_after_compute_loss(inputs, output, None, labels=batch["labels"])
        losses.append((first.item(), again.item()))
        if cache:
            assert distiller.run.step.cache.epochs == [] and distiller.run.step.cache._hits == 1
    (plain, _), (cached_miss, cached_hit) = losses
    assert cached_miss == cached_hit  # the first epoch trains on the decoded records too
    assert cached_hit == pytest.approx(plain, rel=2e-3)


def test_bytes_per_token_meet_the_target_at_k_64():
    from neural_distill.teacher_cache.cache import TeacherCache
    from neural_distill.teacher_cache.codecs import TopKCodec
    from neural_distill.teacher_cache.token_codec import TokenTopKCodec

    vocab = 32000
    cache = TeacherCache(TopKCodec(64, 1.0), "t",
                         token_codec=lambda v: TokenTopKCodec(64, 1.0, v))
    ids = np.arange(12).reshape(2, 6) + 2
    inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    valid = np.ones((2, 6), bool)
    valid[:, -1] = False
    assert cache.lookup(inputs, valid) is None
    logits = np.random.default_rng(0).normal(size=(2, 6, vocab)).astype(np.float32)
    targets = cache.add(logits)
    assert len(targets) == 10 and targets.indices.shape == (10, 64)
    stats = cache.end_epoch()
    assert stats["bytes_per_token"] <= 2.5 * 64 + 16
    hit = cache.lookup(inputs, valid)
    np.testing.assert_array_equal(hit.indices, targets.indices)


def test_a_sentence_twice_in_a_batch_is_written_once(tmp_path):
    from neural_distill.teacher_cache.token_shards import TokenShardWriter, read_token_shards

    writer = TokenShardWriter(str(tmp_path), {"fingerprint": "t"})
    rows_of = np.arange(10, dtype=np.float32).reshape(5, 2)
    writer.add([b"a" * 16, b"b" * 16, b"a" * 16], np.array([2, 1, 2]), rows_of)
    index = writer.close(classes=2)
    assert index["samples"] == 2 and index["tokens"] == 3
    (keys, spans, stored), = read_token_shards(str(tmp_path), index)
    assert keys == [b"a" * 16, b"b" * 16] and spans.tolist() == [[0, 2], [2, 1]]
    np.testing.assert_array_equal(stored, rows_of[:3])


def test_on_policy_completions_bypass_the_cache(workspace):
    distiller = distiller_for(workspace, {"enabled": True, "compression": "topk", "top_k": 8})
    distiller.conf.distillation.train["on_policy"] = {"fraction": 0.5, "max_new_tokens": 3,
                                                      "temperature": 1.0, "seq_kd": False}
    distiller.train_dataloader = data = loader(shuffle=True)
    teacher, student = distiller.teacher_model, distiller.student_model
    completions = []
    generate = student.generate
    student.generate = lambda *args, **kwargs: completions.append(1) or generate(*args, **kwargs)
    count = ForwardCount(teacher)
    try:
        distiller.fit()
    finally:
        count.remove()
    generated = len(completions)
    assert 0 < generated < 3 * len(data)
    cache = distiller.run.step.cache
    assert cache.active  # samples missed in epoch 1 are stored in epoch 2: not switched off
    assert set(cache.tokens.store.spans) <= _data_keys()  # never a completion
    assert count.calls == generated + sum(stats["lookups"] - stats["hits"]
                                          for stats in cache.epochs)
    assert cache.epochs[-1]["sample_hit_rate"] > 0.5


def _data_keys():
    from neural_distill.teacher_cache.keys import token_keys

    keys = set()
    for row in rows():
        batch = collate([row])
        valid = np.concatenate([batch["labels"].numpy()[:, 1:] != -100, [[False]]], axis=1)
        keys.update(token_keys({"input_ids": batch["input_ids"].numpy(),
                                "attention_mask": batch["attention_mask"].numpy()}, valid)[0])
    return keys


def test_vocab_mismatch_truncate_works_with_dense_records_and_is_refused_by_top_k(workspace):
    for compression in ("none", "topk"):
        distiller = distiller_for(workspace, {"enabled": True, "compression": compression,
                                              "top_k": 4}, epochs=2,
                                  student=tiny_lm(seed=0, vocab=VOCAB + 8))
        distiller.conf.distillation.train.criterion["KnowledgeDistillationLoss"][
            "vocab_mismatch"] = "truncate"
        distiller.train_dataloader = loader(shuffle=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the truncation warning
            if compression == "none":
                distiller.fit()
                assert distiller.history[-1]["teacher_cache_hit_rate"] == 1.0
            else:
                with pytest.raises(ModelError, match="compression: none"):
                    distiller.fit()


def test_the_token_store_gathers_spans_across_segments_and_spilled_files(tmp_path):
    from neural_distill.teacher_cache.token_store import TokenStore

    rng = np.random.default_rng(0)
    counts = rng.integers(1, 40, size=400)           # ~8,000 rows: three segments of 4,096
    rows_all = rng.normal(size=(int(counts.sum()), 3)).astype(np.float32)
    keys = [i.to_bytes(16, "little") for i in range(len(counts))]
    row_bytes = 3 * 4
    store = TokenStore((3,), np.float32, max_bytes=4096 * row_bytes,
                       spill_dir=str(tmp_path / "spill"))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for start in range(0, len(keys), 50):              # batches of 50 samples
        part = slice(start, start + 50)
        assert store.add(keys[part], counts[part],
                         rows_all[offsets[start]:offsets[min(start + 50, len(keys))]])
    segments = len(store._segments)
    assert segments >= 2 and len(os.listdir(tmp_path / "spill")) == segments - 1
    order = rng.permutation(len(keys))  # some samples straddle two segments
    got = store.take(store.spans_for([keys[i] for i in order]))
    expected = np.concatenate([rows_all[offsets[i]:offsets[i + 1]] for i in order])
    np.testing.assert_array_equal(got, expected)
    full = TokenStore((3,), np.float32, max_bytes=4096 * row_bytes)  # no spill: stops
    assert not full.add(keys, counts, rows_all) and full.full
    kept = [key for key in keys if key in full.spans]
    np.testing.assert_array_equal(
        full.take(full.spans_for(kept)),
        np.concatenate([rows_all[offsets[i]:offsets[i + 1]] for i in range(len(kept))]))
