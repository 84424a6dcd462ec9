"""A real transformers Trainer fit + evaluate of a tiny config-built BERT, on CPU, with the Emitter.

Writes what the Trainer saw (``state.log_history``, the evaluate result, the parameter count and
numpy's brute-force weight histogram) to argv[1]; its stdout goes into gangplank-sidecar.
"""

import json
import os
import sys
import tempfile

import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_0_3
from gangplank_emitter.transformers import Emitter

out_path = sys.argv[1]
epochs = int(os.environ.get("EPOCHS", "3"))


def sequences(n: int, seed: int) -> list[dict]:
    """Label 1 when token 7 is in the sequence: a rule a one-layer BERT learns in a few epochs."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(8, 40, size=(n, 12))
    labels = rng.integers(0, 2, size=n)
    ids[labels == 1, rng.integers(1, 12)] = 7
    return [{"input_ids": torch.tensor(i), "labels": torch.tensor(label)} for i, label in zip(ids, labels)]


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
model = BertForSequenceClassification(config)
with tempfile.TemporaryDirectory() as output_dir:
    args = TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=epochs,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        learning_rate=5e-3,
        eval_strategy="epoch",
        logging_strategy="epoch",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    emitter = Emitter(histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_0_3, job=os.environ.get("EMITTER_JOB"))
    trainer = Trainer(
        model=model, args=args, train_dataset=sequences(192, 1), eval_dataset=sequences(64, 2), callbacks=[emitter]
    )
    trainer.train()
    weights = np.concatenate([p.detach().double().numpy().ravel() for p in model.parameters() if p.requires_grad])
    result = trainer.evaluate()
with open(out_path, "w") as f:
    json.dump(
        {
            "log_history": trainer.state.log_history,
            "evaluate": result,
            "params": sum(p.numel() for p in model.parameters()),
            "counts": [int(np.count_nonzero(weights <= b)) for b in HISTOGRAM_WEIGHT_BUCKETS_0_3] + [int(weights.size)],
            "sum": float(weights.sum()),
        },
        f,
    )
