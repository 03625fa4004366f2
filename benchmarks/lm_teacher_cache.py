"""Per-token teacher cache on a causal LM: warm epoch vs a student-only loop and vs no cache.

The models and batches of examples/lm_arithmetic (compare.py's functions): teacher GPT-2
2 x 96, student 1 x 48, vocabulary padded to 1024 (the task uses 14 tokens), 11-token
sequences whose 4 answer tokens count, batches of 32 dicts ``{input_ids, attention_mask,
labels}``, AdamW at 3e-3. The teacher is not trained (its weights do not change the work a
step does). Four contenders, alternating, median epoch time:

  hand, student only : a hand-written loop training the student on the model's own loss (the
                       floor: no teacher, no KL term)
  ours, no cache     : fit() with [CE, KL] (0.5 / 0.5, T = 1), the teacher on every batch
  ours, warm dense   : the same with ``teacher_cache: {enabled: true, compression: none}``
  ours, warm top-k   : ``teacher_cache: {enabled: true, compression: topk, top_k: 32}``
  hand, KD on stored : a hand-written loop with the model's own loss and KL against teacher
                       logits computed before the run (what a warm cache cannot beat: the KL
                       term's own cost)

Each runs 3 epochs over the same batches; the first (the one that fills a cache) is not
counted, ours are read from ``distiller.history``'s ``time_s``.

    python benchmarks/lm_teacher_cache.py [--steps 250] [--repeats 5] [--threads 1] [--cpu-time]

--cpu-time times with the main thread's CPU time instead of the wall clock (as
teacher_cache.py): on a shared machine other processes' turns then do not count.
"""

import copy
import json
import os
import statistics
import sys
import tempfile
import time

import torch
import transformers

from _timing import torch_benchmark_args

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "examples", "lm_arithmetic"))
from compare import batches, gpt2, problems  # noqa: E402

EPOCHS = 3


def caches(top_k):
    return {"ours, no cache": None,
            "ours, warm dense": {"enabled": True, "compression": "none"},
            "ours, warm top-k": {"enabled": True, "compression": "topk", "top_k": top_k}}


def hand_student_only(student, data, epochs):
    """Seconds per epoch (after the first) of the loop a user writes to train the student."""
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3, weight_decay=0.0)
    student.train()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for batch in data:
            loss = student(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def hand_precomputed_kd(student, teacher, data, epochs):
    """Seconds per epoch (after the first) of a hand-written KD loop whose teacher logits were
    computed before (the floor of any warm cache): the model's own loss, plus KL over the
    counted tokens against the stored logits, 0.5 / 0.5."""
    with torch.no_grad():
        stored = [teacher(**{k: v for k, v in batch.items() if k != "labels"}).logits
                  for batch in data]
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3, weight_decay=0.0)
    student.train()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for batch, teacher_logits in zip(data, stored):
            output = student(**batch)
            counted = torch.nn.functional.pad(batch["labels"][:, 1:] != -100, (0, 1))
            kl = torch.nn.functional.kl_div(
                torch.log_softmax(output.logits[counted], -1),
                torch.log_softmax(teacher_logits[counted], -1), log_target=True,
                reduction="batchmean")
            loss = 0.5 * output.loss + 0.5 * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def ours(student, teacher, data, epochs, cache):
    """(seconds per epoch after the first, trained student, the epochs' history records)."""
    from neural_distill import Distillation

    train = {"epoch": epochs, "progress_bar": False,
             "optimizer": {"AdamW": {"learning_rate": 3e-3, "weight_decay": 0.0}},
             "criterion": {"KnowledgeDistillationLoss": {
                 "temperature": 1.0, "loss_types": ["CE", "KL"], "loss_weights": [0.5, 0.5]}}}
    if cache is not None:
        train["teacher_cache"] = cache
    with tempfile.TemporaryDirectory() as workspace:
        distiller = Distillation({
            "distillation": {"train": train},
            # The hand-written loop writes no checkpoints either (their cost is the same with
            # or without a cache: checkpoint_overhead.py).
            "tuning": {"workspace": {"path": workspace, "checkpoint_every_epochs": 0}}})
        distiller.student_model = student
        distiller.teacher_model = teacher
        distiller.train_dataloader = data
        trained = distiller.fit()
    epochs_done = [record for record in distiller.history if "time_s" in record]
    return statistics.median(r["time_s"] for r in epochs_done[1:]), trained, epochs_done


