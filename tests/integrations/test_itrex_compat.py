"""ITREX's distillation tests (tests/Nightly/test_distillation.py) with the import paths
changed: ``intel_extension_for_transformers.transformers`` -> ``neural_distill``, its
``trainer`` -> ``neural_distill.integrations.transformers``, ``neural_compressor.config`` ->
``neural_distill.config``. Tiny random BERTs stand in for the downloaded DistilBERTs.
"""

import copy
import os
import shutil

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may be fetched from a hub, ever

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from transformers import (BertConfig, BertForSequenceClassification,  # noqa: E402
                          TrainingArguments)

from neural_distill import ConfigError, Criterion, DistillationConfig  # noqa: E402
from neural_distill import DistillationCriterionMode, ModelError, OptimizedModel  # noqa: E402
from neural_distill import metrics  # noqa: E402
from neural_distill.config import KnowledgeDistillationLossConfig  # noqa: E402
from neural_distill.integrations.transformers import NLPTrainer  # noqa: E402

torch.set_num_threads(1)
SEQ, VOCAB = 8, 40


def bert(layers, hidden, seed, init_range=0.02):
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(
        vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=SEQ, num_labels=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=init_range))


class Sentences(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, VOCAB, (n, SEQ), generator=generator)
        self.labels = (self.ids[:, 0] >= VOCAB // 2).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(SEQ, dtype=torch.long),
                "labels": self.labels[i]}


@pytest.fixture
def models():
    return bert(1, 16, seed=1), bert(2, 24, seed=0, init_range=0.5)


@pytest.fixture
def dataset():
    return Sentences(32, seed=0)


def args(tmp_path):
    return TrainingArguments(output_dir=str(tmp_path / "tmp_trainer"),
                             per_device_train_batch_size=8, num_train_epochs=1, learning_rate=1e-3,
                             report_to=[], use_cpu=True, save_strategy="no",
                             logging_strategy="no", disable_tqdm=True, seed=3)


def test_fx_model_distil(models, dataset, tmp_path):
    model, teacher_model = models

    def compute_metrics(p):
        preds = np.argmax(p.predictions, axis=1)
        return {"accuracy": float((preds == p.label_ids).mean())}

    origin_weight = copy.deepcopy(model.classifier.weight)
    trainer = NLPTrainer(
        model=copy.deepcopy(model),
        args=args(tmp_path),
        train_dataset=dataset,
        eval_dataset=dataset,
        compute_metrics=compute_metrics,
    )
    metric_ = metrics.Metric(name="eval_accuracy")
    trainer.metrics = metric_
    distillation_criterion_conf = KnowledgeDistillationLossConfig(loss_types=["CE", "KL"])
    distillation_conf = DistillationConfig(teacher_model, distillation_criterion_conf)
    distilled_model = trainer.distill(
        distillation_config=distillation_conf
    )
    trainer.save_model(str(tmp_path / "distilled_model"))
    loaded_model = OptimizedModel.from_pretrained(
        str(tmp_path / "distilled_model"),
    )
    distilled_weight = copy.deepcopy(distilled_model.classifier.weight)
    loaded_weight = copy.deepcopy(loaded_model.classifier.weight)
    # check distilled model
    assert (distilled_weight != origin_weight).any()
    # check loaded model
    assert (distilled_weight == loaded_weight).all()
    assert type(loaded_model) is BertForSequenceClassification
    shutil.rmtree(tmp_path / "distilled_model")


def test_functional_distil(models, dataset, tmp_path):
    model, teacher_model = models
    before = copy.deepcopy(model.state_dict())
    calls = []

    def eval_func(model):
        calls.append("eval")
        return 1

    def train_func(model):
        calls.append("train")
        return model

    trainer = NLPTrainer(model, args=args(tmp_path), train_dataset=dataset)
    distillation_conf = DistillationConfig(teacher_model=teacher_model)
    trainer.distill(distillation_conf,
                    provider="inc",
                    train_func=train_func,
                    eval_func=eval_func,)
    # The user's functions did the work: nothing was trained, the student was scored once.
    assert calls == ["train", "eval"]
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert trainer.distiller.best_score == 1


def test_a_train_func_that_calls_the_trainer_distills(models, dataset, tmp_path):
    model, teacher_model = models
    scores = []

    def eval_func(model):
        scores.append(float(model.classifier.weight.detach().abs().sum()))
        return -len(scores)  # the first epoch's student is the best

    trainer = NLPTrainer(model, args=args(tmp_path), train_dataset=dataset)
    trainer.args.num_train_epochs = 2
    before = copy.deepcopy(trainer.model.classifier.weight)
    trainer.distill(DistillationConfig(teacher_model=teacher_model), provider="INC",
                    train_func=lambda model: trainer.train(), eval_func=eval_func)
    history = trainer.distillation_history
    assert len(scores) == 2 and len(history) == 2
    assert all(record["distillation_loss"] > 0 for record in history)
    assert not torch.equal(before, trainer.model.classifier.weight)


def test_provider_and_functions_are_checked(models, dataset, tmp_path):
    model, teacher_model = models
    trainer = NLPTrainer(model, args=args(tmp_path), train_dataset=dataset)
    with pytest.raises(ConfigError, match="provider: expected 'inc'"):
        trainer.distill(DistillationConfig(teacher_model=teacher_model), provider="ipex")
    with pytest.raises(ConfigError, match="train_func"):
        trainer.distill(DistillationConfig(teacher_model=teacher_model), train_func="train")


def test_distillation_criterion_mode_names_the_criteria():
    assert {m.name: m.value for m in DistillationCriterionMode} == {
        "KNOWLEDGELOSS": "KnowledgeDistillationLoss",
        "INTERMEDIATELAYERSLOSS": "IntermediateLayersKnowledgeDistillationLoss"}
    # ITREX's Criterion default name and the enum member both mean logit distillation.
    assert Criterion(name="KNOWLEDGELOSS").to_loss_config() == KnowledgeDistillationLossConfig()
    mode = Criterion(name=DistillationCriterionMode.INTERMEDIATELAYERSLOSS,
                     layer_mappings=[["bert.encoder"]])
    assert mode.name == "IntermediateLayersLoss"
    with pytest.raises(ConfigError, match="Did you mean 'KnowledgeLoss'"):
        Criterion(name="KNOWLEDGELOS")


def test_optimized_model_says_what_it_cannot_load(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        OptimizedModel.from_pretrained(str(tmp_path))
    with pytest.raises(ModelError, match="from_pretrained"):
        OptimizedModel()
