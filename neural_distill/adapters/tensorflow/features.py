"""Reaching intermediate outputs of Keras models, and matching their shapes.

Keras has no forward hooks. For Functional and Sequential models a layer's output is reachable
through the model's graph, so a capture builds one multi-output ``keras.Model`` that shares the
model's layers (no weights are copied) and returns ``(model output, {layer name: feature})``
in a single forward. A subclassed model has no graph: only its own outputs can be used
(map layer ``""`` with a process that picks a key of its output).

Which models have an active capture is kept in ``_ACTIVE`` (the adapter runs a model through
its capture while a criterion is attached, exactly when the PyTorch adapter's forward hooks
would record), and every capture is removed when training ends.
"""

import re

import keras
import tensorflow as tf

from neural_distill.criterion.base import missing_layer_problems, select_output
from neural_distill.errors import ModelError
from neural_distill.adapters.tensorflow.outputs import call_model, is_tensor, model_input

# id(model) -> the FeatureCapture a criterion attached to that model.
_ACTIVE = {}


def active_capture(model):
    capture = _ACTIVE.get(id(model))
    return capture if capture is not None and capture.model is model else None


def forward(model, inputs, training):
    """Run ``model``; through its capture (recording features) when a criterion attached one."""
    capture = active_capture(model)
    if capture is not None:
        return capture.forward(inputs, training)
    return call_model(model, inputs, training)


def layer_names(model):
    """Names of the model's own layers, the names a capture can reach (not its inputs)."""
    return [layer.name for layer in getattr(model, "layers", [])
            if not isinstance(layer, keras.layers.InputLayer)]


def model_kind(model):
    if isinstance(model, keras.Sequential):
        return "sequential"
    if getattr(model, "inputs", None) is not None and hasattr(model, "output"):
        return "functional"
    return "subclassed"


def _output_in_graph(model, layer):
    """The symbolic output of ``layer`` where ``model``'s own graph calls it.

    ``layer.output`` is the output of the layer's first call, which for a nested model (a
    backbone) is its own graph's, not connected to the outer model's inputs. The call node that
    belongs to the outer graph is found through Keras' node bookkeeping (private: when it is not
    there, ``layer.output`` is used as before).
    """
    by_depth = getattr(model, "_nodes_by_depth", None)
    if by_depth:
        graph_nodes = {id(node) for nodes in by_depth.values() for node in nodes}
        for node in getattr(layer, "_inbound_nodes", []):
            if id(node) in graph_nodes:
                outputs = list(node.output_tensors)
                return outputs[0] if len(outputs) == 1 else outputs
    return layer.output


class FeatureCapture:
    """Records the outputs of named layers of ``model`` (and its own output, under ``""``)."""

    def __init__(self, model, names, role):
        self.model = model
        self.role = role
        self.names = list(dict.fromkeys(names))
        self.layer_names = [n for n in self.names if n]
        self.outputs = {}
        self.last_inputs = None
        self.kind = model_kind(model)
        self.available = layer_names(model)
        self.missing = [n for n in self.layer_names if n not in self.available]
        # A subclassed model's layer outputs live inside its Python call(): unreachable.
        self.unreachable = ([n for n in self.layer_names if n in self.available]
                            if self.kind == "subclassed" else [])
        self._extractor = None
        self._symbolic = None

    # -- problems found at attach time
    def missing_problems(self):
        problems = missing_layer_problems(self.role, self.missing, self.available)
        for name in self.unreachable:
            problems.append(
                f"{self.role} ({type(self.model).__name__}) is a subclassed keras.Model: the "
                f"output of its layer '{name}' cannot be reached, because a subclassed model "
                f"has no layer graph (its call() is Python code). Build the model with the "
                f"Functional API or keras.Sequential, or return the feature from call() "
                f"(e.g. {{'logits': logits, '{name}': feature}}) and map it as "
                f"['', '{name}'].")
        return problems

    # -- registration (the adapter's forward goes through active captures)
    def register(self):
        _ACTIVE[id(self.model)] = self

    def remove(self):
        if _ACTIVE.get(id(self.model)) is self:
            del _ACTIVE[id(self.model)]
        self.clear()
        self._extractor = None
        self._symbolic = None

    def clear(self):
        self.outputs.clear()
        self.last_inputs = None

    # -- the multi-output model
    def _graph(self):
        """(input structure, model output, {name: feature}) as symbolic Keras tensors.

        None while the graph cannot be built yet (a Sequential model without a known input
        shape gets one when it is first called).
        """
        if self._symbolic is not None:
            return self._symbolic
        model = self.model
        if self.kind == "functional":
            features = {name: _output_in_graph(model, model.get_layer(name))
                        for name in self.layer_names}
            self._symbolic = (model.input, model.output, features)
        elif self.kind == "sequential":
            try:
                known = model.inputs
            except (AttributeError, ValueError):
                return None
            if not known:
                return None
            spec = known[0]
            # A fresh input with an unknown batch size: a Sequential model built by a call
            # has that call's batch size fixed in its own graph.
            x = keras.Input(batch_shape=(None,) + tuple(spec.shape[1:]), dtype=spec.dtype)
            y, features = x, {}
            for layer in model.layers:
                y = layer(y)
                features[layer.name] = y
            self._symbolic = (x, y, {n: features[n] for n in self.layer_names})
        else:
            return None
        return self._symbolic

    def _get_extractor(self, inputs):
        if self._extractor is not None:
            return self._extractor
        graph = self._graph()
        if graph is None and self.kind == "sequential" and tf.executing_eagerly():
            # Builds the model (gives it an input shape), as the user's own first call would.
            call_model(self.model, inputs, training=False)
            graph = self._graph()
        if graph is None:
            raise ModelError(
                f"{self.role} model {type(self.model).__name__} has no known input shape yet, "
                f"so its layers' outputs cannot be reached. Give it an input "
                f"(keras.Input(shape) as its first layer) or call it once on a batch before "
                f"training.")
        inputs_struct, output, features = graph
        try:
            self._extractor = keras.Model(inputs_struct, (output, features),
                                          name=f"nd_{re.sub(r'[^0-9A-Za-z]+', '_', self.role)}"
                                               f"_features")
        except ValueError as exc:  # e.g. a shared layer whose first call is in another graph
            raise ModelError(f"{self.role}: the outputs of layers {self.layer_names} cannot be "
                             f"reached from the model's inputs ({exc}). Map layers that the "
                             f"model itself calls on its inputs.") from None
        return self._extractor

    def forward(self, inputs, training):
        """The model's output for ``inputs``; records the named layers' outputs on the way."""
        self.last_inputs = inputs
        if not self.layer_names:
            output = call_model(self.model, inputs, training)
        else:
            output, features = self._get_extractor(inputs)(model_input(inputs),
                                                           training=training)
            self.outputs.update(features)
        self.outputs[""] = output
        return output

    def get(self, name):
        if name not in self.outputs:
            raise ModelError(f"{self.role} layer '{name or '<whole model>'}' produced no output "
                             f"in this step: the {self.role} was not run on this batch")
        return self.outputs[name]

    def symbolic_feature(self, name):
        """The symbolic Keras tensor(s) of a layer (or of the model for ""), or None."""
        graph = self._graph()
        if graph is None:
            return None
        return graph[1] if name == "" else graph[2][name]