def main():
    def options(parser):
        parser.set_defaults(threads=1)
        parser.add_argument("--cpu-time", action="store_true",
                            help="main-thread CPU time, not wall time")
        parser.add_argument("--vocab", type=int, default=1024,
                            help="the models' vocabulary (the task uses 14 tokens of it)")
        parser.add_argument("--top-k", type=int, default=32)

    args = torch_benchmark_args(__doc__.split("\n")[0], steps=250, batch_size=32, extra=options)
    if args.cpu_time:  # the loop's epoch timer and the hand-written loop's both read this
        time.perf_counter = time.thread_time
    transformers.logging.set_verbosity_error()
    teacher = gpt2(2, 96, seed=100, vocab_size=args.vocab).eval()
    student0 = gpt2(1, 48, seed=0, vocab_size=args.vocab)
    contenders = caches(args.top_k)
    data = batches(problems(args.steps * args.batch_size, seed=1), args.batch_size, seed=0)

    times = {"hand, student only": [], **{name: [] for name in contenders},
             "hand, KD on stored": []}
    students, records = {}, {}
    for _ in range(args.repeats):
        times["hand, student only"].append(hand_student_only(copy.deepcopy(student0), data,
                                                             EPOCHS))
        times["hand, KD on stored"].append(hand_precomputed_kd(copy.deepcopy(student0),
                                                               teacher, data, EPOCHS))
        for name, cache in contenders.items():
            seconds, students[name], records[name] = ours(copy.deepcopy(student0), teacher,
                                                          data, EPOCHS, cache)
            times[name].append(seconds)
    identical = all(torch.equal(p, q) for p, q in zip(
        students["ours, no cache"].state_dict().values(),
        students["ours, warm dense"].state_dict().values()))
    medians = {name: statistics.median(values) for name, values in times.items()}
    hand, uncached, dense, topk, stored = (medians[name] for name in times)

    print(f"Per-token teacher cache, GPT-2 2x96 -> 1x48, vocabulary {args.vocab}, top-k "
          f"{args.top_k}, batch "
          f"{args.batch_size} x 11 tokens (4 counted), {len(data)} steps/epoch, "
          f"{torch.get_num_threads()} thread(s), median of {args.repeats} x {EPOCHS - 1} "
          f"epochs, {'CPU' if args.cpu_time else 'wall'} time")
    print(f"  dense cache trains the same student as no cache: {identical}")
    for name, value in medians.items():
        extra = ""
        if name in records and contenders[name] is not None:
            last = records[name][-1]
            extra = (f"  (hit rate by epoch {[r['teacher_cache_hit_rate'] for r in records[name]]},"
                     f" {last['teacher_cache_bytes_per_token']} B/token)")
        print(f"  {name:20s}: {value * 1e3 / len(data):8.3f} ms/step{extra}")
    print(f"  warm top-k cache / student-only loop : {topk / hand:.3f}  (target <= 1.2)")
    print(f"  warm dense cache / student-only loop : {dense / hand:.3f}")
    print(f"  hand KD on stored logits / student-only: {stored / hand:.3f}  (the KL term "
          f"itself: what any warm cache pays)")
    print(f"  warm dense cache / hand KD on stored   : {dense / stored:.3f}")
    print(f"  no cache / warm top-k cache (speed-up): {uncached / topk:.2f}x")
    print(f"  no cache / warm dense cache (speed-up): {uncached / dense:.2f}x")
    print(json.dumps({"topk_over_student_only": round(topk / hand, 3),
                      "dense_over_student_only": round(dense / hand, 3),
                      "speedup_topk": round(uncached / topk, 2),
                      "speedup_dense": round(uncached / dense, 2),
                      "stored_kd_over_student_only": round(stored / hand, 3),
                      "bit_identical": identical}))


if __name__ == "__main__":
    main()
