"""NLPTrainer.distill as a user's script; run by tests/distributed/test_hf_torchrun.py under
torchrun (2 processes) and as one process. Writes the trained student's state to argv[1]."""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments  # noqa: E402

from neural_distill import Criterion, DistillationConfig  # noqa: E402
from neural_distill.integrations.transformers import NLPTrainer  # noqa: E402

SEQ, VOCAB = 8, 40


def bert(layers, hidden, seed, init_range=0.02):
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(
        vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=SEQ, num_labels=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        initializer_range=init_range))


class Sentences(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, VOCAB, (n, SEQ), generator=generator)
        self.labels = (self.ids[:, 0] >= VOCAB // 2).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(SEQ, dtype=torch.long),
                "labels": self.labels[i]}


def main(out_path, batch_size, workdir):
    torch.set_num_threads(1)
    args = TrainingArguments(output_dir=os.path.join(workdir, "out"),
                             per_device_train_batch_size=batch_size, num_train_epochs=2,
                             learning_rate=1e-3, report_to=[], save_strategy="no",
                             logging_strategy="no", disable_tqdm=True, seed=3,
                             # On CPU, Accelerate runs torchrun's processes as one gloo
                             # group only with use_cpu; without it each trains alone.
                             use_cpu=True)
    trainer = NLPTrainer(model=bert(1, 16, seed=1), args=args, train_dataset=Sentences(64, 0))
    config = DistillationConfig(criterion=Criterion(name="KnowledgeLoss", temperature=2.0,
                                                    loss_types=["CE", "KL"]))
    model = trainer.distill(distillation_config=config, teacher_model=bert(2, 24, seed=0,
                                                                          init_range=0.5))
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out_path)
    # As a torchrun script should: close the group Accelerate opened, or gloo's threads can
    # abort the process at interpreter exit after a run that succeeded.
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
