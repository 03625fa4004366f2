"""The shape of a distillation experiment file.

The key layout follows the experiment files users bring from the systems we replace (``model``,
``device``, ``distillation.train`` with ``optimizer``/``criterion``/``dataloader``/epochs,
``evaluation.accuracy.metric``, ``tuning``), so an existing file runs unchanged. Our own
additions live under new keys (``lr_schedule``, ``progress_bar``, ``model.student`` ...) and never
change the meaning of an old one. ``docs/configuration.md`` documents every key.
"""

import math
import re

from schema import And, Or
from schema import Optional as SchemaOptional

from neural_distill.core.backends import CONFIG_FRAMEWORKS
from neural_distill.criterion.catalog import CATALOG, DEFAULT_CRITERION
from neural_distill.config.criterion_args import flag, weight_list
from neural_distill.config.nodes import AnyMapping, Leaf, OneOf, Range, Section, integer, number
from neural_distill.config.pruning_schema import PRUNING

FRAMEWORKS = CONFIG_FRAMEWORKS  # every backend's accepted names (core/backends.py)
_DEVICE = re.compile(r"^(cpu|gpu|cuda|auto|mps|cuda:\d+)$")

# What training can use (docs/configuration.md, "Limits"): values of the right type outside
# these ranges overflow, diverge or cannot be passed on (NumPy seeds are 32-bit).
LEARNING_RATES = Range(0, 10, low_open=True, hint=" (learning rates of 1e-5 to 1 are usual)")
SEEDS = Range(0, 2**32 - 1, hint=" (random seeds are 32-bit)")


def _text(default=None, required=False):
    leaf = Leaf(And(str, len), "a non-empty string")
    if not required and default is not None:
        leaf.default = default
    return leaf


# The criteria come from the catalog (neural_distill/criterion/catalog/, one module each).
CRITERIA = {name: spec.node for name, spec in CATALOG.items()}
_flag = flag


def _adam_family(weight_decay):
    """Adam and AdamW take the same keys; only the default weight decay differs."""
    return Section({
        "learning_rate": Leaf(number(0, exclusive=True), "a learning rate > 0", default=0.001,
                              limit=LEARNING_RATES),
        "beta_1": Leaf(And(number(0), lambda v: v < 1), "a number in [0, 1)", default=0.9),
        "beta_2": Leaf(And(number(0), lambda v: v < 1), "a number in [0, 1)", default=0.999),
        "epsilon": Leaf(number(0, exclusive=True), "a number > 0", default=1e-8,
                        limit=Range(0, 1, low_open=True)),
        "amsgrad": _flag(False),
        "weight_decay": Leaf(number(0), "a number >= 0", default=weight_decay,
                             limit=Range(0, 1)),
    })


OPTIMIZERS = {
    "SGD": Section({
        "learning_rate": Leaf(number(0, exclusive=True), "a learning rate > 0", default=0.01,
                              limit=LEARNING_RATES),
        "momentum": Leaf(number(0), "a number >= 0", default=0.0,
                         limit=Range(0, 1, high_open=True)),
        "nesterov": _flag(False),
        "weight_decay": Leaf(number(0), "a number >= 0", default=0.0, limit=Range(0, 1)),
    }),
    "Adam": _adam_family(weight_decay=0.0),
    "AdamW": _adam_family(weight_decay=0.01),
}

LR_SCHEDULES = {
    "constant": Section({}),
    "cosine": Section({
        "min_learning_rate": Leaf(number(0), "a number >= 0", default=0.0,
                                  limit=Range(0, 10)),
        "warmup_epochs": Leaf(number(0), "a number of epochs >= 0", default=0,
                              limit=Range(0, 1e6)),
    }),
    "step": Section({
        "step_size": Leaf(integer(1), "a number of epochs >= 1", default=1),
        "gamma": Leaf(number(0, exclusive=True), "a factor > 0", default=0.1,
                      limit=Range(0, 10, low_open=True)),
    }),
}

DATASET_CHOICES = {
    "dummy": Section({
        "shape": Leaf(lambda v: isinstance(v, list) and len(v) >= 2
                      and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in v),
                      "a list of positive ints [num_samples, *sample_shape]"),
        "low": Leaf(number(), "a number", default=-1.0, limit=Range(-1e6, 1e6)),
        "high": Leaf(number(), "a number", default=1.0, limit=Range(-1e6, 1e6)),
        "dtype": Leaf(Or("float32", "float64"), "'float32' or 'float64'", default="float32"),
        "label": _flag(True),
        "num_classes": Leaf(integer(1), "an int >= 1", default=10),
        "seed": Leaf(integer(0), "an int >= 0", default=0, limit=SEEDS),
    }, required=("shape",)),
    "npz": Section({
        "path": _text(required=True),
        "input_key": _text(default="x"),
        # null: the file holds inputs only (an unlabeled transfer set).
        "label_key": Leaf(Or(None, And(str, len)), "a key of the .npz file or null", default="y"),
    }, required=("path",)),
    "factory": Section({
        "name": Leaf(And(str, lambda v: ":" in v), "'module:attribute' or 'file.py:attribute'"),
        "kwargs": AnyMapping(default={}),
    }, required=("name",)),
}


