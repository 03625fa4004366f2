"""Writing checkpoints off the training thread (:mod:`neural_distill.checkpointing.writer`)."""
