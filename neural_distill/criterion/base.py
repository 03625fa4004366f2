"""What the criteria of every framework share: validated settings and the bookkeeping.

A framework's criterion class mixes one of these in and adds only the tensor math (and, for
feature criteria, how features are captured: forward hooks in PyTorch, a multi-output model in
Keras). The settings are validated by the node of the criterion's catalog spec
(``criterion/catalog/``), the node of the YAML section of the same name, so the same mistake
gets the same message in every framework.

The backend classes' arguments default to None, which takes the spec's default: defaults are
written once, in the catalog. A new criterion needs no class here: its backend classes mix in
``CatalogCriterion``, which takes the arguments and ``needs_teacher`` from the catalog spec.
"""

import difflib
import functools

from neural_distill.config.layer_mappings import parse_layer_mappings
from neural_distill.criterion.balancer import LossBalancer
from neural_distill.errors import ModelError
from neural_distill.criterion.catalog import CATALOG
from neural_distill.criterion.catalog.loss_types import RELATION_FEATURE_TYPES
from neural_distill.criterion.specs import validated_criterion_args


def per_item(values, count, default):
    """One value per mapping/group: None -> default each, a single value -> repeated."""
    if values is None:
        return [default] * count
    return list(values) * count if len(values) == 1 else list(values)


class DistillationCriterion:
    """The whole protocol between a criterion and the run, with do-nothing defaults.

    Every criterion object derives from it (the catalog's through :class:`CatalogCriterion`;
    a user's own may subclass it directly and override ``distillation_loss``), so the run asks
    a criterion directly instead of probing it for optional methods:

    - ``distillation_loss(student_output, teacher_output)`` the term (the one required method);
      ``student_loss(student_output, labels)`` the student's own loss in the built-in loops;
      ``combine(student_loss, term)`` the criterion's loss from the two, weighed by its
      ``loss_balancer``;
    - ``needs_teacher``: whether a teacher must run (False for self-distillation);
      ``wants_labels``: whether ``distillation_loss`` takes the batch's ``labels=`` (DKD);
      ``per_token``: whether it takes ``tokens=`` (which tokens of a sequence count);
      ``reads_features``: whether it reads intermediate features the models' forward records;
    - ``from_logits``: True/False when the criterion knows what the models output, None when it
      cannot say (the first-batch output check then stays quiet);
    - ``temperature``, ``loss_types``, ``add_origin_loss``: settings the run's checks and the
      teacher cache read (None / False when the criterion has none);
    - features: ``attach(student, teachers, teacher_keys=None)`` / ``ensure_attached`` before a
      run, ``detach()`` after; ``needs_preparation`` until the first batch has shown feature
      shapes, then ``prepare()`` builds matchers; ``clear_features()`` forgets recorded ones;
      ``teacher_features()`` / ``use_teacher_features(features)`` for the teacher cache;
    - state: ``feature_matchers()`` (trained with the student, never exported) and, in
      TensorFlow, ``trainable_variables``.

    Defaults are class attributes and methods, never instance state: a PyTorch criterion is
    also an ``nn.Module``, whose submodules (``self.matchers``) a class attribute of the same
    name would hide.
    """

    yaml_name = None
    needs_teacher = True
    wants_labels = False
    per_token = False
    reads_features = False
    from_logits = None
    temperature = None
    loss_types = None
    add_origin_loss = False
    needs_preparation = False
    trainable_variables = ()

    def distillation_loss(self, student_output, teacher_output):
        raise NotImplementedError(f"{type(self).__name__} must define distillation_loss")

    def student_loss(self, student_output, labels):
        """The student's own loss against the labels, in the built-in loops; None: none (the
        distillation term alone trains)."""
        return None

    @property
    def loss_balancer(self):
        """How ``combine`` weighs the two losses (criterion/balancer.py): their plain sum here;
        a criterion with weights gives its own balancer, never its own arithmetic."""
        return LossBalancer(owner=type(self).__name__)

    def combine(self, student_loss, distillation_loss):
        return self.loss_balancer(student_loss, distillation_loss)

    def attach(self, student, teachers, teacher_keys=None):
        """Start capturing what the criterion reads from the models (feature criteria)."""

    def ensure_attached(self, student, teachers):
        """Attach unless already attached (Keras calls this from its own fit)."""

    def detach(self):
        """Stop capturing; the models are left as they were."""

    def prepare(self):
        """Build what depends on the first batch's feature shapes (matchers)."""

    def clear_features(self):
        """Forget features recorded by a pass that was not a training step."""

    def teacher_features(self):
        """The teachers' features of the last step, for the teacher cache (None: none)."""
        return None

    def use_teacher_features(self, features):
        """Take the teachers' features from the cache instead of capturing them."""

    def feature_matchers(self):
        """The learned matchers (a feature criterion keeps them in ``self.matchers``)."""
        return list(getattr(self, "matchers", ()))


