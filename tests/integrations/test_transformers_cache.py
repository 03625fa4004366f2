"""The teacher cache inside NLPTrainer.distill: dict batches padded per batch by a collator.

Tiny randomly initialised BERTs (nothing downloaded), sentences of different lengths padded to
the longest of their batch, so a sentence's padding changes with its batch.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may be fetched from a hub, ever

import pytest  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # Trainer needs it

from transformers import (BertConfig, BertForSequenceClassification,  # noqa: E402
                          TrainerCallback, TrainingArguments)

from neural_distill.config import (DistillationConfig,  # noqa: E402
                                   KnowledgeDistillationLossConfig)
from neural_distill.integrations.transformers import NLPTrainer  # noqa: E402

SEQ = 10
VOCAB = 40
SAMPLES = 24
BATCH = 8


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def bert(layers, hidden, labels=2, seed=0, init_range=0.02):
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(
        vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=SEQ, num_labels=labels,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        initializer_range=init_range))


class Sentences(torch.utils.data.Dataset):
    """Unpadded token sequences of 2..SEQ tokens; ``flip`` inverts every label (set between
    epochs by a callback: labels are no part of a cache key)."""

    def __init__(self, n, seed):
        generator = torch.Generator().manual_seed(seed)
        lengths = torch.randint(2, SEQ + 1, (n,), generator=generator)
        self.ids = [torch.randint(1, VOCAB, (int(length),), generator=generator)
                    for length in lengths]
        self.flip = 0

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        label = int(self.ids[i][0] >= VOCAB // 2) ^ self.flip
        return {"input_ids": self.ids[i], "labels": torch.tensor(label)}


def collate(items):
    """A padding collator: every batch padded to its own longest sentence."""
    width = max(len(item["input_ids"]) for item in items)
    ids = torch.zeros(len(items), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, item in enumerate(items):
        ids[row, :len(item["input_ids"])] = item["input_ids"]
        mask[row, :len(item["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
            "labels": torch.stack([item["labels"] for item in items])}


class FlipLabels(TrainerCallback):
    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.flip = int(state.epoch or 0) % 2


class Counter:
    """Counts a teacher's forward passes and the widths of the batches it saw."""

    def __init__(self, model):
        self.calls = 0
        model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.calls += 1


def distill(tmp_path, teacher, cache=None, sampling="sequential", epochs=2, labels=2,
            temperature=2.0):
    dataset = Sentences(SAMPLES, seed=0)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=BATCH,
        num_train_epochs=epochs, learning_rate=1e-3, report_to=[], use_cpu=True,
        save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=3,
        train_sampling_strategy=sampling, remove_unused_columns=False)
    trainer = NLPTrainer(model=bert(1, 16, labels=labels, seed=1), args=args,
                         train_dataset=dataset, data_collator=collate,
                         callbacks=[FlipLabels(dataset)])
    config = DistillationConfig(
        criterion=KnowledgeDistillationLossConfig(temperature=temperature,
                                                  loss_types=["CE", "KL"]),
        teacher_cache=cache)
    counter = Counter(teacher)
    model = trainer.distill(config, teacher_model=teacher)
    return trainer, model, counter


def hit_rates(trainer):
    return [r["teacher_cache_hit_rate"] for r in trainer.distillation_history
            if "teacher_cache_hit_rate" in r]


def test_dense_cache_trains_bit_identically_and_skips_the_teacher_on_epoch_2(tmp_path):
    plain_trainer, plain, plain_count = distill(tmp_path / "plain", bert(2, 24, init_range=0.5))
    trainer, cached, count = distill(tmp_path / "cached", bert(2, 24, init_range=0.5),
                                     cache={"enabled": True})
    batches = SAMPLES // BATCH
    assert count.calls == batches                   # epoch 1 only
    assert plain_count.calls >= 2 * batches          # every epoch (and the first-batch check)
    assert hit_rates(trainer) == [0.0, 1.0]
    assert trainer.distiller.step.cache.store.row_bytes == 2 * 4
    plain_state, state = plain.state_dict(), cached.state_dict()
    assert all(torch.equal(plain_state[k], state[k]) for k in plain_state)
    # The losses the run recorded are the same too: cached targets are the teacher's own.
    assert [r.get("loss") for r in plain_trainer.distillation_history] == \
        [r.get("loss") for r in trainer.distillation_history]


def test_shuffled_batches_pad_a_sentence_differently_and_still_hit(tmp_path):
    trainer, _, count = distill(tmp_path, bert(2, 24, init_range=0.5), cache={"enabled": True},
                                sampling="random", epochs=3)
    assert count.calls == SAMPLES // BATCH
    assert hit_rates(trainer) == [0.0, 1.0, 1.0]
    assert len(trainer.distiller.step.cache.store) == SAMPLES


def test_topk_cache_serves_nlptrainer(tmp_path):
    teacher = bert(2, 24, labels=4, init_range=0.5)
    trainer, model, count = distill(tmp_path, teacher, labels=4, epochs=2,
                                    cache={"enabled": True, "compression": "topk", "top_k": 2})
    assert count.calls == SAMPLES // BATCH
    assert hit_rates(trainer) == [0.0, 1.0]
    cache = trainer.distiller.step.cache
    assert cache.store.row_bytes == (2 * 2 + 1) * 4
    # What the criterion is served: the teacher's top-2 tempered probabilities, the rest mass
    # spread evenly over the other two classes.
    batch = collate([trainer.train_dataset[i] for i in range(BATCH)])
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    served = torch.from_numpy(cache.lookup({k: v.numpy() for k, v in inputs.items()}))
    with torch.no_grad():
        p = torch.softmax(teacher.eval()(**inputs).logits / 2.0, dim=-1)
    q = torch.softmax(served / 2.0, dim=-1)
    top = p.topk(2, dim=-1).indices
    torch.testing.assert_close(q.gather(-1, top), p.gather(-1, top), rtol=0, atol=1e-5)
    rest = 1 - p.gather(-1, top).sum(-1, keepdim=True)
    others = q.sum(-1, keepdim=True) - q.gather(-1, top).sum(-1, keepdim=True)
    torch.testing.assert_close(others, rest, rtol=0, atol=1e-5)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
