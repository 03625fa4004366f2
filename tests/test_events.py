"""The hook methods equal the events (Composer-style), and the built-in loop fires them in order."""

import inspect

import pytest

from helpers import base_config, make_blobs, tensor_loader, tiny_mlp
from neural_distill import Distillation, Event
from neural_distill.events import HOOK_NAMES

DOCUMENTED_ORDER = [
    "on_train_begin", "on_epoch_begin", "on_step_begin", "on_after_compute_loss",
    "on_before_optimizer_step", "on_after_optimizer_step", "on_step_end", "on_epoch_end",
    "on_train_end",
]


def test_event_values_are_the_documented_hooks_in_order():
    assert [event.value for event in Event] == DOCUMENTED_ORDER
    assert list(HOOK_NAMES) == DOCUMENTED_ORDER
    assert all(isinstance(event, str) and event == event.value for event in Event)


def test_hook_methods_are_exactly_the_events_in_order():
    hooks = [name for name, member in vars(Distillation).items()
             if name.startswith("on_") and callable(member)]
    assert hooks == list(HOOK_NAMES)
    public_on = {name for name in dir(Distillation) if name.startswith("on_")}
    assert public_on == set(HOOK_NAMES)


def test_hook_signatures_follow_the_contract():
    def params(name):
        signature = inspect.signature(getattr(Distillation, name))
        return [(p.name, p.default) for p in list(signature.parameters.values())[1:]]

    empty = inspect.Parameter.empty
    assert params("on_train_begin") == [("dataloader", None)]
    assert params("on_epoch_begin") == [("epoch", empty)]
    assert params("on_step_begin") == [("batch_id", empty)]
    assert params("on_after_compute_loss") == [("input", empty), ("student_output", empty),
                                               ("student_loss", empty),
                                               ("teacher_output", None), ("labels", None)]
    for name in ("on_before_optimizer_step", "on_after_optimizer_step", "on_step_end",
                 "on_epoch_end", "on_train_end"):
        assert params(name) == [], name


def _record_hooks(distiller):
    """Wrap every hook on this instance so each call is logged as (name, args)."""
    calls = []
    for name in HOOK_NAMES:
        original = getattr(distiller, name)

        def wrapper(*args, _name=name, _original=original, **kwargs):
            calls.append((_name, args, kwargs))
            return _original(*args, **kwargs)

        setattr(distiller, name, wrapper)
    return calls


def _expected_sequence(epochs, steps):
    expected = ["on_train_begin"]
    for epoch in epochs:
        expected.append(("on_epoch_begin", epoch))
        for step in range(steps):
            expected += [("on_step_begin", step), "on_after_compute_loss",
                         "on_before_optimizer_step", "on_after_optimizer_step", "on_step_end"]
        expected.append("on_epoch_end")
    expected.append("on_train_end")
    return expected


def _simplify(calls):
    simple = []
    for name, args, _ in calls:
        if name in ("on_epoch_begin", "on_step_begin"):
            simple.append((name, args[0]))
        else:
            simple.append(name)
    return simple


@pytest.mark.parametrize("train_section,epochs", [
    ({"epoch": 2}, [0, 1]),
    ({"start_epoch": 3, "end_epoch": 5}, [3, 4]),
])
def test_builtin_loop_fires_hooks_in_documented_order(workspace, train_section, epochs):
    pytest.importorskip("torch")
    x, y = make_blobs(n=24)  # 3 batches of 8
    config = base_config(workspace)
    del config["distillation"]["train"]["epoch"]
    config["distillation"]["train"].update(train_section)
    distiller = Distillation(config)
    distiller.student_model = tiny_mlp(seed=0)
    distiller.teacher_model = tiny_mlp(seed=1)
    distiller.train_dataloader = tensor_loader(x, y, batch_size=8)
    loader = distiller.train_dataloader
    calls = _record_hooks(distiller)

    distiller.fit()

    assert _simplify(calls) == _expected_sequence(epochs, steps=3)
    # on_train_begin receives the training dataloader; each loss hook gets inputs, outputs
    # and the batch's labels (no teacher_output: the experiment runs the teacher).
    assert calls[0][1][:1] == (loader,) or calls[0][2].get("dataloader") is loader
    loss_calls = [c for c in calls if c[0] == "on_after_compute_loss"]
    assert all(len(args) == 5 and args[0].shape == (8, 8) and args[1].shape == (8, 3)
               and args[3] is None and args[4].shape == (8,)
               for _, args, _ in loss_calls)


