"""The loss types criteria may name, one tuple per family.

A criterion's argument nodes (``config/criterion_args.py``) accept the names of a family; each
backend maps every name to its function (``LOSSES`` in ``adapters/<fw>/losses.py``). Adding a
loss type: its name here, its function in both backends (docs/ARCHITECTURE.md, "Add a loss
type").
"""

LOSS_TYPES = {
    # the student against the labels (KnowledgeDistillationLoss loss_types[0])
    "student": ("CE", "MSE"),
    # the student's logits against the teacher's (KnowledgeDistillationLoss loss_types[1])
    # (RKL: reverse KL, KL(student || teacher); JSD: TRL's generalized JSD with ``beta``)
    "kd": ("CE", "KL", "MSE", "RKL", "JSD"),
    # intermediate features against the teacher's (IntermediateLayersKnowledgeDistillationLoss)
    # (AT, SP, RKD compare relations inside each model's features: the shapes may differ)
    "feature": ("MSE", "L1", "KL", "cosine", "AT", "SP", "RKD"),
    # a shallow head against the student's deepest one (SelfKnowledgeDistillationLoss)
    "self": ("CE", "KL", "L2", "MSE"),
}

# Feature loss types that read no matcher: each compares a relation computed inside each
# model's own features, so the student's features keep their own shape.
RELATION_FEATURE_TYPES = ("AT", "SP", "RKD")
