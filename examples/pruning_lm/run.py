"""Minitron on a tiny language model: GPT-2 MLPs cut to a quarter, then distilled, vs the same
architecture from random init (3 seeds).

    OMP_NUM_THREADS=1 python examples/pruning_lm/run.py      # ~15 min on one busy core

The language is a fixed random second-order Markov chain over 32 tokens (each pair of tokens
has 3 possible successors, probabilities 0.6 / 0.3 / 0.1): the next token depends on the last
two, so the model needs attention to find them and MLP capacity to memorise 1,024 contexts.
Nothing is downloaded. The metric is the next-token cross-entropy on held-out sequences
(the language's own entropy is the floor).
"""

import argparse
import copy
import json
import os
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
os.environ["HF_HUB_OFFLINE"] = "1"

import transformers  # noqa: E402

from neural_distill.config import (  # noqa: E402
    DistillationConfig, KnowledgeDistillationLossConfig)
from neural_distill.pruning import prune_width  # noqa: E402
from neural_distill.training import prepare_compression  # noqa: E402

VOCAB, LENGTH = 32, 32
PROBS = torch.tensor([0.6, 0.3, 0.1])


def language(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(VOCAB, generator=generator)[:3]
                        for _ in range(VOCAB * VOCAB)]).reshape(VOCAB, VOCAB, 3)


def sample(successors, n, generator):
    ids = torch.randint(0, VOCAB, (n, LENGTH), generator=generator)
    for t in range(2, LENGTH):
        choice = torch.multinomial(PROBS.expand(n, 3), 1, generator=generator).squeeze(1)
        ids[:, t] = successors[ids[:, t - 2], ids[:, t - 1], choice]
    return ids


def entropy():
    return float(-(PROBS * PROBS.log()).sum())


def held_out_ce(model, ids):
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, 1:-1]  # positions with two tokens of context
        return float(torch.nn.functional.cross_entropy(
            logits.reshape(-1, VOCAB), ids[:, 2:].reshape(-1)))


def gpt2(seed, inner=512):
    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=2, n_embd=128, n_head=4, n_inner=inner, vocab_size=VOCAB, n_positions=LENGTH,
        bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))


def train_teacher(successors, steps, seed=0):
    teacher = gpt2(seed)
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=3e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(100 + seed)
    teacher.train()
    for _ in range(steps):
        ids = sample(successors, 32, generator)
        loss = teacher(input_ids=ids, labels=ids).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return teacher.eval()


def distil(student, teacher, successors, test_ids, steps, eval_every, seed, workspace):
    config = DistillationConfig(teacher_model=teacher, criterion=KnowledgeDistillationLossConfig(
        temperature=2.0, loss_types=["CE", "KL"], loss_weights=[0.5, 0.5]))
    manager = prepare_compression(student, config)
    manager.distillers[0].conf.tuning.workspace.path = workspace
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(1000 + seed)  # the same batches for both starts
    curve = [(0, held_out_ce(student, test_ids))]
    manager.on_train_begin()
    manager.on_epoch_begin(0)
    for step in range(1, steps + 1):
        student.train()
        manager.on_step_begin(step - 1)
        ids = sample(successors, 32, generator)
        output = student(input_ids=ids, labels=ids)
        loss = manager.on_after_compute_loss({"input_ids": ids}, output, output.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        manager.on_before_optimizer_step()
        optimizer.step()
        manager.on_after_optimizer_step()
        schedule.step()
        manager.on_step_end()
        if step % eval_every == 0:
            curve.append((step, held_out_ce(student, test_ids)))
    manager.on_epoch_end()
    manager.on_train_end()
    return curve


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher-steps", type=int, default=600)
    parser.add_argument("--keep", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(HERE, "results.json"))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    transformers.logging.set_verbosity_error()
    started = time.time()
    successors = language()
    test_ids = sample(successors, 128, torch.Generator().manual_seed(7))
    teacher = train_teacher(successors, args.teacher_steps)
    calibration = [{"input_ids": sample(successors, 32, torch.Generator().manual_seed(50 + i))}
                   for i in range(8)]
    pruned = prune_width(teacher, args.keep, calibration)
    figures = {"entropy_floor": entropy(),
               "teacher": {"ce": held_out_ce(teacher, test_ids),
                           "parameters": sum(p.numel() for p in teacher.parameters()),
                           "n_inner": teacher.config.n_inner},
               "pruned_start": {"ce_before_training": held_out_ce(pruned, test_ids),
                                "parameters": sum(p.numel() for p in pruned.parameters()),
                                "n_inner": pruned.config.n_inner},
               "args": vars(args), "runs": []}
    print(json.dumps(figures, indent=1), flush=True)
    with tempfile.TemporaryDirectory() as workspace:
        for seed in range(args.seeds):
            random_start = gpt2(seed, inner=pruned.config.n_inner)
            run = {"seed": seed, "random_ce_before": held_out_ce(random_start, test_ids)}
            run["random_curve"] = distil(random_start, teacher, successors, test_ids,
                                         args.steps, args.eval_every, seed, workspace)
            run["pruned_curve"] = distil(copy.deepcopy(pruned), teacher, successors, test_ids,
                                         args.steps, args.eval_every, seed, workspace)
            target = run["random_curve"][-1][1]
            run["pruned_steps_to_random_final"] = next(
                (s for s, ce in run["pruned_curve"] if ce <= target), None)
            figures["runs"].append(run)
            print(f"seed {seed}: random start final CE {target:.3f} after {args.steps} steps; "
                  f"pruned start final {run['pruned_curve'][-1][1]:.3f}, reaches {target:.3f} "
                  f"at step {run['pruned_steps_to_random_final']}", flush=True)
    figures["wall_s"] = round(time.time() - started, 1)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(figures, handle, indent=1)
    print(f"written {args.out} ({figures['wall_s']} s)")


if __name__ == "__main__":
    main()
