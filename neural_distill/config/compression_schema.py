"""Schema nodes for the Python config API (``neural_distill.config.python_api``).

They are built from the nodes of ``schema.py`` (same checks, same messages) with two additions:

- ``quantization``: quantization-aware training, a section of its own (a new key: an experiment
  file run by ``Distillation`` does not contain it, and nothing in it changes an old key);
- a criterion may validate differently here (its spec's ``python_node``): intermediate-layer
  distillation may leave out ``layer_mappings`` (``criterion/catalog/intermediate_layers.py``).
"""

from schema import Or

from neural_distill.criterion.catalog import CATALOG
from neural_distill.config.nodes import Leaf, OneOf, Section, integer
from neural_distill.config.schema import METRICS, OPTIMIZERS, TOP_LEVEL, TRAIN, _flag

QAT_APPROACHES = ("quant_aware_training",)
QAT_BACKENDS = ("x86",)

# Each criterion's Python-config node (the experiment file's, unless its spec says otherwise).
PYTHON_CRITERIA = {name: spec.python_node for name, spec in CATALOG.items()}

CRITERION = OneOf(PYTHON_CRITERIA, "criterion")
OPTIMIZER = OneOf(OPTIMIZERS, "optimizer")
METRIC = OneOf(METRICS, "metric")
FRAMEWORK = TOP_LEVEL.fields["model"].fields["framework"]
TEACHER_CACHE = TRAIN.fields["teacher_cache"]
ON_POLICY = TRAIN.fields["on_policy"]

# An experiment file as DistillationConfig reads it: the experiment schema, with the criterion
# choices above.
_TRAIN = Section({**TRAIN.fields,
                  "criterion": OneOf(PYTHON_CRITERIA, "criterion",
                                     default=TRAIN.fields["criterion"].default)},
                 default={}, check=TRAIN.check)
EXPERIMENT = Section({**TOP_LEVEL.fields, "distillation": Section({"train": _TRAIN}, default={})})

_LAYER_NAMES = Leaf(lambda v: isinstance(v, list) and all(isinstance(n, str) and n for n in v),
                    "a list of layer names (module paths such as 'features.0')", default=[])

QUANTIZATION_AWARE_TRAINING = Section({
    "approach": Leaf(Or(*QAT_APPROACHES), f"one of {{{', '.join(QAT_APPROACHES)}}}",
                     default="quant_aware_training"),
    # x86: torchao's X86InductorQuantizer (int8, per-channel symmetric weights, per-tensor
    # affine activations), the CPU backend whose converted model runs on int8 oneDNN kernels.
    "backend": Leaf(Or(*QAT_BACKENDS), f"one of {{{', '.join(QAT_BACKENDS)}}}", default="x86"),
    # 7-bit activations for CPUs without VNNI, where 8-bit ones can overflow the accumulator.
    "reduce_range": _flag(False),
    "excluded_layers": _LAYER_NAMES,
    # From this epoch on (0-based, as passed to on_epoch_begin) the observers stop moving the
    # scales and zero points: the last epochs train against fixed quantization grids.
    "freeze_observers_epoch": Leaf(Or(None, integer(0)), "an epoch number >= 0 or null",
                                   default=None),
})

QUANTIZATION_DOCUMENT = Section({"quantization": QUANTIZATION_AWARE_TRAINING},
                                required=("quantization",))
