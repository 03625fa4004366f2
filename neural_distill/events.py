"""The training events a distillation experiment reacts to, and the hooks generated from them.

Each value is the name of a hook method on :class:`neural_distill.Distillation` (and on the
compression manager of :func:`neural_distill.training.prepare_compression`). The built-in loop
fires them in this order; a user's own loop should do the same::

    on_train_begin(dataloader)
    for epoch in epochs:
        on_epoch_begin(epoch)
        for batch_id, (inputs, labels) in enumerate(dataloader):
            on_step_begin(batch_id)
            outputs = student(inputs)
            loss = student_loss(outputs, labels)
            loss = on_after_compute_loss(inputs, outputs, loss, labels=labels)  # + teacher's term
            loss.backward()
            on_before_optimizer_step()
            optimizer.step()
            on_after_optimizer_step()
            on_step_end()
        on_epoch_end()        # evaluates the student every `frequency` epochs, keeps the best
    on_train_end()

The hook methods are not written by hand: :class:`Hooks` (every hook does nothing) and
:class:`Dispatcher` (every hook fans out to a list of targets in order) get one method per
member of :class:`Event`, with the member's parameters. Adding a hook is adding a member.
"""

import inspect
from enum import Enum


class Event(str, Enum):
    """A hook: its name (the value), its parameters, and the argument a hook's result replaces.

    ``chain`` names the argument that each target's return value replaces for the next target
    (``on_after_compute_loss`` passes the loss along); the last value is the hook's result.
    """

    def __new__(cls, value, params=(), chain=None):
        member = str.__new__(cls, value)
        member._value_ = value
        member.params = params
        member.chain = chain
        return member

    TRAIN_BEGIN = "on_train_begin", (("dataloader", None),)
    EPOCH_BEGIN = "on_epoch_begin", (("epoch",),)
    STEP_BEGIN = "on_step_begin", (("batch_id",),)
    AFTER_COMPUTE_LOSS = ("on_after_compute_loss",
                          (("input",), ("student_output",), ("student_loss",),
                           ("teacher_output", None), ("labels", None)), "student_loss")
    BEFORE_OPTIMIZER_STEP = "on_before_optimizer_step"
    AFTER_OPTIMIZER_STEP = "on_after_optimizer_step"
    STEP_END = "on_step_end"
    EPOCH_END = "on_epoch_end"
    TRAIN_END = "on_train_end"

    @property
    def signature(self):
        """The hook's signature, ``self`` first."""
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        params = [inspect.Parameter("self", kind)]
        for spec in self.params:
            default = spec[1] if len(spec) > 1 else inspect.Parameter.empty
            params.append(inspect.Parameter(spec[0], kind, default=default))
        return inspect.Signature(params)

    @property
    def chain_index(self):
        names = [spec[0] for spec in self.params]
        return None if self.chain is None else names.index(self.chain)


HOOK_NAMES = tuple(event.value for event in Event)

# Keyword spellings a hook also takes: the reference documents call the first argument of
# on_after_compute_loss ``input``, DESIGN's wave-3 contract ``inputs``; both name it.
KEYWORD_ALIASES = {Event.AFTER_COMPUTE_LOSS: {"inputs": "input"}}


def _hook_method(event):
    signature = event.signature
    # Hooks run several times a step: plain positional calls skip Signature.bind (tens of
    # microseconds a step); keywords, and wrong calls (for bind's error), take it.
    defaults = tuple(spec[1] for spec in event.params if len(spec) > 1)
    most = len(event.params)
    least = most - len(defaults)
    aliases = KEYWORD_ALIASES.get(event, {})

    def hook(self, *args, **kwargs):
        if not kwargs and least <= len(args) <= most:
            return self.dispatch(event, *args, *defaults[len(args) - least:])
        for alias, name in aliases.items():
            if alias in kwargs:
                if name in kwargs:
                    raise TypeError(f"{event.value}() got both '{name}' and '{alias}' (the "
                                    f"same argument): pass one of them")
                kwargs[name] = kwargs.pop(alias)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        return self.dispatch(event, *bound.args[1:])

    hook.__name__ = hook.__qualname__ = event.value
    hook.__signature__ = signature
    hook.__event__ = event
    hook.__doc__ = f"Fires :attr:`Event.{event.name}` (see ``neural_distill.events``)."
    return hook


def is_generated_hook(function):
    """Whether ``function`` is a hook made by :func:`install_hooks` (not a user's override)."""
    return getattr(function, "__event__", None) is not None


def install_hooks(cls):
    """Give ``cls`` one method per event, in event order, each calling ``self.dispatch``."""
    for event in Event:
        inherited = getattr(cls, event.value, None)
        # A hook written by hand, here or in a base class, is kept.
        if event.value not in vars(cls) and (inherited is None or is_generated_hook(inherited)):
            setattr(cls, event.value, _hook_method(event))
    return cls


@install_hooks
class Hooks:
    """Every hook, doing nothing (a chained hook returns the argument it would pass on)."""

    def __init_subclass__(cls, **kwargs):
        # Each class has the hooks itself, in event order (what ``vars(cls)`` shows).
        super().__init_subclass__(**kwargs)
        install_hooks(cls)

    def dispatch(self, event, *args):
        index = event.chain_index
        return None if index is None else args[index]


@install_hooks
class Dispatcher:
    """Every hook calls the same hook of each of ``hook_targets()``, in order.

    For a chained event (``Event.chain``) each target receives the previous target's result in
    place of that argument, and the last result is returned.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        install_hooks(cls)

    def hook_targets(self):
        raise NotImplementedError

    def dispatch(self, event, *args):
        index = event.chain_index
        result = None if index is None else args[index]
        for target in self.hook_targets():
            if index is not None:
                args = args[:index] + (result,) + args[index + 1:]
            value = getattr(target, event.value)(*args)
            if index is not None:
                result = value
        return result
