"""Distil a tiny GPT-2 that adds 2-digit numbers into a 1-layer student.

    python examples/lm_arithmetic/compare.py                    # seeds 0 1 2 (a few minutes)
    python examples/lm_arithmetic/compare.py --seeds 0 --student-steps 100   # a quick look

The task needs several tokens of reasoning: ``"47+85="`` is answered digit by digit, least
significant first (``"231"`` then the end token: 132 reversed, zero-padded to 3 digits), so
each digit depends on the carry out of the previous one. A 2-layer teacher is trained once from
scratch (plain ``torch``, no distillation), then for each seed the same 1-layer student (same
initial weights, same batches, same number of optimizer steps) is trained through
``Distillation.fit()`` over
dict batches ``{input_ids, attention_mask, labels}`` (labels -100 on the prompt) five ways:

- student alone: the model's own loss (``loss_weights: [1, 0]``);
- KD: forward KL, KL(teacher || student), per answer token;
- RKL: reverse KL (MiniLLM) and JSD (GKD's generalized JSD, beta 0.5), where the installed
  neural_distill has them (``loss_types`` ``RKL`` / ``JSD``); skipped otherwise;
- on-policy: half the batches completed by the student itself
  (``distillation.train.on_policy``), the divergence over its own tokens (GKD).

Score: exact match of the student's greedy answer on 1000 held-out problems.
"""

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time

import torch
import transformers

from neural_distill import Distillation
from neural_distill.criterion.catalog.loss_types import LOSS_TYPES

DIGITS = 2
PLUS, EQUALS, BOS, EOS = 10, 11, 12, 13
VOCAB = 14
PROMPT = 1 + 2 * DIGITS + 2        # BOS a + b =
ANSWER = DIGITS + 1 + 1            # reversed sum digits, then EOS


def encode(a, b):
    digits = lambda n, width: [int(c) for c in f"{n:0{width}d}"]  # noqa: E731
    prompt = [BOS, *digits(a, DIGITS), PLUS, *digits(b, DIGITS), EQUALS]
    answer = [*reversed(digits(a + b, DIGITS + 1)), EOS]
    return prompt + answer


def problems(count, seed, exclude=()):
    g = torch.Generator().manual_seed(seed)
    seen, rows = set(exclude), []
    while len(rows) < count:
        a, b = (int(v) for v in torch.randint(0, 10 ** DIGITS, (2,), generator=g))
        if (a, b) not in seen:
            seen.add((a, b))
            rows.append((a, b))
    return rows


def batches(pairs, batch_size, seed):
    ids = torch.tensor([encode(a, b) for a, b in pairs])
    labels = ids.clone()
    labels[:, :PROMPT] = -100
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))
    return [{"input_ids": ids[i], "attention_mask": torch.ones_like(ids[i]),
             "labels": labels[i]} for i in order.split(batch_size)]


def gpt2(layers, width, seed, vocab_size=VOCAB):
    """``vocab_size`` above the task's 14 tokens pads the vocabulary (rows no example uses),
    as a real tokenizer's would be."""
    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=layers, n_embd=width, n_head=4, vocab_size=vocab_size, n_positions=PROMPT + ANSWER,
        bos_token_id=BOS, eos_token_id=EOS, pad_token_id=EOS))


@torch.no_grad()
def exact_match(model, pairs):
    model.eval()
    ids = torch.tensor([encode(a, b) for a, b in pairs])
    out = model.generate(input_ids=ids[:, :PROMPT], attention_mask=torch.ones_like(ids[:, :PROMPT]),
                         max_new_tokens=ANSWER, do_sample=False, pad_token_id=EOS,
                         eos_token_id=EOS)
    answer = out[:, PROMPT:PROMPT + ANSWER]
    if answer.shape[1] < ANSWER:
        return 0.0
    return float((answer == ids[:, PROMPT:]).all(-1).float().mean())


def train_teacher(train_pairs, steps, seed, vocab_size=VOCAB):
    model = gpt2(2, 96, seed=100 + seed, vocab_size=vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=steps,
                                                   pct_start=0.1)
    model.train()
    done, epoch = 0, 0
    while done < steps:
        for batch in batches(train_pairs, 64, seed=1000 * seed + epoch):
            loss = model(**batch).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            done += 1
            if done == steps:
                break
        epoch += 1
    return model.eval()


def methods():
    kd = LOSS_TYPES["kd"]
    found = {
        "student alone": (["CE", "KL"], [1.0, 0.0], None),
        "KD (forward KL)": (["CE", "KL"], [0.5, 0.5], None),
        "RKL (reverse KL)": (["CE", "RKL"], [0.5, 0.5], None) if "RKL" in kd else None,
        "JSD (beta 0.5)": (["CE", "JSD"], [0.5, 0.5], None) if "JSD" in kd else None,
        "on-policy (GKD)": (["CE", "JSD" if "JSD" in kd else "KL"], [0.5, 0.5],
                            {"fraction": 0.5, "max_new_tokens": ANSWER, "temperature": 1.0}),
    }
    return found


