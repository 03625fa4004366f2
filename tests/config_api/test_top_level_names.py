"""The reference documents import the Python config API from the package's top level."""

import json
import os
import subprocess
import sys

NAMES = ("DistillationConfig", "QuantizationAwareTrainingConfig",
         "KnowledgeDistillationLossConfig", "IntermediateLayersKnowledgeDistillationLossConfig",
         "SelfKnowledgeDistillationLossConfig", "prepare_compression")

PROBE = f"""
import json, sys
from neural_distill import {", ".join(NAMES)}
from neural_distill import config, training
same = [{", ".join(NAMES[:-1])}] == [getattr(config, n) for n in {list(NAMES[:-1])!r}]
same = same and prepare_compression is training.prepare_compression
loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras'))
print(json.dumps({{"same": same, "frameworks": loaded}}))
"""


def test_top_level_names_are_the_config_api_and_import_no_framework(repo_root):
    env = dict(os.environ, PYTHONPATH=repo_root, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=repo_root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"same": True, "frameworks": []}
