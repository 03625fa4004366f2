"""The built-in TensorFlow training loop.

It fires the experiment's hooks in the documented order (``neural_distill.events``), like the
PyTorch loop, around compiled functions::

    on_step_begin(batch_id)
    grads = compute(inputs, labels)    # tf.function: teacher forward (training=False, no tape),
                                       # student forward + loss under the tape, gradients
    on_before_optimizer_step()
    apply(grads)                       # tf.function: optimizer update
    on_after_optimizer_step()
    on_step_end()

When neither optimizer hook is overridden (they do nothing by default), ``compute`` and
``apply`` are one compiled function, which saves a call and lets TensorFlow use the gradients
without handing them back to Python; both hooks are still called, in order, after it.

A teacher cache (docs/teacher_cache.md) is consulted in Python before the compiled step, which
gets what it serves as inputs (NumPy cannot look inside a traced tensor):

- logits only (``KnowledgeDistillationLoss``): a miss runs the teachers eagerly and stores
  their logits, then the step gets the logits either way;
- with teacher features (``IntermediateLayersKnowledgeDistillationLoss``): a hit hands the
  step the cached logits and features (one trace for hits, reused by every later batch); a
  miss runs the step as without a cache (teachers inside it, through their feature
  captures), which also returns the teachers' logits and selected features, stored after it.

``on_after_compute_loss`` is called inside ``compute``: its Python body (and the criterion's)
runs when ``compute`` is traced, its TensorFlow ops at every step, including the running-loss
sums (a variable, see ``adapter.RunningLosses``). Losses are read back from the variable only
when the progress bar is refreshed.
"""

import tensorflow as tf

from neural_distill.errors import ConfigError
from neural_distill.events import Event, is_generated_hook
from neural_distill.run.loop_common import epoch_range, limit_steps, run_epochs
from neural_distill.adapters.tensorflow import distribute, features
from neural_distill.adapters.tensorflow.optim import LearningRateSchedule, build_optimizer
from neural_distill.adapters.tensorflow.outputs import to_tensor


def _steps_per_epoch(loader, iteration):
    steps = None
    if isinstance(loader, tf.data.Dataset):
        cardinality = int(loader.cardinality())
        steps = cardinality if cardinality >= 0 else None
    else:
        try:
            steps = len(loader)
        except TypeError:  # an iterable without a length
            steps = None
    return limit_steps(steps, iteration)


def _trainable_variables(student, criterion):
    """The student's trainable variables, then the criterion's own (feature matchers)."""
    student_variables = list(student.trainable_variables)
    seen = {id(v) for v in student_variables}
    extra = [v for v in criterion.trainable_variables if id(v) not in seen]
    return student_variables, extra


def make_step(distiller, adapter, student, criterion, optimizer, variables, n_student,
              coupled_weight_decay, max_grad_norm, strategy=None):
    """``(compute, apply)`` compiled; ``(step, None)`` when they can be fused (module doc).

    Under a ``tf.distribute`` strategy they take the distributed batch (``compute(batch)``,
    ``step(batch)``) and run once per replica (``distribute``'s module doc).
    """
    distillation_step = distiller.step
    cache = distillation_step.cache
    features_cache = cache is not None and cache.features

    def compute(inputs, labels, teacher_output=None, teacher_features=None):
        """``(gradients, record)``: record is what a features cache stores after a miss."""
        # The teachers run before the tape opens: nothing of theirs is recorded. With a
        # teacher cache, the loop hands their output in (looked up outside the trace).
        record = None
        if teacher_output is None:
            teacher_output = distillation_step.teacher_output(inputs, eager=False)
            if features_cache:  # the features the loss compares are those stored
                chosen = criterion.teacher_features()
                criterion.use_teacher_features(chosen)
                record = (adapter.logits_of(teacher_output, "teacher output"), chosen)
        elif teacher_features is not None:
            criterion.use_teacher_features(teacher_features)
        with tf.GradientTape() as tape:
            output = features.forward(student, inputs, training=True)
            student_loss = criterion.student_loss(output, labels)
            # Labels go to the hook too (the per-token rule of sequence outputs reads them).
            loss = distiller.on_after_compute_loss(
                inputs, output, student_loss, teacher_output,
                *([] if labels is None else [labels]))
            # Regularization losses of the student's layers (kernel_regularizer, ...), as
            # Keras' own fit() adds them.
            total = loss + tf.add_n(student.losses) if student.losses else loss
            if strategy is not None:
                total = distribute.share_of_global_batch(total, inputs)
        grads = tape.gradient(total, variables)
        # Clipping and coupled weight decay are applied to the global gradient, once.
        gather = strategy is not None and bool(max_grad_norm or coupled_weight_decay)
        if gather:
            grads = distribute.global_gradients(grads)
        student_grads, extra_grads = grads[:n_student], grads[n_student:]
        if max_grad_norm:
            # Clips the student's gradients only, like the PyTorch loop's clip_grad_norm_.
            student_grads, _ = tf.clip_by_global_norm(student_grads, max_grad_norm)
        grads = list(student_grads) + list(extra_grads)
        if coupled_weight_decay:
            grads = [None if g is None else g + coupled_weight_decay * tf.convert_to_tensor(v)
                     for g, v in zip(grads, variables)]
        return (distribute.as_replica_share(grads) if gather else grads), record

    def apply(grads):
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])

    eager = distiller.conf.distillation.train.get("execution_mode") == "eager"

    def compiled(fn):
        if eager:  # asked for explicitly: step by step in Python, for debugging
            return fn
        # No AutoGraph: nothing here branches on tensor values, and converting the hooks and
        # criteria it would walk into costs seconds per trace.
        return tf.function(fn, reduce_retracing=True, autograph=False)

    if strategy is not None:
        def compute_batch(batch):
            inputs, labels = adapter.split_batch(batch)
            return compute(to_tensor(inputs), None if labels is None else to_tensor(labels))[0]

        def replicated(fn):
            return lambda *args: strategy.run(fn, args=args)

        if _optimizer_hooks_overridden(distiller):
            return compiled(replicated(compute_batch)), compiled(replicated(apply))
        return compiled(replicated(lambda batch: apply(compute_batch(batch)))), None

    if _optimizer_hooks_overridden(distiller):
        return compiled(compute), compiled(apply)

    def step(inputs, labels, teacher_output=None, teacher_features=None):
        grads, record = compute(inputs, labels, teacher_output, teacher_features)
        apply(grads)
        return record

    return compiled(step), None


