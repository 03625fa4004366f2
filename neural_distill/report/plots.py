"""The report's PNG plots, drawn with matplotlib (an optional extra: ``neural_distill[report]``).

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas directly, never through
pyplot, so making a report inside a notebook or GUI application changes none of its settings.
"""

import io
import math

import numpy as np

MISSING = ("matplotlib is not installed, so the report has no plots. Install it with: "
           "pip install 'neural_distill[report]' (or pip install matplotlib), then run the "
           "report again.")

TEACHER_COLOR = "#1f77b4"
STUDENT_COLOR = "#d62728"


def available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def training_curves(records, metric_name, teacher_value=None):
    """Every logged loss per epoch (left) and the evaluation metric per epoch (right)."""
    epochs = [r for r in records if not r.get("final")]
    loss_keys = [k for k in dict.fromkeys(k for r in epochs for k in r)
                 if "loss" in k and any(_finite(r.get(k)) for r in epochs)]
    figure = _figure(9.0, 3.6)
    losses, metric = figure.subplots(1, 2)
    for key in loss_keys:
        points = [(r["epoch"], r[key]) for r in epochs if _finite(r.get(key))]
        losses.plot(*zip(*points), marker="o", markersize=3, label=key)
    values = [v for key in loss_keys for r in epochs if _finite(v := r.get(key))]
    if values and min(values) > 0 and max(values) / min(values) > 20:
        # The distillation term carries T^2 and can be 100x the student's own loss: on a
        # linear axis every other curve would look flat at zero.
        losses.set_yscale("log")
        losses.set_title("training losses, mean per epoch (log scale)")
    else:
        losses.set_title("training losses, mean per epoch")
    losses.set_xlabel("epoch")
    if loss_keys:
        losses.legend(fontsize=8)
    else:
        losses.text(0.5, 0.5, "no losses logged", ha="center", va="center",
                    transform=losses.transAxes)
    scored = [(r["epoch"], r[metric_name]) for r in records if _finite(r.get(metric_name))]
    if scored:
        metric.plot(*zip(*scored), marker="o", markersize=3, color=STUDENT_COLOR,
                    label="student")
        best = [(r["epoch"], r[metric_name]) for r in records
                if r.get("best") and _finite(r.get(metric_name))]
        if best:
            metric.plot(*best[-1], marker="*", markersize=12, color=STUDENT_COLOR,
                        linestyle="none", label="best student")
    if _finite(teacher_value):
        metric.axhline(teacher_value, color=TEACHER_COLOR, linestyle="--", label="teacher")
    metric.set_title(f"{metric_name} on the evaluation data")
    metric.set_xlabel("epoch")
    if scored or _finite(teacher_value):
        metric.legend(fontsize=8)
    else:
        metric.text(0.5, 0.5, "no evaluation logged", ha="center", va="center",
                    transform=metric.transAxes)
    for axes in (losses, metric):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    return _png(figure)


def reliability(bins_by_model, ece_by_model):
    """Accuracy against confidence per bin for each model (top), share of samples (bottom).

    ``bins_by_model``: {name: (counts, mean_confidence, accuracy)} from
    ``stats.reliability_bins``.
    """
    colors = {"teacher": TEACHER_COLOR, "student": STUDENT_COLOR}
    figure = _figure(5.6, 5.6)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], color="gray", linestyle=":", label="perfectly calibrated")
    count = len(next(iter(bins_by_model.values()))[0])
    width = 1.0 / count
    centers = [(i + 0.5) * width for i in range(count)]
    offset = {"teacher": -width / 4, "student": width / 4}
    for name, (counts, confidence, accuracy) in bins_by_model.items():
        filled = counts > 0
        share = counts / max(counts.sum(), 1)
        # A bin of three samples swings from 0 to 1: a thin line, and marker area by the
        # bin's share of samples, keep it from looking as important as the full bins.
        top.plot(confidence[filled], accuracy[filled], color=colors.get(name), linewidth=1,
                 alpha=0.6)
        top.scatter(confidence[filled], accuracy[filled], s=12 + 300 * share[filled],
                    color=colors.get(name), alpha=0.8, edgecolors="white", clip_on=False,
                    label=f"{name} (ECE {ece_by_model[name]:.3f})")
        bottom.bar([c + offset.get(name, 0.0) for c in centers], share, width=width / 2,
                   color=colors.get(name), label=name)
    # Confidence cannot fall below 1/classes: start the axis at the first filled bin.
    first = min(int(np.argmax(c > 0)) for c, _, _ in bins_by_model.values())
    top.set_xlim(first * width, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy")
    top.set_title("reliability: accuracy vs confidence (top-1)\nmarker area: share of samples",
                  fontsize=10)
    top.legend(fontsize=8, loc="upper left", markerscale=0.5)
    top.grid(alpha=0.3)
    bottom.set_xlabel("confidence (max softmax probability)")
    bottom.set_ylabel("share of samples")
    # Most samples sit in the last bin of a good classifier: a log axis shows the rest.
    bottom.set_yscale("log")
    bottom.grid(alpha=0.3)
    return _png(figure)
