"""What to do when the teacher's and the student's vocabularies differ in size.

Same-family models often pad their vocabularies to different multiples (151,936 vs 152,064
ids): the first ids mean the same tokens, the extra ones are padding. ``vocab_mismatch:
truncate`` compares the common first ids; ``error`` (the default) refuses, since models with
different tokenizers would then be compared id by id, which is meaningless.
"""

from neural_distill.errors import ModelError

VOCAB_MISMATCH = ("error", "truncate")


def mismatch_error(criterion, student_shape, teacher_shape):
    student_size, teacher_size = student_shape[-1], teacher_shape[-1]
    return ModelError(
        f"{criterion}: student output shape {tuple(student_shape)} and teacher output shape "
        f"{tuple(teacher_shape)} disagree: the student's logits have {student_size} classes "
        f"(vocabulary ids) and the teacher's {teacher_size}. A classifier needs both models to "
        f"predict the same classes (check their last layers). Language models sharing a "
        f"tokenizer whose vocabulary is only padded differently: set vocab_mismatch: truncate "
        f"on the criterion (Python: vocab_mismatch='truncate') to compare the first "
        f"{min(student_size, teacher_size)} ids. Models with different tokenizers cannot be "
        f"distilled token by token: their ids do not name the same tokens (not supported).")


def truncation_warning(criterion, student_size, teacher_size, outside_mass):
    return (f"{criterion}: vocab_mismatch: truncate: the student has {student_size} ids and "
            f"the teacher {teacher_size}; both are compared over the first "
            f"{min(student_size, teacher_size)} ids (softmax over them). The teacher put "
            f"{outside_mass:.3g} of its probability (mean over this batch's counted positions) "
            f"on ids outside them. Warned once.")
