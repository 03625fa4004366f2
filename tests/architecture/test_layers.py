"""Layers import only downward (docs/ARCHITECTURE.md), checked on the parsed source.

Every import in the package, at module level or inside a function, is resolved to the module
it names; a module may import its own layer or a lower one, never a higher one, and no two
modules may import each other.
"""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(REPO, "neural_distill")

# Lowest first. A module is in the layer of the longest prefix that names it.
LAYERS = [
    ("foundation", ["errors", "events", "version", "metrics", "objectives", "core",
                    "language"]),
    # The criterion catalog is data the YAML schema is built from: it sits with the config.
    # pruning/schedule: the neutral pruning schedule the config classes validate patterns with.
    ("config", ["config", "criterion.catalog", "pruning.schedule"]),
    ("criterion", ["criterion", "teacher_cache", "run.state", "run.workspace",
                   "run.checkpoints", "run.checkpoint_writer", "run.loop_common"]),
    ("backends", ["adapters"]),
    ("experiment", ["run", "distillation", "training", "report", "commands", "common",
                    "cache_teacher", "compat", "plan", "pruning"]),
    ("entry points", ["integrations", "cli", "algorithms", "trainer", "__init__"]),
]


# Packages whose __init__ is a public face reaching every layer on first use: the package
# root (the public API) and ``neural_distill.criterion`` (its lazy ``PyTorch<name>`` /
# ``Tensorflow<name>`` classes, imported from the backends when a user first names one).
PUBLIC_FACES = {"neural_distill", "neural_distill.criterion"}


def _layer_of(module):
    """The layer index of 'neural_distill.a.b': the layer naming its longest prefix ('a.b',
    then 'a')."""
    parts = module.split(".")[1:] or ["__init__"]
    for length in range(len(parts), 0, -1):
        prefix = ".".join(parts[:length])
        for index, (_, names) in enumerate(LAYERS):
            if prefix in names:
                return index
    raise AssertionError(f"module {module} is in no layer: add it to LAYERS (and to "
                         f"docs/ARCHITECTURE.md)")


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                is_package = name == "__init__.py"
                module = rel[:-len(".__init__")] if is_package else rel
                yield module, path, is_package


def _imports(module, path, is_package):
    """(imported neural_distill module, line) for every import in the file."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    package = module if is_package else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        concern = _backend_concern(node)
        if concern is not None and not module.startswith("neural_distill.adapters."):
            # backend_module(fw, "report") / backend(fw).module("report") imports
            # adapters/<fw>/report.py: an edge to the backends like an import statement.
            yield f"neural_distill.adapters.{concern}", node.lineno
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "neural_distill":
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "neural_distill":
                continue
            # `from . import x` imports the submodule x.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                yield (candidate if _is_module(candidate) else target), node.lineno


def _backend_concern(node):
    """The concern named by a call that imports a backend's module through the backend table
    (core/backends.py), else None."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    arg = {"backend_module": 1, "module": 0}.get(name)
    if arg is None or len(node.args) <= arg:
        return None
    value = node.args[arg]
    return value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) \
        else None


def _is_module(name):
    path = os.path.join(REPO, *name.split("."))
    return os.path.isfile(path + ".py") or os.path.isdir(path)


def _graph():
    return {module: list(_imports(module, path, is_package))
            for module, path, is_package in _modules()}


def test_every_module_imports_only_its_own_layer_or_lower():
    problems = []
    for module, imports in _graph().items():
        if module in PUBLIC_FACES:
            continue
        own = _layer_of(module)
        for target, line in imports:
            if target == "neural_distill":
                problems.append(f"{module}:{line} imports the package root")
            elif _layer_of(target) > own:
                problems.append(f"{module}:{line} ({LAYERS[own][0]}) imports {target} "
                                f"({LAYERS[_layer_of(target)][0]})")
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_no_two_modules_import_each_other():
    graph = {m: {t for t, _ in imports} for m, imports in _graph().items()}
    cycles = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets
                     if a != b and a in graph.get(b, ()) and not b.startswith(a + ".")
                     and not a.startswith(b + ".")})
    assert not cycles, f"modules importing each other: {cycles}"


def test_the_checker_sees_a_backend_reached_through_the_table():
    tree = ast.parse('from neural_distill.core.backends import backend_module\n'
                     'def f(fw):\n    return backend_module(fw, "report")\n')
    edges = [_backend_concern(node) for node in ast.walk(tree)]
    assert "report" in edges


def test_no_module_outside_the_backends_names_a_framework_module():
    """Framework module paths are built in one place (core/backends.py): a string
    'neural_distill.adapters.torch...' elsewhere is a second table the layer check cannot see."""
    problems = []
    for module, path, _ in _modules():
        if module.startswith("neural_distill.adapters") or module == "neural_distill.core.backends":
            continue
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    node.value.startswith("neural_distill.adapters."):
                problems.append(f"{module}:{node.lineno} {node.value!r}")
    assert not problems, "framework modules named outside core/backends.py:\n" + \
        "\n".join(problems)


def test_the_checker_sees_an_upward_import(tmp_path):
    # The rule can fail: a config module importing the adapters is reported.
    assert _layer_of("neural_distill.adapters.torch.adapter") > \
        _layer_of("neural_distill.config.schema")
    with pytest.raises(AssertionError):
        _layer_of("neural_distill.somewhere_new")
    # A longer prefix wins: the catalog is below the rest of criterion/.
    assert _layer_of("neural_distill.criterion.catalog.loss_types") < \
        _layer_of("neural_distill.criterion.registry")
