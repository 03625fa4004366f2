"""The teacher-vs-student report of a run: figures, plots, ``report.html``, a printed table."""

import copy
import json
import os

from neural_distill.core.backends import backend_module
from neural_distill.config.loader import validate
from neural_distill.errors import ModelError
from neural_distill.metrics import Metric, build_metric
from neural_distill.report import gate, html, plots, stats, tokens
from neural_distill.report.runs import LoadedRun, read_records



class Report(dict):
    """The figures of a report (a dict), with ``table`` (the printed text), ``files`` and
    ``verdicts`` (one dict per requirement given: figure, value, op, bound, passed)."""

    table = ""
    files = ()
    verdicts = ()

    @property
    def passed(self):
        """Whether every requirement holds (True when none was given)."""
        return all(v["passed"] for v in self.verdicts)

    def failures(self):
        """One line per failed requirement: figure, value and bound."""
        return [gate.verdict_line(v, status=False) for v in self.verdicts if not v["passed"]]


def _metric_factory(metric, config):
    """A callable giving a fresh Metric per model: the run's own metric, or top-1 accuracy."""
    if isinstance(metric, Metric) and not metric.reads_results:
        return lambda: copy.deepcopy(metric)
    configured = config.evaluation.get("accuracy", {}).get("metric") if config else None
    if configured:
        from neural_distill.config.schema import METRICS
        from neural_distill.config.nodes import OneOf, Section

        checked = validate({"metric": configured}, "evaluation.accuracy",
                           node=Section({"metric": OneOf(METRICS, "metric")}))
        return lambda: build_metric(checked["metric"])
    return lambda: build_metric({"topk": 1})


def metric_name(config):
    """The name of the metric a report of a run with this (validated) config scores."""
    return _metric_factory(None, config)().name


def _score(make_metric, outputs, labels):
    metric = make_metric()
    metric.reset()
    metric.update(outputs, labels)
    return metric.name, float(metric.result())


def _sources(run_dir, distiller, config_path):
    """(run_dir, framework, student, teacher, eval_dataloader, metric factory, config)."""
    if distiller is not None:
        if distiller.best_model is None or distiller.workspace is None:
            raise ModelError("report(): the distiller has no trained student yet; call "
                             "distiller.fit() first")
        teachers = distiller.teachers
        if not teachers:
            raise ModelError("report(): the distiller has no teacher model to compare with")
        return (distiller.workspace.path, distiller.framework, distiller.best_model,
                teachers[0], distiller.eval_dataloader,
                _metric_factory(distiller.run.metric or distiller.metric,
                                distiller.conf), distiller.conf)
    run = LoadedRun(run_dir, config_path)
    return (run.run_dir, run.framework, run.student, run.teacher, run.eval_dataloader,
            _metric_factory(None, run.config), run.config)


def _sparsity_figures(backend, model):
    """Zero weights and zip-compressed size, for backends that measure them."""
    if not hasattr(backend, "sparsity"):
        return {}
    return {"sparsity": backend.sparsity(model),
            "compressed_bytes": backend.compressed_bytes(model)}


def _fmt(value, kind):
    if kind == "int":
        return f"{value:,}"
    if kind == "ms":
        return f"{value * 1000:.3g}"
    return f"{value:.4f}"


def report(run_dir=None, *, distiller=None, config=None, latency_batch=64, repeats=20,
           bins=15, echo=True, require=None):
    """Evaluate teacher and best student of a run and write its report into the run folder.

    Args:
        run_dir: a run folder (``nd_workspace/run-...``) whose config names model factories
            (``neural-distill run`` writes such folders). Not needed with ``distiller``.
        distiller: a ``Distillation`` after ``fit()``: its models and data in memory are used.
        config: the original config file, when ``run_info.json`` is missing (relative factory
            and data paths start at its folder).
        latency_batch: the larger batch size timed besides batch 1.
        repeats: timed forward passes per model and batch size (the median is reported).
        bins: confidence bins of the calibration figures.
        echo: print the table.
        require: requirements such as ``"agreement>=0.95"`` or ``"top1>=0.98*teacher.top1"``
            (``neural_distill.report.gate``); their verdicts are ``figures["requirements"]``
            and ``figures.passed`` says whether all hold. A malformed one, or one naming no
            figure, raises ``RequirementError`` before any model is evaluated.

    Returns a :class:`Report`: the figures as a dict, ``.table``, ``.files``, ``.verdicts``.
    """
    requirements = gate.parse_all(require)
    if run_dir is None and distiller is None:
        raise ModelError("report(): give a run folder or a distiller")
    run_dir, framework, student, teacher, loader, make_metric, conf = _sources(
        run_dir, distiller, config)
    backend = backend_module(framework, "report")
    if loader is None:
        raise ModelError("report(): no evaluation data. Set distiller.eval_dataloader or name a "
                         "dataset under evaluation.accuracy.dataloader")
    gate.check_names(requirements, make_metric().name, latency_batch)
    t_out, s_out, labels, sequence = tokens.gather(
        backend.batch_outputs(teacher, loader, "teacher"),
        backend.batch_outputs(student, loader, "student"),
        causal_class=tokens.is_causal_lm_class(student) or tokens.is_causal_lm_class(teacher))
    metric_name, t_score = _score(make_metric, t_out, labels)
    _, s_score = _score(make_metric, s_out, labels)
    sample = backend.first_inputs(loader)
    figures = Report(metric=metric_name, teacher={}, student={})
    for role, model, score, out in (("teacher", teacher, t_score, t_out),
                                    ("student", student, s_score, s_out)):
        figures[role] = {
            metric_name: score,
            "ece": stats.expected_calibration_error(out, labels, bins),
            "parameters": backend.parameter_count(model),
            "bytes_on_disk": backend.bytes_on_disk(model),
            # Pruned zeros save disk only once compressed (docs/pruning.md).
            **_sparsity_figures(backend, model),
            "latency_batch_1_s": stats.median_seconds(
                backend.latency(model, backend.take(sample, 1), repeats)),
            f"latency_batch_{latency_batch}_s": stats.median_seconds(
                backend.latency(model, backend.take(sample, latency_batch), repeats)),
        }
    figures["agreement"] = stats.agreement(t_out, s_out)
    figures["mean_kl_teacher_student"] = stats.mean_kl(t_out, s_out)
    per_class = stats.per_class_agreement(t_out, s_out, labels)
    figures["per_class_agreement"] = {str(c): {"samples": n, "agreement": a}
                                      for c, (n, a) in per_class.items()}
    # With a vocabulary of classes, a token id seen once swings from 0 to 1: rank those seen
    # a few times when there are such.
    floor = 5 if sequence and any(n >= 5 for n, _ in per_class.values()) else 1
    figures["worst_classes"] = [{"class": c, "samples": n, "agreement": a}
                                for c, n, a in stats.worst_classes(per_class, 5, floor)]
    figures["min_class_agreement"] = (figures["worst_classes"][0]["agreement"]
                                      if figures["worst_classes"] else float("nan"))
    figures["samples"] = int(len(labels))
    figures["unit"] = "token" if sequence else "sample"
    figures["framework"] = framework
    figures.verdicts = gate.evaluate(requirements, figures)
    if requirements:
        figures["requirements"] = figures.verdicts
        figures["passed"] = figures.passed
    _write(figures, run_dir, conf, latency_batch, bins, t_out, s_out, labels, echo)
    return figures


