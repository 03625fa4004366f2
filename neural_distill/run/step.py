"""The distillation step: the one place where the teacher's term is added to a loss.

``Distillation.on_after_compute_loss``, the TensorFlow built-in loop (through that hook), the
Keras ``DistillationModel`` and the Hugging Face mixin (through the compression manager) all
compute the loss here::

    teacher_output = teachers' (weighted) output      # unless the caller gives it, or the
                                                      # teacher cache has it
    check the outputs against from_logits (once)     # core/output_check.py
    kd_loss = criterion.distillation_loss(student_output, teacher_output[, labels= | tokens=])
                                # through run/matcher_training.py in a run: matchers get trained
                                # (a per-token criterion gets the batch's TokenBatch:
                                # language/tokens.py says which tokens count)
    student_loss: one scalar tensor (checks.scalar_loss)
    loss = balancer(student_loss, kd_loss)      # criterion/balancer.py: the one weighting,
                                                # the criterion's (criterion.combine) by default
    running.add(loss, student_loss, kd_loss, inputs)    # the epoch's running losses

The Trainer algorithm (``algorithms/distillation.py``) goes through the same step with its own
balancer (``org_loss_weight``, ``kd_loss_weight``) and one term per teacher (``teacher_forward``),
averaged over the teachers it samples for the step.
"""

from neural_distill.run.checks import scalar_loss
from neural_distill.criterion.registry import needs_teacher
from neural_distill.errors import ModelError
from neural_distill.core.logging_utils import get_logger
from neural_distill.language.tokens import GeneratedBatch, TokenBatch, counted_token_array
from neural_distill.teacher_cache.run_cache import numpy_inputs
from neural_distill.teacher_cache.token_records import TokenOutputs, counted_records


