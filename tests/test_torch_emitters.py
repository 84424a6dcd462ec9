"""The transformers and Lightning emitters in process: rank zero only, step records, validation cadence,
framework values as exact floats, and a core that imports no framework."""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gangplank_emitter.torch_run import scalars

# The frameworks' own deprecation notes and hints are not ours to fail on.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def events(records: list[dict]) -> list[tuple[str, str]]:
    return [(r["event"], r["phase"]) for r in records]


def without_times(records: list[dict]) -> list[dict]:
    """Records without their clocks and run id (each Emitter's fit counts as one in the process)."""
    return [{k: v for k, v in r.items() if k not in ("time", "elapsed_seconds", "run")} for r in records]


def test_core_imports_no_framework() -> None:
    code = (
        "import sys, gangplank_emitter\n"
        "from gangplank_emitter import Run, histogram\n"
        "print(sorted(m for m in ('torch', 'transformers', 'lightning', 'pytorch_lightning', 'keras') if m in "
        "sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_keras_emitter_is_also_at_gangplank_emitter_keras() -> None:
    import gangplank_emitter
    import gangplank_emitter.keras

    assert gangplank_emitter.keras.Emitter is gangplank_emitter.Emitter


def test_scalars_are_exact_floats_and_skip_what_is_not_one_number() -> None:
    third = torch.tensor(1 / 3, dtype=torch.float32)
    got = scalars(
        {
            "f32": third,
            "one": torch.tensor([2.5]),
            "i": torch.tensor(7),
            "np": np.float32(0.1),
            "py": 3,
            "nan": torch.tensor(math.nan),
            "flag": torch.tensor(True),
            "bool": True,
            "many": torch.ones(2),
            "complex": torch.tensor(1 + 2j),
            "text": "0.5",
            "none": None,
            "array": np.ones(3),
        }
    )
    assert got.pop("nan") != got.get("nan", 0)  # NaN stays NaN: Run writes it as the protocol's "NaN"
    assert got == {"f32": float(np.float32(1 / 3)), "one": 2.5, "i": 7.0, "np": float(np.float32(0.1)), "py": 3.0}


# transformers ----------------------------------------------------------------------------------


def hf_trainer(tmp_path: Path, callbacks: list, **overrides: object):
    """A one-layer BERT from a config on made-up token sequences: 96 samples, 6 steps an epoch."""
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    rng = np.random.default_rng(0)
    ids, labels = rng.integers(0, 30, size=(128, 8)), rng.integers(0, 2, size=128)
    rows = [{"input_ids": torch.tensor(i), "labels": torch.tensor(label)} for i, label in zip(ids, labels)]
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=8,
        num_labels=2,
    )
    settings = dict(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=2,
        per_device_train_batch_size=16,
        eval_strategy="epoch",
        logging_strategy="epoch",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    args = TrainingArguments(**{**settings, **overrides})
    model = BertForSequenceClassification(config)
    return Trainer(model=model, args=args, train_dataset=rows[:96], eval_dataset=rows[96:], callbacks=callbacks)


def test_transformers_two_emitters_write_the_same_records(tmp_path: Path) -> None:
    from gangplank_emitter.transformers import Emitter

    trainer = hf_trainer(
        tmp_path, [Emitter(file=tmp_path / "a.jsonl", job="a"), Emitter(file=tmp_path / "b.jsonl", job="a")]
    )
    trainer.train()
    trainer.evaluate()
    a, b = read(tmp_path / "a.jsonl"), read(tmp_path / "b.jsonl")
    assert events(a) == [
        ("start", "train"),
        ("epoch", "train"),
        ("epoch", "train"),
        ("end", "train"),
        ("start", "test"),
        ("evaluate", "test"),
        ("end", "test"),
    ]
    assert without_times(a) == without_times(b)


def test_transformers_world_process_nonzero_writes_nothing(tmp_path: Path) -> None:
    from gangplank_emitter.transformers import Emitter

    trainer = hf_trainer(tmp_path, [Emitter(file=tmp_path / "rank1.jsonl")])
    trainer.is_world_process_zero = lambda: False  # what TrainerState.is_world_process_zero is made from
    trainer.train()
    assert trainer.state.is_world_process_zero is False
    trainer.evaluate()
    trainer.predict(trainer.eval_dataset)
    assert not (tmp_path / "rank1.jsonl").exists()


def test_transformers_step_records_follow_step_every(tmp_path: Path) -> None:
    from gangplank_emitter.transformers import Emitter

    path = tmp_path / "steps.jsonl"
    trainer = hf_trainer(tmp_path, [Emitter(file=path, step_every=4)], logging_strategy="steps", logging_steps=2)
    trainer.train()
    steps = [r for r in read(path) if r["event"] == "step"]
    logged = {e["step"]: e for e in trainer.state.log_history if "loss" in e}
    assert [r["step"] for r in steps] == [4, 8, 12]
    for record in steps:
        entry = logged[record["step"]]
        assert record["metrics"] == {key: entry[key] for key in ("loss", "grad_norm", "learning_rate")}
    epochs = [r for r in read(path) if r["event"] == "epoch"]
    assert [r["metrics"]["loss"] for r in epochs] == [logged[6]["loss"], logged[12]["loss"]]  # each epoch's last log


def test_transformers_evaluations_inside_epochs_go_to_their_epoch(tmp_path: Path) -> None:
    from gangplank_emitter.transformers import Emitter

    path = tmp_path / "steps.jsonl"
    trainer = hf_trainer(
        tmp_path, [Emitter(file=path)], eval_strategy="steps", eval_steps=4, logging_strategy="steps", logging_steps=4
    )
    trainer.train()  # 6 steps an epoch: evaluations at steps 4 and 8, none at an epoch's end
    history = trainer.state.log_history
    evals = {e["step"]: e["eval_loss"] for e in history if "eval_loss" in e}
    losses = {e["step"]: e["loss"] for e in history if "loss" in e}
    epochs = [r["metrics"] for r in read(path) if r["event"] == "epoch"]
    assert sorted(evals) == sorted(losses) == [4, 8, 12]
    assert [(m["loss"], m["val_loss"]) for m in epochs] == [(losses[4], evals[4]), (losses[12], evals[12])]


def test_transformers_predict_after_training_is_a_test_record(tmp_path: Path) -> None:
    from gangplank_emitter.transformers import Emitter

    path = tmp_path / "predict.jsonl"
    trainer = hf_trainer(tmp_path, [Emitter(file=path)], num_train_epochs=1)
    trainer.train()
    output = trainer.predict(trainer.eval_dataset)
    records = read(path)
    assert events(records)[-3:] == [("start", "test"), ("evaluate", "test"), ("end", "test")]
    assert records[-2]["metrics"]["loss"] == output.metrics["test_loss"]


# Lightning -------------------------------------------------------------------------------------


def pl_fit(callbacks: list, epochs: int = 2, strategy: object = "auto", **trainer_args: object):
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    class Regressor(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: list, batch_idx: int) -> torch.Tensor:
            loss = torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
            self.log("loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch: list, batch_idx: int) -> None:
            self.log("val_loss", torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1]))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        strategy=strategy,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        **trainer_args,
    )
    model = Regressor()
    trainer.fit(model, data, data)
    return trainer, model, data


