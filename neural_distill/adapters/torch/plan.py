"""What ``neural-distill plan`` measures on PyTorch models: sizes, the memory of a training step
and the teacher's share of its time, on a throwaway copy of nothing but the plan's own models.

The models are the ones the plan built from the config's factories, so the optimizer steps
taken here change nobody's weights; the teacher only runs forward, in eval mode, without
gradients (it is never modified).
"""

import time

import torch

from neural_distill.core import batches
from neural_distill.adapters.torch.adapter import ADAPTER
from neural_distill.adapters.torch.optim import build_optimizer
from neural_distill.adapters.torch.outputs import call_model, logits_of, to_device
from neural_distill.adapters.torch.report import _EvalMode, bytes_on_disk, parameter_count


def _bytes(tensors):
    seen, total = set(), 0
    for tensor in tensors:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:  # tied weights (GPT-2's embedding and head) once
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def model_figures(model):
    """Parameters, bytes in memory (parameters and buffers) and bytes on disk."""
    tensors = list(model.parameters()) + list(model.buffers())
    return {"parameters": parameter_count(model), "bytes_in_memory": _bytes(tensors),
            "bytes_on_disk": bytes_on_disk(model)}


def _optimizer_state_bytes(optimizer):
    return _bytes(value for state in optimizer.state.values() for value in state.values()
                  if isinstance(value, torch.Tensor) and value.dim() > 0)


class _Step:
    """One training step as the built-in loop takes it: teacher forward (no gradient), student
    forward, the configured criterion, backward, optimizer step, gradients set to None."""

    def __init__(self, teacher, student, criterion, optimizer):
        self.teacher, self.student = teacher, student
        self.criterion, self.optimizer = criterion, optimizer
        self.teacher_seconds = 0.0

    def __call__(self, batch):
        inputs, labels = ADAPTER.split_batch(batch, "distillation.train.dataloader")
        device = ADAPTER.model_device(self.student)
        inputs = to_device(inputs, device)
        labels = None if labels is None else to_device(torch.as_tensor(labels), device)
        teacher_output = None
        if self.teacher is not None:
            start = time.perf_counter()
            with _EvalMode(self.teacher), torch.no_grad():
                teacher_output = call_model(self.teacher, inputs)
            _wait(device)
            self.teacher_seconds += time.perf_counter() - start
        student_output = call_model(self.student, inputs)
        loss = self.criterion(student_output, teacher_output, labels)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        _wait(device)
        return teacher_output


def _wait(device):
    """GPU work is asynchronous: a timer stops only after it finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _profiled_peak(step, batch, device):
    """Peak of the bytes the step allocates on ``device`` above what lives before it (torch's
    profiler sees every allocation and free of the c10 allocators, in order)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities, profile_memory=True) as prof:
        step(batch)
    wanted = str(device.type).lower()
    # On a GPU the step's host allocations (the batch, Python-side tensors) are another pool.
    records = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
               and str(getattr(e, "device_type", lambda: wanted)()).lower().endswith(wanted)]
    records.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for record in records:
        current += record.nbytes()
        peak = max(peak, current)
    return peak


def _train_batches(loader, count):
    taken = []
    for batch in loader:
        taken.append(batch)
        if len(taken) == count:
            break
    return taken


def measure(teacher, student, loader, criterion, optimizer_config, timed_batches=3):
    """Sizes of both models, a step's memory and the teacher's share of the step time.

    The first batch's step is a warm-up (it creates the optimizer state, as the first step of
    a run does); the memory is profiled on the second step, the steady state every later step
    repeats; ``timed_batches`` more steps are timed.
    """
    taken = _train_batches(loader, 2 + timed_batches)
    if not taken:
        from neural_distill.errors import DataError

        raise DataError("distillation.train.dataloader: no batches; the plan measures a "
                        "training step on them")
    teachers = [teacher] if teacher is not None else []
    # As a run starts: feature criteria hook the mapped layers and build their matchers
    # from one forward pass, so the matchers' weights and state are counted too.
    criterion.attach(student, teachers, None)
    ADAPTER.dry_run(student, teachers, taken[0], criterion)
    student.train()
    params = [p for p in student.parameters() if p.requires_grad]
    params += [p for p in criterion.parameters() if p.requires_grad]
    optimizer = build_optimizer(optimizer_config, params)
    step = _Step(teacher, student, criterion, optimizer)
    teacher_output = step(taken[0])
    peak = _profiled_peak(step, taken[min(1, len(taken) - 1)], ADAPTER.model_device(student))
    timed = taken[2:] or taken[:1]
    steps, teachers_s = [], []
    for batch in timed:
        step.teacher_seconds = 0.0
        start = time.perf_counter()
        step(batch)
        steps.append(time.perf_counter() - start)
        teachers_s.append(step.teacher_seconds)
    # The median step: on a shared machine one step in three may be preempted.
    middle = sorted(range(len(steps)), key=steps.__getitem__)[len(steps) // 2]
    criterion.detach()
    gradients = _bytes(params)
    first_inputs = batches.first_inputs(ADAPTER, [taken[0]], "distillation.train.dataloader")
    owned = list(student.parameters()) + list(student.buffers())
    owned += list(criterion.parameters())  # feature matchers
    return {
        "weights": _bytes(owned) + (_bytes(list(teacher.parameters()) + list(teacher.buffers()))
                                    if teacher is not None else 0),
        "gradients": gradients,
        "optimizer_state": _optimizer_state_bytes(optimizer),
        # What the step allocates at its peak beyond the gradients it leaves behind.
        "activations": max(peak - gradients, 0),
        "step_peak": peak,
        "batch_size": _batch_size(first_inputs),
        "timed_batches": len(timed),
        "step_seconds": steps[middle],
        "teacher_seconds": teachers_s[middle],
        "teacher_output_shape": (list(logits_of(teacher_output, "teacher output").shape)
                                 if teacher_output is not None else None),
    }


def _batch_size(inputs):
    sizes = []
    batches.map_inputs(lambda t: sizes.append(int(torch.as_tensor(t).shape[0])) or t, inputs)
    return sizes[0] if sizes else None
