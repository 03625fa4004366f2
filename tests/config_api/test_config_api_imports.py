"""The Python config API and prepare_compression import no framework until a model is used."""

import json
import os
import subprocess
import sys


def test_config_api_and_training_import_no_framework(repo_root):
    code = (
        "import json, sys\n"
        "from neural_distill.config import DistillationConfig, "
        "KnowledgeDistillationLossConfig, QuantizationAwareTrainingConfig\n"
        "from neural_distill.training import prepare_compression\n"
        "DistillationConfig(criterion=KnowledgeDistillationLossConfig(temperature=2)).to_yaml()\n"
        "QuantizationAwareTrainingConfig(excluded_layers=['head']).to_yaml()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'torchao', 'tensorflow', 'keras'))))\n")
    env = dict(os.environ, PYTHONPATH=repo_root)
    result = subprocess.run([sys.executable, "-c", code], cwd=repo_root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