def test_user_train_func_gets_on_train_end_once_at_the_end(workspace):
    pytest.importorskip("torch")
    import torch

    x, y = make_blobs(n=16)
    distiller = Distillation(base_config(workspace))
    distiller.student_model = tiny_mlp(seed=0)
    distiller.teacher_model = tiny_mlp(seed=1)
    calls = _record_hooks(distiller)

    def train_func(model):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        distiller.on_train_begin()
        for epoch in range(2):
            distiller.on_epoch_begin(epoch)
            for step, (xb, yb) in enumerate(tensor_loader(x, y, batch_size=8)):
                distiller.on_step_begin(step)
                out = model(xb)
                loss = distiller.on_after_compute_loss(
                    xb, out, torch.nn.functional.cross_entropy(out, yb))
                optimizer.zero_grad()
                loss.backward()
                distiller.on_before_optimizer_step()
                optimizer.step()
                distiller.on_after_optimizer_step()
                distiller.on_step_end()
            distiller.on_epoch_end()

    distiller.train_func = train_func
    distiller.fit()
    assert _simplify(calls) == _expected_sequence([0, 1], steps=2)


def test_hooks_are_safe_without_on_train_begin(workspace):
    torch = pytest.importorskip("torch")
    x, y = make_blobs(n=8)
    distiller = Distillation(base_config(workspace))
    distiller.student_model = tiny_mlp(seed=0)
    distiller.teacher_model = tiny_mlp(seed=1)
    student = distiller.student_model
    xb, yb = torch.as_tensor(x), torch.as_tensor(y)
    out = student(xb)
    loss = distiller.on_after_compute_loss(xb, out, torch.nn.functional.cross_entropy(out, yb))
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.requires_grad
    loss.backward()
    distiller.on_step_end()
    distiller.on_epoch_end()
    distiller.on_train_end()
    assert len(distiller.history) == 1


def test_positional_and_keyword_calls_dispatch_the_same_arguments():
    """Plain positional calls skip Signature.bind (a per-step cost): same arguments, defaults
    filled in, and a wrong call still fails like any Python call."""
    from neural_distill.events import Hooks

    class Recorder(Hooks):
        def dispatch(self, event, *args):
            return event, args

    hooks = Recorder()
    loss = Event.AFTER_COMPUTE_LOSS
    assert hooks.on_after_compute_loss(1, 2, 3) == (loss, (1, 2, 3, None, None))
    assert hooks.on_after_compute_loss(1, 2, 3, 4) == (loss, (1, 2, 3, 4, None))
    assert hooks.on_after_compute_loss(1, 2, 3, 4, 5) == (loss, (1, 2, 3, 4, 5))
    assert hooks.on_after_compute_loss(1, 2, student_loss=3) == (loss, (1, 2, 3, None, None))
    assert hooks.on_after_compute_loss(1, 2, 3, labels=5) == (loss, (1, 2, 3, None, 5))
    assert hooks.on_train_begin() == (Event.TRAIN_BEGIN, (None,))
    assert hooks.on_step_end() == (Event.STEP_END, ())
    for wrong in [lambda: hooks.on_after_compute_loss(1, 2), lambda: hooks.on_step_end(1),
                  lambda: hooks.on_epoch_begin(1, 2), lambda: hooks.on_epoch_begin(epoch=1, x=2)]:
        with pytest.raises(TypeError):
            wrong()


def test_the_loss_hook_takes_inputs_as_well_as_input_by_keyword():
    # The reference documents name the first argument ``input``, DESIGN's wave-3 contract
    # ``inputs``: both keywords reach the same parameter, on every generated hook.
    from neural_distill.events import Hooks

    class Recorder(Hooks):
        def dispatch(self, event, *args):
            self.args = args
            return super().dispatch(event, *args)

    hooks = Recorder()
    assert hooks.on_after_compute_loss(inputs="x", student_output="o", student_loss=3.0,
                                       labels="y") == 3.0
    assert hooks.args == ("x", "o", 3.0, None, "y")
    hooks.on_after_compute_loss(input="x2", student_output="o", student_loss=1.0)
    assert hooks.args[0] == "x2"
    with pytest.raises(TypeError, match="both 'input' and 'inputs'"):
        hooks.on_after_compute_loss(input="a", inputs="b", student_output="o", student_loss=1.0)
