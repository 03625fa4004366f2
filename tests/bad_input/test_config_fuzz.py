"""Config fuzzer: mutated copies of every template in conf_templates/ must end well.

Seeded and deterministic. Each template gets ``CASES_PER_TEMPLATE`` mutations: structural ones
made on the parsed document (type swaps, deletions, huge and non-finite numbers, strings for
numbers, deep nesting, unknown and misspelt keys) and textual ones made on the file itself
(YAML syntax damage, duplicated lines and keys, aliases and alias bombs, tags that would build
Python objects, truncation, non-UTF-8 bytes). Every case must either

- raise ``ConfigError`` (read as ``DistillationConf(path)`` reads a file, minus the disk)
  whose every problem line reads ``<file>: <key path or file-level problem>: <message>``, or
- load a configuration that is valid: validating it again gives the same result, it survives a
  YAML round trip, and every number outside free-form sections is finite;

never another exception, and never take more than ``MAX_SECONDS_PER_CASE`` (checked with a
clock around each case, not with signals). Run this file as a script for more cases:
``python tests/bad_input/test_config_fuzz.py 5000``.
"""

import copy
import datetime
import glob
import math
import os
import random
import re
import sys
import time

import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from neural_distill.config import validate  # noqa: E402
from neural_distill.config.loader import parse_text, to_plain  # noqa: E402
from neural_distill.config.schema import DATASET_CHOICES as DATASETS  # noqa: E402
from neural_distill.config.yaml_reader import decode  # noqa: E402
from neural_distill.errors import ConfigError  # noqa: E402

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
SEED = 20261202
CASES_PER_TEMPLATE = 1000
MAX_SECONDS_PER_CASE = 5.0
TEMPLATES = sorted(glob.glob(os.path.join(REPO_ROOT, "conf_templates", "*.yaml")))

# Sections whose content is the user's own (factory kwargs ...): any value may stand there.
FREE_FORM = {"kwargs", "postprocess", "transform", "filter", "accuracy_criterion", "exit_policy"}
# Problems that concern the file as a whole rather than one key.
FILE_LEVEL = ("not valid YAML", "not UTF-8 text", "the file is", "nesting deeper than",
              "configuration file not found", "cannot read the configuration file")
_PROBLEM = re.compile(r"^(?P<path>\S.*?)(?: \(line \d+, column \d+\))?: \S")

STRANGE_VALUES = [
    None, True, False, "", "text", "1:30", "1e-3", "yes", "0x1F", "inf", "nan", 0, -1, 1, 7,
    2**31, 2**32, 2**64, 10**40, -(10**40), 0.0, -0.0, 0.5, -1.5, 1e-300, 1e30, -1e30,
    float("inf"), float("-inf"), float("nan"), [], {}, [0, 0], [1, 2, 3], [0.5, "half"],
    {"a": 1}, {"SGD": {}}, {"KnowledgeDistillationLoss": {}}, ["CE", "KL"], [[["deep"]]],
    datetime.date(2026, 2, 1), "module:attribute", "../../etc/passwd", "a" * 500,
    {1, 2}, b"\x00binary", {1: "int key"}, {None: "null key"}, {True: 1, 2.5: 2},
]

TEXT_INSERTS = [
    ":", "[", "]", "{", "}", "- ", "? ", "&a ", "*a", "*undefined",
    "!!python/object/apply:os.system ['true'] ", "!!python/name:os.system ", "!custom ",
    "!!binary ", "\t", '"', "'", "#", "%YAML 1.1\n", "---\n",
    "...\n", "|", ">", "@", "`", "<<: *a\n", ",", "\\", "\x07", "\ufeff", "é", "1:30", "1e-3",
    ".nan", ".inf", "0o777", "1_000", "~", "=", "2021-02-30", "9" * 5000,
    # explicit tags whose PyYAML constructors fail in their own ways
    "!!bool maybe ", "!!bool ", "!!timestamp nope ", "!!int x ", "!!float abc ", "!!set {a, b} ",
    "!!binary '@@' ", "!!omap [1] ", "!!pairs [a] ", "!!map ", "!!seq ", "!!str ", "!!null x ",
]