def dataloader(shuffle_default):
    return Section({
        "batch_size": Leaf(integer(1), "an int >= 1", default=32),
        "shuffle": _flag(shuffle_default),
        "last_batch": Leaf(Or("rollover", "no_rollover"), "'rollover' or 'no_rollover'",
                           default="rollover"),
        "num_workers": Leaf(integer(0), "an int >= 0", default=0),
        # Datasets of other systems (ImageFolder, ...) load, so their files run unchanged when
        # the dataloader object is assigned in Python; building one from here names the fix.
        "dataset": OneOf(DATASET_CHOICES, "dataset", other=AnyMapping()),
        # Accepted so existing files load; building transforms is not supported yet and is
        # reported when such a dataloader has to be built from the file.
        "transform": AnyMapping(),
        "filter": AnyMapping(),
        # Under torchrun a config-built loader is sharded across processes (a
        # DistributedSampler) unless this is false; outside torchrun it changes nothing.
        "distributed": Leaf(Or(None, bool), "true, false or null", default=None),
    })


_NONE_OR_EMPTY = Section({})
_COMPARE_LABEL = Leaf(lambda v: v is True, "true (only comparing with labels is supported)",
                      default=True)
METRICS = {
    "topk": Leaf(integer(1), "an int k >= 1"),
    "Accuracy": _NONE_OR_EMPTY,
    "Loss": _NONE_OR_EMPTY,
    "MSE": Section({"compare_label": _COMPARE_LABEL}),
    "RMSE": Section({"compare_label": _COMPARE_LABEL}),
    "MAE": Section({"compare_label": _COMPARE_LABEL}),
    "F1": Section({"average": Leaf(Or("macro", "micro", "binary"),
                                   "'macro', 'micro' or 'binary'", default="macro")}),
}


def _check_epochs(train, path, problems):
    if "end_epoch" in train and train["end_epoch"] <= train["start_epoch"]:
        problems.add(f"{path}.end_epoch", f"expected an int > start_epoch "
                     f"({train['start_epoch']}), got {train['end_epoch']}")
    if "end_epoch" in train and "epoch" in train and \
            train["end_epoch"] - train["start_epoch"] != train["epoch"]:
        problems.add(f"{path}.epoch", f"conflicts with start_epoch/end_epoch "
                     f"({train['start_epoch']}..{train['end_epoch']}); give one or the other")


_MODEL_FACTORY = Or(And(str, lambda v: ":" in v), {
    "factory": And(str, lambda v: ":" in v),
    SchemaOptional("kwargs"): Or(None, dict),
    SchemaOptional("checkpoint"): Or(None, str),
})
# model.student only: the teacher cut to `keep` of its widths (docs/pruning.md).
_PRUNED_STUDENT = {"prune_from_teacher": {
    "keep": And(Or(int, float), lambda v: not isinstance(v, bool) and 0 < v <= 1),
    SchemaOptional("calibration_batches"): And(int, lambda v: not isinstance(v, bool) and v >= 1),
    SchemaOptional("layers"): Or(None, [And(str, len)]),
}}