# ---------------------------------------------------------------------------- selection
def select(output, process, where):
    """Apply a mapping's output process; the result must be a tensor."""
    return select_output(output, process, where, is_tensor)


def symbolic_shape(feature, process):
    """The static shape of ``select(feature, process)`` for a symbolic feature, or None.

    Lets matchers be built from the models' graphs alone, before any data is seen. A process
    callable is traced on tensor specs; whatever cannot be traced returns None (the criterion
    then builds its matchers from the first batch instead).
    """
    def spec(value):
        if isinstance(value, keras.KerasTensor):
            return tf.TensorSpec(value.shape, value.dtype)
        return value

    try:
        specs = tf.nest.map_structure(spec, feature)
        if process is None or process == "":
            result = specs
        elif callable(process):
            result = tf.function(process).get_concrete_function(specs).structured_outputs
        elif isinstance(process, int) or (isinstance(process, str) and process.isdigit()):
            result = specs[int(process)]
        else:
            result = specs[process]
    except Exception:  # noqa: BLE001 - any failure just means "learn the shape from data"
        return None
    if not isinstance(result, tf.TensorSpec) and not tf.is_tensor(result):
        return None
    return tuple(result.shape.as_list())


# ---------------------------------------------------------------------------- matchers
class _Identity:
    """Same shapes: the student's feature is compared as it is (nothing to train)."""

    trainable_variables = ()
    name = "identity"

    def __call__(self, x):
        return x


def build_matcher(student_shape, teacher_shape, where, name):
    """A layer mapping student features to the teacher's shape (not part of the student).

    Identity when the shapes agree (the batch dimension is not compared). When only the last
    dimension differs: a 1x1 Conv2D for rank-4 (NHWC) conv features, a Dense on the last
    dimension otherwise (the same map as a 1x1 convolution for channels-last features).
    When only dimension 1 differs in rank-3/4 features (channels-first, as PyTorch lays them
    out): a learned map over that dimension (EinsumDense, which runs on CPU where a
    channels-first convolution does not). Anything else cannot be matched pointwise.
    """
    s, t = tuple(student_shape)[1:], tuple(teacher_shape)[1:]
    shown_s, shown_t = tuple(student_shape), tuple(teacher_shape)
    if len(s) != len(t):
        raise ModelError(f"{where}: student feature shape {shown_s} and teacher feature shape "
                         f"{shown_t} have different ranks; select or reshape with a process")
    if s == t:
        return _Identity()
    rank = len(s) + 1
    differing = [i + 1 for i, (a, b) in enumerate(zip(s, t)) if a != b]
    if any(s[i - 1] is None or t[i - 1] is None for i in differing):
        # Unknown sizes are fine where both sides agree (e.g. a sequence length); where they
        # differ nothing tells whether a pointwise map can match them.
        raise ModelError(f"{where}: student feature shape {shown_s} and teacher feature shape "
                         f"{shown_t} differ in dimensions of unknown size; a matcher needs "
                         f"known sizes where they differ")
    if differing == [rank - 1] and rank >= 2:
        if rank == 4:
            layer = keras.layers.Conv2D(t[-1], 1, name=name)
        else:
            layer = keras.layers.Dense(t[-1], name=name)
    elif differing == [1] and rank in (3, 4):
        equation = "abc,bd->adc" if rank == 3 else "abcd,be->aecd"
        layer = keras.layers.EinsumDense(equation, output_shape=(t[0],) + (None,) * (rank - 2),
                                         bias_axes="d" if rank == 3 else "e", name=name)
    else:
        raise ModelError(f"{where}: student feature shape {shown_s} cannot be matched to "
                         f"teacher feature shape {shown_t}: only the channel dimension (last for "
                         f"channels-last features, 1 for channels-first) may differ. Pool or "
                         f"reshape with a process callable.")
    layer.build((None,) + s)
    return layer