class CatalogCriterion(DistillationCriterion):
    """The framework-neutral part of a criterion that has no spec class of its own.

    The backend class sets ``yaml_name`` (its catalog name) and calls
    ``self._configure_from_spec(**arguments)`` in its constructor: the arguments are validated
    once by the catalog spec's node (defaults filled in) and become attributes of the same
    names. ``needs_teacher`` is the spec's. ``combine`` weighs the student's own loss and the
    distillation term with the criterion's ``loss_balancer`` (by default their plain sum); a
    criterion that weighs them differently gives another balancer, never its own arithmetic.
    """

    @property
    def needs_teacher(self):
        return CATALOG[self.yaml_name].needs_teacher

    def _configure_from_spec(self, **arguments):
        args = validated_criterion_args(self.yaml_name, type(self).__name__, **arguments)
        for name in CATALOG[self.yaml_name].args:
            object.__setattr__(self, name, args.get(name))
        return args

    def _settings(self):
        names = CATALOG[self.yaml_name].args
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in names)


class FeatureCriterionSpec(CatalogCriterion):
    """Criteria that read intermediate features: the origin loss is added on request."""

    reads_features = True

    @property
    def loss_balancer(self):
        """Sum of the weighted feature terms, plus the student's own loss if add_origin_loss."""
        return LossBalancer(use_student_loss=self.add_origin_loss, owner=type(self).__name__)


