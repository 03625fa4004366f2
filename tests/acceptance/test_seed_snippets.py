"""The usage snippets of the reference document (shared/seeds/001_*.txt), run as users write them.

Only the import paths change (``neural_compressor.experimental`` -> ``neural_distill``,
``neural_compressor.conf.config`` -> ``neural_distill.config``), so each snippet's own import
line, ``common`` included, is kept: ``from neural_distill import Distillation, common``.
"""

import copy
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from helpers import accuracy, make_blobs, state_arrays, tiny_mlp, trained_teacher  # noqa: E402

# The reference document's YAML layout (INC style): model, device, distillation.train with
# optimizer/criterion/dataloader/start_epoch/end_epoch, evaluation.accuracy, tuning.
INC_STYLE_YAML = """\
version: 1.0

model:
  name: seed_snippet_distillation
  framework: pytorch

device: cpu

distillation:
  train:
    start_epoch: 0
    end_epoch: 4
    iteration: 100
    frequency: 1
    progress_bar: false
    dataloader:
      batch_size: 32
      dataset:
        npz:
          path: train.npz
          input_key: x
          label_key: y
    criterion:
      KnowledgeDistillationLoss:
        temperature: 2.0
        loss_types: ['CE', 'KL']
        loss_weights: [0.5, 0.5]
    optimizer:
      SGD:
        learning_rate: 0.1
        momentum: 0.9
        nesterov: True
        weight_decay: 0.0001

evaluation:
  accuracy:
    metric:
      topk: 1
    dataloader:
      batch_size: 64
      dataset:
        npz:
          path: eval.npz

tuning:
  accuracy_criterion:
    relative: 0.01
  exit_policy:
    timeout: 0
  random_seed: 9527
  workspace:
    path: {workspace}
"""


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(n=192, seed=0)
    x_eval, y_eval = make_blobs(n=96, seed=5)
    return x, y, x_eval, y_eval


@pytest.fixture(scope="module")
def teacher_model(blobs):
    x, y, _, _ = blobs
    return trained_teacher(x, y)


@pytest.fixture
def yaml_path(tmp_path, workspace, blobs):
    x, y, x_eval, y_eval = blobs
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "eval.npz", x=x_eval, y=y_eval)
    path = tmp_path / "distillation.yaml"
    path.write_text(INC_STYLE_YAML.replace("{workspace}", workspace), encoding="utf-8")
    return str(path)


def _check_trained(model, student_model, distiller, blobs):
    _, _, x_eval, y_eval = blobs
    assert model is not student_model and type(model) is type(student_model)
    # Usable as the user's own model: call it, save it, load it into a fresh instance.
    model_accuracy = accuracy(model, x_eval, y_eval)
    assert model_accuracy > 0.85  # chance is 1/3
    assert model_accuracy == pytest.approx(distiller.best_score)
    fresh = tiny_mlp(seed=99)
    fresh.load_state_dict(model.state_dict())
    assert accuracy(fresh, x_eval, y_eval) == model_accuracy
    losses = [record["loss"] for record in distiller.history]
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_snippet_yaml_path(yaml_path, blobs, teacher_model):
    from neural_distill import Distillation, common  # noqa: F401

    student_model = tiny_mlp(seed=0)
    teacher_model = copy.deepcopy(teacher_model)
    teacher_before = state_arrays(teacher_model)
    assert accuracy(student_model, *blobs[2:]) < 0.6

    distiller = Distillation(yaml_path)
    distiller.student_model = student_model
    distiller.teacher_model = teacher_model
    model = distiller.fit()

    _check_trained(model, student_model, distiller, blobs)
    # What users of that API do next (docs/saving.md).
    model.save("./saved")
    fresh = tiny_mlp(seed=98)
    fresh.load_state_dict(torch.load("./saved/best_model.pt", weights_only=True))
    assert accuracy(fresh, *blobs[2:]) == accuracy(model, *blobs[2:])
    assert [r["top1"] for r in distiller.history if "top1" in r][-1] > 0.85
    after = state_arrays(teacher_model)
    assert all(np.array_equal(teacher_before[k], after[k]) for k in teacher_before)


