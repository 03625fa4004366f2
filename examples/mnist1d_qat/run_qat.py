"""Distillation for quantization on MNIST-1D: float CNN vs three int8 versions of it.

    python examples/mnist1d_qat/run_qat.py            # a few minutes on 2 CPU cores

1. float: the teacher CNN of examples/mnist1d, trained as usual.
2. int8 PTQ: post-training static quantization (calibration only, no training).
3. int8 QAT: fine-tuned with fake quantization, cross-entropy only.
4. int8 QAT + KD: the same fine-tuning, with the float CNN as the teacher of its quantized copy
   (prepare_compression with QuantizationAwareTrainingConfig + DistillationConfig; the training
   loop is the one of the reference documents, calling every compression_manager hook).

Every int8 model is exported with ``manager.export()`` (a torch.export program), loaded back and
lowered to oneDNN int8 kernels; accuracy, stored-tensor size, file size and batch latency are
measured on that loaded model, i.e. what would be deployed.
"""

import argparse
import copy
import os
import sys
import tempfile

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "mnist1d"), os.path.join(HERE, "..", "..")]

from data import load_mnist1d  # noqa: E402
from teacher import train_teacher  # noqa: E402

from neural_distill.adapters.torch.quantization import (  # noqa: E402
    int8_kernels, load_int8, measure_latency, quantize_post_training, save_exported)
from neural_distill.adapters.torch.compression import export_float  # noqa: E402
from neural_distill.config import (  # noqa: E402
    DistillationConfig, KnowledgeDistillationLossConfig, QuantizationAwareTrainingConfig)
from neural_distill.training import prepare_compression  # noqa: E402


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean()) * 100


def batches(x, y, batch_size, generator):
    order = torch.randperm(len(x), generator=generator)
    for start in range(0, len(x), batch_size):
        index = order[start:start + batch_size]
        yield x[index], y[index]


def finetune(compression_manager, x, y, epochs, lr, seed):
    """The reference documents' user loop, every compression_manager hook included."""
    model = compression_manager.model
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    steps = epochs * -(-len(x) // 100)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    compression_manager.on_train_begin()
    for epoch in range(epochs):
        compression_manager.on_epoch_begin(epoch)
        for i, (batch, labels) in enumerate(batches(x, y, 100, generator)):
            compression_manager.on_step_begin(i)
            output = model(batch)
            loss = F.cross_entropy(output, labels)
            loss = compression_manager.on_after_compute_loss(batch, output, loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            compression_manager.on_before_optimizer_step()
            optimizer.step()
            compression_manager.on_after_optimizer_step()
            schedule.step()
            compression_manager.on_step_end()
        compression_manager.on_epoch_end()
    compression_manager.on_train_end()
    return compression_manager


def measure(name, model, info, x_test, y_test):
    return {"model": name, "module": model, "accuracy": accuracy(model, x_test, y_test),
            "weights_kb": info.weight_bytes / 1024, "file_kb": info.file_bytes / 1024,
            "kernels": int8_kernels(model) if hasattr(model, "graph") else []}


def add_latencies(rows, inputs, rounds=7):
    """Models timed in alternation, best round kept: other work on a shared machine slows some
    rounds, and alternating spreads that over every model instead of one."""
    best = [float("inf")] * len(rows)
    for _ in range(rounds):
        for index, row in enumerate(rows):
            best[index] = min(best[index], measure_latency(row["module"], inputs, repeats=10,
                                                           warmup=2))
    for row, latency in zip(rows, best):
        row["latency_ms"] = latency


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-epochs", type=int, default=60)
    parser.add_argument("--qat-epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for the exported models")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # latencies comparable between rows on a shared machine
    out = args.out or tempfile.mkdtemp(prefix="mnist1d_qat_")
    os.makedirs(out, exist_ok=True)

    x, y, x_test, y_test = (torch.from_numpy(a) for a in load_mnist1d())
    example = x[:100]
    rows = []

    print(f"training the float CNN ({args.teacher_epochs} epochs) ...", flush=True)
    float_model = train_teacher(x, y, seed=args.seed, epochs=args.teacher_epochs)
    info = export_float(float_model, os.path.join(out, "float.pt2"), example)
    rows.append(measure("float CNN (fp32)", float_model, info, x_test, y_test))

    print("post-training quantization ...", flush=True)
    calibration = [x[i:i + 100] for i in range(0, 1000, 100)]
    ptq = quantize_post_training(float_model, example, calibration)
    info = save_exported(ptq, os.path.join(out, "ptq_int8.pt2"), (example,), {},
                         ({0: torch.export.Dim.AUTO},), float_model=float_model, int8=True)
    rows.append(measure("int8 PTQ", load_int8(info.path, x_test), info, x_test, y_test))

    for name, configs in [
            ("int8 QAT", []),
            ("int8 QAT + KD", [DistillationConfig(criterion=KnowledgeDistillationLossConfig(
                temperature=args.temperature, loss_types=["CE", "KL"],
                loss_weights=[0.5, 0.5]))])]:
        print(f"{name}: {args.qat_epochs} epochs of fine-tuning ...", flush=True)
        torch.manual_seed(args.seed)
        student = copy.deepcopy(float_model)  # the float CNN itself stays the teacher
        qat = QuantizationAwareTrainingConfig(example_inputs=example,
                                              freeze_observers_epoch=args.qat_epochs - 2)
        manager = finetune(prepare_compression(student, [qat] + configs), x, y,
                           args.qat_epochs, args.lr, args.seed)
        info = manager.export(os.path.join(out, name.replace(" ", "_").replace("+", "") + ".pt2"))
        rows.append(measure(name, load_int8(info.path, x_test), info, x_test, y_test))

    add_latencies(rows, x_test)
    base = rows[0]
    print(f"\nMNIST-1D test set ({len(y_test)} samples). Latency: one batch of {len(y_test)}, "
          f"1 thread, best of 7 alternating rounds of the median of 10 calls. Exported models "
          f"in {out}\n")
    header = (f"| {'model':<16} | accuracy % | vs float | weights KB | smaller | .pt2 file KB "
              f"| latency ms | speed-up |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for row in rows:
        print(f"| {row['model']:<16} | {row['accuracy']:10.1f} | "
              f"{row['accuracy'] - base['accuracy']:+8.1f} | {row['weights_kb']:10.1f} | "
              f"{base['weights_kb'] / row['weights_kb']:6.2f}x | {row['file_kb']:12.1f} | "
              f"{row['latency_ms']:10.2f} | {base['latency_ms'] / row['latency_ms']:7.2f}x |")
    kernels = {row["model"]: row["kernels"] for row in rows[1:]}
    print("\nint8 kernels in the loaded models: " + "; ".join(
        f"{k}: {', '.join(v) or 'none'}" for k, v in kernels.items()))
    return rows


if __name__ == "__main__":
    main()
