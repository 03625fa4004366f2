"""QAT for a model given without example inputs: captured on its first batch.

``prepare_compression(model, [DistillationConfig(...), QuantizationAwareTrainingConfig()])``
has no batch to trace the model with, yet the user takes ``manager.model`` and builds an
optimizer on its parameters right away, before the first batch exists. So ``manager.model`` is a
:class:`DeferredQATModule`: an ``nn.Module`` that, until capture, shows the user's own model (its
parameters, buffers and submodules, the very same objects) and, from capture on, the prepared
graph. Capture happens on the first batch of the dataloader given to ``on_train_begin`` or, in a
loop that calls ``on_train_begin()`` bare, on the first forward call.

Why the user's optimizer keeps training the right tensors: ``torch.export`` and torchao's
preparation keep the model's ``Parameter`` objects (the prepared graph reads the very objects
the optimizer holds). :func:`adopt_parameters` makes that a guarantee rather than an
observation: any parameter of the graph that is not the user's object under the same name is
replaced by it before training starts.

The distillation parts of the manager need the captured graph (layer names, taps, the teacher's
dry run), so they are built at capture; :class:`PendingParts` stands for them until then and
replays the hooks called before it (``on_train_begin``, ``on_epoch_begin``, ``on_step_begin``).
"""

import copy

import torch
from torch import nn

from neural_distill.errors import ModelError
from neural_distill.adapters.torch.quantization.export import quiet_copies


def adopt_parameters(graph_module, source):
    """Make every parameter of ``graph_module`` the same object as ``source``'s of that name."""
    originals = dict(source.named_parameters())
    for name, parameter in list(graph_module.named_parameters()):
        original = originals.get(name)
        if original is None or original is parameter:
            continue
        if original.shape != parameter.shape:
            raise ModelError(f"QuantizationAwareTrainingConfig: the captured graph holds "
                             f"'{name}' with shape {tuple(parameter.shape)}, the model "
                             f"{tuple(original.shape)}; the optimizer built on manager.model "
                             f"would train the wrong tensor. Pass example_inputs to "
                             f"QuantizationAwareTrainingConfig to capture before building it.")
        owner, _, attribute = name.rpartition(".")
        module = graph_module.get_submodule(owner) if owner else graph_module
        module._parameters[attribute] = original


class DeferredQATModule(nn.Module):
    """``manager.model`` when the QAT model is captured on its first batch.

    Before capture it shares the user's model's parameter, buffer and submodule tables (so
    ``parameters()``, ``state_dict()`` and ``named_modules()`` are the user's model's); after
    capture it shares the prepared graph's, and its forward runs the graph. Module paths are the
    same in both (the graph keeps the original names, see ``taps``).
    """

    def __init__(self, source, qat):
        super().__init__()
        object.__setattr__(self, "_qat", qat)
        object.__setattr__(self, "graph_module", None)
        self._share(source)
        self.training = source.training

    def _share(self, module):
        for table in ("_parameters", "_buffers", "_non_persistent_buffers_set", "_modules"):
            self.__dict__[table] = module.__dict__[table]

    @property
    def captured(self):
        return self.graph_module is not None

    def attach(self, graph_module):
        """From now on this module is the prepared graph."""
        object.__setattr__(self, "graph_module", graph_module)
        self._share(graph_module)
        if graph_module.training != self.training:  # each switch rewrites the graph
            graph_module.train(self.training)

    def forward(self, *args, **kwargs):
        if self.graph_module is None:
            # Traced in train mode with gradients on whatever the caller's context is: the
            # graph is the training graph, as with example inputs.
            with torch.enable_grad():
                self._qat.capture(args, kwargs)
        return self.graph_module(*args, **kwargs)

    def train(self, mode=True):
        if self.graph_module is not None:
            self.graph_module.train(mode)  # rewrites BatchNorm/Dropout of the graph
            self.training = mode
            return self
        return super().train(mode)

    @property
    def graph(self):
        if self.graph_module is None:
            # AttributeError, so that hasattr(model, "graph") stays a question, not a crash.
            raise AttributeError("manager.model has no graph yet: it is captured on its first "
                                 "batch (the dataloader given to on_train_begin, or the first "
                                 "forward call).")
        return self.graph_module.graph

    def __deepcopy__(self, memo):
        # A copy (best_model, convert) is a plain module: the prepared graph, or the user's
        # model before capture; it never captures on its own.
        with quiet_copies():
            if self.graph_module is not None:
                return copy.deepcopy(self.graph_module, memo)
            return copy.deepcopy(self._qat.source_model, memo)

    def extra_repr(self):
        return "captured" if self.graph_module is not None else \
            "not captured yet: traced on its first batch"


class PendingParts:
    """The manager's parts until the QAT model is captured; after that, a pass-through.

    ``build()`` returns the real parts (one per config). Hooks called before capture are
    recorded and replayed on the parts when they are built, in order, with the observers
    paused for ``on_train_begin`` (its dry run is not training data).
    """

    _REPLAYED = ("on_train_begin", "on_epoch_begin", "on_step_begin")

    def __init__(self, qat, build):
        self.qat = qat
        self._build = build
        self._calls = []
        self.parts = []
        qat.when_captured(self._captured)

    def _captured(self):
        self.parts = list(self._build())
        calls, self._calls = self._calls, []
        for name, args in calls:
            self._dispatch(name, args)

    def _dispatch(self, name, args):
        result = args[2] if name == "on_after_compute_loss" else None
        for part in self.parts:
            if name == "on_train_begin":
                with self.qat.observers_paused():
                    part.on_train_begin(*args)
            elif name == "on_after_compute_loss":
                result = part.on_after_compute_loss(args[0], args[1], result, *args[3:])
            else:
                getattr(part, name)(*args)
        return result

    def _hook(self, name, args):
        if self.parts:
            return self._dispatch(name, args)
        if name == "on_train_begin" and args[0] is not None:
            self.qat.capture_batch(args[0])  # builds and replays, then runs this hook
            return self._dispatch(name, args)
        if name in self._REPLAYED:
            self._calls.append((name, args))
            return None
        if name == "on_after_compute_loss":
            raise ModelError(
                "on_after_compute_loss: the QAT model has not run yet. It is captured on its "
                "first batch: call manager.model(batch) (or pass the dataloader to "
                "on_train_begin) before on_after_compute_loss.")
        return None  # nothing to do before the first batch (e.g. on_epoch_end of no steps)

    def on_train_begin(self, dataloader=None):
        # A fresh run: hooks recorded before an earlier on_train_begin no longer apply.
        if not self.parts:
            self._calls = []
        return self._hook("on_train_begin", (dataloader,))

    def on_epoch_begin(self, epoch):
        return self._hook("on_epoch_begin", (epoch,))

    def on_step_begin(self, batch_id):
        return self._hook("on_step_begin", (batch_id,))

    def on_after_compute_loss(self, input, student_output, student_loss, teacher_output=None,
                              labels=None):
        return self._hook("on_after_compute_loss",
                          (input, student_output, student_loss, teacher_output, labels))

    def on_before_optimizer_step(self):
        return self._hook("on_before_optimizer_step", ())

    def on_after_optimizer_step(self):
        return self._hook("on_after_optimizer_step", ())

    def on_step_end(self):
        return self._hook("on_step_end", ())

    def on_epoch_end(self):
        return self._hook("on_epoch_end", ())

    def on_train_end(self):
        return self._hook("on_train_end", ())

