"""Names of the reference APIs (Intel Neural Compressor 1.x, ITREX) that users' scripts call and
the rest of the package has no place for: INC 1.13's ``training.prepare`` / ``training.fit``
(``inc_training``), ITREX's ``DistillationCriterionMode`` and ``OptimizedModel`` (``itrex``).
The criteria's INC methods live with the backends (``adapters/inc_criterion.py``), the
leading-size-1 shape rule in ``core/shapes.py``, INC's ``conf`` object in
``config/inc_conf.py``. docs/migrating.md maps each call to ours.
"""
