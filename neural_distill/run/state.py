"""Where a run is: one object, and its plain-data form for checkpoints and other processes.

Everything that decides how a run continues lives here (the experiment's other objects hold
configuration, models and services): the position (epoch, step, global step), the evaluation
record (best score, best student weights, the last evaluated epoch), the losses of the epoch so
far, the history of records, and, in its saved form, the random generators' states.
``to_state()`` gives plain data (numbers, lists, dicts, NumPy arrays, the backend's tensors in
``best_weights``) that ``torch.save`` / pickle can store and another process can read;
``load_state()`` / ``from_state()`` read it back.
"""

from neural_distill.core import rng

_FIELDS = ("epoch", "step", "epochs_done", "global_step", "steps_in_epoch", "best_score",
           "best_weights", "last_eval_epoch", "history")


class RunState:
    def __init__(self, running_losses=None):
        self.epoch = 0             # the epoch number the loop passed to on_epoch_begin
        self.step = 0              # the batch_id passed to on_step_begin
        self.epochs_done = 0       # epochs completed (on_epoch_end calls)
        self.global_step = 0       # steps completed in the whole run
        self.steps_in_epoch = 0    # steps completed in the current epoch (where to resume)
        self.best_score = None
        self.best_weights = None   # the backend's snapshot of the best student
        self.last_eval_epoch = None
        self.history = []          # one record per epoch / evaluation, as logged
        # The backend's running sums (``adapter.new_running_losses()``): kept as one object,
        # because a compiled TensorFlow step captures it.
        self.running_losses = running_losses

    def begin_epoch(self, epoch):
        self.epoch = epoch
        self.steps_in_epoch = 0

    def end_step(self):
        self.global_step += 1
        self.steps_in_epoch += 1

    def to_state(self, adapter=None):
        """Plain data; with ``adapter``, also the random generators (Python, NumPy, the
        framework's)."""
        state = {name: getattr(self, name) for name in _FIELDS}
        state["history"] = [dict(record) for record in self.history]
        if self.running_losses is not None:
            state["running_losses"] = self.running_losses.to_state()
        state["rng"] = rng.capture(adapter)
        return state

    def load_state(self, state, adapter=None, restore_rng=True):
        """Continue from ``state`` in place (the running-loss object is kept and refilled)."""
        for name in _FIELDS:
            setattr(self, name, state[name])
        self.history = [dict(record) for record in state["history"]]
        if self.running_losses is not None and "running_losses" in state:
            self.running_losses.load_state(state["running_losses"])
        if restore_rng and "rng" in state:
            rng.restore(state["rng"], adapter)

    @classmethod
    def from_state(cls, state, running_losses=None, adapter=None, restore_rng=True):
        run_state = cls(running_losses)
        run_state.load_state(state, adapter, restore_rng)
        return run_state