def test_lightning_global_rank_nonzero_writes_nothing(tmp_path: Path) -> None:
    from lightning.pytorch.strategies import SingleDeviceStrategy

    from gangplank_emitter.lightning import Emitter

    class RankOne(SingleDeviceStrategy):
        @property
        def is_global_zero(self) -> bool:
            """What trainer.is_global_zero asks: this process is another rank's."""
            return False

    trainer, model, data = pl_fit([Emitter(file=tmp_path / "rank1.jsonl")], strategy=RankOne(device="cpu"))
    assert trainer.is_global_zero is False
    trainer.validate(model, data, verbose=False)
    assert not (tmp_path / "rank1.jsonl").exists()


def test_lightning_validation_values_only_in_the_epochs_that_validated(tmp_path: Path) -> None:
    from gangplank_emitter.lightning import Emitter

    path = tmp_path / "every2.jsonl"
    trainer, _, _ = pl_fit([Emitter(file=path)], epochs=4, check_val_every_n_epoch=2)
    epochs = [r for r in read(path) if r["event"] == "epoch"]
    assert [(r["epoch"], sorted(r["metrics"])) for r in epochs] == [
        (1, ["loss", "loss_epoch", "loss_step"]),
        (2, ["loss", "loss_epoch", "loss_step", "val_loss"]),
        (3, ["loss", "loss_epoch", "loss_step"]),
        (4, ["loss", "loss_epoch", "loss_step", "val_loss"]),
    ]
    assert epochs[-1]["metrics"] == {key: value.item() for key, value in trainer.callback_metrics.items()}


