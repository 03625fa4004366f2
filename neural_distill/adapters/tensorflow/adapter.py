"""The TensorFlow adapter: how the framework-neutral experiment talks to Keras 3 models.

Keras models have no train/eval mode: every call says ``training=...``. The teacher is always
called with ``training=False`` (BatchNorm uses its moving statistics and never updates them,
dropout is off), outside the gradient tape where we own it, and behind ``tf.stop_gradient``
everywhere, so its variables are never read by a gradient and never written.
"""

import contextlib
import hashlib
import pickle
import sys
import warnings

import keras
import numpy as np
import tensorflow as tf

from neural_distill.core.batches import split_batch
from neural_distill.errors import ModelError
from neural_distill.adapters.base import BackendAdapter
from neural_distill.adapters.tensorflow import checks as tf_checks
from neural_distill.adapters.tensorflow import data, features, loop, tokens
from neural_distill.adapters.tensorflow.cloning import clone_model
from neural_distill.adapters.tensorflow.outputs import is_tensor, logits_of, model_input, to_tensor
from neural_distill.adapters.tensorflow.state import ArraysOnly, RunningLosses

tf_checks.check_keras_backend()

try:
    # Stops every active gradient tape from recording the teacher's forward, so a user's tape
    # does not keep the teacher's activations alive. Private API: when it moves, stop_gradient
    # (always applied) still guarantees that no gradient reaches the teacher.
    from tensorflow.python.eager.record import stop_recording as _stop_recording
except ImportError:  # pragma: no cover - depends on the TensorFlow version
    _stop_recording = contextlib.nullcontext


def _stop_gradients(structure):
    return tf.nest.map_structure(lambda v: tf.stop_gradient(v) if is_tensor(v) else v,
                                 structure)


def _single_input(batch):
    # A TF tensor, a NumPy array, or a torch tensor (caught later with a clear error).
    return is_tensor(batch) or isinstance(batch, np.ndarray) or hasattr(batch, "detach")