TRAIN = Section({
    "optimizer": OneOf(OPTIMIZERS, "optimizer", default={"Adam": {}}),
    "criterion": OneOf(CRITERIA, "criterion", default={DEFAULT_CRITERION: {}}),
    "lr_schedule": OneOf(LR_SCHEDULES, "learning-rate schedule", default={"constant": {}}),
    "dataloader": dataloader(shuffle_default=True),
    "epoch": Leaf(integer(1), "an int >= 1"),
    "start_epoch": Leaf(integer(0), "an int >= 0", default=0),
    "end_epoch": Leaf(integer(1), "an int >= 1"),
    "iteration": Leaf(integer(1), "an int >= 1 (steps per epoch at most)"),
    "frequency": Leaf(integer(1), "an int >= 1 (evaluate every N epochs)", default=1),
    "teacher_weights": weight_list(),
    "max_grad_norm": Leaf(number(0, exclusive=True), "a number > 0",
                          limit=Range(0, 1e6, low_open=True)),
    "progress_bar": _flag(True),
    # The teacher's outputs kept per training sample, so later epochs skip the teacher
    # (docs/teacher_cache.md).
    "teacher_cache": Section({
        "enabled": _flag(False),
        "compression": Leaf(Or("none", "float16", "topk"), "'none', 'float16' or 'topk'",
                            default="none"),
        "top_k": Leaf(integer(1), "an int >= 1", default=4),
        "max_bytes": Leaf(integer(1), "an int >= 1 (bytes)", default=1 << 30),
        "spill": _flag(False),
        "min_hit_rate": Leaf(And(number(0), lambda v: v <= 1), "a number in [0, 1]",
                             default=0.05),
        "path": Leaf(Or(None, And(str, len)), "a folder path or null", default=None),
    }, default={}),
    # Autocast precision of the student's and teachers' forward passes (PyTorch built-in loop).
    "precision": Leaf(Or("fp32", "bf16", "fp16"), "'fp32', 'bf16' or 'fp16'", default="fp32"),
    "gradient_accumulation_steps": Leaf(integer(1), "an int >= 1 (batches per optimizer step)",
                                        default=1),
    # PyTorch under torchrun: the student replicated (DDP) or sharded (FSDP); docs/distributed.md.
    # No default: a config without it keeps its checkpoints' fingerprint.
    "distributed": Section({
        "strategy": Leaf(Or("ddp", "fsdp"), "'ddp' or 'fsdp'", default="ddp"),
        "reshard_after_forward": _flag(True),
    }),
    # Causal LMs: a share of the batches completed by the student (GKD) or the teacher
    # (seq_kd), the divergence taken over the generated tokens; docs/language_models.md.
    # No default: a config without it keeps its checkpoints' fingerprint.
    "on_policy": Section({
        "fraction": Leaf(And(number(0), lambda v: v <= 1), "a number in [0, 1]", default=0.5),
        "max_new_tokens": Leaf(integer(1), "an int >= 1", default=64),
        "temperature": Leaf(number(0), "a number >= 0 (0: greedy)", default=1.0),
        "seq_kd": _flag(False),
    }),
    # TensorFlow: the step is compiled (graph) unless `eager` is asked for; PyTorch runs eagerly.
    "execution_mode": Leaf(Or("eager", "graph"), "'eager' or 'graph'"),
}, default={}, check=_check_epochs)

TOP_LEVEL = Section({
    "version": Leaf(Or(int, And(float, math.isfinite), str), "a version number", default=1.0),
    "model": Section({
        "name": _text(default="distillation"),
        "framework": Leaf(Or(*FRAMEWORKS), f"one of {{{', '.join(FRAMEWORKS)}}}"),
        "student": Leaf(Or(_MODEL_FACTORY, _PRUNED_STUDENT),
                        "'module:attribute', {factory, kwargs, checkpoint} or "
                        "{prune_from_teacher: {keep: 0 < k <= 1, calibration_batches, layers}}"),
        "teacher": Leaf(_MODEL_FACTORY, "'module:attribute' or {factory, kwargs, checkpoint}"),
        # Autocast dtype of the teachers' forward alone (PyTorch); unset: as the student's.
        "teacher_precision": Leaf(Or("fp32", "bf16", "fp16"), "'fp32', 'bf16' or 'fp16'"),
    }, default={}),
    "device": Leaf(lambda v: isinstance(v, str) and bool(_DEVICE.match(v)),
                   "one of cpu, gpu, cuda, cuda:N, mps, auto", default="cpu"),
    # CPU threads per process for the built-in loops; 'auto' leaves half the cores free.
    # Unset, fit() leaves the framework's own setting alone (the CLI defaults to 'auto').
    "threads": Leaf(Or(None, "auto", integer(1)), "'auto' or an int >= 1"),
    "distillation": Section({"train": TRAIN}, default={}),
    # Sparsity while distilling, INC's WeightPruningConfig keys (docs/pruning.md).
    "pruning": PRUNING,
    "evaluation": Section({
        "accuracy": Section({
            "metric": OneOf(METRICS, "metric"),
            "higher_is_better": Leaf(bool, "true or false"),
            "dataloader": dataloader(shuffle_default=False),
            "postprocess": AnyMapping(),
        }),
    }, default={}),
    "tuning": Section({
        "random_seed": Leaf(integer(0), "an int >= 0", default=1978, limit=SEEDS),
        # Deterministic kernels (docs/configuration.md); no default: a config without it
        # keeps its checkpoints' fingerprint.
        "deterministic": Leaf(bool, "true or false"),
        "workspace": Section({
            "path": _text(default="./nd_workspace"),
            "resume": Leaf(Or(None, str), "auto, a checkpoint path or null"),
            # Durable runs (docs/checkpoints.md): when to checkpoint, how many to keep.
            "checkpoint_every_epochs": Leaf(integer(0), "an int >= 0 (0: never)", default=1),
            "checkpoint_every_steps": Leaf(integer(0), "an int >= 0 (0: never)", default=0),
            "keep_checkpoints": Leaf(integer(1), "an int >= 1", default=2),
            # Written by a background thread after a copy on the training thread, or on it.
            "checkpoint_writer": Leaf(Or("background", "sync"), "'background' or 'sync'",
                                      default="background"),
            "resume_ignore_changes": _flag(False),
            "tensorboard": _flag(False),
        }, default={}),
        # Accepted so existing experiment files load unchanged; distillation does not tune.
        "accuracy_criterion": AnyMapping(),
        "exit_policy": AnyMapping(),
    }, default={}),
})
