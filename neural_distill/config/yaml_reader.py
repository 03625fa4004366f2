"""Reading YAML text safely: what a configuration file may be, and what it may not do.

PyYAML's safe loader builds no Python objects from tags, but left alone it still lets a file:

- silently drop data: a key given twice keeps its last value (a second ``distillation:`` block
  replaces the first);
- mean something else than it says: YAML 1.1 reads ``epoch: 1:30`` as 90 (base 60) and
  ``learning_rate: 1e-3`` as the *string* "1e-3";
- exhaust the machine: a 600-byte alias bomb expands to 10^9 nodes, thousands of nested
  brackets overflow the stack (the C parser crashes the process), 10 MB take 10 s.

``parse_yaml`` closes each of these with a ConfigError that names the source, the line and,
where there is one, the key path. Numbers follow YAML 1.2 (``1e-3`` and ``1.5e3`` are floats,
``010`` is ten, ``0o10`` eight); ``yes``/``no``/``on``/``off`` stay booleans as in YAML 1.1,
because existing experiment files use them.
"""

import re

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from neural_distill.errors import ConfigError

# Experiment files are a few kilobytes; a megabyte is far beyond any real one and still reads in
# about a second (ten megabytes took ten).
MAX_FILE_BYTES = 1 << 20
# The deepest key of a real file (a layer mapping's process) is about 8 levels down.
MAX_DEPTH = 64
# Values in the file, and after expanding every alias: 1000 layer mappings fit; an alias bomb
# does not.
MAX_NODES = 100_000

_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MERGE_TAG = "tag:yaml.org,2002:merge"

# YAML 1.2 core numbers (plus YAML 1.1's digit separators and 0b), never base 60.
_INT = re.compile(r"""^(?:[-+]?[0-9][0-9_]*
                      |[-+]?0b[01_]+
                      |[-+]?0o[0-7_]+
                      |[-+]?0x[0-9a-fA-F_]+)$""", re.X)
_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?
                        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                        |[-+]?\.(?:inf|Inf|INF)
                        |\.(?:nan|NaN|NAN))$""", re.X)
_SIGN_AND_DIGITS = "-+0123456789."


class _Checked:
    """What our loaders add to PyYAML's safe one: YAML 1.2 numbers, readable failures."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    yaml_constructors = dict(yaml.SafeLoader.yaml_constructors)

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError, KeyError, AttributeError, TypeError) as exc:
            # PyYAML's constructors fail in their own ways on values they cannot read: an int
            # of 5,000 digits (Python's int() limit), the date 2021-02-30, `!!bool maybe`
            # (KeyError), `!!timestamp nope` (AttributeError).
            kind = str(node.tag).rsplit(":", 1)[-1]
            detail = (": " + str(exc).split(";")[0]) if isinstance(
                exc, (ValueError, OverflowError)) else ""
            raise ConstructorError(None, None, f"cannot read {str(node.value)[:40]!r} as "
                                   f"{kind}{detail}", node.start_mark) from None


def _construct_int(loader, node):
    text = loader.construct_scalar(node).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    for prefix, base in (("0b", 2), ("0o", 8), ("0x", 16)):
        if digits.startswith(prefix):
            return sign * int(digits[2:], base)
    return sign * int(digits, 10)


def _construct_float(loader, node):
    text = loader.construct_scalar(node).replace("_", "").lower()
    if text.endswith((".inf", ".nan")):
        text = text.replace(".", "")
    return float(text)


for _first in _SIGN_AND_DIGITS:
    _Checked.yaml_implicit_resolvers.setdefault(_first, [])
    _Checked.yaml_implicit_resolvers[_first].insert(0, (_INT_TAG, _INT))
    _Checked.yaml_implicit_resolvers[_first].insert(0, (_FLOAT_TAG, _FLOAT))
_Checked.yaml_constructors[_INT_TAG] = _construct_int
_Checked.yaml_constructors[_FLOAT_TAG] = _construct_float


class _PythonLoader(_Checked, yaml.SafeLoader):
    """Pure Python: where PyYAML was built without libyaml."""


# The C parser reads a large file about three times faster; both give the same documents and
# the same messages (tests/bad_input/test_config_hostile.py).
_Loader = (type("_Loader", (_Checked, yaml.CSafeLoader), {})
           if getattr(yaml, "__with_libyaml__", False) else _PythonLoader)


def _where(mark):
    return "" if mark is None else f" (line {mark.line + 1}, column {mark.column + 1})"


