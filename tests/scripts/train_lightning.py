"""A real Lightning fit, validate and test of a tiny MLP on CPU, with the Emitter.

Writes what Lightning saw (``trainer.callback_metrics`` after fit, what validate() and test()
returned, the parameter count and numpy's brute-force weight histogram) to argv[1].
"""

import json
import os
import sys

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_0_3
from gangplank_emitter.lightning import Emitter

out_path = sys.argv[1]
epochs = int(os.environ.get("EPOCHS", "3"))


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    def _loss(self, batch: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self.net(x)
        return torch.nn.functional.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean()

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        loss, acc = self._loss(batch)
        self.log_dict({"loss": loss, "accuracy": acc}, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        loss, acc = self._loss(batch)
        self.log_dict({"val_loss": loss, "val_accuracy": acc})

    def test_step(self, batch: tuple, batch_idx: int) -> None:
        loss, acc = self._loss(batch)
        self.log_dict({"test_loss": loss, "test_accuracy": acc})

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def data(n: int, seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=32)


pl.seed_everything(0, verbose=False)
model = Classifier()
trainer = pl.Trainer(
    max_epochs=epochs,
    accelerator="cpu",
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    num_sanity_val_steps=0,
    callbacks=[Emitter(histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_0_3, job=os.environ.get("EMITTER_JOB"))],
)
trainer.fit(model, data(256, 1), data(64, 2))
fit_metrics = {key: value.item() for key, value in trainer.callback_metrics.items()}
weights = np.concatenate([p.detach().double().numpy().ravel() for p in model.parameters()])
validated = trainer.validate(model, data(64, 2), verbose=False)
tested = trainer.test(model, data(64, 3), verbose=False)
with open(out_path, "w") as f:
    json.dump(
        {
            "fit": fit_metrics,
            "validate": validated[0],
            "test": tested[0],
            "params": sum(p.numel() for p in model.parameters()),
            "counts": [int(np.count_nonzero(weights <= b)) for b in HISTOGRAM_WEIGHT_BUCKETS_0_3] + [int(weights.size)],
            "sum": float(weights.sum()),
        },
        f,
    )