class TensorflowAdapter(BackendAdapter):
    name = "tensorflow"
    criterion_example = "TensorflowKnowledgeDistillationLoss"
    # Keras 3 saves weights only to files with this suffix.
    state_suffix = ".ckpt"

    # ---------------------------------------------------------------- devices
    @staticmethod
    def model_device(model):
        for variable in getattr(model, "variables", []):
            device = getattr(getattr(variable, "value", variable), "device", None)
            if device:
                return device
        return "/CPU:0"

    @staticmethod
    def resolve_device(spec, where):
        gpus = tf.config.list_physical_devices("GPU")
        if spec in ("gpu", "cuda", "mps") or spec.startswith("cuda:"):
            if not gpus:
                raise ModelError(f"{where}: device '{spec}' was asked for but TensorFlow sees no "
                                 f"GPU (tensorflow-cpu is CPU-only). Use device: cpu (or auto).")
            index = int(spec.split(":")[1]) if spec.startswith("cuda:") else 0
            if index >= len(gpus):
                raise ModelError(f"{where}: device '{spec}' does not exist; TensorFlow sees "
                                 f"{len(gpus)} GPU(s)")
            return f"/GPU:{index}"
        if spec == "auto":
            return "/GPU:0" if gpus else "/CPU:0"
        return "/CPU:0"

    @staticmethod
    def move_to_device(module, device):
        """Nothing to move: TensorFlow places each op on the device scope it runs under."""

    # ---------------------------------------------------------------- teacher
    def enter_teacher_mode(self, teacher, device):
        """Nothing to switch: the teacher is called with training=False at every forward.

        In particular ``teacher.trainable`` is left as the user set it (setting it to False
        would also change how the user's own code runs the model afterwards).
        """
        return None

    def exit_teacher_mode(self, teacher, state):
        """Nothing was changed on the teacher, so nothing is restored."""

    @staticmethod
    def peek_batch(dataloader):
        # A tf.data pipeline draws its shuffle seeds per iterator: a new one changes nothing.
        return next(iter(dataloader))

    @staticmethod
    def inference_forward(model, inputs):
        """Through the model's feature capture (if a criterion attached one), changing
        nothing: training=False, not recorded by any tape, behind stop_gradient."""
        with _stop_recording():
            output = features.forward(model, to_tensor(inputs), training=False)
        return _stop_gradients(output)

    @staticmethod
    def teacher_forward(teacher, inputs):
        return TensorflowAdapter.inference_forward(teacher, inputs)

    @staticmethod
    def mean_tensors(tensors, weights=None):
        if weights is None:
            return tf.add_n(tensors) / float(len(tensors))
        return tf.add_n([w * z for w, z in zip(weights, tensors)])


    @staticmethod
    def predict(model, inputs):
        return model(model_input(to_tensor(inputs)), training=False)

    @staticmethod
    def evaluation_mode(model):
        """Nothing to switch: every call says training=False."""
        return contextlib.nullcontext()

    @staticmethod
    def has_parameters(module):
        if isinstance(module, keras.Model):
            return bool(module.weights)
        return bool(getattr(module, "trainable_variables", None))

    @staticmethod
    def as_teacher_output(teacher_output, student_output):
        """Cached teacher outputs (tensors, NumPy or torch arrays) as constant tensors."""
        return _stop_gradients(to_tensor(teacher_output))

    # ---------------------------------------------------------------- criterion
    @staticmethod
    def foreign_criterion(criterion):
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(criterion, torch.nn.Module):
            return (f"distiller.criterion is a PyTorch criterion ({type(criterion).__name__}) "
                    f"but the student is a Keras/TensorFlow model. Use the TensorFlow criterion "
                    f"of the same name, e.g. "
                    f"neural_distill.criterion.TensorflowKnowledgeDistillationLoss.")
        return None

    # ---------------------------------------------------------------- running losses
    @staticmethod
    def new_running_losses():
        return RunningLosses()

    @staticmethod
    def reduce_mean(tensor):
        return tf.reduce_mean(tensor)

    # ---------------------------------------------------------------- batches
    @staticmethod
    def split_batch(batch, where="train_dataloader"):
        """(inputs, labels) of a batch (``neural_distill.core.batches``); labels None if unlabeled.

        Several inputs (a, b, ..., y) reach the model as one list, the Keras way.
        """
        return split_batch(batch, _single_input, where)

    logits_of = staticmethod(logits_of)
    counted_rows = staticmethod(tokens.counted_rows)
    top_k_log_probs = staticmethod(tokens.top_k_log_probs)

    # ---------------------------------------------------------------- weights
    @staticmethod
    def snapshot(model):
        """The weights of a Keras model, or the variables of a criterion (its matchers)."""
        if hasattr(model, "get_weights"):
            return [np.array(w, copy=True) for w in model.get_weights()]
        return [np.array(v.numpy(), copy=True) for v in model.trainable_variables]

    @staticmethod
    def copy_with_state(model, state):
        """A new model of the user's class holding ``state`` (the current weights if None).

        Functional and Sequential models are cloned with ``keras.models.clone_model``. A
        subclassed model is re-instantiated from ``get_config()``; that copy is only trusted
        when every layer's configuration equals the original's (Keras' automatic config of a
        subclassed Model can silently miss constructor arguments). When no faithful copy can
        be built, the weights go into the user's own model object, which is returned.
        """
        weights = state if state is not None else model.get_weights()
        clone = clone_model(model)
        if clone is None:
            warnings.warn(
                f"{type(model).__name__} cannot be rebuilt from its config, so the best weights "
                f"were loaded into your student object itself. Implement get_config() "
                f"(returning the constructor arguments) to get a separate copy.", stacklevel=3)
            clone = model
        clone.set_weights(weights)
        return clone

    @staticmethod
    def load_snapshot(model, state):
        if hasattr(model, "set_weights"):
            model.set_weights(state)
            return
        for variable, value in zip(model.trainable_variables, state):
            variable.assign(value)

    @staticmethod
    def fingerprint(model):
        digest = hashlib.sha256()
        # By position, not by path: Keras numbers the names of every model built in a
        # process, so the same teacher built again has other paths.
        for index, variable in enumerate(model.weights):
            value = np.ascontiguousarray(variable.numpy())
            digest.update(f"{index}:{value.dtype}:{value.shape}".encode())
            digest.update(value.tobytes())
        return digest.hexdigest()

    @staticmethod
    def save_weights(model, path):
        model.save_weights(path)

    @staticmethod
    def load_weights_file(model, path, where):
        """Load weights saved by Keras (``.weights.h5`` or a ``.keras`` archive)."""
        try:
            model.load_weights(path)
        except (ValueError, KeyError, OSError) as exc:
            raise ModelError(f"{where}: checkpoint {path} does not match "
                             f"{type(model).__name__}: {exc}") from None

    @staticmethod
    def tracing():
        return not tf.executing_eagerly()

    @staticmethod
    def to_numpy(value):
        if is_tensor(value):
            return value.numpy()
        if hasattr(value, "detach"):
            return value.detach().cpu().numpy()
        return np.asarray(value)

    @staticmethod
    def named_arrays(model):
        # Variable paths are unique in Keras 3 (names alone are not).
        return [(getattr(v, "path", None) or v.name, v.numpy()) for v in model.weights]

    # ---------------------------------------------------------------- training
    @staticmethod
    def seed(seed):
        # Python, NumPy, TensorFlow and Keras' own seed generators (dropout, initializers).
        keras.utils.set_random_seed(seed % (2 ** 32))

    @staticmethod
    def make_deterministic():
        tf.config.experimental.enable_op_determinism()

    @staticmethod
    def rng_state():
        # Keras' global SeedGenerator (dropout without an explicit seed) and TensorFlow's
        # global generator; op-level random ops seeded by set_random_seed follow their own
        # counters, which TensorFlow does not expose: see docs/checkpoints.md.
        generator = keras.random.global_seed_generator() if hasattr(
            keras.random, "global_seed_generator") else None
        state = {"tf_global": tf.random.get_global_generator().state.numpy()}
        if generator is not None:
            state["keras_global"] = np.array(generator.state.numpy(), copy=True)
        return state

    @staticmethod
    def _seed_generators(model):
        # Keras layers that draw random numbers (Dropout, GaussianNoise, ...) own a
        # SeedGenerator whose state is not among the model's weights.
        flatten = getattr(model, "_flatten_layers", None)
        layers = list(flatten(include_self=True)) if flatten is not None else [model]
        found = []
        for layer in layers:
            for value in vars(layer).values():
                if isinstance(value, keras.random.SeedGenerator) and all(
                        value is not known for known in found):
                    found.append(value)
        return found

    def model_rng_state(self, model):
        return [np.array(g.state.numpy(), copy=True) for g in self._seed_generators(model)]

    def set_model_rng_state(self, model, state):
        for generator, value in zip(self._seed_generators(model), state or []):
            generator.state.assign(value)

    @staticmethod
    def set_rng_state(state):
        tf.random.get_global_generator().state.assign(state["tf_global"])
        if "keras_global" in state and hasattr(keras.random, "global_seed_generator"):
            keras.random.global_seed_generator().state.assign(state["keras_global"])

    @staticmethod
    def data_order_state(loader):
        """tf.data keeps its shuffle state inside the iterator: nothing to read from outside
        (docs/checkpoints.md)."""
        return None

    @staticmethod
    def set_data_order_state(loader, state):
        """See data_order_state."""

    @staticmethod
    def advance_data_order(loader):
        # A dataset shuffled with reshuffle_each_iteration draws a new order for each
        # iterator: one per skipped epoch replays the orders up to the resumed epoch.
        if isinstance(loader, tf.data.Dataset):
            iter(loader)

    @staticmethod
    def optimizer_state(optimizer):
        return [np.array(v.numpy(), copy=True) for v in optimizer.variables]

    @staticmethod
    def load_optimizer_state(optimizer, state):
        for variable, value in zip(optimizer.variables, state):
            variable.assign(value)

    @staticmethod
    def write_state(state, path):
        with open(path, "wb") as handle:
            pickle.dump(state, handle, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def read_state(path):
        with open(path, "rb") as handle:
            return ArraysOnly(handle).load()

    @staticmethod
    def build_dataloader(loader_config, where, seed, base_dir):
        return data.build_dataloader(loader_config, where, seed, base_dir)

    def run_builtin_loop(self, distiller):
        loop.run(self, distiller)


ADAPTER = TensorflowAdapter()