def test_snippet_distillation_conf(yaml_path, blobs, teacher_model):
    from neural_distill import Distillation, common  # noqa: F401
    from neural_distill.config import DistillationConf

    student_model = tiny_mlp(seed=0)
    conf = DistillationConf(yaml_path)
    distiller = Distillation(conf)
    distiller.student_model = student_model
    distiller.teacher_model = copy.deepcopy(teacher_model)
    model = distiller.fit()

    _check_trained(model, student_model, distiller, blobs)
    assert distiller.conf_source == yaml_path


def test_snippet_dummy_dataset_smoke(tmp_path, workspace):
    from neural_distill import Distillation

    config = INC_STYLE_YAML.replace("{workspace}", workspace)
    config = config.replace(textwrap.dedent("""\
        npz:
                  path: train.npz
                  input_key: x
                  label_key: y"""), "dummy: {shape: [96, 8], num_classes: 3, seed: 1}")
    config = config.replace(textwrap.dedent("""\
        npz:
                  path: eval.npz"""), "dummy: {shape: [48, 8], num_classes: 3, seed: 2}")
    assert "npz" not in config
    path = tmp_path / "dummy.yaml"
    path.write_text(config, encoding="utf-8")

    student_model = tiny_mlp(seed=0)
    before = state_arrays(student_model)
    distiller = Distillation(str(path))
    distiller.student_model = student_model
    distiller.teacher_model = tiny_mlp(hidden=32, seed=1)
    model = distiller.fit()

    assert type(model) is type(student_model)
    assert not np.array_equal(before["0.weight"], state_arrays(student_model)["0.weight"])
    assert model(torch.zeros(2, 8)).shape == (2, 3)
    losses = [record["loss"] for record in distiller.history]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert all(0.0 <= record["top1"] <= 1.0 for record in distiller.history)


# ---------------------------------------------------------------------------- user loop (BlendCNN)
VOCAB, SEQ_LEN = 12, 6


