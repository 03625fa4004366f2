"""The other ways in: the YAML ``pruning:`` section (built-in loop), the algorithm Trainer and
``NLPTrainer.distill`` with the seed's ``pruner_config``."""

import copy
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from helpers import make_blobs, tensor_loader  # noqa: E402
from neural_distill import Distillation  # noqa: E402
from neural_distill.config import PrunerConfig, WeightPruningConfig  # noqa: E402
from neural_distill.errors import ConfigError  # noqa: E402

torch.set_num_threads(1)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 4))


def _zeros(weight):
    return float((weight == 0).float().mean())


def test_yaml_pruning_section_in_the_builtin_loop(tmp_path):
    x, y = make_blobs(n=64, dim=8, classes=4)
    distiller = Distillation({
        "distillation": {"train": {"epoch": 3, "optimizer": {"SGD": {"learning_rate": 0.05}},
                                   "progress_bar": False}},
        "pruning": {"target_sparsity": 0.75, "pattern": "unstructured",
                    "pruning_type": "magnitude", "pruning_scope": "local",
                    "start_step": 0, "end_step": 4, "pruning_frequency": 2},
        "tuning": {"workspace": {"path": str(tmp_path / "ws")}}})
    teacher = _mlp(1)
    before = copy.deepcopy(teacher.state_dict())
    distiller.student_model, distiller.teacher_model = _mlp(), teacher
    distiller.train_dataloader = tensor_loader(x, y, batch_size=16)
    distiller.eval_dataloader = tensor_loader(x, y, batch_size=32)
    student = distiller.fit()
    sparsity = distiller.run.pruner.sparsity()
    assert set(sparsity) == {"0", "2"}
    assert all(v == pytest.approx(0.75, abs=0.02) for v in sparsity.values())
    assert distiller.run.pruner.step == 12  # 3 epochs of 4 optimizer steps
    # The best student comes from an evaluation after the schedule ended (step 4 < 8).
    assert _zeros(student[2].weight) == pytest.approx(0.75, abs=0.02)
    assert _zeros(student[4].weight) == 0.0
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_steps_are_optimizer_steps_under_gradient_accumulation(tmp_path):
    x, y = make_blobs(n=64, dim=8, classes=4)
    distiller = Distillation({
        "distillation": {"train": {"epoch": 1, "gradient_accumulation_steps": 2,
                                   "progress_bar": False}},
        "pruning": {"target_sparsity": 0.5, "pattern": "unstructured", "end_step": 1},
        "tuning": {"workspace": {"path": str(tmp_path / "ws")}}})
    distiller.student_model, distiller.teacher_model = _mlp(), _mlp(1)
    distiller.train_dataloader = tensor_loader(x, y, batch_size=8)  # 8 batches, 4 steps
    distiller.fit()
    assert distiller.run.pruner.step == 4


def test_yaml_pruning_section_is_validated():
    with pytest.raises(ConfigError, match=r"pruning.pattern"):
        Distillation({"pruning": {"pattern": "3"}})
    with pytest.raises(ConfigError, match="Did you mean 'end_step'"):
        Distillation({"pruning": {"end_stpe": 3}})


def test_algorithm_trainer_with_distillation_and_pruning(tmp_path):
    from neural_distill.algorithms.distillation import Distillation as KD, KLDivergence
    from neural_distill.algorithms.pruning import Pruning
    from neural_distill.trainer import Trainer

    x, y = make_blobs(n=64, dim=8, classes=4)
    pruning = Pruning(WeightPruningConfig(target_sparsity=0.5, pattern="4x1",
                                          pruning_scope="local", start_step=0, end_step=3))
    student = _mlp()
    Trainer(model=student, train_dataloader=tensor_loader(x, y, batch_size=16),
            max_duration="2ep", algorithms=[KD(teachers=_mlp(1), kd_loss_fn=KLDivergence()),
                                            pruning],
            progress_bar=False, save_folder=str(tmp_path)).fit()
    assert set(pruning.sparsity()) == {"0", "2"}
    assert all(v == pytest.approx(0.5, abs=0.02) for v in pruning.sparsity().values())


def test_nlp_trainer_distill_with_the_seed_pruner_config(tmp_path):
    pytest.importorskip("transformers")
    from transformers import BertConfig, BertForSequenceClassification, TrainingArguments

    from neural_distill import Criterion, DistillationConfig
    from neural_distill.integrations.transformers import NLPTrainer

    def bert(seed):
        torch.manual_seed(seed)
        return BertForSequenceClassification(BertConfig(
            vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=8, num_labels=2,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))

    ids = torch.randint(1, 40, (32, 8), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": i, "labels": int(i[0] >= 20)} for i in ids]
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8,
                             num_train_epochs=2, learning_rate=1e-3, report_to=[],
                             use_cpu=True, save_strategy="no", logging_strategy="no",
                             disable_tqdm=True)
    trainer = NLPTrainer(model=bert(1), args=args, train_dataset=data)
    criterion = Criterion(name="KnowledgeLoss", temperature=2.0, loss_types=["CE", "KL"])
    pruner = PrunerConfig(prune_type="BasicMagnitude", target_sparsity_ratio=0.5,
                          epoch_range=[0, 2])
    d_conf = DistillationConfig(criterion=criterion, pruner_config=pruner)
    model = trainer.distill(distillation_config=d_conf, teacher_model=bert(2))
    layer = model.bert.encoder.layer[0]
    for module in (layer.attention.self.query, layer.intermediate.dense, layer.output.dense):
        assert _zeros(module.weight) == pytest.approx(0.5, abs=0.01)
    assert _zeros(model.classifier.weight) == 0.0
    # Embeddings stay dense (row 0 is the padding token's, zero from the start).
    assert _zeros(model.bert.embeddings.word_embeddings.weight[1:]) == 0.0
