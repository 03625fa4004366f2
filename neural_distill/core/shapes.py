"""Student and teacher outputs that differ only by leading size-1 axes.

INC's models often squeeze a batch of one (``(2,)``) while a user loop unsqueezes the student's
output (``(1, 2)``); INC broadcast them. Those shapes hold the same values in the same order,
so the teacher's output is reshaped to the student's, with one warning per criterion. Any other
difference (another class count, a transposed output) stays an error: reshaping it would
silently compare the wrong numbers.
"""

from neural_distill.core.logging_utils import warn_once


def _strip_leading_ones(shape):
    shape = list(shape)
    while shape and shape[0] == 1:
        shape.pop(0)
    return shape


def same_but_leading_ones(student_shape, teacher_shape):
    """True when the shapes differ and are equal once their leading 1-axes are dropped.

    A None (unknown) dimension matches any dimension, as in a Keras symbolic shape.
    """
    student_shape, teacher_shape = tuple(student_shape), tuple(teacher_shape)
    if student_shape == teacher_shape:
        return False
    s, t = _strip_leading_ones(student_shape), _strip_leading_ones(teacher_shape)
    return len(s) == len(t) and all(a is None or b is None or a == b for a, b in zip(s, t))


def warn_reshaped(owner, student_shape, teacher_shape):
    warn_once(owner, "leading size-1 axes",
              f"student output shape {tuple(student_shape)} and teacher output shape "
              f"{tuple(teacher_shape)} differ only by leading axes of size 1: the teacher's "
              f"output is reshaped to the student's. Squeeze or unsqueeze one of them in your "
              f"loop to silence this warning.")


__all__ = ["same_but_leading_ones", "warn_reshaped"]