class TinyTextClassifier(nn.Module):
    """forward(input_ids, segment_ids, input_mask) like the BlendCNN/BERT models of the seed."""

    def __init__(self, dim=8, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.tokens = nn.Embedding(VOCAB, dim)
        self.segments = nn.Embedding(2, dim)
        self.classifier = nn.Linear(dim, 2)

    def forward(self, input_ids, segment_ids, input_mask):
        hidden = self.tokens(input_ids) + self.segments(segment_ids)
        mask = input_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.classifier(torch.tanh(pooled))


def make_text_data(n, seed):
    """Class 0 mostly (90%) uses tokens 1-5, class 1 tokens 6-10; 0 is padding."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    input_ids = np.zeros((n, SEQ_LEN), dtype=np.int64)
    input_mask = np.zeros((n, SEQ_LEN), dtype=np.int64)
    segment_ids = np.zeros((n, SEQ_LEN), dtype=np.int64)
    for i, label in enumerate(labels):
        length = rng.integers(3, SEQ_LEN + 1)
        own = rng.random(length) < 0.9
        low = np.where(own == (label == 0), 1, 6)
        input_ids[i, :length] = low + rng.integers(0, 5, size=length)
        input_mask[i, :length] = 1
        segment_ids[i, length // 2:length] = 1
    return (torch.from_numpy(input_ids), torch.from_numpy(segment_ids),
            torch.from_numpy(input_mask), torch.from_numpy(labels))


def _train_text_teacher(data):
    input_ids, segment_ids, input_mask, labels = data
    teacher = TinyTextClassifier(dim=16, seed=1)
    optimizer = torch.optim.Adam(teacher.parameters(), lr=0.05)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(teacher(input_ids, segment_ids, input_mask),
                                    labels).backward()
        optimizer.step()
    teacher.eval()
    return teacher


def _text_accuracy(model, data):
    input_ids, segment_ids, input_mask, labels = data
    with torch.no_grad():
        pred = model(input_ids, segment_ids, input_mask).argmax(-1)
    return float((pred == labels).float().mean())


USER_LOOP_YAML = """\
model:
  name: blendcnn_user_loop
  framework: pytorch
distillation:
  train:
    frequency: 1
evaluation:
  accuracy:
    metric:
      Accuracy: {{}}
    higher_is_better: true
tuning:
  random_seed: 1978
  workspace:
    path: {workspace}
"""


def test_snippet_user_training_loop(tmp_path, workspace):
    from neural_distill import Distillation, common  # noqa: F401
    from neural_distill.common.criterion import PyTorchKnowledgeDistillationLoss

    train_data = make_text_data(128, seed=0)
    eval_data = make_text_data(64, seed=1)
    teacher = _train_text_teacher(train_data)
    assert _text_accuracy(teacher, eval_data) > 0.85

    # Like BlendCNN, the teacher's logits are cached in the dataset.
    with torch.no_grad():
        cached = teacher(*train_data[:3])
    train_dataloader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(cached, *train_data), batch_size=16, shuffle=True)
    eval_dataloader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*eval_data), batch_size=64)
    teacher_calls = []
    teacher.register_forward_hook(lambda *args: teacher_calls.append(1))

    config_path = tmp_path / "blendcnn.yaml"
    config_path.write_text(USER_LOOP_YAML.format(workspace=workspace), encoding="utf-8")

    model = TinyTextClassifier(seed=0)
    student = model
    chance_accuracy = _text_accuracy(model, eval_data)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    epochs, iters = 4, 6
    average_losses = []

    # --- the seed's train_func, unchanged apart from recording the average loss ---
    def train_func(model):
        distiller.on_train_begin()
        for nepoch in range(epochs):
            model.train()
            cnt = 0
            loss_sum = 0.
            iter_bar = tqdm(train_dataloader, desc='Iter (loss=X.XXX)', disable=True)
            for batch in iter_bar:
                teacher_logits, input_ids, segment_ids, input_mask, target = batch
                cnt += 1
                output = model(input_ids, segment_ids, input_mask)
                loss = criterion(output, target)
                loss = distiller.on_after_compute_loss(
                    {'input_ids': input_ids, 'segment_ids': segment_ids,
                     'input_mask': input_mask},
                    output,
                    loss,
                    teacher_logits)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                loss_sum += loss.item()
                if cnt >= iters:
                    break
            print('Average Loss: {}'.format(loss_sum / cnt))
            average_losses.append(loss_sum / cnt)
            distiller.on_epoch_end()

    # --- the seed's launcher ---
    distiller = Distillation(str(config_path))
    distiller.student_model = model
    distiller.teacher_model = teacher
    distiller.criterion = PyTorchKnowledgeDistillationLoss()
    distiller.train_func = train_func
    distiller.eval_dataloader = eval_dataloader
    model = distiller.fit()

    assert model is not student and isinstance(model, TinyTextClassifier)
    assert teacher_calls == []  # the cached logits were used; the teacher never ran
    assert len(average_losses) == epochs and average_losses[-1] < average_losses[0]
    scores = [record["Accuracy"] for record in distiller.history]
    assert len(scores) == epochs
    assert distiller.best_score == max(scores)
    model_accuracy = _text_accuracy(model, eval_data)
    assert model_accuracy == pytest.approx(distiller.best_score)
    assert model_accuracy > max(0.8, chance_accuracy + 0.2)
    # The KD term was part of the loss: each epoch logged it, weighted as configured.
    for record in distiller.history:
        assert record["loss"] == pytest.approx(
            0.5 * record["student_loss"] + 0.5 * record["distillation_loss"], rel=1e-5)
