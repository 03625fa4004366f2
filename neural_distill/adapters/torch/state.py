"""Training state kept in torch objects: the running losses."""

from neural_distill.adapters.base import LOSS_KEYS, loss_means


class RunningLosses:
    """Per-epoch loss sums. They stay tensors on the device: reading them (a sync) happens
    only when they are shown."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.sums = dict.fromkeys(LOSS_KEYS, 0)
        return self

    def add(self, loss, student_loss, kd_loss, inputs=None):
        # ``inputs`` weighs a tf.distribute replica's share of the batch (TensorFlow only).
        sums = self.sums
        sums["count"] += 1
        sums["loss"] = sums["loss"] + loss.detach()
        sums["distillation_loss"] = sums["distillation_loss"] + kd_loss.detach()
        if student_loss is not None:
            sums["student_loss"] = sums["student_loss"] + student_loss.detach()
            sums["student_count"] += 1

    def to_state(self):
        # float() of a float32 tensor is exact, and adding a tensor to it gives float32 again:
        # a restored sum continues bit for bit.
        return {key: float(value) for key, value in self.sums.items()}

    def load_state(self, state):
        self.sums = {key: state[key] for key in LOSS_KEYS}

    def read(self):
        return loss_means(self.to_state())
