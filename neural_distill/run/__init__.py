"""The parts of one distillation run behind the ``Distillation`` facade.

Layer 2 (state the run carries): ``state`` (epoch, step, best score, RNGs), ``workspace`` (the
run folder), ``checkpoints`` (checkpoint files), ``loop_common`` (the built-in loops' epoch
driver), ``checks`` (run-time checks of user input).
Layer 4 (the experiment): ``teachers``, ``step`` (the one place a step's loss is made),
``evaluation``, ``results``, ``lifecycle`` (what each hook does), ``fitting`` (``fit()``),
``durable`` (checkpoints written and resumed), ``matcher_training``.
"""