class IntermediateLayersSpec(FeatureCriterionSpec):
    """Layer mappings, per-mapping losses and weights, and the feature captures' lifecycle.

    The framework class sets ``capture_class`` (built as ``capture_class(model, layer_names,
    role)``, with ``missing_problems()``, ``available``, ``get``, ``clear``, ``remove``) and
    ``select`` (applies a mapping's output process).
    """

    yaml_name = "IntermediateLayersKnowledgeDistillationLoss"
    capture_class = None
    select = None

    def _configure(self, layer_mappings, loss_types, loss_weights, add_origin_loss,
                   rkd_weights=None):
        args = validated_criterion_args(
            self.yaml_name, type(self).__name__, layer_mappings=layer_mappings,
            loss_types=loss_types, loss_weights=loss_weights, add_origin_loss=add_origin_loss,
            rkd_weights=rkd_weights)
        self.rkd_weights = [float(w) for w in args["rkd_weights"]]
        self.mappings = parse_layer_mappings(args["layer_mappings"])
        count = len(self.mappings)
        self.loss_types = per_item(args.get("loss_types"), count, "MSE")
        self.loss_weights = [float(w) for w in per_item(args.get("loss_weights"), count,
                                                        1.0 / count)]
        self.add_origin_loss = args["add_origin_loss"]
        self._student_capture = None
        self._teacher_captures = {}
        self._teacher_index = {}
        self._cached_teacher_features = None

    def _capture_mapped_layers(self, student, teachers, teacher_keys=None):
        """Create the captures; one ModelError lists every layer or teacher that is missing."""
        self.detach()
        keys = list(teacher_keys) if teacher_keys is not None else list(range(len(teachers)))
        problems = []
        self._teacher_index = {}
        for i, pair in enumerate(self.mappings):
            which = pair.teacher.teacher
            if isinstance(which, int) and 0 <= which < len(teachers):
                self._teacher_index[i] = which
            elif which in keys:
                self._teacher_index[i] = keys.index(which)
            else:
                problems.append(f"layer_mappings[{i}]: teacher {which!r} does not exist "
                                f"(teachers: {keys})")
        capture = self.capture_class
        self._student_capture = capture(student, [p.student.layer for p in self.mappings],
                                        "student")
        problems += self._student_capture.missing_problems()
        for t_index, teacher in enumerate(teachers):
            names = [p.teacher.layer for i, p in enumerate(self.mappings)
                     if self._teacher_index.get(i) == t_index]
            if names:
                role = "teacher" if len(teachers) == 1 else f"teacher {keys[t_index]!r}"
                self._teacher_captures[t_index] = capture(teacher, names, role)
                problems += self._teacher_captures[t_index].missing_problems()
        if problems:
            names = self._student_capture.available
            self.detach()
            raise ModelError("IntermediateLayersKnowledgeDistillationLoss: layer mappings do not "
                             "resolve:\n  " + "\n  ".join(problems) +
                             f"\n  (student layers: {', '.join(names[:40])}"
                             f"{' ...' if len(names) > 40 else ''})")

    def _captures(self):
        return [c for c in [self._student_capture, *self._teacher_captures.values()]
                if c is not None]

    def detach(self):
        for capture in self._captures():
            capture.remove()
        self._student_capture = None
        self._teacher_captures = {}

    def clear_features(self):
        self._cached_teacher_features = None
        for capture in self._captures():
            capture.clear()

    # The teacher cache (docs/teacher_cache.md) stores the teachers' selected features per
    # sample and hands them back instead of running the teachers.
    def teacher_features(self):
        """The teachers' feature of every mapping in this step, after its output process."""
        return [self._teacher_feature(i, pair) for i, pair in enumerate(self.mappings)]

    def use_teacher_features(self, features):
        """Serve this step's teacher features (one per mapping) from the cache."""
        self._cached_teacher_features = list(features)

    def teacher_features_key(self):
        """What the cached features depend on besides the teachers' weights."""
        return repr([(pair.teacher.teacher, pair.teacher.label()) for pair in self.mappings])

    @property
    def needs_preparation(self):
        return len(self.matchers) != len(self.mappings)

    def _pair_features(self, i, pair):
        """The (student, teacher) features of mapping ``i`` recorded in this step."""
        where = f"layer_mappings[{i}]"
        if self._student_capture is None:
            raise ModelError(f"{type(self).__name__}: not attached to the models; call "
                             f"distiller.on_train_begin() first")
        s = self.select(self._student_capture.get(pair.student.layer), pair.student.process,
                        f"{where} student '{pair.student.label()}'")
        return s, self._teacher_feature(i, pair)

    def _teacher_feature(self, i, pair):
        if self._cached_teacher_features is not None:
            return self._cached_teacher_features[i]
        capture = self._teacher_captures[self._teacher_index[i]]
        return self.select(capture.get(pair.teacher.layer), pair.teacher.process,
                           f"layer_mappings[{i}] teacher '{pair.teacher.label()}'")

    def _feature_function(self, feature_losses, loss_type):
        """The backend's function of a feature loss type, RKD's weights bound."""
        fn = feature_losses[loss_type]
        if loss_type == "RKD":
            return functools.partial(fn, distance_weight=self.rkd_weights[0],
                                     angle_weight=self.rkd_weights[1])
        return fn

    def _matchers_for(self, shapes_of, build):
        """One matcher per mapping from ``shapes_of(i, pair)``; every failure in one error."""
        problems, matchers = [], []
        for i, pair in enumerate(self.mappings):
            where = f"layer_mappings[{i}] ({pair.student.label()} -> {pair.teacher.label()})"
            try:
                s_shape, t_shape, *rest = shapes_of(i, pair)
                if self.loss_types[i] in RELATION_FEATURE_TYPES:
                    t_shape = s_shape  # relations are compared, not features: no matcher
                matchers.append(build(i, s_shape, t_shape, *rest, where))
            except ModelError as exc:
                problems.append(str(exc))
        if problems:
            raise ModelError("IntermediateLayersKnowledgeDistillationLoss: features cannot be "
                             "matched:\n  " + "\n  ".join(problems))
        return matchers