class DistillationStep:
    """Args: the backend adapter, the criterion, the teacher models (a list) and their
    weights (None: equal); in a run also the teacher cache, the ``MatcherTraining`` of the
    criterion and the experiment's ``OutputCheck``; ``causal``: the student is a causal LM
    (its logits at t predict token t + 1: language/tokens.py); ``teacher_context``: a factory
    of the context the teachers run in (``model.teacher_precision``), or None.

    ``balancer`` (a :class:`~neural_distill.criterion.balancer.LossBalancer`) weighs the two
    losses instead of the criterion's own; with a balancer whose term has no weight, no teacher
    runs. ``teacher_forward(teacher, inputs)``, when given, makes one term per teacher (the
    mean of the terms is the step's term) instead of one term on the teachers' mean output.
    ``reduce_student_loss=False`` passes the student loss on as given (the caller checks it).
    """

    def __init__(self, adapter, criterion, teachers, teacher_weights=None, cache=None,
                 matchers=None, output_check=None, balancer=None, teacher_forward=None,
                 reduce_student_loss=True, causal=False, teacher_context=None):
        self.adapter = adapter
        self.criterion = criterion
        self.teachers = list(teachers)
        self.teacher_weights = teacher_weights
        self.needs_teacher = needs_teacher(criterion)
        self.cache = cache  # a teacher_cache.TeacherCache, or None
        self.matchers = matchers
        self.output_check = output_check
        self.balancer = balancer
        self.teacher_forward = teacher_forward
        self.reduce_student_loss = reduce_student_loss
        self.causal = causal
        # model.teacher_precision: a factory of the context the teachers' forward runs in.
        self.teacher_context = teacher_context

    def teacher_output(self, inputs, student_output=None, eager=True, labels=None):
        """The teachers' output for ``inputs``; None when the criterion needs no teacher.

        With a cache, a batch whose samples are all cached is served without running the
        teachers; otherwise their output is stored for the next epochs. A features cache also
        stores the criterion's teacher features, and on a hit hands them to the criterion. Cached
        outputs are placed like ``student_output``. A compiled (traced) TensorFlow step passes
        ``eager=False``: NumPy cannot look inside a traced tensor, so its loop consults the
        cache before the compiled step instead. For a per-token criterion over a language
        model's ``[batch, positions, vocab]`` logits the cache keeps the counted tokens only
        (``labels`` and the attention mask say which: language/tokens.py), and a top-k cache
        hands the criterion the counted tokens' records (``TokenOutputs``) instead of logits.
        """
        if not self.needs_teacher:
            return None
        # On-policy completions are new every time: neither looked up nor stored.
        cache = self.cache if eager and not isinstance(inputs, GeneratedBatch) else None
        if cache is not None and cache.active and self.adapter.tracing():
            # A user's own tf.function: logged once per trace, i.e. about once.
            get_logger().warning(
                "distillation.train.teacher_cache: on_after_compute_loss is running inside a "
                "tf.function, where the batch has no values to look up, so the teacher runs "
                "every step. Call the hooks from an eager loop (or use fit()) to use the cache.")
            cache = None
        valid = None
        if cache is not None and cache.active and cache.tokens is not None:
            valid = self._counted_tokens(inputs, student_output, labels)
        served = self.cached_outputs(inputs, valid) if cache is not None else None
        if served is not None:
            logits, features = served
            if features:
                self.criterion.use_teacher_features(
                    [self.adapter.as_teacher_output(f, student_output) for f in features])
            if isinstance(logits, TokenOutputs):
                return logits
            return self.adapter.as_teacher_output(logits, student_output)
        if not self.teachers:
            raise ModelError("on_after_compute_loss: no teacher_model is set and no "
                             "teacher_output was given. Set distiller.teacher_model or "
                             "pass the teacher's output.")
        if self.teacher_context is None:
            output = self.adapter.teachers_forward(self.teachers, inputs, self.teacher_weights)
        else:
            with self.teacher_context():
                output = self.adapter.teachers_forward(self.teachers, inputs,
                                                       self.teacher_weights)
        if cache is not None and cache.active:
            if cache.pending_tokens is not None:
                kept = self._store_tokens(cache, output)
            else:
                features = ([self.adapter.to_numpy(f) for f in self.criterion.teacher_features()]
                            if cache.features else None)
                kept = cache.add(self.adapter.to_numpy(
                    self.adapter.logits_of(output, "teacher output")), features)
            if not cache.codec.lossless:  # every epoch trains on the same (decoded) targets
                output = (kept if isinstance(kept, TokenOutputs)
                          else self.adapter.as_teacher_output(kept, student_output))
        return output

    def _store_tokens(self, cache, output):
        """Give a per-token cache the records of the teacher's counted rows."""
        logits = self.adapter.logits_of(output, "teacher output")
        if len(logits.shape) != 3 or tuple(logits.shape[:2]) != cache.pending_tokens.shape:
            return cache.add(self.adapter.to_numpy(logits))  # refused, with the shapes
        return cache.add_token_records(
            counted_records(self.adapter, cache.tokens, logits, cache.pending_tokens))

    def _counted_tokens(self, inputs, student_output, labels):
        """The bool ``[batch, positions]`` NumPy mask of the tokens a per-token criterion
        counts, or None when the student's output has no token axis."""
        if not self.criterion.per_token or student_output is None:
            return None
        shape = tuple(self.adapter.logits_of(student_output, "student output").shape)
        if len(shape) != 3:
            return None
        return counted_token_array(TokenBatch(inputs, labels, self.causal), shape[:2],
                                   self.adapter.to_numpy)

    def cached_outputs(self, inputs, valid=None):
        """``(logits, features)`` (NumPy; ``features`` is ``[]`` for a logits-only cache) the
        teacher cache holds for every sample of ``inputs``, or None: no active cache, or a
        sample it does not hold."""
        cache = self.cache
        if cache is None or not cache.active:
            return None
        cached = cache.lookup(numpy_inputs(self.adapter, inputs), valid)
        if cached is None:
            return None
        if cache.features:  # [logits, feature per mapping...]
            logits, *features = cached
            return logits, features
        return cached, []

    def __call__(self, inputs, student_output, student_loss, teacher_output=None, running=None,
                 labels=None, teachers=None):
        """The combined loss (one scalar tensor); ``running`` (if given) records the terms.

        ``labels`` reach only a criterion that declares ``wants_labels`` (DKD's target class);
        they (else ``inputs["labels"]`` of a dict batch) and ``inputs["attention_mask"]`` say
        which tokens a ``per_token`` criterion counts.
        ``teachers`` (with ``teacher_forward``): the teachers of this step, if not all."""
        balancer = self.criterion.combine if self.balancer is None else self.balancer
        if self.balancer is not None and not self.balancer.needs_distillation:
            kd_loss = None  # weighted by 0: spare the teachers' forward passes
        elif teacher_output is None and self.teacher_forward is not None:
            kd_loss = self._mean_term(inputs, student_output, teachers or self.teachers,
                                      labels)
        else:
            kd_loss = self._term(inputs, student_output, teacher_output, labels)
        if student_loss is not None and self.reduce_student_loss:
            # one scalar: a per-sample loss is averaged, with a warning
            student_loss = scalar_loss(student_loss, self.adapter, owner=self)
        loss = balancer(student_loss, kd_loss)
        if running is not None:
            running.add(loss, student_loss, kd_loss, inputs=inputs)
        return loss

    def _distillation_loss(self, inputs, student_output, teacher_output, labels):
        if self.criterion.wants_labels:
            return self.criterion.distillation_loss(student_output, teacher_output,
                                                    labels=labels)
        if self.criterion.per_token:  # no feature matchers: the criterion is called directly
            return self.criterion.distillation_loss(
                student_output, teacher_output, tokens=TokenBatch(inputs, labels, self.causal))
        distillation_loss = (self.criterion.distillation_loss if self.matchers is None
                             else self.matchers.distillation_loss)
        return distillation_loss(student_output, teacher_output)

    def _term(self, inputs, student_output, teacher_output, labels=None):
        if teacher_output is None:
            teacher_output = self.teacher_output(inputs, student_output, labels=labels)
        elif self.needs_teacher:  # self-distillation reads the student's own outputs
            teacher_output = self.adapter.as_teacher_output(teacher_output, student_output)
        if self.output_check is not None:
            checked = self.needs_teacher and not isinstance(teacher_output, TokenOutputs)
            self.output_check.check(self.adapter, self.criterion, student_output,
                                    [teacher_output] if checked else [])
        return self._distillation_loss(inputs, student_output, teacher_output, labels)

    def _mean_term(self, inputs, student_output, teachers, labels=None):
        forward = self.teacher_forward
        terms = []
        for teacher in teachers:
            teacher_output = forward(teacher, inputs)
            if self.output_check is not None:
                self.output_check.check(self.adapter, self.criterion, student_output,
                                        [teacher_output])
            terms.append(self._distillation_loss(inputs, student_output, teacher_output,
                                                 labels))
        return terms[0] if len(terms) == 1 else self.adapter.mean_tensors(terms)
