"""Every random generator a run draws from, captured and restored as one plain dict.

Python's and NumPy's global generators here; the framework's own through its adapter
(``rng_state`` / ``set_rng_state``), so this module imports no framework.
"""

import random

import numpy as np


def seed_all(seed, adapter):
    """Python's, NumPy's and (given its ``adapter``) the framework's generators."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    if adapter is not None:
        adapter.seed(seed)


def seed_run(tuning, adapter):
    """``tuning.random_seed`` applied, and ``tuning.deterministic`` (kernels), before anything
    random of a run: the factories that build its models and data, then the run itself."""
    seed_all(tuning.get("random_seed", 1978), adapter)
    if tuning.get("deterministic") and adapter is not None:
        adapter.make_deterministic()


def capture(adapter=None):
    # NumPy's key array as a list: checkpoints hold only plain data (they are read back
    # without unpickling arbitrary objects).
    name, keys, position, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": [name, keys.tolist(), position, has_gauss, cached]}
    if adapter is not None:
        state["framework"] = adapter.rng_state()
    return state


def restore(state, adapter=None):
    random.setstate(_tuples(state["python"]))
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    if adapter is not None and "framework" in state:
        adapter.set_rng_state(state["framework"])


def _tuples(value):
    # random.setstate wants the tuples back that a serializer may have turned into lists.
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_tuples(v) for v in value)
    return value
