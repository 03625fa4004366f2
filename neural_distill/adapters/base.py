"""The backend interface: what the framework-neutral experiment needs from a framework.

Every backend (``adapters/torch``, ``adapters/tensorflow``) has one adapter object, an instance
of a subclass of :class:`BackendAdapter`. The subclass implements the primitives (marked
"backend" below); the logic written once in terms of them lives here. The conformance test
(``tests/test_backend_conformance.py``) checks that both backends implement every primitive and
expose the same public names.
"""

from neural_distill.core.backends import BACKENDS, backend_module
from neural_distill.core.data_checks import check_eval_labels
from neural_distill.criterion.base import DistillationCriterion
from neural_distill.criterion.registry import entry
from neural_distill.errors import ConfigError, DataError, ModelError


def _backend(method):
    """Marks a primitive every backend must implement."""
    method.__backend_primitive__ = True
    return method


class BackendAdapter:
    name = None
    state_suffix = None        # training checkpoints (write_state)
    # The criterion class named in "expected a neural_distill criterion such as ..." errors.
    criterion_example = None

    @property
    def checkpoint_suffix(self):
        """What weights files (best_student, criterion) end with: the backend table's."""
        return BACKENDS[self.name].weights_suffix

    # Whether the backend's built-in loop opens its first epoch once (run/prepared_epoch.py)
    # and checks the first step's own outputs between its forward and its loss
    # (``distiller.run.check_first_output``) instead of a dry run before training.
    checks_first_step_outputs = False
    # Whether the backend's per-token criterion reads a language model's teacher outputs from
    # per-token cache records (teacher_cache/token_records.py); otherwise such outputs are
    # not cached.
    reads_token_records = False

    def set_threads(self, threads):
        """Change the framework's CPU threads after it was imported (before, the environment
        variables the CLI sets decide). A framework that cannot change them leaves them."""

    # ---------------------------------------------------------------- devices (backend)
    @_backend
    def model_device(self, model):
        raise NotImplementedError

    @_backend
    def resolve_device(self, spec, where):
        raise NotImplementedError

    @_backend
    def move_to_device(self, module, device):
        raise NotImplementedError

    # ---------------------------------------------------------------- teacher
    @_backend
    def enter_teacher_mode(self, teacher, device):
        """Whatever the forward needs (eval mode, the student's device); returns what
        :meth:`exit_teacher_mode` needs to restore the teacher exactly."""
        raise NotImplementedError

    @_backend
    def exit_teacher_mode(self, teacher, state):
        raise NotImplementedError

    @_backend
    def teacher_forward(self, teacher, inputs):
        """The teacher's output in inference mode, with no gradient reaching it."""
        raise NotImplementedError

    def teacher_precision(self, precision, device):
        """A context-manager factory for the teachers' forward in ``model.teacher_precision``
        (None: the teachers run like the student). Only PyTorch has one."""
        if precision is None:
            return None
        raise ModelError(f"model.teacher_precision: {precision} is a PyTorch setting (autocast "
                         f"of the teacher's forward); the {self.name} backend has none. Remove "
                         f"the key, or load the teacher in the dtype you want.")

    @_backend
    def mean_tensors(self, tensors, weights=None):
        """The mean of same-shaped tensors; with ``weights`` (summing to 1), their weighted sum."""
        raise NotImplementedError

    def teachers_forward(self, teachers, inputs, weights=None):
        """The teacher's output; with several teachers, their (weighted) mean logits."""
        if len(teachers) == 1:
            return self.teacher_forward(teachers[0], inputs)
        logits = [self.logits_of(self.teacher_forward(t, inputs), f"teacher[{i}] output")
                  for i, t in enumerate(teachers)]
        if weights is None:
            return self.mean_tensors(logits)
        if len(weights) != len(teachers):
            raise ModelError(f"teacher_weights: expected {len(teachers)} weights (one per "
                             f"teacher), got {len(weights)}")
        total = float(sum(weights))
        return self.mean_tensors(logits, [w / total for w in weights])

    @_backend
    def as_teacher_output(self, teacher_output, student_output):
        """A teacher output given by the user (cached tensors or arrays), as a constant."""
        raise NotImplementedError

    # ---------------------------------------------------------------- set-up
    @_backend
    def peek_batch(self, dataloader):
        """The first batch of ``dataloader``, leaving every random generator as it was (so
        training shuffles and draws exactly as it would have without the peek)."""
        raise NotImplementedError

    def first_batch(self, dataloader):
        """The first batch of ``dataloader``; a DataError when it yields none."""
        try:
            return self.peek_batch(dataloader)
        except StopIteration:
            raise DataError("train_dataloader is empty: it yields no batch, so nothing would "
                            "be trained.") from None

    @_backend
    def inference_forward(self, model, inputs):
        """One forward pass that changes nothing (no gradient, no statistics updated)."""
        raise NotImplementedError

    @_backend
    def predict(self, model, inputs):
        """The model's output for evaluation (inference mode, no gradient)."""
        raise NotImplementedError

    def dry_run(self, student, teachers, batch, criterion):
        """Run every model once on ``batch``, changing nothing (the student's BatchNorm
        statistics included), and let the criterion build what depends on feature shapes (its
        matchers) before any optimizer exists. Returns the student's output and the teachers'
        (a list), for the first-batch checks: one forward pass serves both."""
        inputs, _ = self.split_batch(batch)
        with self.evaluation_mode(student):
            student_output = self.inference_forward(student, inputs)
        teacher_outputs = [self.inference_forward(teacher, inputs) for teacher in teachers]
        if criterion.needs_preparation:
            criterion.prepare()
        else:
            # Features this pass recorded must not stand in for the first training step's.
            criterion.clear_features()
        return student_output, teacher_outputs

    # ---------------------------------------------------------------- criterion
    def build_criterion(self, name, args):
        """This backend's class of criterion ``name`` (named by ``criterion.registry``) built
        with ``args``."""
        module = backend_module(self.name, "criteria")
        class_name = entry(name).class_name(self.name)
        if not hasattr(module, class_name):
            raise ConfigError(f"criterion {name!r} has no {self.name} implementation yet: "
                              f"{module.__name__} defines no {class_name}. Use another "
                              f"criterion with this framework.")
        return getattr(module, class_name)(**args)

    def foreign_criterion(self, criterion):
        """A message when ``criterion`` belongs to another framework (None: it does not)."""
        return None

    def check_criterion(self, criterion):
        problem = self.foreign_criterion(criterion)
        if problem:
            raise ModelError(problem)
        if not isinstance(criterion, DistillationCriterion):
            raise ModelError(
                f"distiller.criterion: expected a neural_distill criterion such as "
                f"{self.criterion_example}, or your own subclass of "
                f"neural_distill.criterion.DistillationCriterion (it defines "
                f"distillation_loss), got {type(criterion).__module__}."
                f"{type(criterion).__qualname__}")

    @_backend
    def has_parameters(self, module):
        raise NotImplementedError

    # ---------------------------------------------------------------- losses
    def mean_over_processes(self, values):
        """{name: float} averaged over the processes of a multi-process run (as they are in a
        single process)."""
        return values

    @_backend
    def new_running_losses(self):
        """An object with ``add(loss, student_loss, kd_loss)``, ``read()``, ``reset()``,
        ``to_state()`` and ``load_state(state)`` (see ``neural_distill.running``)."""
        raise NotImplementedError

    @_backend
    def reduce_mean(self, tensor):
        raise NotImplementedError

    # ---------------------------------------------------------------- batches
    @_backend
    def split_batch(self, batch, where="train_dataloader"):
        raise NotImplementedError

    @_backend
    def logits_of(self, output, what):
        raise NotImplementedError

    @_backend
    def to_numpy(self, value):
        raise NotImplementedError

    # A per-token teacher cache's records are picked where the teacher's logits are, so a
    # [batch, positions, vocab] output is never copied to the host whole
    # (teacher_cache/token_records.counted_records).
    @_backend
    def counted_rows(self, logits, valid):
        """The ``[n, vocab]`` rows of ``logits`` at ``valid`` (a NumPy bool mask)."""
        raise NotImplementedError

    @_backend
    def top_k_log_probs(self, rows, k, temperature):
        """``(indices, log_probs, log_tail)`` (NumPy) of ``softmax(rows / temperature)``."""
        raise NotImplementedError

    def tracing(self):
        """Whether the caller runs inside a graph being traced (a TensorFlow ``tf.function``),
        where tensors have no values to hash or copy out."""
        return False

    # ---------------------------------------------------------------- weights
    @_backend
    def named_arrays(self, model):
        """(name, NumPy array) of every weight and buffer of ``model`` (its fingerprint)."""
        raise NotImplementedError

    def is_sharded(self, model):
        """Whether ``model``'s weights are split across processes (PyTorch FSDP): reading
        them (``snapshot``, ``optimizer_state``) is then a collective every process joins."""
        return False

    @_backend
    def snapshot(self, model):
        """A copy of the model's weights (and buffers) that later training does not change."""
        raise NotImplementedError

    @_backend
    def copy_with_state(self, model, state):
        raise NotImplementedError

    @_backend
    def load_snapshot(self, model, state):
        """Put a :meth:`snapshot` back into ``model``."""
        raise NotImplementedError

    @_backend
    def fingerprint(self, model):
        """A hex digest of the model's weights and buffers (names, shapes, values)."""
        raise NotImplementedError

    @_backend
    def save_weights(self, model, path):
        raise NotImplementedError

    @_backend
    def load_weights_file(self, model, path, where):
        raise NotImplementedError

    def load_weights(self, model, path, where):
        import os

        if not os.path.isfile(path):
            raise ModelError(f"{where}: checkpoint {path} not found")
        self.load_weights_file(model, path, where)

    # ---------------------------------------------------------------- training
    @_backend
    def seed(self, seed):
        raise NotImplementedError

    def owned_copy(self, tree):
        """``tree`` (dicts, lists, the backend's tensors) with every tensor copied, so a
        background thread can write it while training goes on; None: this backend cannot, its
        checkpoints are written on the training thread."""
        return None

    @_backend
    def make_deterministic(self):
        """Deterministic kernels from now on (``tuning.deterministic``): slower on a GPU,
        an error for an op that has no deterministic version."""
        raise NotImplementedError

    @_backend
    def rng_state(self):
        """The framework's random generators' states (restored by :meth:`set_rng_state`)."""
        raise NotImplementedError

    @_backend
    def set_rng_state(self, state):
        raise NotImplementedError

    @_backend
    def model_rng_state(self, model):
        """Random generators that belong to the model itself (None when it draws from the
        framework's global ones)."""
        raise NotImplementedError

    @_backend
    def set_model_rng_state(self, model, state):
        raise NotImplementedError

    @_backend
    def data_order_state(self, loader):
        """What decides the order of ``loader``'s next epoch (its own generators), or None."""
        raise NotImplementedError

    @_backend
    def set_data_order_state(self, loader, state):
        raise NotImplementedError

    @_backend
    def advance_data_order(self, loader):
        """What an epoch does to the order of the next one, for a resumed run that skips it."""
        raise NotImplementedError

    @_backend
    def optimizer_state(self, optimizer):
        raise NotImplementedError

    @_backend
    def load_optimizer_state(self, optimizer, state):
        raise NotImplementedError

    @_backend
    def write_state(self, state, path):
        """Write a checkpoint's plain-data contents (tensors, numbers, lists, dicts) to path."""
        raise NotImplementedError

    @_backend
    def read_state(self, path):
        """Read what :meth:`write_state` wrote, without running arbitrary code."""
        raise NotImplementedError

    @_backend
    def build_dataloader(self, loader_config, where, seed, base_dir):
        raise NotImplementedError

    @_backend
    def evaluation_mode(self, model):
        """A context in which ``inference_forward`` on ``model`` evaluates it."""
        raise NotImplementedError

    def evaluate(self, model, dataloader, metric):
        """``metric`` over ``dataloader``, the model in inference mode (its mode restored)."""
        metric.reset()
        with self.evaluation_mode(model):
            for batch in dataloader:
                inputs, labels = self.split_batch(batch, "eval_dataloader")
                if labels is None:
                    raise DataError("eval_dataloader: batches need labels to compute the "
                                    "metric; got inputs only")
                output = self.predict(model, inputs)
                logits, labels = (self.to_numpy(self.logits_of(output, "student output")),
                                  self.to_numpy(labels))
                check_eval_labels(logits, labels)
                metric.update(logits, labels)
        return metric.result()

    @_backend
    def run_builtin_loop(self, distiller):
        raise NotImplementedError


def backend_primitives():
    """The names every backend must implement."""
    return sorted(name for name, member in vars(BackendAdapter).items()
                  if getattr(member, "__backend_primitive__", False))


LOSS_KEYS = ("count", "loss", "student_loss", "distillation_loss", "student_count")


def loss_means(sums):
    """The mean losses of an epoch from the running sums of ``LOSS_KEYS`` (floats)."""
    count = sums["count"]
    if not count:
        return {}
    means = {"loss": sums["loss"] / count,
             "distillation_loss": sums["distillation_loss"] / count}
    if sums["student_count"]:
        means["student_loss"] = sums["student_loss"] / sums["student_count"]
    return means
