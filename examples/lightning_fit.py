"""A Lightning fit, validate and test of a small MLP on sklearn's digits, on CPU.

    python examples/lightning_fit.py | gangplank-sidecar --job digits-lightning

``trainer.validate()`` and ``trainer.test()`` after the fit are the ``test`` phase, with the names
the module logged (``gangplank_test_val_loss``, ``gangplank_test_test_accuracy``).
"""

from __future__ import annotations

import sys

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_1_0
from gangplank_emitter.lightning import Emitter


class DigitsMLP(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))

    def _measure(self, batch: list, prefix: str) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        accuracy = (logits.argmax(1) == y).float().mean()
        self.log_dict({f"{prefix}loss": loss, f"{prefix}accuracy": accuracy}, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch: list, batch_idx: int) -> torch.Tensor:
        return self._measure(batch, "")

    def validation_step(self, batch: list, batch_idx: int) -> None:
        self._measure(batch, "val_")

    def test_step(self, batch: list, batch_idx: int) -> None:
        self._measure(batch, "test_")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def loader(x: object, y: object, shuffle: bool = False) -> DataLoader:
    data = TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))
    return DataLoader(data, batch_size=64, shuffle=shuffle)


def main(epochs: int = 5) -> None:
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.2, random_state=0, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(x_train, y_train, test_size=0.2, random_state=0, stratify=y_train)
    pl.seed_everything(0, verbose=False)
    model = DigitsMLP()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Emitter(job="digits-lightning", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_1_0)],
    )
    trainer.fit(model, loader(x_train, y_train, shuffle=True), loader(x_val, y_val))
    trainer.validate(model, loader(x_val, y_val), verbose=False)
    trainer.test(model, loader(x_test, y_test), verbose=False)


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
