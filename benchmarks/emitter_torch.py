"""Per-epoch cost of the transformers and Lightning emitters, and the torch histogram vs numpy's.

    .venv/bin/python benchmarks/emitter_torch.py

Each emitter gets the hook calls of one epoch (transformers: epoch begin/end, the training log and
the evaluation; Lightning: validation start/end and train epoch end) 200 times, from a real
Trainer's state, its records going to a pipe that another process drains. No histogram there (target
<= 50 us an epoch), beside a bare write + flush of one line to the same sink. Then the weight
histogram of 1M and 4M float32 torch parameters: numpy on the same values, the torch kernel (the
GPU path, run on CPU here) and what the emitter does with a CPU tensor.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

import _common  # noqa: F401  (puts tests/ on the path)
from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_1_0
from gangplank_emitter.histogram import histogram as numpy_histogram
from gangplank_emitter.torch_histogram import device_histogram, histogram

EPOCHS = 200
TRAIN_LOGS = {
    "loss": 0.6914536952972412,
    "grad_norm": 0.436879426240921,
    "learning_rate": 0.003472222222222222,
    "epoch": 1.0,
}
EVAL_METRICS = {
    "eval_loss": 0.6918436884880066,
    "eval_runtime": 0.0466,
    "eval_samples_per_second": 1372.355,
    "epoch": 1.0,
}


@contextlib.contextmanager
def stdout_to_pipe() -> Iterator[None]:
    """sys.stdout is a pipe into another process that reads it all, as with ``| gangplank-sidecar``."""
    reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert reader.stdin is not None
    with io.TextIOWrapper(reader.stdin, encoding="utf-8") as pipe, contextlib.redirect_stdout(pipe):
        yield
    reader.wait(10)


def mean_of(epoch: Callable[[], object], runs: int = 20) -> list[float]:
    """The mean seconds per epoch of ``runs`` runs of EPOCHS epochs each, sorted (the machine is shared)."""
    means = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(EPOCHS):
            epoch()
        means.append((time.perf_counter() - start) / EPOCHS)
    return sorted(means)


@contextlib.contextmanager
def stdout_to_devnull() -> Iterator[None]:
    with open(os.devnull, "w", encoding="utf-8") as devnull, contextlib.redirect_stdout(devnull):
        yield


SINKS = {"pipe": stdout_to_pipe, "/dev/null": stdout_to_devnull}


def transformers_epoch_cost() -> dict[str, list[float]]:
    from transformers import BertConfig, BertForSequenceClassification, TrainerControl, TrainerState, TrainingArguments

    from gangplank_emitter.transformers import Emitter

    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=40,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=16,
        )
    )
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, report_to="none", use_cpu=True, num_train_epochs=EPOCHS)
    state, control = TrainerState(), TrainerControl()
    state.num_train_epochs = EPOCHS
    emitter = Emitter(job="bench")

    def epoch() -> None:
        emitter.on_epoch_begin(args, state, control, model=model)
        emitter.on_epoch_end(args, state, control, model=model)
        emitter.on_log(args, state, control, logs=dict(TRAIN_LOGS), model=model)
        emitter.on_evaluate(args, state, control, metrics=dict(EVAL_METRICS), model=model)

    costs = {}
    for name, sink in SINKS.items():
        with sink():
            emitter.on_train_begin(args, state, control, model=model)
            costs[name] = mean_of(epoch)
            emitter.on_train_end(args, state, control, model=model)
    return costs


def lightning_epoch_cost() -> dict[str, list[float]]:
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from gangplank_emitter.lightning import Emitter

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))

        def _loss(self, batch: list) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def training_step(self, batch: list, batch_idx: int) -> torch.Tensor:
            loss = self._loss(batch)
            self.log_dict({"loss": loss, "accuracy": torch.tensor(0.5)}, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch: list, batch_idx: int) -> None:
            self.log_dict({"val_loss": self._loss(batch), "val_accuracy": torch.tensor(0.5)})

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = DataLoader(TensorDataset(torch.randn(64, 64), torch.randint(0, 10, (64,))), batch_size=32)
    model = Module()
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        trainer.fit(model, data, data)  # a real trainer whose callback_metrics hold four tensors
    emitter = Emitter(job="bench")

    def epoch() -> None:
        emitter.on_validation_start(trainer, model)
        emitter.on_validation_end(trainer, model)
        emitter.on_train_epoch_end(trainer, model)

    costs = {}
    for name, sink in SINKS.items():
        with sink():
            emitter.on_train_start(trainer, model)
            costs[name] = mean_of(epoch)
            emitter.on_train_end(trainer, model)
    return costs


def bare_write_cost() -> dict[str, list[float]]:
    """One write + flush of a 400-byte line, the least any record costs on that sink."""
    line = json.dumps({"gangplank": 1, "metrics": dict(TRAIN_LOGS), "pad": "x" * 250}) + "\n"

    def write() -> None:
        sys.stdout.write(line)
        sys.stdout.flush()

    costs = {}
    for name, sink in SINKS.items():
        with sink():
            costs[name] = mean_of(write)
    return costs


def best_of(fns: dict[str, Callable[[], object]], repeat: int = 5) -> dict[str, float]:
    """The best time of each function, taking turns so that a busy moment of the machine hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def main() -> None:
    print(f"## Per-epoch cost, mean of {EPOCHS} epochs, no histogram (target <= 50 us): min and median of 20 runs")
    print(f"{'':<26}{'pipe min':>10}{'median':>10}{'/dev/null min':>16}{'median':>10}")
    for name, measure in (
        ("transformers Emitter", transformers_epoch_cost),
        ("lightning Emitter", lightning_epoch_cost),
        ("bare write + flush", bare_write_cost),
    ):
        costs = measure()
        cells = "".join(
            f"{costs[s][0] * 1e6:>{w}.1f}{costs[s][len(costs[s]) // 2] * 1e6:>10.1f}"
            for s, w in (("pipe", 10), ("/dev/null", 16))
        )
        print(f"{name:<26}{cells}")

    print(
        "\n## Weight histogram (HISTOGRAM_WEIGHT_BUCKETS_1_0), float32 on CPU, best of 5; torch with "
        f"{torch.get_num_threads()} threads"
    )
    print("numpy: the numpy path on the same values; torch kernel: bucketize + bincount, what runs on a GPU;")
    print("emitter: what TorchRun does with a CPU tensor (numpy on a view of its memory)")
    print(f"{'weights':<12}{'numpy':>12}{'torch kernel':>15}{'emitter':>12}{'numpy/kernel':>15}")
    rng = np.random.default_rng(0)
    for size in (1_000_000, 4_000_000):
        values = rng.normal(0, 0.3, size).astype(np.float32)
        tensor = torch.from_numpy(values)
        want = numpy_histogram([values], HISTOGRAM_WEIGHT_BUCKETS_1_0)["counts"]
        assert device_histogram([tensor], HISTOGRAM_WEIGHT_BUCKETS_1_0)["counts"] == want
        assert histogram([tensor], HISTOGRAM_WEIGHT_BUCKETS_1_0)["counts"] == want
        # The kernel last: torch's worker threads spin a while after it, slowing what follows.
        best = best_of(
            {
                "numpy": lambda values=values: numpy_histogram([values], HISTOGRAM_WEIGHT_BUCKETS_1_0),
                "emitter": lambda tensor=tensor: histogram([tensor], HISTOGRAM_WEIGHT_BUCKETS_1_0),
                "kernel": lambda tensor=tensor: device_histogram([tensor], HISTOGRAM_WEIGHT_BUCKETS_1_0),
            }
        )
        theirs, kernel, ours = best["numpy"], best["kernel"], best["emitter"]
        print(
            f"{size:<12,}{theirs * 1e3:>9.2f} ms{kernel * 1e3:>12.2f} ms{ours * 1e3:>9.2f} ms{theirs / kernel:>14.2f}x"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