def _alias_bomb(depth=9, width=9):
    lines = ['lol0: &l0 ["lol"]']
    for level in range(1, depth):
        lines.append(f"lol{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ mutations
def _paths(document, prefix=()):
    """Every (path, value) in a document; a path is a tuple of keys and list indexes."""
    yield prefix, document
    if isinstance(document, dict):
        for key, value in document.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _paths(value, prefix + (index,))


def _parent(document, path):
    for key in path[:-1]:
        document = document[key]
    return document


def _typo(word, rng):
    word = str(word)
    if len(word) < 2:
        return word + "x"
    i = rng.randrange(len(word) - 1)
    choice = rng.randrange(3)
    if choice == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]  # swap two letters
    if choice == 1:
        return word[:i] + word[i + 1:]  # drop one
    return word[:i] + rng.choice("aeioustrn_") + word[i:]  # add one


def mutate_document(document, rng):
    """One structural mutation of a parsed template (returns a new document)."""
    document = copy.deepcopy(document)
    entries = [(p, v) for p, v in _paths(document) if p]
    path, value = rng.choice(entries)
    parent, last = _parent(document, path), path[-1]
    kind = rng.randrange(9)
    if kind == 0:  # another type or an absurd value
        parent[last] = copy.deepcopy(rng.choice(STRANGE_VALUES))
    elif kind == 1 and isinstance(parent, dict):  # delete a key
        del parent[last]
    elif kind == 2:  # an unknown or misspelt key next to this one
        target = parent if isinstance(parent, dict) else (value if isinstance(value, dict)
                                                          else document)
        name = _typo(last, rng) if isinstance(last, str) and rng.random() < 0.6 else \
            rng.choice(["extra", "x", "1", "null", "distillation", "Train", "éé", 1, None, True,
                        2.5, ""])
        target[name] = copy.deepcopy(rng.choice(STRANGE_VALUES))
    elif kind == 3:  # deep nesting around a value
        nested = value
        for _ in range(rng.choice([1, 2, 5, 20, 70, 200])):
            nested = [nested] if rng.random() < 0.5 else {"k": nested}
        parent[last] = nested
    elif kind == 4 and isinstance(parent, dict):  # rename a key
        parent[_typo(last, rng)] = parent.pop(last)
    elif kind == 5 and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[last] = rng.choice([value * 1e30, -value, value + 0.5, 2**32 + int(value),
                                   float("nan"), float("inf"), str(value), 0])
    elif kind == 6:  # the same subtree copied somewhere else
        other_path, other = rng.choice(entries)
        parent[last] = copy.deepcopy(other)
    elif kind == 7 and isinstance(value, list):  # lists too long, empty, or of a wrong item
        parent[last] = rng.choice([[], value * 3, value + [None], value[:1], [value]])
    else:  # a whole section replaced by a scalar
        parent[last] = rng.choice([5, "section", None, True])
    return document


def mutate_text(text, rng):
    """One textual mutation of a template's YAML (returns str, or bytes for encoding cases)."""
    lines = text.split("\n")
    kind = rng.randrange(12)
    i = rng.randrange(len(lines))
    if kind == 0:
        del lines[i]
    elif kind == 1:  # a line twice: duplicate keys
        lines.insert(i, lines[i])
    elif kind == 2:
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == 3:  # indentation damage
        lines[i] = rng.choice([" ", "  ", "    ", "\t", ""]) + lines[i].lstrip(
            " " if rng.random() < 0.5 else "")
    elif kind == 4:
        pos = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:pos] + rng.choice(TEXT_INSERTS) + lines[i][pos:]
    elif kind == 5:  # numbers written in other ways
        lines[i] = re.sub(r"(?<=: )[0-9.]+\b", lambda m: rng.choice(
            ["1:30", "1e-3", "1E3", "1e400", "-1e400", ".NaN", "0x10", "010", "1_0", "1e", "+.5",
             "1e-400", "4294967296", "9" * 30]), lines[i])
    elif kind == 6:  # a second copy of a whole top-level block
        blocks = [n for n, line in enumerate(lines) if re.match(r"^[a-z]\w*:", line)]
        if blocks:
            start = rng.choice(blocks)
            end = next((n for n in blocks if n > start), len(lines))
            lines += lines[start:end]
    elif kind == 7:
        return text[:rng.randrange(len(text) + 1)]
    elif kind == 8:  # hostile additions
        return text + rng.choice([
            _alias_bomb(), "deep: " + "[" * 5000 + "]" * 5000 + "\n",
            "deep: " + "{a: " * 300 + "1" + "}" * 300 + "\n",
            "cycle: &c [*c]\n", "tuning: &t {random_seed: 1}\nmore: *t\n",
            "hook: !!python/object/apply:os.system ['echo hacked']\n",
            "model: !!python/object/new:type ['X', [], {}]\n"])
    elif kind == 9:  # other encodings: bytes
        encoded = rng.choice(["latin-1", "utf-16", "utf-16-le", "utf-32", "utf-8-sig"])
        extra = "name: café\n" if encoded == "latin-1" else ""
        return (extra + text).encode(encoded, errors="replace")
    elif kind == 10:  # binary noise
        data = bytearray(text.encode("utf-8"))
        for _ in range(rng.choice([1, 5, 50])):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    else:
        lines[i] = lines[i].replace(":", rng.choice(["", " :", ":: ", "=", ": :"]), 1)
    return "\n".join(lines)


