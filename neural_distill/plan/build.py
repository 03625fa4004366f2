"""``neural-distill plan CONFIG``: what a run will need, measured before it starts.

The models are built from the config's factories (no training); one training step is taken
on the plan's own copies to measure its memory, and three more are timed. Figures:

- parameters and bytes (in memory, on disk) of teacher and student;
- a training step's memory: weights (both models), gradients and optimizer state (the
  student's), and the activations and temporaries of one batch's step at its peak, measured
  with the framework's allocation profiler;
- the teacher's share of a step's time, over 3 batches;
- the teacher cache's size for the training set at the configured compression;
- a recommendation: cache the teacher or not, and how many threads, with the reasons.
"""

import os

from neural_distill.criterion.registry import needs_teacher
from neural_distill.criterion.specs import criterion_name_and_args
from neural_distill.errors import ConfigError
from neural_distill.core.backends import backend
from neural_distill.core.process import cpu_threads
from neural_distill.report.runs import build_model

# Above this share of a step's time in the teacher, skipping it in later epochs pays off.
TEACHER_SHARE_TO_CACHE = 0.25


def _framework(model):
    from neural_distill.adapters import adapter_for_model

    adapter = adapter_for_model(model, "model.student")
    if not backend(adapter.name).has_module("plan"):
        raise ConfigError(f"neural-distill plan measures PyTorch models; this student is a "
                          f"{backend(adapter.name).pretty} model. Use `neural-distill run` with "
                          f"a short distillation.train.iteration to measure a Keras run")
    return adapter


def _train_loader(config, adapter, source, base_dir):
    loader = config.distillation.train.get("dataloader")
    where = f"{source}: distillation.train.dataloader"
    if not loader or "dataset" not in loader:
        raise ConfigError(f"{where}.dataset: missing; the plan measures a training step on "
                          f"the training data named here")
    return adapter.build_dataloader(loader, where, seed=config.tuning.random_seed,
                                    base_dir=base_dir)


def _samples(loader):
    try:
        return len(loader.dataset)
    except (AttributeError, TypeError):
        return None


def _epochs(train):
    if train.get("iteration"):
        return None
    if train.get("end_epoch") is not None:
        return int(train["end_epoch"]) - int(train.get("start_epoch") or 0) + 1
    return int(train.get("epoch") or 1)


def _cache(config, criterion, output_shape, samples):
    """The teacher cache's bytes per sample and for the training set, or why there is none."""
    from neural_distill.criterion.registry import entry
    from neural_distill.teacher_cache.options import TeacherCacheOptions
    from neural_distill.teacher_cache.run_cache import codec_for
    from neural_distill.teacher_cache.token_codec import TokenTopKCodec

    settings = dict(config.distillation.train.get("teacher_cache") or {})
    name, _ = criterion_name_and_args(config.distillation.train.criterion)
    keeps = getattr(entry(name).spec, "teacher_cache", None)
    if keeps != "logits" or output_shape is None:
        return {"supported": False, "compression": settings.get("compression", "none"),
                "reason": f"the teacher cache does not serve {name} here (it keeps logits "
                          f"for logit criteria)"}
    codec = codec_for(TeacherCacheOptions.from_section(settings, "."), criterion)
    per_token = None
    if criterion.per_token and len(output_shape) == 3:
        # A language model: one record per counted token (teacher_cache/token_records.py);
        # at most every position counts, so this is an upper bound.
        per_token = (TokenTopKCodec(codec.k, codec.temperature, output_shape[2]).token_bytes
                     if codec.name == "topk" else codec.bytes_per_sample(output_shape[2:]))
        per_sample = per_token * int(output_shape[1])
    else:
        per_sample = codec.bytes_per_sample(tuple(output_shape[1:]))
    return {"supported": True, "compression": codec.name, "bytes_per_sample": per_sample,
            "bytes_per_token": per_token,
            "samples": samples, "bytes": per_sample * samples if samples else None,
            "max_bytes": settings.get("max_bytes", 1 << 30), "enabled": settings.get("enabled")}


def _recommend(figures, cache, epochs, threads, configured):
    """(cache the teacher: bool, threads: int, reasons: list of str)."""
    reasons = []
    share = figures["teacher_share"]
    cache_it = False
    if not cache["supported"]:
        reasons.append(f"do not cache the teacher: {cache['reason']}")
    elif epochs is not None and epochs < 2:
        reasons.append("do not cache the teacher: the run has one epoch, so the teacher runs "
                       "once per sample anyway")
    elif share < TEACHER_SHARE_TO_CACHE:
        reasons.append(f"do not cache the teacher: it takes {share:.0%} of a step's time, "
                       f"below {TEACHER_SHARE_TO_CACHE:.0%}; a cache would save little")
    elif cache["bytes"] is not None and cache["bytes"] > cache["max_bytes"]:
        reasons.append(f"cache the teacher offline (neural-distill cache-teacher): it takes "
                       f"{share:.0%} of a step, but its outputs ({_size(cache['bytes'])}) "
                       f"exceed teacher_cache.max_bytes ({_size(cache['max_bytes'])}) in memory;"
                       f" or use compression: float16 / topk")
        cache_it = True
    else:
        saved = f", so later epochs could run up to {1 / max(1 - share, 1e-9):.1f}x faster"
        reasons.append(f"cache the teacher (teacher_cache.enabled: true): it takes {share:.0%} "
                       f"of a step's time{saved}; its outputs for the training set take "
                       f"{_size(cache['bytes']) if cache['bytes'] else 'an unknown size'} "
                       f"({cache['compression']}). Only if every epoch sees the same samples "
                       f"(no random augmentation)")
        cache_it = True
    cores = os.cpu_count() or 1
    if configured not in (None, "auto"):
        reasons.append(f"threads: {threads} (as configured; this machine has {cores} cores)")
    else:
        reasons.append(f"threads: {threads} (half of this machine's {cores} cores, as "
                       f"threads: auto chooses; small models often run fastest on 1 thread "
                       f"on a shared machine)")
    return cache_it, threads, reasons


