"""The first-batch pass of a run, taken from the training itself (issue 19)."""
