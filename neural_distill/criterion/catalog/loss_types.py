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
    "kd": ("CE", "KL", "MSE"),
    # intermediate features against the teacher's (IntermediateLayersKnowledgeDistillationLoss)
    "feature": ("MSE", "L1", "KL", "cosine"),
    # a shallow head against the student's deepest one (SelfKnowledgeDistillationLoss)
    "self": ("CE", "KL", "L2", "MSE"),
}
