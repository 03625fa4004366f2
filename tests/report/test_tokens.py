"""The report's rows: per-class agreement, and one row per valid token for [batch, seq, vocab]
outputs (the causal shift, prompt labels of -100, padding), checked against plain loops."""

import numpy as np
import pytest

from neural_distill.report import stats, tokens


def test_per_class_agreement_and_worst_classes():
    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(60, 4)), rng.normal(size=(60, 4))
    labels = rng.integers(0, 4, 60)
    labels[:5] = -100
    per_class = stats.per_class_agreement(teacher, student, labels)
    for c in range(4):
        rows = [i for i in range(60) if labels[i] == c]
        same = [np.argmax(teacher[i]) == np.argmax(student[i]) for i in rows]
        assert per_class[c] == (len(rows), pytest.approx(sum(same) / len(rows)))
    worst = stats.worst_classes(per_class, 2)
    assert [w[0] for w in worst] == sorted(per_class, key=lambda c: per_class[c][1])[:2]
    assert stats.worst_classes({1: (1, 0.0), 2: (9, 0.5)}, 5, min_samples=5) == [(2, 9, 0.5)]


def _batch(rng, batch=3, seq=6, vocab=7, causal=True):
    ids = rng.integers(0, vocab, (batch, seq))
    mask = np.ones((batch, seq), np.int64)
    mask[0, 4:] = 0  # right padding
    labels = np.where(mask == 1, ids, -100) if causal else rng.integers(0, vocab, (batch, seq))
    labels[1, :2] = -100  # a prompt
    return ids, mask, labels, rng.normal(size=(batch, seq, vocab)), rng.normal(
        size=(batch, seq, vocab))


def test_causal_rows_are_the_positions_whose_next_label_counts():
    rng = np.random.default_rng(1)
    ids, mask, labels, t, s = _batch(rng)
    t_rows, s_rows, y, sequence = tokens.gather([(t, labels, mask, ids)], [(s, None, None, None)])
    expected = [(b, p) for b in range(3) for p in range(5) if labels[b, p + 1] != -100]
    assert sequence and len(y) == len(expected)
    for row, (b, p) in enumerate(expected):
        assert np.array_equal(t_rows[row], t[b, p]) and np.array_equal(s_rows[row], s[b, p])
        assert y[row] == labels[b, p + 1]
    # What sits at positions that do not count changes no figure.
    t2 = t.copy()
    t2[0, 3:] = 99.0  # position 3 predicts padding; 4, 5 are padding
    t2[:, -1] = -99.0
    again = tokens.gather([(t2, labels, mask, ids)], [(s, None, None, None)])
    assert stats.agreement(again[0], again[1]) == stats.agreement(t_rows, s_rows)
    assert stats.mean_kl(again[0], again[1]) == stats.mean_kl(t_rows, s_rows)


def test_without_labels_the_mask_and_input_ids_give_the_targets():
    rng = np.random.default_rng(2)
    ids, mask, labels, t, s = _batch(rng)
    labels = np.where(mask == 1, ids, -100)
    with_labels = tokens.gather([(t, labels, mask, ids)], [(s, None, None, None)])
    without = tokens.gather([(t, None, mask, ids)], [(s, None, None, None)])
    for a, b in zip(with_labels[:3], without[:3]):
        assert np.array_equal(a, b)


def test_token_level_labels_are_not_shifted():
    rng = np.random.default_rng(3)
    ids, mask, labels, t, s = _batch(rng, causal=False)
    t_rows, _, y, _ = tokens.gather([(t, labels, mask, ids)], [(s, None, None, None)])
    keep = labels != -100
    assert np.array_equal(y, labels[keep]) and np.array_equal(t_rows, t[keep])


def test_causal_lm_class_is_recognised():
    class GPT2LMHeadModel:
        pass

    class LlamaForCausalLM:
        pass

    class BertForTokenClassification:
        pass

    assert tokens.is_causal_lm_class(GPT2LMHeadModel())
    assert tokens.is_causal_lm_class(LlamaForCausalLM())
    assert not tokens.is_causal_lm_class(BertForTokenClassification())