def train_student(name, setting, teacher, train_pairs, steps, seed, workspace,
                  lr_schedule="cosine"):
    return student_distiller(setting, teacher, train_pairs, steps, seed, workspace,
                             lr_schedule).fit()


def student_distiller(setting, teacher, train_pairs, steps, seed, workspace, lr_schedule="cosine",
                      vocab_size=VOCAB, temperature=1.0, teacher_cache=None):
    """The student's run, ready to ``fit()``; ``teacher_cache`` is the
    ``distillation.train.teacher_cache`` section (none when left out)."""
    loss_types, weights, on_policy = setting
    data = batches(train_pairs, 32, seed=seed)
    epochs = -(-steps // len(data))
    train = {"epoch": epochs, "progress_bar": False,
             "optimizer": {"AdamW": {"learning_rate": 3e-3, "weight_decay": 0.0}},
             "lr_schedule": {lr_schedule: {}},
             "criterion": {"KnowledgeDistillationLoss": {
                 "temperature": temperature, "loss_types": loss_types,
                 "loss_weights": weights}}}
    if "JSD" in loss_types:  # GKD's interpolation, explicit whatever the default
        train["criterion"]["KnowledgeDistillationLoss"]["beta"] = 0.5
    if epochs * len(data) > steps:
        train["iteration"] = -(-steps // epochs)  # batches per epoch: about `steps` in all
    if on_policy:
        train["on_policy"] = on_policy
    if teacher_cache is not None:
        train["teacher_cache"] = teacher_cache
    distiller = Distillation({"distillation": {"train": train},
                              "tuning": {"random_seed": seed,
                                         "workspace": {"path": workspace,
                                                       "checkpoint_every_epochs": 0}}})
    distiller.student_model = gpt2(1, 48, seed=seed, vocab_size=vocab_size)
    distiller.teacher_model = teacher
    distiller.train_dataloader = data
    return distiller


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher-steps", type=int, default=1000)
    parser.add_argument("--teacher-seed", type=int, default=0)
    parser.add_argument("--student-steps", type=int, default=1500)
    parser.add_argument("--train-size", type=int, default=8000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr-schedule", choices=["cosine", "constant"], default="cosine",
                        help="the students' learning rate over their steps")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    logging.getLogger("neural_distill").setLevel(logging.WARNING)
    test_pairs = problems(args.test_size, seed=12345)
    train_pairs = problems(args.train_size, seed=1, exclude=test_pairs)
    skipped = [name for name, setting in methods().items() if setting is None]
    started, cpu = time.perf_counter(), time.process_time()
    t0, c0 = time.perf_counter(), time.process_time()
    teacher = train_teacher(train_pairs, args.teacher_steps, args.teacher_seed)
    score = exact_match(teacher, test_pairs)
    table = {"teacher (2x96, one model)": {seed: score for seed in args.seeds}}
    print(f"teacher: {score:.1%} ({time.perf_counter() - t0:.0f} s, "
          f"{time.process_time() - c0:.0f} s CPU)", flush=True)
    with tempfile.TemporaryDirectory() as workspace:
        for seed in args.seeds:
            for name, setting in methods().items():
                if setting is None:
                    continue
                t0, c0 = time.perf_counter(), time.process_time()
                student = train_student(name, setting, teacher, train_pairs,
                                        args.student_steps, seed,
                                        os.path.join(workspace, f"{seed}-{len(table)}"),
                                        args.lr_schedule)
                table.setdefault(name, {})[seed] = exact_match(student, test_pairs)
                print(f"seed {seed}: {name}: {table[name][seed]:.1%} "
                      f"({time.perf_counter() - t0:.0f} s, {time.process_time() - c0:.0f} s CPU)",
                      flush=True)
    print(f"\nexact match of greedy answers, {args.test_size} held-out problems "
          f"({time.perf_counter() - started:.0f} s in all, {time.process_time() - cpu:.0f} s "
          f"CPU, {args.threads} thread(s)):")
    print("| run | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean |")
    print("| --- |" + " --- |" * (len(args.seeds) + 1))
    for name, scores in table.items():
        values = [scores[s] for s in args.seeds]
        print(f"| {name} | " + " | ".join(f"{v:.1%}" for v in values)
              + f" | {statistics.mean(values):.1%} |")
    for name in skipped:
        print(f"({name}: not run, this neural_distill has no such loss type)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(table, handle, indent=1)
    return table


if __name__ == "__main__":
    sys.exit(main() and 0)
