"""The ``Distillation`` experiment: configuration, models, hooks and ``fit()``.

A facade: the teachers live in ``run/teachers.py``, the distillation step in ``run/step.py``, the
evaluation and best-model keeping in ``run/evaluation.py``, the run's lifecycle (start, hooks, end,
``fit``) in ``run/lifecycle.py`` and the run's position and results in ``run/state.py``. Its hook
methods are generated from ``neural_distill.events.Event``. This module is framework-neutral:
everything that needs torch or tensorflow goes through the adapter chosen when the student is
assigned (``neural_distill.adapters``).
"""

from neural_distill.run import checks
from neural_distill.adapters import adapter_for_model
from neural_distill.common import like, unwrap, unwrap_all
from neural_distill.config.loader import load_config
from neural_distill.criterion.registry import needs_teacher
from neural_distill.events import install_hooks
from neural_distill.run.lifecycle import RunLifecycle
from neural_distill.core.logging_utils import get_logger, quiet_third_party_import_noise
from neural_distill.report import end_of_run, report
from neural_distill.core.strict_attributes import StrictAttributes
from neural_distill.run.teachers import Teachers, check_model

# A model factory importing transformers imports torchao: its notices are not the user's.
quiet_third_party_import_noise()


@install_hooks
class Distillation(StrictAttributes):
    """A knowledge-distillation experiment.

    Args:
        conf: a YAML path, a dict, a ``DistillationConf`` or None (all defaults).

    Assign ``student_model`` and ``teacher_model``, then either call :meth:`fit` (built-in
    loop, or your ``train_func(model)`` calling the hooks) or call the hooks from your own loop.
    The hooks (``on_train_begin`` ... ``on_train_end``, see ``neural_distill.events``) are safe
    to call from any loop; the first one called starts the run.

    Setting an attribute it does not have (``distiller.studnet_model = m``) is an error, not a
    setting silently ignored; ``distiller.model`` is ``distiller.student_model``.
    """

    _attribute_aliases = {"model": "student_model"}

    def __init__(self, conf=None):
        self.conf, self.conf_source = load_config(conf)
        self.teacher_weights = self.conf.distillation.train.get("teacher_weights")
        self.criterion = None
        self.optimizer = None
        self.train_func = None
        self.eval_func = None
        self.train_dataloader = None
        self.eval_dataloader = None
        self.metric = None
        self.higher_is_better = self.conf.evaluation.get("accuracy", {}).get("higher_is_better")
        self.best_model = None
        self.summary = None          # the end-of-run summary (neural_distill.report.summary)
        self.teacher_score = None    # the teacher's score on the same metric and data
        self.log_summary = True
        self.logger = get_logger()
        self._student = None
        self._adapter = None
        self._teachers = Teachers()
        self._run = RunLifecycle(self)
        self._given_student = None  # as assigned: fit() returns a common.Model for one
        self._seal()  # from now on, setting an unknown attribute is an error

    # ------------------------------------------------------------------ models
    @property
    def student_model(self):
        return self._student

    @student_model.setter
    def student_model(self, model):
        self._given_student, model = model, unwrap(model)
        self._student = self._check(model, "student_model", self._teachers.models, "teacher")
        self._adapter = None if model is None else adapter_for_model(model, "student_model")
        checks.check_models(self._adapter, self._student, self._teachers.models,
                            self._runs_teacher())

    @property
    def teacher_model(self):
        """What was assigned: one model, a list of models, or a dict {checkpoint path: model}
        (each checkpoint is loaded into its model at assignment, tensors only)."""
        return self._teachers.assigned

    @teacher_model.setter
    def teacher_model(self, model):
        self._teachers.assign(
            unwrap_all(model), lambda m, role: self._check(m, role, [self._student], "student"))
        checks.check_models(self._adapter, self._student, self._teachers.models,
                            self._runs_teacher())

    def _runs_teacher(self):
        """Whether the criterion (set, or the config's) runs a teacher: INC's
        self-distillation passes the student as its teacher, and none is run."""
        return needs_teacher(self.criterion if self.criterion is not None
                             else self.conf.distillation.train.criterion)

    def _check(self, model, role, others, other_role):
        return check_model(model, role, self.conf.model.get("framework"), self.conf_source,
                           others, other_role)

    @property
    def teachers(self):
        """The teacher models as a list (in assignment order)."""
        return list(self._teachers.models)

    @property
    def teacher_set(self):
        """The teachers with their keys (``Teachers``)."""
        return self._teachers

    @property
    def adapter(self):
        """The student's backend adapter (``neural_distill.adapters.BackendAdapter``)."""
        return self._adapter

    @property
    def framework(self):
        return None if self._adapter is None else self._adapter.name

    # ------------------------------------------------------------------ the run
    @property
    def run(self):
        """The run's lifecycle (``RunLifecycle``): its ``state``, ``workspace``, ``step``."""
        return self._run

    @property
    def state(self):
        """Where the run is (``neural_distill.run.state.RunState``)."""
        return self._run.state

    @property
    def step(self):
        """The distillation step of the current run (``neural_distill.run.step.DistillationStep``);
        None before the run starts."""
        return self._run.step

    @property
    def best_score(self):
        return self._run.state.best_score

    @property
    def history(self):
        return self._run.state.history

    @property
    def workspace(self):
        return self._run.workspace

    def dispatch(self, event, *args):
        """What every hook does (the hooks are generated from ``neural_distill.events``)."""
        return self._run.dispatch(event, *args)

    def fit(self):
        """Train the student and return the best one (a copy of the user's model class).

        With ``train_func`` set, calls ``train_func(student)`` (which calls the hooks);
        otherwise runs the built-in loop configured under ``distillation.train``.
        """
        best = like(self._run.fit(), self._given_student)
        end_of_run(self)
        return best

    def report(self, **kwargs):
        """Teacher vs best student after fit(); see ``neural_distill.report.report``."""
        return report(distiller=self, **kwargs)

    def __call__(self):
        return self.fit()

    def running_losses(self):
        """The mean losses of the current epoch so far, as floats (for progress bars)."""
        running = self._run.state.running_losses
        return running.read() if running is not None and self._run.started else {}
