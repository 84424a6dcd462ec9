"""A transformers Trainer fine-tuning a tiny BERT built from a config (no download), on CPU.

    python examples/transformers_finetune.py | gangplank-sidecar --job tiny-bert

The task is made up: label 1 when a sequence starts with a token below 20. The Trainer's own
log lines (``{'loss': '0.6931', ...}``, rounded to 4 digits) pass through the sidecar untouched;
the emitter's records carry the exact values.
"""

from __future__ import annotations

import sys
import tempfile

import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_1_0
from gangplank_emitter.transformers import Emitter


def sequences(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 40, size=(n, 10))
    return [{"input_ids": torch.tensor(row), "labels": torch.tensor(int(row[0] < 20))} for row in ids]


def main(epochs: int = 3) -> None:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir=output_dir,
            num_train_epochs=epochs,
            per_device_train_batch_size=32,
            learning_rate=5e-3,
            eval_strategy="epoch",
            logging_strategy="epoch",
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        trainer = Trainer(
            model=BertForSequenceClassification(config),
            args=args,
            train_dataset=sequences(384, 1),
            eval_dataset=sequences(128, 2),
            callbacks=[Emitter(job="tiny-bert", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_1_0)],
        )
        trainer.train()
        trainer.evaluate(sequences(128, 3))


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