def test_lightning_step_records_follow_step_every(tmp_path: Path) -> None:
    from gangplank_emitter.lightning import Emitter

    path = tmp_path / "steps.jsonl"
    pl_fit([Emitter(file=path, step_every=3)], epochs=2)  # 4 steps an epoch
    steps = [r for r in read(path) if r["event"] == "step"]
    assert [r["step"] for r in steps] == [3, 6]
    assert all(isinstance(r["metrics"]["loss_step"], float) for r in steps)


def test_lightning_failed_fit_ends_with_status_failed(tmp_path: Path) -> None:
    import lightning.pytorch as pl

    from gangplank_emitter.lightning import Emitter

    class Boom(pl.Callback):
        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            raise RuntimeError("boom")

    path = tmp_path / "failed.jsonl"
    with pytest.raises(RuntimeError, match="boom"):
        pl_fit([Emitter(file=path), Boom()])
    assert events(read(path)) == [("start", "train"), ("epoch", "train"), ("end", "train")]
    assert read(path)[-1]["status"] == "failed"


def test_the_pytorch_lightning_package_has_its_own_emitter(tmp_path: Path) -> None:
    import pytorch_lightning
    from torch.utils.data import DataLoader, TensorDataset

    from gangplank_emitter.pytorch_lightning import Emitter

    class Tiny(pytorch_lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch: list, batch_idx: int) -> torch.Tensor:
            loss = self.layer(batch[0]).pow(2).mean()
            self.log("loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    path = tmp_path / "pl.jsonl"
    emitter = Emitter(file=path, job="old-package")
    assert isinstance(emitter, pytorch_lightning.Callback)
    trainer = pytorch_lightning.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[emitter],
    )
    trainer.fit(Tiny(), DataLoader(TensorDataset(torch.randn(16, 2)), batch_size=8))
    records = read(path)
    assert events(records) == [("start", "train"), ("epoch", "train"), ("epoch", "train"), ("end", "train")]
    assert records[0]["framework"] == f"pytorch_lightning-{pytorch_lightning.__version__}/torch-{torch.__version__}"
    assert records[0]["params"] == {"total": 3, "trainable": 3}
    assert records[2]["metrics"] == {"loss": trainer.callback_metrics["loss"].item()}


@pytest.mark.parametrize(
    "module", ["gangplank_emitter.transformers", "gangplank_emitter.lightning", "gangplank_emitter.pytorch_lightning"]
)
def test_every_framework_checks_step_every_as_keras_does(module: str) -> None:
    emitter = importlib.import_module(module).Emitter
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError) as error:
            emitter(step_every=bad)
        assert (
            str(error.value)
            == f"step_every must be a whole number of batches, 1 or more (or None: no step records), not {bad!r}"
        )
    assert emitter(step_every=2).step_every == 2
