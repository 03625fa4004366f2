"""The built-in loop under a ``tf.distribute`` strategy (MirroredStrategy, MultiWorkerMirrored).

Keras' convention: the user creates the strategy, builds the models inside
``strategy.scope()`` and trains. ``fit()`` then trains data-parallel with the strategy in scope,
or, when called outside the scope, with the strategy the student's variables belong to. The
loop distributes the training dataset (each batch is the global batch, split among the
replicas), runs the step once per replica (``strategy.run``) and lets the optimizer sum the
replicas' gradients. For that sum to be the gradient of the global batch's loss, each
replica's loss is weighted by its share of the global batch (``n_replica / n_global``): with
equal shares that is ``1 / replicas``, Keras' own scaling; an uneven last batch is weighted
exactly, and a replica left without samples contributes nothing.
"""

import tensorflow as tf

from neural_distill.errors import ConfigError, DataError, ModelError


def strategy_for(student):
    """The strategy to train under, or None for the plain single-device loop."""
    if tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
    else:
        strategy = next((_strategy_of(v) for v in student.variables
                         if _strategy_of(v) is not None), None)
    # One replica (OneDeviceStrategy, a single worker) trains like the plain loop.
    if strategy is None or strategy.num_replicas_in_sync <= 1:
        return None
    return strategy


def _strategy_of(variable):
    value = getattr(variable, "value", variable)  # a Keras variable wraps a tf.Variable
    return getattr(value, "distribute_strategy", None) if isinstance(
        value, tf.distribute.DistributedValues) else None


def check_data(strategy, loader):
    """Before the run starts: data the strategy can split."""
    if not isinstance(loader, tf.data.Dataset):
        raise DataError(f"train_dataloader: under {type(strategy).__name__} the training data "
                        f"must be a tf.data.Dataset of global batches (the strategy splits each "
                        f"batch among the replicas), got {type(loader).__name__}. Wrap it, e.g. "
                        f"tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch).")


def check_setup(strategy, student, optimizer, distiller):
    """Once the models are built: clear errors for what would otherwise fail deep inside
    TensorFlow, or train wrongly."""
    name = type(strategy).__name__
    if not all(_strategy_of(v) is strategy for v in student.trainable_variables):
        raise ModelError(f"student_model: fit() trains under {name}, but the student's "
                         f"variables were created outside strategy.scope(), so they are not "
                         f"replicated. Build the student (and the teacher) inside "
                         f"`with strategy.scope():`.")
    if getattr(optimizer, "_distribution_strategy", strategy) is not strategy:
        raise ModelError(f"optimizer: it was created outside strategy.scope() of the {name} "
                         f"fit() trains under; create it inside the scope, or leave "
                         f"distiller.optimizer unset to use the config's optimizer.")
    cache = distiller.step.cache
    if cache is not None and cache.active:
        raise ConfigError(f"{distiller.conf_source}: distillation.train.teacher_cache: the "
                          f"teacher cache is not supported under {name} (it is looked up "
                          f"outside the compiled step, per global batch). Disable it, or train "
                          f"on one device.")


def distribute_dataset(strategy, loader):
    return strategy.experimental_distribute_dataset(loader)


def _local_batch_size(inputs):
    first = tf.nest.flatten(inputs)[0]
    return tf.cast(tf.shape(first)[0], tf.float32)


def replica_share(inputs):
    """This replica's share of the global batch (a float32 scalar), or None outside the
    replicas of a multi-replica strategy (or without ``inputs``)."""
    context = tf.distribute.get_replica_context()
    if inputs is None or context is None or context.num_replicas_in_sync <= 1:
        return None
    local = _local_batch_size(inputs)
    return local / context.all_reduce(tf.distribute.ReduceOp.SUM, local)


def share_of_global_batch(total, inputs):
    """``total`` (this replica's mean loss) weighted by its share of the global batch."""
    share = replica_share(inputs)
    # A replica without samples has a NaN batch mean; it must add nothing, not NaN.
    return tf.where(share > 0, total * tf.cast(share, total.dtype), tf.zeros_like(total))


def global_gradients(grads):
    """The sum of every replica's gradients, on every replica (None stays None)."""
    context = tf.distribute.get_replica_context()
    present = [g for g in grads if g is not None]
    reduced = iter(context.all_reduce(tf.distribute.ReduceOp.SUM, present))
    return [None if g is None else next(reduced) for g in grads]


def as_replica_share(grads):
    """Global gradients divided so that the optimizer's sum over replicas gives them back."""
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    return [None if g is None else g / replicas for g in grads]
