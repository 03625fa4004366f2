"""prune_width: a smaller dense copy, by activation importance (Minitron)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from neural_distill.errors import ConfigError, ModelError  # noqa: E402
from neural_distill.pruning import prune_width  # noqa: E402

torch.set_num_threads(1)


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_mlp_keeps_the_most_active_neurons_and_the_teacher_is_untouched():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():  # neurons 1 and 5 are the only ones that ever fire
        teacher[0].weight.zero_()
        teacher[0].bias.copy_(torch.tensor([-1., 2., -1., -1., -1., 3., -1., -1.]))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    x = torch.randn(16, 6)
    student = prune_width(teacher, 0.25, [x])
    assert student[0].out_features == 2 and student[2].in_features == 2
    assert torch.equal(student[0].bias, torch.tensor([2., 3.]))
    # Only silent neurons went: the outputs are the teacher's exactly.
    assert torch.allclose(student(x), teacher(x))
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert type(student) is nn.Sequential and _count(student) < _count(teacher)


def test_conv_batchnorm_flatten_linear_chain():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 10, 4)).eval()
    x = torch.randn(4, 1, 10)
    small = prune_width(model, 0.5, [(x, torch.zeros(4))])
    assert small[0].out_channels == 4 and small[1].num_features == 4
    assert small[3].in_channels == 4 and small[3].out_channels == 4
    assert small[6].in_features == 40 and small(x).shape == (4, 4)
    # keep=1 reorders nothing: the same function.
    assert torch.allclose(prune_width(model, 1.0, [x])(x), model(x), atol=1e-6)


def test_gpt2_and_bert_mlp_widths_update_their_configs():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    gpt = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16, bos_token_id=0,
        eos_token_id=0))
    ids = torch.randint(0, 50, (2, 8))
    small = prune_width(gpt, 0.25, [{"input_ids": ids, "labels": ids}])
    assert type(small) is type(gpt) and small.config.n_inner == 32
    assert small(ids).logits.shape == (2, 8, 50) and _count(small) < _count(gpt)
    again = transformers.GPT2LMHeadModel(small.config)  # the config describes the copy
    again.load_state_dict(small.state_dict())
    bert = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=16))
    small = prune_width(bert, 0.5, [{"input_ids": ids}])
    assert small.config.intermediate_size == 32
    assert small.bert.encoder.layer[0].output.dense.in_features == 32


def test_bad_arguments_name_what_to_fix():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ConfigError, match="keep"):
        prune_width(model, 0, [torch.randn(2, 4)])
    with pytest.raises(ModelError, match="Widths found: \\['0'\\]"):
        prune_width(model, 0.5, [torch.randn(2, 4)], layers=["2"])
    with pytest.raises(ModelError, match="no width to prune"):
        prune_width(nn.Linear(4, 2), 0.5, [torch.randn(2, 4)])