def _size(count):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


def make_plan(config, source, base_dir=None):
    """The plan of a validated config (a dict from ``config.loader``); ``source`` names the
    file in messages and ``base_dir`` is where its relative paths start."""
    base_dir = base_dir or os.path.dirname(os.path.abspath(source))
    student = build_model(config, "student", source, base_dir)
    teacher = (build_model(config, "teacher", source, base_dir)
               if config.model.get("teacher") is not None else None)
    adapter = _framework(student)
    measure = backend(adapter.name).module("plan")
    device = adapter.resolve_device(config.get("device") or "cpu", f"{source}: device")
    for model in (student, teacher):
        if model is not None:
            adapter.move_to_device(model, device)
    name, args = criterion_name_and_args(config.distillation.train.criterion)
    criterion = adapter.build_criterion(name, args)
    adapter.move_to_device(criterion, device)
    if teacher is None and needs_teacher(criterion):
        raise ConfigError(f"{source}: model.teacher: missing; {name} needs a teacher, and the "
                          f"plan measures the step a run would take with it. Name the "
                          f"teacher's factory under model.teacher")
    loader = _train_loader(config, adapter, source, base_dir)
    train = config.distillation.train
    models = {"student": measure.model_figures(student)}
    if teacher is not None:
        models["teacher"] = measure.model_figures(teacher)
    measured = measure.measure(teacher, student, loader, criterion, train.optimizer)
    memory = {key: measured[key] for key in ("weights", "gradients", "optimizer_state",
                                             "activations")}
    memory["total"] = sum(memory.values())
    share = measured["teacher_seconds"] / measured["step_seconds"] if teacher else 0.0
    samples = _samples(loader)
    cache = _cache(config, criterion, measured["teacher_output_shape"], samples)
    threads = cpu_threads(config.get("threads") or "auto")
    epochs = _epochs(train)
    cache_it, threads, reasons = _recommend({"teacher_share": share}, cache, epochs, threads,
                                            config.get("threads"))
    return {"config": source, "framework": adapter.name, "device": str(device),
            "models": models,
            "batch_size": measured["batch_size"], "memory": memory,
            "time": {"step_s": measured["step_seconds"], "teacher_s": measured["teacher_seconds"],
                     "teacher_share": share, "timed_batches": measured["timed_batches"]},
            "training_samples": samples, "epochs": epochs, "teacher_cache": cache,
            "recommendation": {"cache_teacher": cache_it, "threads": threads,
                               "reasons": reasons}}


def plan_lines(plan):
    """The printed plan."""
    lines = [f"{'':<34}{'teacher':>14}{'student':>14}"]
    models = plan["models"]
    for key, label in (("parameters", "parameters"), ("bytes_in_memory", "bytes in memory"),
                       ("bytes_on_disk", "bytes on disk")):
        teacher = f"{models['teacher'][key]:,}" if "teacher" in models else "-"
        lines.append(f"{label:<34}{teacher:>14}{models['student'][key]:>14,}")
    memory = plan["memory"]
    lines.append(f"training step memory on {plan['device']} (batch {plan['batch_size']}): "
                 f"{_size(memory['total'])}")
    for key, label in (("weights", "weights (teacher and student)"),
                       ("gradients", "gradients (student)"),
                       ("optimizer_state", "optimizer state"),
                       ("activations", "activations and temporaries, measured")):
        lines.append(f"  {label:<40}{_size(memory[key]):>12}")
    timing = plan["time"]
    lines.append(f"step time: {timing['step_s'] * 1000:.3g} ms, teacher "
                 f"{timing['teacher_s'] * 1000:.3g} ms ({timing['teacher_share']:.0%}), the "
                 f"median step of {timing['timed_batches']} batches")
    cache = plan["teacher_cache"]
    if cache["supported"]:
        total = _size(cache["bytes"]) if cache["bytes"] is not None else "unknown (no len)"
        per_token = cache.get("bytes_per_token")
        each = (f"at most {cache['bytes_per_sample']:,} bytes per sample ({per_token:,} per "
                f"counted token)" if per_token else f"{cache['bytes_per_sample']:,} bytes per "
                f"sample")
        lines.append(f"teacher cache ({cache['compression']}): {each} x "
                     f"{cache['samples'] or '?'} samples = {total}")
    else:
        lines.append(f"teacher cache: none ({cache['reason']})")
    lines += [f"recommendation: {reason}" for reason in plan["recommendation"]["reasons"]]
    return lines