class SelfDistillationSpec(FeatureCriterionSpec):
    """Groups of [student_key, teacher_key] pairs, each group with one loss type and weight."""

    yaml_name = "SelfKnowledgeDistillationLoss"

    def _configure(self, layer_mappings, temperature, loss_types, loss_weights,
                   add_origin_loss):
        args = validated_criterion_args(
            self.yaml_name, type(self).__name__, layer_mappings=layer_mappings,
            temperature=temperature, loss_types=loss_types, loss_weights=loss_weights,
            add_origin_loss=add_origin_loss)
        self.groups = args["layer_mappings"]
        count = len(self.groups)
        self.temperature = float(args["temperature"])
        self.loss_types = per_item(args.get("loss_types"), count, "KL")
        self.loss_weights = [float(w) for w in per_item(args.get("loss_weights"), count,
                                                        1.0 / count)]
        self.add_origin_loss = args["add_origin_loss"]

    def _keys(self):
        return [key for group in self.groups for pair in group for key in pair]

    def distillation_loss(self, student_output, teacher_output=None):
        """``sum_g w_g * sum_pairs D_g(student head, deepest head held constant)``.

        The framework class gives ``_fetch(output, key)`` (a tensor by output key or layer),
        ``_constant(t)`` and ``self_losses`` (its ``losses.SELF_LOSSES``: loss type ->
        ``loss(s, t, temperature)``).
        """
        total = 0.0
        try:
            for group, loss_type, weight in zip(self.groups, self.loss_types,
                                                self.loss_weights):
                group_loss = 0.0
                for student_key, teacher_key in group:
                    s = self._fetch(student_output, student_key)
                    t = self._constant(self._fetch(student_output, teacher_key))
                    group_loss = group_loss + self._pair_loss(loss_type, s, t)
                total = total + weight * group_loss
        finally:
            if self._student_capture is not None:
                self._student_capture.clear()
        return total

    def _pair_loss(self, loss_type, s, t):
        return self.self_losses[loss_type](s, t, self.temperature)


def self_distillation_losses(kl, soft_cross_entropy, feature_mse):
    """SelfKnowledgeDistillationLoss's loss types from a backend's functions: KL / CE with
    temperature (and T^2) on logits; L2 / MSE on features, which take no temperature."""
    def feature_term(student, teacher, temperature=1.0):
        return feature_mse(student, teacher)

    return {"KL": kl, "CE": soft_cross_entropy, "L2": feature_term, "MSE": feature_term}


def missing_layer_problems(role, missing, available):
    """One message per layer name ``role`` (a model) does not have, with close names."""
    problems = []
    for name in missing:
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        problems.append(f"{role} has no layer '{name}'.{hint}")
    return problems


def select_output(output, process, where, is_tensor):
    """Apply a layer-output process: None/'' as is, int index, str key/attribute, callable.

    ``is_tensor`` is the framework's test for a tensor: the result must be one.
    """
    if process is None or process == "":
        result = output
    elif callable(process):
        result = process(output)
    elif isinstance(process, int) or (isinstance(process, str) and process.isdigit()):
        index = int(process)
        if not isinstance(output, (tuple, list)):
            raise ModelError(f"{where}: process index {index} needs a tuple/list output, but the "
                             f"layer returned {type(output).__name__}")
        if not -len(output) <= index < len(output):
            raise ModelError(f"{where}: process index {index} is out of range: the layer returned "
                             f"{len(output)} outputs (valid: 0..{len(output) - 1})")
        result = output[index]
    elif isinstance(output, dict):
        if process not in output:
            raise ModelError(f"{where}: process key '{process}' not in the layer's output keys "
                             f"{sorted(output)}")
        result = output[process]
    elif hasattr(output, process):
        result = getattr(output, process)
    else:
        raise ModelError(f"{where}: the layer's output ({type(output).__name__}) has no key or "
                         f"attribute '{process}'")
    if not is_tensor(result):
        if isinstance(result, (tuple, list)) and result and is_tensor(result[0]):
            hint = " (it returns several outputs: pick one with a process index such as 0)"
        else:
            hint = ""
        raise ModelError(f"{where}: expected a tensor after the process, got "
                         f"{type(result).__name__}{hint}")
    return result
