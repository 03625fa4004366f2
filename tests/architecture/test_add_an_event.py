"""The recipe "add an event" (issue 20): one new ``Event`` member, and every object that fans
hooks out (or receives them) gets the new hook and passes it on, with no other edit.

The package's ``events.py`` is loaded in a fresh interpreter with two members added: one with
a parameter that no integration knows (``on_sample_seen``), one parameterless member named like
a Hugging Face callback event (``on_substep_end``). The script then drives each hook-fanning
object with recorders as targets and prints what each target received.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent('''
    import contextlib, json, re, sys, types
    from pathlib import Path

    root = Path(sys.argv[1])
    path = root / "neural_distill" / "events.py"
    source = path.read_text(encoding="utf-8")
    last = re.search(r"^    TRAIN_END = .*$", source, re.M)
    assert last, "events.py: the TRAIN_END member line was not found"
    added = ('\\n    SAMPLE_SEEN = "on_sample_seen", (("sample",),)'
             '\\n    SUBSTEP_END = "on_substep_end"')
    source = source[:last.end()] + added + source[last.end():]
    module = types.ModuleType("neural_distill.events")
    module.__file__ = str(path)
    sys.modules["neural_distill.events"] = module
    exec(compile(source, str(path), "exec"), module.__dict__)

    import torch
    import neural_distill
    from neural_distill.events import Event, Hooks, is_generated_hook
    setattr(neural_distill, "events", module)
    assert neural_distill.Event is module.Event  # the package runs on the patched enum
    SAMPLE, SUBSTEP, LOSS = Event.SAMPLE_SEEN, Event.SUBSTEP_END, Event.AFTER_COMPUTE_LOSS
    report = {}

    class Recorder(Hooks):
        def __init__(self, name):
            self.name, self.got = name, []

        def dispatch(self, event, *args):
            self.got.append([event.value, list(map(repr, args))])
            if event is LOSS:  # each target adds one: the loss must go through all of them
                return args[event.chain_index] + 1
            return Hooks.dispatch(self, event, *args)

    def received(*recorders):
        return {r.name: r.got for r in recorders}

    from neural_distill import Distillation
    from neural_distill.run.lifecycle import RunLifecycle
    from neural_distill.training import (Callbacks, CompressionManager, _DistillationPart,
                                         _Part)
    from neural_distill.trainer import Trainer
    from neural_distill.trainer.dispatch import TrainerHooks
    from neural_distill.adapters.torch.quantization.deferred import PendingParts
    classes = [Distillation, CompressionManager, Callbacks, _DistillationPart, _Part,
               PendingParts, TrainerHooks]
    report["generated"] = {c.__name__: [is_generated_hook(getattr(c, e.value, None))
                                        for e in (SAMPLE, SUBSTEP)] for c in classes}

    # CompressionManager and its callbacks: every part, in order, the loss chained.
    a, b = Recorder("a"), Recorder("b")
    manager = object.__new__(CompressionManager)
    manager._parts = [a, b]
    manager.on_sample_seen(7)
    Callbacks(manager).on_substep_end()
    report["manager"] = received(a, b)

    part = object.__new__(_DistillationPart)
    part.distiller = Recorder("distiller")
    part.on_sample_seen(3)
    report["distillation_part"] = received(part.distiller)

    # QAT parts before capture (nothing to fan yet) and after (every part, loss chained).
    class QAT:
        def when_captured(self, callback):
            self.captured = callback

        @contextlib.contextmanager
        def observers_paused(self):
            yield

    qat, c, d = QAT(), Recorder("c"), Recorder("d")
    pending = PendingParts(qat, lambda: [c, d])
    before = pending.on_sample_seen(1)
    qat.captured()
    pending.on_sample_seen(2)
    loss = pending.on_after_compute_loss("x", "out", 10)
    report["pending"] = {"before": repr(before), "loss": loss, "index": LOSS.chain_index,
                         **received(c, d)}

    # The Trainer: its algorithms see the event.
    class Algorithm:
        def __init__(self):
            self.seen = []

        def match(self, event, state):
            return event is SAMPLE

        def apply(self, event, state, logger):
            self.seen.append(event.value)

    algorithm = Algorithm()
    trainer = Trainer(model=torch.nn.Linear(2, 2), max_duration="1ba", progress_bar=False,
                      train_dataloader=[(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))],
                      algorithms=[algorithm])
    TrainerHooks(trainer).on_sample_seen(4)
    report["trainer"] = algorithm.seen

    # The experiment: its hooks reach RunLifecycle.dispatch, which accepts any event.
    calls = []
    lifecycle = object.__new__(RunLifecycle)
    lifecycle.started, lifecycle.ended = True, False
    lifecycle.start = lambda *args: calls.append("start")  # no models here
    report["lifecycle"] = [repr(lifecycle.dispatch(SAMPLE, 5)), calls]

    try:
        import transformers  # noqa: F401
    except ImportError:
        report["hf"] = None
    else:
        from neural_distill.integrations.hf_callback import DistillationCallback

        class Manager:
            def __init__(self):
                self.got = []

            def dispatch(self, event, *args):
                self.got.append([event.value, list(args)])

        callback = DistillationCallback(Manager())
        callback.on_substep_end(None, types.SimpleNamespace(global_step=1), None)
        report["hf"] = {"got": callback.manager.got,
                        "sample_seen": hasattr(DistillationCallback, "on_sample_seen")}
    print("REPORT " + json.dumps(report))
''')


def test_a_new_event_member_reaches_every_hook_fanning_object(tmp_path):
    script = tmp_path / "added_event.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
               OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(script), str(ROOT)], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT "):])

    assert all(flags == [True, True] for flags in report["generated"].values()), \
        report["generated"]
    both = {"a": [["on_sample_seen", ["7"]], ["on_substep_end", []]],
            "b": [["on_sample_seen", ["7"]], ["on_substep_end", []]]}
    assert report["manager"] == both
    assert report["distillation_part"] == {"distiller": [["on_sample_seen", ["3"]]]}
    pending = report["pending"]
    assert pending["before"] == "None"  # not replayed: nothing to do before the first batch
    assert pending["loss"] == 12  # 10, then +1 by each part: chained, not read from args[2]
    for name in ("c", "d"):
        assert pending[name][0] == ["on_sample_seen", ["2"]]
        assert pending[name][1][0] == "on_after_compute_loss"
    index = pending["index"]
    assert pending["c"][1][1][index] == "10" and pending["d"][1][1][index] == "11"
    assert report["trainer"] == ["on_sample_seen"]
    assert report["lifecycle"] == ["None", ["start"]]  # any hook may start the run
    if report["hf"] is not None:
        assert report["hf"] == {"got": [["on_substep_end", []]], "sample_seen": False}


def test_no_hook_is_written_by_hand_outside_the_handlers():
    """Hook methods named like events exist only where an object *handles* an event (the
    experiment's RunLifecycle, a part's own behaviour, the Hugging Face callback's events);
    nothing fans hooks out by hand: no module but events.py loops over targets by hook name."""
    hooks = "|".join(re.escape(name) for name in (
        "on_train_begin", "on_epoch_begin", "on_step_begin", "on_after_compute_loss",
        "on_before_optimizer_step", "on_after_optimizer_step", "on_step_end", "on_epoch_end",
        "on_train_end"))
    allowed = {"neural_distill/run/lifecycle.py", "neural_distill/training.py",
               "neural_distill/integrations/hf_callback.py",
               "neural_distill/adapters/torch/pruning.py"}  # the Pruner handles its events
    written = set()
    for path in (ROOT / "neural_distill").rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if re.search(rf"^\s+def ({hooks})\(", path.read_text(encoding="utf-8"), re.M):
            written.add(relative)
    assert written <= allowed, sorted(written - allowed)
