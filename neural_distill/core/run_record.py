"""The run's configuration as a YAML record that can always be written.

A validated configuration may hold Python objects YAML cannot represent: a callable output
process in ``layer_mappings`` (``lambda x: x[:, :2]``), a model or metric object set through the
Python config API. Writing the run record must never stop a run, so such values are written as
text (a callable by its qualified name, anything else by its ``repr``), and the file says so in
a comment at its top, listing each replaced key.
"""

import yaml

_PLAIN = (str, int, float, bool, type(None))


def _describe(value):
    if callable(value) and hasattr(value, "__qualname__"):
        module = getattr(value, "__module__", None)
        return f"<callable {module}.{value.__qualname__}>" if module else \
            f"<callable {value.__qualname__}>"
    return f"<{type(value).__qualname__} {value!r}>"


def representable(value, path="", replaced=None):
    """``(document, replaced)``: plain dicts/lists/scalars, and the key paths that were not."""
    replaced = [] if replaced is None else replaced
    if isinstance(value, dict):
        document = {}
        for key, item in value.items():
            name = key if isinstance(key, _PLAIN) else _describe(key)
            document[name] = representable(item, f"{path}.{name}" if path else str(name),
                                           replaced)[0]
        return document, replaced
    if isinstance(value, (list, tuple)):
        return [representable(item, f"{path}[{i}]", replaced)[0]
                for i, item in enumerate(value)], replaced
    if isinstance(value, _PLAIN):
        return value, replaced
    text = _describe(value)
    replaced.append(f"{path or '<root>'}: {text}")
    return text, replaced


def config_yaml(config):
    """The YAML text of ``config``, with a leading comment when some values are text only."""
    document, replaced = representable(config)
    body = yaml.safe_dump(document, sort_keys=False)
    if not replaced:
        return body
    header = ["# Written by neural_distill as the record of this run. Values YAML cannot hold",
              "# are written as text (a callable by its qualified name, other objects by their",
              "# repr); this file does not rebuild them:"]
    header += [f"#   {line}" for line in replaced]
    return "\n".join(header) + "\n" + body