def _rows(figures, latency_batch):
    t, s, name = figures["teacher"], figures["student"], figures["metric"]
    rows = [(name, _fmt(t[name], "f"), _fmt(s[name], "f")),
            ("expected calibration error", _fmt(t["ece"], "f"), _fmt(s["ece"], "f")),
            ("parameters", _fmt(t["parameters"], "int"), _fmt(s["parameters"], "int")),
            ("bytes on disk", _fmt(t["bytes_on_disk"], "int"), _fmt(s["bytes_on_disk"], "int"))]
    if "sparsity" in t:
        rows += [("weight sparsity", _fmt(t["sparsity"], "f"), _fmt(s["sparsity"], "f")),
                 ("bytes on disk, compressed", _fmt(t["compressed_bytes"], "int"),
                  _fmt(s["compressed_bytes"], "int"))]
    for batch in (1, latency_batch):
        key = f"latency_batch_{batch}_s"
        rows.append((f"latency, batch {batch} (ms, median)", _fmt(t[key], "ms"),
                     _fmt(s[key], "ms")))
    per_token = " (per token)" if figures.get("unit") == "token" else ""
    pairs = [(f"top-1 agreement{per_token}", _fmt(figures["agreement"], "f")),
             (f"mean KL(teacher||student){per_token}",
              _fmt(figures["mean_kl_teacher_student"], "f"))]
    worst = figures.get("worst_classes")
    if worst:
        pairs.append(("worst-agreeing classes", ", ".join(
            f"{w['class']}: {w['agreement']:.2f} (n={w['samples']})" for w in worst)))
    return rows, pairs


def _table(rows, pairs):
    width = max(len(r[0]) for r in rows + pairs) + 2
    lines = [f"{'':<{width}}{'teacher':>14}{'student':>14}"]
    lines += [f"{a:<{width}}{b:>14}{c:>14}" for a, b, c in rows]
    lines += [f"{a:<{width}}{b:>28}" for a, b in pairs]
    return "\n".join(lines)


def _write(figures, run_dir, conf, latency_batch, bins, t_out, s_out, labels, echo):
    rows, pairs = _rows(figures, latency_batch)
    notes, images, files = [], [], []
    if plots.available():
        records = read_records(run_dir)
        name = figures["metric"]
        bins_by_model = {"teacher": stats.reliability_bins(t_out, labels, bins),
                         "student": stats.reliability_bins(s_out, labels, bins)}
        ece = {role: figures[role]["ece"] for role in ("teacher", "student")}
        for filename, caption, png in (
                ("training_curves.png", "training curves",
                 plots.training_curves(records, name, figures["teacher"][name])),
                ("reliability.png", "reliability diagram, teacher vs student",
                 plots.reliability(bins_by_model, ece))):
            path = os.path.join(run_dir, filename)
            with open(path, "wb") as handle:
                handle.write(png)
            images.append((caption, png))
            files.append(path)
    else:
        notes.append(plots.MISSING)
    model_name = conf.model.get("name", "distillation") if conf else "distillation"
    details = [("run folder", run_dir), ("framework", figures["framework"]),
               ("evaluation samples", figures["samples"]),
               ("latency", "median wall time of one forward pass in inference mode, on the "
                           "models' device, after two warm-up passes")]
    details += [("requirement", gate.verdict_line(v)) for v in figures.verdicts]
    page = html.render(f"{model_name}: student vs teacher", rows, pairs, details, images, notes)
    html_path = os.path.join(run_dir, "report.html")
    with open(html_path, "w", encoding="utf-8") as handle:
        handle.write(page)
    json_path = os.path.join(run_dir, "report.json")
    with open(json_path, "w", encoding="utf-8") as handle:
        json.dump({k: v for k, v in figures.items()}, handle, indent=1)
    figures.files = (html_path, json_path, *files)
    figures.table = _table(rows, pairs)
    if figures.verdicts:
        figures.table += "\n" + "\n".join(
            f"requirement: {gate.verdict_line(v)}" for v in figures.verdicts)
    if echo:
        print(figures.table)
        for note in notes:
            print(note)
        print(f"report: {html_path}")
