"""Starting `neural-distill run` in one process or under torchrun, on a copy of a test project.

Shared by the torchrun tests: each copies a project module (models, data, factories named by
its YAML) into a fresh folder and runs the CLI there, in a subprocess with one thread."""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))


def copy_project(folder, module):
    """Copy ``<module>.py`` of this folder into ``folder`` and write its ``data.npz`` there."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(os.path.join(HERE, f"{module}.py"), folder)
    sys.path.insert(0, str(folder))
    try:
        __import__(module).make_data(str(folder / "data.npz"))
    finally:
        sys.path.pop(0)
        sys.modules.pop(module, None)


def run_cli(config, processes, env=None, timeout=300):
    """``neural-distill run CONFIG`` (under ``torchrun --standalone`` for several processes)."""
    command = [sys.executable, "-m", "neural_distill.cli", "run", str(config)]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={processes}"] + command[1:]
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS="1",
                       TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run(command, cwd=os.path.dirname(str(config)), env=environment,
                          capture_output=True, text=True, timeout=timeout)
