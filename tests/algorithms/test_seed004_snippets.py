"""The two usage snippets of seed 004, with only the import paths changed (and its
``KLDivergance`` typo corrected), run against our package."""

import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader  # noqa: E402

from tests.algorithms.common import RandomImageDataset, SimpleConvModel  # noqa: E402


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(before, model):
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_snippet_1_teacher_model_as_is():
    teacher_model = SimpleConvModel()
    student_model = SimpleConvModel()
    train_dataloader = DataLoader(RandomImageDataset())
    eval_dataloader = DataLoader(RandomImageDataset())
    teacher_before, student_before = _snapshot(teacher_model), _snapshot(student_model)

    # --- snippet (seed 004, first block)
    from neural_distill.algorithms.distillation import Distillation
    from neural_distill.algorithms.distillation import KLDivergence
    from neural_distill.trainer import Trainer
    distillation = Distillation(
        teachers=teacher_model,
        kd_loss_fn=KLDivergence(temperature=4.0),
        org_loss_weight=0.1,
        kd_loss_weight=0.9,
    )

    trainer = Trainer(
        model=student_model,
        train_dataloader=train_dataloader,
        eval_dataloader=eval_dataloader,
        max_duration='1ep',
        algorithms=[distillation],
    )

    trainer.fit()
    # --- end of snippet

    _assert_same(teacher_before, teacher_model)
    assert teacher_model.training  # its own mode is given back
    assert trainer.state.step == len(train_dataloader)
    assert not all(torch.equal(v, student_model.state_dict()[k])
                   for k, v in student_before.items())
    record, = trainer.history
    assert record["distillation_loss"] > 0 and 0.0 <= record["accuracy"] <= 1.0


def test_snippet_2_teacher_trained_saved_and_loaded_from_its_checkpoint():
    teacher_model = SimpleConvModel()
    student_model = SimpleConvModel()
    train_dataloader = DataLoader(RandomImageDataset())
    eval_dataloader = DataLoader(RandomImageDataset())

    # --- snippet (seed 004, hidden set-up of the second block)
    from neural_distill.trainer import Trainer

    trainer = Trainer(
        model=teacher_model,
        train_dataloader=train_dataloader,
        eval_dataloader=eval_dataloader,
        max_duration='1ep',
        save_folder='./path/to/',
        save_filename='weights.pt',
    )

    trainer.fit()
    # --- end
    trained = _snapshot(teacher_model)
    teacher_model = SimpleConvModel()  # fresh weights: the checkpoint must bring them back
    assert not all(torch.equal(v, teacher_model.state_dict()[k]) for k, v in trained.items())

    # --- snippet (seed 004, second block)
    from neural_distill.algorithms.distillation import Distillation
    from neural_distill.algorithms.distillation import KLDivergence
    from neural_distill.trainer import Trainer

    distillation = Distillation(
        teachers={'./path/to/weights.pt': teacher_model},
        kd_loss_fn=KLDivergence(temperature=4.0),
        org_loss_weight=0.1,
        kd_loss_weight=0.9,
    )

    trainer = Trainer(
        model=student_model,
        train_dataloader=train_dataloader,
        eval_dataloader=eval_dataloader,
        max_duration='1ep',
        algorithms=[distillation],
    )

    trainer.fit()
    # --- end of snippet

    _assert_same(trained, teacher_model)
