"""Optional frameworks that are not installed (issue 11, item 14): every path that needs one
raises FrameworkNotInstalledError naming the pip extra, never a raw ModuleNotFoundError about
whichever dependency happened to be imported first.

Each case runs in a fresh interpreter where the packages are made unimportable
(``sys.modules[name] = None``), as in tests/tensorflow/test_tf_bad_input.py.
"""

import os
import subprocess
import sys

import pytest

SCRIPT = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # as if it were not installed
try:
    {statement}
except Exception as exc:
    print(type(exc).__name__ + ": " + str(exc))
else:
    print("no error")
"""

# TensorFlow's own dependencies (h5py, keras) are missing with it in a real environment.
NO_TENSORFLOW = ["tensorflow", "keras", "h5py"]
CASES = [
    ("tensorflow-criterion", NO_TENSORFLOW,
     "from neural_distill.criterion import TensorflowKnowledgeDistillationLoss", "tensorflow"),
    ("tensorflow-feature-criterion", NO_TENSORFLOW,
     "from neural_distill import criterion; "
     "criterion.TensorflowIntermediateLayersKnowledgeDistillationLoss", "tensorflow"),
    ("keras-integration", NO_TENSORFLOW,
     "import neural_distill.integrations.keras", "tensorflow"),
    ("torch-criterion", ["torch"],
     "from neural_distill.criterion import PyTorchKnowledgeDistillationLoss", "torch"),
    # (torch blocked as well: importing it would only make the case slow)
    ("transformers-integration", ["torch", "transformers"],
     "from neural_distill.integrations.transformers import NLPTrainer", "transformers"),
    # torch and transformers present (stand-ins: importing the real ones takes seconds),
    # accelerate missing: transformers.Trainer needs it.
    ("accelerate-for-the-trainer", ["accelerate"],
     "import types; sys.modules['torch'] = types.ModuleType('torch'); "
     "hf = sys.modules['transformers'] = types.ModuleType('transformers'); "
     "hf.TrainerCallback = object; "
     "from neural_distill.integrations.transformers import NLPTrainer", "transformers"),
]


@pytest.mark.parametrize("blocked, statement, extra", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_missing_framework_names_the_pip_extra(repo_root, blocked, statement, extra):
    env = dict(os.environ, PYTHONPATH=repo_root, TF_CPP_MIN_LOG_LEVEL="3")
    script = SCRIPT.format(blocked=blocked, statement=statement)
    result = subprocess.run([sys.executable, "-c", script], cwd=repo_root, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    output = result.stdout.strip().splitlines()[-1]
    assert output.startswith("FrameworkNotInstalledError: "), output
    assert "is required for this but is not installed" in output
    assert f"pip install 'neural_distill[{extra}]'" in output
