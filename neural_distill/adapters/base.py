"""The backend interface: what the framework-neutral experiment needs from a framework.

Every backend (``adapters/torch``, ``adapters/tensorflow``) has one adapter object, an instance
of a subclass of :class:`BackendAdapter`. The subclass implements the primitives (marked
"backend" below); the logic written once in terms of them lives here. The conformance test
(``tests/test_backend_conformance.py``) checks that both backends implement every primitive and
expose the same public names.
"""

from neural_distill.checks import check_eval_labels
from neural_distill.criterion.registry import build
from neural_distill.errors import DataError, ModelError


def _backend(method):
    """Marks a primitive every backend must implement."""
    method.__backend_primitive__ = True
    return method


class BackendAdapter:
    name = None
    checkpoint_suffix = None   # weights files (best_student, criterion)
    state_suffix = None        # training checkpoints (write_state)
    # The criterion class named in "expected a neural_distill criterion such as ..." errors.
    criterion_example = None

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
        if getattr(criterion, "needs_preparation", False):
            criterion.prepare()
        elif hasattr(criterion, "clear_features"):
            # Features this pass recorded must not stand in for the first training step's.
            criterion.clear_features()
        return student_output, teacher_outputs

    # ---------------------------------------------------------------- criterion
    def build_criterion(self, name, args):
        """This backend's class of criterion ``name`` (``neural_distill.criterion.registry``)."""
        return build(self.name, name, args)

    def foreign_criterion(self, criterion):
        """A message when ``criterion`` belongs to another framework (None: it does not)."""
        return None

    def check_criterion(self, criterion):
        problem = self.foreign_criterion(criterion)
        if problem:
            raise ModelError(problem)
        for method in ("distillation_loss", "combine"):
            if not callable(getattr(criterion, method, None)):
                raise ModelError(
                    f"distiller.criterion: expected a neural_distill criterion such as "
                    f"{self.criterion_example} (with .{method}), got {type(criterion).__name__}")

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
