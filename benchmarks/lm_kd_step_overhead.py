"""Per-token KD step of a causal LM: the built-in loop vs the same math written by hand.

Tiny GPT-2s built from a config (no download): teacher 4 layers x 128, student 1 layer x 64,
vocabulary 512, sequences of 64 tokens, batch 16, dict batches ``{input_ids, attention_mask,
labels}`` with a 16-token prompt labelled -100 and a few padded positions. Both sides compute

    0.5 * model's own shifted loss + 0.5 * T^2 * KL(teacher || student) over the valid tokens

(position t counts iff labels[t + 1] != -100; mean over the batch's valid tokens) with SGD
(momentum 0.9). Runs alternate so machine-load drift hits both; medians are reported.

    python benchmarks/lm_kd_step_overhead.py [--steps 40] [--repeats 5] [--threads 1]
"""

import copy
import logging
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
import transformers

from _timing import fit_one_epoch, torch_benchmark_args

TEMPERATURE = 2.0
VOCAB, SEQ, PROMPT = 512, 64, 16


def make_models():
    def gpt2(layers, width, seed):
        torch.manual_seed(seed)
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_layer=layers, n_embd=width, n_head=4, vocab_size=VOCAB, n_positions=SEQ,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))  # no RNG: the same math check

    return gpt2(4, 128, 0).eval(), gpt2(1, 64, 1)


def make_batches(steps, batch_size):
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(steps):
        ids = torch.randint(0, VOCAB, (batch_size, SEQ), generator=generator)
        mask = torch.ones_like(ids)
        lengths = torch.randint(SEQ - 8, SEQ + 1, (batch_size,), generator=generator)
        mask[torch.arange(SEQ) >= lengths[:, None]] = 0  # right padding
        labels = ids.masked_fill(mask == 0, -100)
        labels[:, :PROMPT] = -100
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return batches


def hand_written(student, teacher, batches, lr):
    """The loop a careful user writes by hand."""
    optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9)
    teacher.eval()
    student.train()
    for batch in batches:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        output = student(**inputs, labels=batch["labels"])
        with torch.no_grad():
            t = teacher(**inputs).logits
        valid = F.pad(batch["labels"][:, 1:] != -100, (0, 1), value=False)
        s_rows, t_rows = output.logits[valid], t[valid]
        kd = F.kl_div(F.log_softmax(s_rows / TEMPERATURE, -1),
                      F.log_softmax(t_rows / TEMPERATURE, -1),
                      reduction="batchmean", log_target=True) * TEMPERATURE ** 2
        loss = 0.5 * output.loss + 0.5 * kd
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return student


CRITERION = {"KnowledgeDistillationLoss": {
    "temperature": TEMPERATURE, "loss_types": ["CE", "KL"], "loss_weights": [0.5, 0.5]}}


def ours(student, teacher, batches, lr, workspace):
    return fit_one_epoch(CRITERION, student, teacher, batches, lr, workspace)


def alternate_medians(contenders, repeats):
    """{name: (median wall seconds, median CPU seconds of this process)}, contenders
    alternating. CPU time is the steadier figure on a machine shared with other jobs: it does
    not count the time the process waited for a core."""
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: tuple(statistics.median(v[i] for v in values) for i in (0, 1))
            for name, values in times.items()}


def main():
    args = torch_benchmark_args(__doc__.split("\n")[0], steps=40, batch_size=16)
    transformers.logging.set_verbosity_error()
    logging.getLogger("neural_distill").setLevel(logging.WARNING)
    teacher, student0 = make_models()
    batches = make_batches(args.steps, args.batch_size)

    # Same math: one step each from the same weights gives the same student.
    a = hand_written(copy.deepcopy(student0), teacher, batches[:1], 0.01)
    with tempfile.TemporaryDirectory() as ws:
        b = ours(copy.deepcopy(student0), teacher, batches[:1], 0.01, ws)
    max_diff = max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))

    with tempfile.TemporaryDirectory() as ws:
        medians = alternate_medians({
            "hand": lambda: hand_written(copy.deepcopy(student0), teacher, batches, 0.01),
            "ours": lambda: ours(copy.deepcopy(student0), teacher, batches, 0.01, ws),
        }, args.repeats)
    (hand, hand_cpu), (mine, mine_cpu) = medians["hand"], medians["ours"]
    print(f"per-token KD step, GPT-2 teacher 4x128 -> student 1x64, vocab {VOCAB}, seq {SEQ}, "
          f"batch {args.batch_size}, {args.steps} steps, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} (fit()'s fixed costs included)")
    print(f"  same math check: max |param diff| after one step = {max_diff:.2e}")
    print(f"  hand-written loop : {hand * 1e3 / args.steps:8.3f} ms/step wall, "
          f"{hand_cpu * 1e3 / args.steps:8.3f} ms/step CPU")
    print(f"  neural_distill fit: {mine * 1e3 / args.steps:8.3f} ms/step wall, "
          f"{mine_cpu * 1e3 / args.steps:8.3f} ms/step CPU")
    print(f"  ratio ours/hand   : {mine / hand:.3f} wall, {mine_cpu / hand_cpu:.3f} CPU time")


if __name__ == "__main__":
    main()
