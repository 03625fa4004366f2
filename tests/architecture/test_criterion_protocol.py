"""The criterion protocol (criterion/base.py, DistillationCriterion) holds do-nothing defaults.
A default must never hide a backend's own method: a mixin listed after a catalog spec in a
class's bases comes after DistillationCriterion in the MRO, and its method would silently lose
to the default (a TensorFlow DKD once lost its student loss that way)."""

import pytest

from neural_distill.core.backends import BACKENDS, backend_module
from neural_distill.criterion.base import DistillationCriterion
from neural_distill.criterion.catalog import CATALOG, backend_class_name

PROTOCOL = [name for name in vars(DistillationCriterion) if not name.startswith("__")]


def _shadowed(cls):
    problems = []
    for name in PROTOCOL:
        owners = [k for k in cls.__mro__ if name in vars(k)]
        if owners and owners[0] is DistillationCriterion and len(owners) > 1:
            problems.append(f"{cls.__name__}.{name}: the protocol's default hides "
                            f"{owners[1].__name__}'s")
    return problems


@pytest.mark.parametrize("framework", sorted(BACKENDS))
def test_no_protocol_default_hides_a_backend_method(framework):
    pytest.importorskip(BACKENDS[framework].packages[0])
    criteria = backend_module(framework, "criteria")
    problems = []
    for name in CATALOG:
        cls = getattr(criteria, backend_class_name(name, framework), None)
        if cls is not None:
            assert issubclass(cls, DistillationCriterion), cls
            problems += _shadowed(cls)
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_hidden_method():
    class Mixin:
        def student_loss(self, output, labels):
            return 1

    class Spec(DistillationCriterion):
        pass

    class Wrong(Spec, Mixin):
        pass

    class Right(Mixin, Spec):
        pass

    assert _shadowed(Wrong) and not _shadowed(Right)
