"""What to do when the teacher's and the student's vocabularies differ in size.

Same-family models often pad their vocabularies to different multiples (151,936 vs 152,064
ids): the first ids mean the same tokens, the extra ones are padding. ``vocab_mismatch:
truncate`` compares the common first ids; ``error`` (the default) refuses, since models with
different tokenizers would then be compared id by id, which is meaningless.
"""

from neural_distill.errors import ModelError

VOCAB_MISMATCH = ("error", "truncate")


def mismatch_error(criterion, student_size, teacher_size):
    return ModelError(
        f"{criterion}: the student's logits have {student_size} classes (vocabulary ids) and "
        f"the teacher's {teacher_size}. If both models share a tokenizer whose vocabulary is "
        f"only padded differently, set vocab_mismatch: truncate on the criterion (Python: "
        f"vocab_mismatch='truncate') to compare the first {min(student_size, teacher_size)} "
        f"ids. Models with different tokenizers cannot be distilled token by token: their ids "
        f"do not name the same tokens (not supported).")


def truncation_warning(criterion, student_size, teacher_size, outside_mass):
    return (f"{criterion}: vocab_mismatch: truncate: the student has {student_size} ids and "
            f"the teacher {teacher_size}; both are compared over the first "
            f"{min(student_size, teacher_size)} ids (softmax over them). The teacher put "
            f"{outside_mass:.3g} of its probability (mean over this batch's counted positions) "
            f"on ids outside them. Warned once.")
