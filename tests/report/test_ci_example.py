"""examples/ci: the workflow and the local script gate with the same, readable requirements,
and the experiment they run is a valid config."""

import os
import re

import yaml

from neural_distill.config.loader import load_config
from neural_distill.report import gate

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "examples", "ci")


def _requirements(text):
    return re.findall(r'--require "([^"]+)"', text)


def test_workflow_and_script_gate_with_the_same_valid_requirements():
    with open(os.path.join(EXAMPLE, "distill-gate.yml"), encoding="utf-8") as handle:
        workflow = yaml.safe_load(handle)
    steps = workflow["jobs"]["distill"]["steps"]
    gated = [step["run"] for step in steps if "--require" in step.get("run", "")]
    assert len(gated) == 1
    with open(os.path.join(EXAMPLE, "run_gate.sh"), encoding="utf-8") as handle:
        script = handle.read()
    required = _requirements(gated[0])
    assert required and required == _requirements(script)
    gate.check_names(gate.parse_all(required), "top1", 64)  # raises on a typo


def test_the_example_config_is_valid():
    config, _ = load_config(os.path.join(EXAMPLE, "distill.yaml"))
    assert config.evaluation["accuracy"]["metric"] == {"topk": 1}
