"""INC's distillation + pruning (+ QAT) oneshot test shape, and the seed's pruner_config form.

The loop below is INC's ``test_distillation_prune_oneshot_with_new_API`` with the import paths
changed and resnet18 replaced by a model with the same layer names and fewer channels.
"""

import copy

import pytest
import torch
from torch import nn

from neural_distill.config import (DistillationConfig, KnowledgeDistillationLossConfig,
                                   PrunerConfig, QuantizationAwareTrainingConfig,
                                   WeightPruningConfig)
from neural_distill.errors import ConfigError
from neural_distill.training import prepare_compression
from tests.pruning.models import TinyResNet, dummy_loader

torch.set_num_threads(1)


def _train(manager, model, loader, epochs=3, iters=3):
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.1, nesterov=True,
                                weight_decay=0.001)
    manager.callbacks.on_train_begin()
    for epoch in range(epochs):
        model.train()
        manager.callbacks.on_epoch_begin(epoch)
        for cnt, (image, target) in enumerate(loader):
            manager.callbacks.on_step_begin(cnt)
            output = model(image)
            loss = criterion(output, target)
            loss = manager.callbacks.on_after_compute_loss(image, output, loss)
            optimizer.zero_grad()
            loss.backward()
            manager.callbacks.on_before_optimizer_step()
            optimizer.step()
            manager.callbacks.on_after_optimizer_step()
            manager.callbacks.on_step_end()
            if cnt + 1 >= iters:
                break
        manager.callbacks.on_epoch_end()
    manager.callbacks.on_train_end()
    return model


def _zeros(weight):
    return float((weight == 0).sum()) / weight.numel()


def _pruned_layers(model):
    return {n: m for n, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and n != "fc"}


def test_inc_distillation_prune_oneshot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    base = TinyResNet()
    model = copy.deepcopy(base)
    teacher = copy.deepcopy(base)
    before = copy.deepcopy(teacher.state_dict())
    d_conf = DistillationConfig(teacher, KnowledgeDistillationLossConfig(loss_types=["CE", "KL"]))
    p_conf = WeightPruningConfig([{"start_step": 0, "end_step": 2}], target_sparsity=0.64,
                                 pruning_scope="local")
    manager = prepare_compression(model=model, confs=[d_conf, p_conf])
    _train(manager, model, dummy_loader())
    assert str(manager.callbacks.callbacks_list) == "[Distillation Callbacks, Pruning Callbacks]"
    assert _zeros(model.layer1[0].conv1.weight) == pytest.approx(0.64, abs=0.05)
    for name, module in _pruned_layers(model).items():
        assert _zeros(module.weight) == pytest.approx(0.64, abs=0.05), name
    assert _zeros(model.fc.weight) == 0.0  # the head stays dense
    # 4x1 blocks: every pruned weight's 3 neighbours in its block of output channels are too.
    w = model.layer1[0].conv1.weight.reshape(4, 4, -1)  # [row blocks, 4 rows, inputs]
    assert bool(((w == 0).all(1) | (w != 0).all(1)).all())
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # teacher bit-identical
    # Saved with the masks folded in: the file holds plain weights, as sparse.
    manager.save(str(tmp_path / "saved"))
    saved = torch.load(tmp_path / "saved" / "model.pt")
    assert set(saved) == set(model.state_dict())
    assert _zeros(saved["layer1.0.conv1.weight"]) == pytest.approx(0.64, abs=0.05)
    assert "pruning:" in (tmp_path / "saved" / "compression.yaml").read_text()


def test_prune_then_qat_keeps_zeros_in_the_int8_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 4))
    teacher = copy.deepcopy(model)
    x, y = torch.randn(12, 8), torch.randint(0, 4, (12,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    manager = prepare_compression(model, [
        DistillationConfig(teacher, KnowledgeDistillationLossConfig()),
        WeightPruningConfig(target_sparsity=0.5, pattern="unstructured", pruning_type="magnitude",
                            pruning_scope="local", start_step=0, end_step=1),
        QuantizationAwareTrainingConfig(example_inputs=x[:2])])
    _train(manager, manager.model, loader, epochs=1, iters=3)
    sparsity = manager.pruners[0].sparsity()
    assert set(sparsity) == {"0", "2"}  # the output layer stays dense
    assert all(v == pytest.approx(0.5, abs=0.02) for v in sparsity.values())
    # The prepared graph trains the user's parameters: they are the sparse ones.
    assert _zeros(model[2].weight) == pytest.approx(0.5, abs=0.02)
    # Quantizing keeps a zero weight zero: the int8 model is as sparse.
    int8 = manager.qat.convert()
    weights = [t for n, t in int8.state_dict().items() if t.dim() == 2 and t.shape == (32, 32)]
    assert weights and _zeros(weights[0]) >= 0.48


def test_seed_pruner_config_form(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model, teacher = TinyResNet(), TinyResNet()
    pruner = PrunerConfig(prune_type="BasicMagnitude", target_sparsity_ratio=0.5,
                          epoch_range=[0, 2])
    d_conf = DistillationConfig(teacher_model=teacher, criterion=KnowledgeDistillationLossConfig(),
                                pruner_config=pruner)
    manager = prepare_compression(model, d_conf)
    _train(manager, model, dummy_loader(), epochs=2, iters=2)
    sparsity = manager.pruners[0].sparsity()
    assert set(sparsity) == set(_pruned_layers(model))
    assert all(v == pytest.approx(0.5, abs=0.01) for v in sparsity.values())


def test_snip_momentum_two_four_and_global_scope():
    torch.manual_seed(0)
    model = TinyResNet()
    manager = prepare_compression(model, WeightPruningConfig(
        [{"op_names": ["layer1.0.conv1"], "pattern": "2:4"},
         {"op_names": ["layer1.*"], "pruning_scope": "global", "target_sparsity": 0.6}],
        start_step=0, end_step=3, pruning_frequency=2))
    _train(manager, model, dummy_loader(), epochs=2, iters=3)
    w = model.layer1[0].conv1.weight.reshape(16, -1, 4)
    assert int((w != 0).sum(-1).max()) <= 2 and _zeros(w) == 0.5
    others = [model.layer1[0].conv2, model.layer1[1].conv1, model.layer1[1].conv2]
    total = sum(int((m.weight == 0).sum()) for m in others) / sum(m.weight.numel()
                                                                   for m in others)
    assert total == pytest.approx(0.6, abs=0.02)
    assert _zeros(model.conv1.weight) == 0.0  # not named by any group


def test_bad_pruning_configs_name_the_key():
    with pytest.raises(ConfigError, match="pattern"):
        WeightPruningConfig(pattern="4y1")
    with pytest.raises(ConfigError, match=r"pruning_configs\[0\].target_sparsity"):
        WeightPruningConfig([{"target_sparsity": 1.5}])
    with pytest.raises(ConfigError, match="Did you mean 'target_sparsity'"):
        WeightPruningConfig(target_sparsty=0.5)
    with pytest.raises(ConfigError, match="op_names: expected a list"):
        WeightPruningConfig(op_names="layer1.*")
    with pytest.raises(ConfigError, match="prune_type"):
        PrunerConfig(prune_type="GroupLasso")
    with pytest.raises(ConfigError, match="pruner_config"):
        DistillationConfig(pruner_config={"target": 0.5})
    with pytest.raises(ConfigError, match="match no Conv or Linear"):
        prepare_compression(TinyResNet(), WeightPruningConfig(op_names=["nothing.*"]))
