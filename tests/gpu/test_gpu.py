"""Checks that need an accelerator (issue 19): `make gpu-check` runs them (`pytest -m gpu`).

Without a CUDA device every test here is skipped, so the suite passes on CPU-only machines.
They cover what CPU runs cannot: the models and criterion placed on the GPU, fp16 training
with a GradScaler, bf16 autocast, DDP with nccl over the GPUs present, and what the teacher
cache's device-to-host copies cost next to running the teacher.
"""

import glob
import os
import time

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="no CUDA device")]


def _distiller(workspace, device="cuda", **train):
    from neural_distill import Distillation

    torch.manual_seed(0)
    settings = {"epoch": 2, "progress_bar": False,
                "optimizer": {"SGD": {"learning_rate": 0.05, "momentum": 0.9}}, **train}
    distiller = Distillation({"device": device, "distillation": {"train": settings},
                              "tuning": {"workspace": {"path": workspace}}})
    distiller.student_model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(),
                                                  torch.nn.Linear(64, 4))
    distiller.teacher_model = torch.nn.Sequential(torch.nn.Linear(32, 128), torch.nn.ReLU(),
                                                  torch.nn.Linear(128, 4))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 32, generator=generator)
    y = (x[:, :4].argmax(1))
    data = torch.utils.data.TensorDataset(x, y)
    distiller.train_dataloader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True,
                                                             generator=generator)
    distiller.eval_dataloader = torch.utils.data.DataLoader(data, batch_size=64)
    return distiller


def test_models_and_criterion_train_on_the_gpu(workspace):
    distiller = _distiller(workspace, precision="fp32")
    best = distiller.fit()
    assert next(distiller.student_model.parameters()).device.type == "cuda"
    # The teacher goes back where it was (the CPU) once the run is over.
    assert next(distiller.teacher_model.parameters()).device.type == "cpu"
    assert best is not None and distiller.best_score > 0.3
    state = torch.load(os.path.join(distiller.workspace.path, "best_student.pt"),
                       weights_only=True, map_location="cpu")
    assert all(torch.isfinite(v).all() for v in state.values())


def test_fp16_trains_with_a_grad_scaler(workspace, monkeypatch):
    from neural_distill.adapters.torch import precision

    scalers = []
    original = precision.Precision.__init__

    def recording(self, name, device):
        original(self, name, device)
        scalers.append(self.scaler)

    monkeypatch.setattr(precision.Precision, "__init__", recording)
    distiller = _distiller(workspace, precision="fp16")
    distiller.fit()
    assert scalers and isinstance(scalers[0], torch.amp.GradScaler)
    assert all(isinstance(r.get("loss"), float) for r in distiller.run.state.history
               if "loss" in r)
    assert distiller.best_score > 0.3


def test_bf16_autocast_trains(workspace):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    distiller = _distiller(workspace, precision="bf16")
    distiller.fit()
    assert distiller.best_score > 0.3


def test_ddp_with_nccl_on_the_gpus_present(tmp_path):
    from tests.distributed.launch import copy_project, run_cli

    processes = torch.cuda.device_count()
    folder = tmp_path / "ddp"
    copy_project(folder, "ddp_project")
    config = folder / "distill.yaml"
    config.write_text(
        "model:\n  student: {factory: ddp_project.py:student}\n"
        "  teacher: {factory: ddp_project.py:teacher}\n"
        "device: cuda\n"
        "distillation:\n  train:\n    epoch: 2\n    progress_bar: false\n"
        "    optimizer: {SGD: {learning_rate: 0.1}}\n"
        "    dataloader: {batch_size: 8, dataset: {npz: {path: data.npz}}}\n"
        "tuning:\n  workspace: {path: ws}\n")
    result = run_cli(config, processes, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = glob.glob(str(folder / "ws" / "run-*"))
    assert len(runs) == 1 and os.path.isfile(os.path.join(runs[0], "best_student.pt"))


def test_teacher_cache_device_to_host_cost(workspace, capsys):
    """Reports the cached epochs' time next to uncached ones (the copies of the teacher's
    outputs to the host are the cache's cost on a GPU) and checks the cache served them."""
    timings = {}
    for cached in (False, True):
        distiller = _distiller(os.path.join(workspace, str(cached)), epoch=3,
                               teacher_cache={"enabled": cached})
        distiller.train_dataloader = torch.utils.data.DataLoader(
            distiller.train_dataloader.dataset, batch_size=32, shuffle=False)
        torch.cuda.synchronize()
        start = time.perf_counter()
        distiller.fit()
        torch.cuda.synchronize()
        timings[cached] = time.perf_counter() - start
        if cached:
            rates = [r["teacher_cache_hit_rate"] for r in distiller.run.state.history
                     if "teacher_cache_hit_rate" in r]
            assert rates[1:] and all(rate == 1.0 for rate in rates[1:])
    with capsys.disabled():
        print(f"\nteacher cache on {torch.cuda.get_device_name()}: 3 epochs "
              f"{timings[True]:.3f} s cached vs {timings[False]:.3f} s uncached")
    assert timings[True] < 5 * timings[False]  # a cost to report, not a pathology