def decode(data, source):
    """The text of a configuration file's bytes, which must be UTF-8 YAML."""
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{source}: the file is {len(data):,} bytes; a configuration may be at "
                          f"most {MAX_FILE_BYTES:,} bytes. Is this the right file?")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{source}: the file is saved as UTF-16 or UTF-32; save it as UTF-8 "
                          f"(in most editors: 'Save with encoding' > UTF-8).")
    if b"\x00" in data:
        raise ConfigError(f"{source}: the file is binary (it contains NUL bytes), not YAML text. "
                          f"If it is UTF-16 or UTF-32 text, save it as UTF-8.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{source}: not UTF-8 text (line {line}, column {column}: byte "
                          f"0x{data[exc.start]:02x}); the file was probably saved as Latin-1 or "
                          f"Windows-1252. Save it as UTF-8.") from None
    return text[1:] if text.startswith("\ufeff") else text


def _check_shape(text, source):
    """Refuse deep nesting and sheer size before composing: the C composer recurses without a
    limit (300,000 brackets crash the process), the Python one hits RecursionError, and
    composing a huge document is what takes the time.

    The parser itself does not recurse, so a first pass over its events measures both; it
    costs a fraction of composing.
    """
    parser = _Loader(text)
    try:
        depth = values = 0
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, yaml.NodeEvent):
                values += 1
                if values > MAX_NODES:
                    raise ConfigError(f"{source}: more than {MAX_NODES:,} values (at "
                                      f"{_where(event.start_mark)[2:-1]}); a configuration is "
                                      f"never this large.")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ConfigError(f"{source}: nesting deeper than {MAX_DEPTH} levels"
                                      f"{_where(event.start_mark)}; a configuration is never "
                                      f"this deep.")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    finally:
        parser.dispose()


def _key_text(node):
    return node.value if isinstance(node, ScalarNode) else "<complex key>"


def _inspect(root, source):
    """Walk the composed nodes once: cycles, depth, expanded size, duplicate keys.

    Aliases make the node graph a DAG (or, with an anchor used inside itself, a cycle); sizes
    are memoised per node, so the walk costs the file's size, not the expansion's.
    """
    memo = {}  # id(node) -> (expanded size, height)
    active = set()

    def too_deep(path, node):
        return ConfigError(f"{source}: {path or '<top level>'}{_where(node.start_mark)}: nesting "
                           f"deeper than {MAX_DEPTH} levels (counting what aliases expand to); "
                           f"a configuration is never this deep.")

    def walk(node, path, depth):
        key = id(node)
        if key in active:
            raise ConfigError(f"{source}: {path or '<top level>'}{_where(node.start_mark)}: an "
                              f"alias refers to the collection that contains it (a cycle).")
        if key in memo:
            if depth + memo[key][1] > MAX_DEPTH:
                raise too_deep(path, node)
            return memo[key]
        if depth > MAX_DEPTH:
            raise too_deep(path, node)
        active.add(key)
        size, height = 1, 0
        children = []
        if isinstance(node, SequenceNode):
            children = [(item, f"{path}[{index}]") for index, item in enumerate(node.value)]
        elif isinstance(node, MappingNode):
            seen = {}
            for key_node, value_node in node.value:
                name = _key_text(key_node)
                child = f"{path}.{name}" if path else str(name)
                if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                    identity = (key_node.tag, key_node.value)
                    if identity in seen:
                        raise ConfigError(
                            f"{source}: {child}{_where(key_node.start_mark)}: duplicate key "
                            f"'{name}' (first given at line {seen[identity].line + 1}). YAML "
                            f"would silently keep only the last one; give each key once "
                            f"(merge the two blocks).")
                    seen[identity] = key_node.start_mark
                children += [(key_node, child), (value_node, child)]
        for child_node, child_path in children:
            child_size, child_height = walk(child_node, child_path, depth + 1)
            size += child_size
            height = max(height, child_height + 1)
            if size > MAX_NODES:
                raise ConfigError(f"{source}: {path or '<top level>'}: expands to more than "
                                  f"{MAX_NODES:,} values (through YAML aliases '*name' or sheer "
                                  f"size); a configuration is never this large.")
        active.discard(key)
        memo[key] = (size, height)
        return memo[key]

    walk(root, "", 0)


def parse_yaml(text, source):
    """The document of YAML text, or None when it is empty; problems raise ConfigError."""
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(f"{source}: {len(text):,} characters of YAML; a configuration may be "
                          f"at most {MAX_FILE_BYTES:,} bytes. Is this the right file?")
    try:
        _check_shape(text, source)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _inspect(node, source)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        character = chr(exc.character) if isinstance(exc.character, int) else exc.character
        raise ConfigError(f"{source}: not valid YAML (line {line}, column {column}): character "
                          f"{character!r} is not allowed ({exc.reason}); remove it.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if "could not determine a constructor" in problem:
            problem += (". Tags that build Python objects are never run; name a model or dataset "
                        "factory as a 'module:attribute' string (docs/cli.md)")
        raise ConfigError(f"{source}: not valid YAML{_where(mark)}: {problem}") from None