def served_by_cache(distillation_step, inputs):
    """The compiled step's teacher inputs from a teacher cache (module doc): ``{}`` without an
    active cache and on a features-cache miss (the step runs the teachers itself)."""
    cache = distillation_step.cache
    if cache is None or not cache.active:
        return {}
    if not cache.features:
        return {"teacher_output": distillation_step.teacher_output(inputs, inputs)}
    served = distillation_step.cached_outputs(inputs)
    if served is None:
        return {}
    logits, teacher_features = served
    return {"teacher_output": to_tensor(logits),
            "teacher_features": [to_tensor(f) for f in teacher_features]}


def store_record(distillation_step, record):
    """After a features-cache miss: store the teachers' logits and features the step used."""
    cache = distillation_step.cache
    if record is None or cache is None or not cache.active:
        return
    logits, teacher_features = record
    cache.add(logits.numpy(), [f.numpy() for f in teacher_features])


def _optimizer_hooks_overridden(distiller):
    """Whether a subclass or the instance replaced a generated (do-nothing) optimizer hook."""
    names = (Event.BEFORE_OPTIMIZER_STEP.value, Event.AFTER_OPTIMIZER_STEP.value)
    return any(name in vars(distiller) or not is_generated_hook(getattr(type(distiller), name))
               for name in names)


def _build_models(adapter, models, loader):
    """Give unbuilt models (subclassed ones before their first call) their variables now.

    Variables have to exist before the step is traced: the optimizer is built for them, and
    a variable created inside a traced function would belong to that trace. One eager
    inference-mode call on the first batch builds them without updating anything.
    """
    unbuilt = [m for m in models if not m.built]
    if not unbuilt:
        return
    inputs, _ = adapter.split_batch(adapter.first_batch(loader))
    for model in unbuilt:
        adapter.inference_forward(model, inputs)


def run(adapter, distiller):
    conf = distiller.conf
    if conf.distillation.train.get("on_policy"):
        raise ConfigError(f"{distiller.conf_source}: distillation.train.on_policy: on-policy "
                          f"distillation generates with a Hugging Face causal LM and is "
                          f"PyTorch only; remove the section for a Keras model.")
    device = adapter.resolve_device(conf.device, f"{distiller.conf_source}: device")
    strategy = distribute.strategy_for(distiller.student_model)
    if strategy is not None:  # the strategy places every replica; `device` is not used
        with strategy.scope():
            _run(adapter, distiller, conf.distillation.train, strategy)
        return
    with tf.device(device):
        _run(adapter, distiller, conf.distillation.train)


def _run(adapter, distiller, train, strategy=None):
    student = distiller.student_model
    loader = distiller.train_dataloader
    if strategy is not None:
        distribute.check_data(strategy, loader)

    distiller.on_train_begin(loader)
    criterion = distiller.criterion
    _build_models(adapter, [student, *distiller.teachers], loader)
    optimizer, coupled_weight_decay = distiller.optimizer, 0.0
    if optimizer is None:
        optimizer, coupled_weight_decay = build_optimizer(train.optimizer)
    student_variables, extra = _trainable_variables(student, criterion)
    variables = student_variables + extra
    if strategy is not None:
        distribute.check_setup(strategy, student, optimizer, distiller)
    if not optimizer.built:
        optimizer.build(variables)
    steps = _steps_per_epoch(loader, train.get("iteration"))
    schedule = LearningRateSchedule(train.lr_schedule, optimizer, len(epoch_range(train)))
    compute, apply = make_step(distiller, adapter, student, criterion, optimizer, variables,
                               len(student_variables), coupled_weight_decay,
                               train.get("max_grad_norm"), strategy)
    if strategy is not None:
        loader = distribute.distribute_dataset(strategy, loader)

    def train_step(batch):
        if strategy is not None:
            grads = compute(batch)
            distiller.on_before_optimizer_step()
            if apply is not None:
                apply(grads)
            distiller.on_after_optimizer_step()
            return
        inputs, labels = adapter.split_batch(batch)
        inputs = to_tensor(inputs)
        result = compute(inputs, None if labels is None else to_tensor(labels),
                         **served_by_cache(distiller.step, inputs))
        record = result if apply is None else result[1]
        store_record(distiller.step, record)
        distiller.on_before_optimizer_step()
        if apply is not None:
            apply(result[0])
        distiller.on_after_optimizer_step()

    run_epochs(distiller, loader, train, steps, schedule, train_step,
               distiller.run.track(optimizer))