# ------------------------------------------------------------------------------ one case
def _non_finite_paths(document, path=""):
    if isinstance(document, dict):
        for key, value in document.items():
            # (datasets of other systems are accepted as they are, and refused when built)
            if key in FREE_FORM or path.endswith(".dataset") and key not in DATASETS:
                continue
            yield from _non_finite_paths(value, f"{path}.{key}" if path else str(key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _non_finite_paths(value, f"{path}[{index}]")
    elif isinstance(document, float) and not math.isfinite(document):
        yield path


def load(content, source):
    """What ``DistillationConf(path)`` does with a file of this content, without the disk."""
    text = decode(content, source) if isinstance(content, bytes) else content
    return validate(parse_text(text, source), source)


def check_case(content, file_path):
    """None if the case ended well, else a description of what went wrong."""
    try:
        config = load(content, file_path)
    except ConfigError as exc:
        for line in exc.problems:
            if not line.startswith(f"{file_path}: "):
                return f"problem does not start with the file name: {line!r}"
            rest = line[len(file_path) + 2:]
            if not rest.startswith(FILE_LEVEL) and not _PROBLEM.match(rest):
                return f"problem names no key path: {line!r}"
        return None
    except Exception as exc:  # noqa: BLE001 - what the fuzzer looks for
        return f"{type(exc).__name__}: {exc}"
    plain = to_plain(config)
    # Written out and read back (as a run's workspace copy is), it must validate to itself.
    round_trip = to_plain(load(yaml.dump(plain, Dumper=_DUMPER, sort_keys=False), "<again>"))
    if repr(round_trip) != repr(plain):
        return f"the loaded config changes when written and read again: {plain!r}"
    bad = list(_non_finite_paths(plain))
    if bad:
        return f"non-finite numbers accepted at {bad}"
    return None


def run_fuzzer(directory, cases_per_template=CASES_PER_TEMPLATE, seed=SEED):
    """(number of cases, failures, slowest case in seconds)."""
    failures, count, slowest = [], 0, 0.0
    file_path = os.path.join(directory, "fuzzed.yaml")  # the name errors must start with
    for t, template in enumerate(TEMPLATES):
        with open(template, encoding="utf-8") as handle:
            text = handle.read()
        document = yaml.safe_load(text)
        rng = random.Random(seed * 100 + t)
        for case in range(cases_per_template):
            if rng.random() < 0.5:
                try:
                    content = yaml.dump(mutate_document(document, rng), Dumper=_DUMPER,
                                        sort_keys=False)
                except yaml.YAMLError:
                    continue
            else:
                content = mutate_text(text, rng)
            start = time.perf_counter()
            problem = check_case(content, file_path)
            seconds = time.perf_counter() - start
            slowest = max(slowest, seconds)
            count += 1
            if seconds > MAX_SECONDS_PER_CASE:
                problem = f"took {seconds:.1f} s"
            if problem:
                failures.append((os.path.basename(template), case, problem[:300]))
    return count, failures, slowest


def test_mutated_templates_end_in_config_error_or_valid_config(tmp_path):
    count, failures, _ = run_fuzzer(str(tmp_path))
    assert count >= CASES_PER_TEMPLATE * len(TEMPLATES) * 0.95
    assert not failures, "\n".join(f"{name} case {case}: {problem}"
                                   for name, case, problem in failures[:20])


if __name__ == "__main__":
    import tempfile

    per_template = int(sys.argv[1]) if len(sys.argv) > 1 else CASES_PER_TEMPLATE
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else SEED
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        total, found, worst = run_fuzzer(folder, per_template, seed)
        print(f"{total} cases in {time.perf_counter() - began:.1f} s (slowest {worst:.2f} s), "
              f"{len(found)} failures")
        for name, case, problem in found[:60]:
            print(f"  {name} case {case}: {problem}")