def test_tiny_gpt2_outputs_become_valid_token_rows():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from neural_distill.adapters.torch.report import batch_outputs

    torch.manual_seed(0)
    config = dict(n_embd=32, n_head=2, vocab_size=50, n_positions=16)
    teacher = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, **config))
    student = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, **config))
    ids = torch.randint(0, 50, (4, 10))
    mask = torch.ones_like(ids)
    mask[:2, 7:] = 0
    labels = torch.where(mask == 1, ids, torch.full_like(ids, -100))
    loader = [{"input_ids": ids[:2], "attention_mask": mask[:2], "labels": labels[:2]},
              {"input_ids": ids[2:], "attention_mask": mask[2:], "labels": labels[2:]}]
    t_rows, s_rows, y, sequence = tokens.gather(
        batch_outputs(teacher, loader, "teacher"), batch_outputs(student, loader, "student"),
        causal_class=tokens.is_causal_lm_class(student))
    assert sequence and len(y) == 2 * 6 + 2 * 9  # positions whose next token is real
    teacher.eval(), student.eval()  # as the report runs them: no dropout
    with torch.no_grad():
        t_logits = teacher(input_ids=ids, attention_mask=mask).logits.numpy()
        s_logits = student(input_ids=ids, attention_mask=mask).logits.numpy()
    valid = np.zeros((4, 10), bool)
    valid[:, :-1] = labels[:, 1:].numpy() != -100
    same = np.argmax(t_logits[valid], 1) == np.argmax(s_logits[valid], 1)
    assert stats.agreement(t_rows, s_rows) == pytest.approx(same.mean())
    log_t = t_logits[valid] - np.log(np.exp(t_logits[valid]).sum(1, keepdims=True))
    log_s = s_logits[valid] - np.log(np.exp(s_logits[valid]).sum(1, keepdims=True))
    kl = (np.exp(log_t) * (log_t - log_s)).sum(1).mean()
    assert stats.mean_kl(t_rows, s_rows) == pytest.approx(kl, rel=1e-4)


LM_FACTORIES = '''
import torch
from transformers import GPT2Config, GPT2LMHeadModel

def gpt(layers=1, seed=0):
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(n_layer=layers, n_embd=32, n_head=2, vocab_size=40,
                                      n_positions=16))

class Padded(torch.utils.data.Dataset):
    """Right-padded sequences of 6 to 12 tokens; padding labelled -100."""
    def __len__(self):
        return 8
    def __getitem__(self, i):
        ids = torch.randint(0, 40, (12,), generator=torch.Generator().manual_seed(i))
        mask = (torch.arange(12) < 6 + i % 7).long()
        return {"input_ids": ids, "attention_mask": mask,
                "labels": torch.where(mask == 1, ids, torch.full_like(ids, -100))}

def padded():
    return Padded()
'''


def test_report_of_a_language_model_run_is_per_token(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import yaml

    from neural_distill.report import report

    (tmp_path / "lm_factories.py").write_text(LM_FACTORIES, encoding="utf-8")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = {"model": {"name": "lm", "student": "lm_factories.py:gpt",
                        "teacher": {"factory": "lm_factories.py:gpt",
                                    "kwargs": {"layers": 2, "seed": 1}}},
              "evaluation": {"accuracy": {"metric": {"topk": 1}, "dataloader": {
                  "batch_size": 4, "dataset": {"factory": {"name": "lm_factories.py:padded"}}}}}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    sys_path = __import__("sys").path
    sys_path.insert(0, str(tmp_path))
    try:
        import lm_factories
    finally:
        sys_path.remove(str(tmp_path))
    torch.save(lm_factories.gpt().state_dict(), run_dir / "best_student.pt")
    figures = report(str(run_dir), config=str(tmp_path / "config.yaml"), repeats=1,
                     latency_batch=2, echo=False, require=["agreement>=0", "kl>=0"])
    lengths = [6 + i % 7 for i in range(8)]
    assert figures["unit"] == "token" and figures["samples"] == sum(n - 1 for n in lengths)
    assert "top-1 agreement (per token)" in figures.table
    assert "mean KL(teacher||student) (per token)" in figures.table
    assert figures.passed and 0 <= figures["student"]["top1"] <= 1
    assert sum(c["samples"] for c in figures["per_class_agreement"].values()) == figures["samples"]
