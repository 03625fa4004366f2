"""The end-of-run summary: the best student's score next to the teacher's, where the files
are, and what to run next."""

import os

from neural_distill.errors import NeuralDistillError
from neural_distill.report.runs import write_run_info


def summary_lines(metric_name, student_value, teacher_value, run_dir, next_command):
    """``key: value`` lines, easy to read and to parse."""
    if student_value is None:
        score = "best student: not evaluated (no evaluation data or metric)"
    else:
        score = f"best student: {metric_name} = {student_value:.4f}"
        if teacher_value is not None:
            score += f" (teacher: {teacher_value:.4f})"
    files = sorted(f for f in os.listdir(run_dir)) if run_dir and os.path.isdir(run_dir) else []
    return [score, f"run folder: {run_dir}", f"files: {', '.join(files)}",
            f"next: {next_command}"]


def _teacher_score(distiller):
    """The teacher's score with the student's metric and data, or None if it has none."""
    metric = distiller.run.metric
    teachers = distiller.teachers
    # With a train_func the user's loop may pass cached teacher outputs: never run the teacher
    # behind their back (distiller.report() compares on request).
    if (distiller.train_func is not None or distiller.eval_func is not None
            or distiller.eval_dataloader is None or metric is None
            or metric.reads_results or len(teachers) != 1 or distiller.best_score is None):
        return None
    adapter, teacher = distiller.adapter, teachers[0]
    # Teacher mode records every submodule's own train/eval flag and restores it exactly.
    state = adapter.enter_teacher_mode(teacher, adapter.model_device(teacher))
    try:
        return float(adapter.evaluate(teacher, distiller.eval_dataloader, metric))
    except (NeuralDistillError, ValueError, TypeError) as exc:
        # The summary must not fail a run that trained well: say why the comparison is absent.
        distiller.logger.warning("the teacher could not be scored for the summary: %s", exc)
        return None
    finally:
        adapter.exit_teacher_mode(teacher, state)


def end_of_run(distiller, next_command=None):
    """Build the summary after ``fit()``; logs it unless ``distiller.log_summary`` is False.

    Stored as ``distiller.summary`` (a string); the teacher's score as
    ``distiller.teacher_score`` (None when it could not be compared).
    """
    run_dir = distiller.workspace.path if distiller.workspace is not None else None
    if not distiller.workspace.writes:  # another process of a multi-process run
        return None
    if run_dir and os.path.isfile(distiller.conf_source):
        # Relative factory and data paths of the config start at its folder: `report` needs it.
        write_run_info(run_dir, distiller.conf_source)
    if next_command is None:
        next_command = (f"neural-distill report {run_dir}" if distiller.conf.model.get("student")
                        else "distiller.report()  (teacher vs student: metric, agreement, "
                             "calibration, size, latency)")
    distiller.teacher_score = _teacher_score(distiller)
    lines = summary_lines(distiller.run.score_name(), distiller.best_score,
                          distiller.teacher_score, run_dir, next_command)
    distiller.summary = "\n".join(lines)
    if getattr(distiller, "log_summary", True):
        distiller.logger.info("run finished\n  %s", "\n  ".join(lines))
    return distiller.summary
