"""Names of the reference APIs (Intel Neural Compressor 1.x/2.x, ITREX) that users' scripts call
and the rest of the package has no place for: ``training.prepare`` / ``training.fit``, the
criteria's INC methods, ITREX's ``DistillationCriterionMode`` and ``OptimizedModel``.

Each module sits in the layer of what it uses (tests/architecture/test_layers.py); none of
them imports a framework at import time. docs/migrating.md maps each call to ours.
"""
