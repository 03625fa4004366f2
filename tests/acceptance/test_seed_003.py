"""Seed 003 (distillation for quantization): its user loop runs as written against our package.

The seed's training function calls every ``compression_manager`` hook; its launcher builds the
manager with ``prepare_compression`` from a quantization config and a ``DistillationConfig``.
Only what the seed elides (``......``: data, labels, the loss) is filled in, and the seed's
neural_compressor imports name our modules.
"""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchao")

from torch import nn  # noqa: E402

from helpers import make_blobs  # noqa: E402
from neural_distill.events import HOOK_NAMES  # noqa: E402


class TwoHeads(nn.Module):
    """A student with a shallow and a deep head, for self-distillation."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 32), nn.ReLU())
        self.mid = nn.Sequential(nn.Linear(32, 32), nn.ReLU())
        self.shallow = nn.Linear(32, 3)
        self.deep = nn.Linear(32, 3)

    def forward(self, x):
        h = self.body(x)
        return {"logits": self.deep(self.mid(h)), "shallow": self.shallow(h)}


def _mlp():
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 3))


def _float_model(make, x, y):
    """The float model the user starts from (already trained, as before QAT)."""
    torch.manual_seed(0)
    model = make()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(80):
        out = model(x)
        logits = out["logits"] if isinstance(out, dict) else out
        optimizer.zero_grad()
        nn.functional.cross_entropy(logits, y).backward()
        optimizer.step()
    return model


# The seed's launcher gives the quantization config no example inputs: the model is then
# captured on its first batch, inside the seed's loop (on_train_begin() bare, then model(batch)).
# "example_inputs" is the variant that passes one batch up front.
@pytest.mark.parametrize("scenario,inputs", [("kd", "example_inputs"), ("kd", "none"),
                                             ("intermediate", "none"), ("self", "none")])
def test_seed_003_user_loop(scenario, inputs, tmp_path, workspace):
    from neural_distill.adapters.torch.quantization import int8_kernels, load_int8
    # --- the seed's launcher imports, with our package's names ---
    from neural_distill.config import (DistillationConfig,
                                       IntermediateLayersKnowledgeDistillationLossConfig,
                                       KnowledgeDistillationLossConfig,
                                       QuantizationAwareTrainingConfig,
                                       SelfKnowledgeDistillationLossConfig)
    from neural_distill.training import prepare_compression

    x_all, y_all = (torch.as_tensor(a) for a in make_blobs(n=160, dim=8, classes=3, seed=3,
                                                                spread=2.5))
    x_train, y_train, x_test, y_test = x_all[:128], y_all[:128], x_all[128:], y_all[128:]
    dataloader = list(torch.split(x_train, 16))    # each batch is the model's input
    labels = list(torch.split(y_train, 16))
    epochs = 3

    model = _float_model(TwoHeads if scenario == "self" else _mlp, x_train, y_train)
    with torch.no_grad():
        out = model(x_test)
    float_accuracy = float(((out["logits"] if isinstance(out, dict) else out).argmax(-1)
                            == y_test).float().mean())
    criterion = {
        "kd": KnowledgeDistillationLossConfig(temperature=2.0, loss_types=["CE", "KL"]),
        "intermediate": IntermediateLayersKnowledgeDistillationLossConfig(add_origin_loss=True),
        "self": SelfKnowledgeDistillationLossConfig(
            layer_mappings=[[["shallow", "logits"]]], temperature=2.0, add_origin_loss=True),
    }[scenario]
    if inputs == "example_inputs":
        q_conf = QuantizationAwareTrainingConfig(example_inputs=dataloader[0])
    else:
        q_conf = QuantizationAwareTrainingConfig()
    d_conf = DistillationConfig(criterion=criterion)
    compression_manager = prepare_compression(model, [d_conf, q_conf])
    model = compression_manager.model
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005)

    calls, losses = [], []
    for name in HOOK_NAMES:  # record the hooks the loop calls, and what the loss hook returns
        original = getattr(compression_manager, name)

        def wrapper(*args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            result = _original(*args, **kwargs)
            if _name == "on_after_compute_loss":
                losses.append(result)
            return result

        setattr(compression_manager, name, wrapper)

    # --- the seed's training function, as written; "......" filled in ---
    def training_func_for_nc(model):
        compression_manager.on_train_begin()
        for epoch in range(epochs):
            compression_manager.on_epoch_begin(epoch)
            for i, batch in enumerate(dataloader):
                compression_manager.on_step_begin(i)
                optimizer.zero_grad()
                output = model(batch)
                logits = output["logits"] if isinstance(output, dict) else output
                loss = nn.functional.cross_entropy(logits, labels[i])
                loss = compression_manager.on_after_compute_loss(batch, output, loss)
                loss.backward()
                compression_manager.on_before_optimizer_step()
                optimizer.step()
                compression_manager.on_step_end()
            compression_manager.on_epoch_end()
        compression_manager.on_train_end()

    training_func_for_nc(model)
    assert compression_manager.qat.captured
    if inputs == "none":  # captured on the loop's first batch
        assert compression_manager.qat.example_args[0].shape == dataloader[0].shape

    steps = ["on_step_begin", "on_after_compute_loss", "on_before_optimizer_step",
             "on_step_end"] * len(dataloader)
    assert calls == ["on_train_begin"] + (["on_epoch_begin"] + steps + ["on_epoch_end"]) * \
        epochs + ["on_train_end"]
    assert len(losses) == epochs * len(dataloader)
    assert all(isinstance(loss, torch.Tensor) and loss.dim() == 0 for loss in losses)
    distiller = compression_manager.distillers[0]
    assert len(distiller.history) == epochs
    assert all(record["distillation_loss"] >= 0 for record in distiller.history)

    # The trained model becomes a real int8 model that still knows the task.
    info = compression_manager.export(str(tmp_path / "model_int8.pt2"))
    # Weights are int8; with so small a model biases and scales keep it above 1/4 of the float.
    assert info.int8 and info.compression > 2
    int8_model = load_int8(info.path, x_test)
    assert int8_kernels(int8_model) == ["onednn.qlinear_pointwise.default"]
    with torch.no_grad():
        out = int8_model(x_test)
    logits = out["logits"] if isinstance(out, dict) else out
    accuracy = float((logits.argmax(-1) == y_test).float().mean())
    assert accuracy >= float_accuracy - 0.07 and accuracy > 0.6, (accuracy, float_accuracy)
