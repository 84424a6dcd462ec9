"""Framework logs in the per-stream interpreter: phases, names, epoch counting and runs (design.md section 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gangplank_sidecar import parsers
from gangplank_sidecar.aggregation.interpret import Interpreter
from gangplank_sidecar.aggregation.state import Store
from gangplank_sidecar.parsers import kv
from gangplank_sidecar.parsers.patterns import Match, Patterns, compile_pattern

FRAMEWORKS = Path(__file__).parent / "fixtures" / "frameworks"


def feed(lines: list[bytes], fmt: str = "auto", source: str = "stdin", patterns: Patterns | None = None) -> Store:
    store = Store()
    interpreter = Interpreter(store, source, None, lambda message: None)
    parse = parsers.stream_parser(fmt, source, patterns)
    for line in lines:
        for item in parse(line)[1]:
            interpreter.apply(item)
    return store


def capture(name: str) -> list[bytes]:
    return (FRAMEWORKS / name).read_bytes().split(b"\n")


def runs(store: Store) -> list[tuple[str, str, int | None, str | None, float | None, dict[str, float]]]:
    """Every series (finished ones first) as (run, phase, epoch, status, elapsed, metrics).

    Runs are numbered by first appearance.
    """
    ids: dict[str, str] = {}
    return [
        (ids.setdefault(s.run, f"run{len(ids) + 1}"), s.phase, s.epoch, s.status, s.elapsed, s.metrics)
        for s in store.all_runs()
    ]


def test_transformers_eval_is_validation_during_training_and_a_test_after_it() -> None:
    (train, test) = runs(feed(capture("transformers_notqdm.log")))
    assert train == (
        "run1",
        "train",
        3,
        "ok",
        3.062,
        {
            "loss": 0.6892,
            "grad_norm": 0.6027,
            "learning_rate": 8.333e-05,
            "val_loss": 0.6912,
            "val_runtime": 0.1015,
            "val_samples_per_second": 157.7,
            "val_steps_per_second": 19.71,
            "train_samples_per_second": 31.35,
            "train_steps_per_second": 3.919,
            "train_loss": 0.6923,
        },
    )
    assert test == (
        "run1",
        "test",
        None,
        "ok",
        0.0944,
        {"loss": 0.6912, "samples_per_second": 169.5, "steps_per_second": 21.18},
    )


def test_transformers_epochs_are_whole_epochs_reached_and_a_new_fit_is_a_new_run() -> None:
    lines = [
        b"{'eval_loss': 0.9, 'eval_runtime': 0.5}",  # evaluate() before training: a test
        b"{'loss': 0.8, 'epoch': 0.5}",
        b"{'loss': 0.7, 'epoch': 0.99}",
        b"{'loss': 0.6, 'epoch': 1.5}",
        b"{'loss': 0.5, 'epoch': 0.5}",  # back at an earlier epoch: another fit
        b"{'eval_loss': 0.4, 'epoch': 1.0}",
    ]
    assert runs(feed(lines)) == [
        ("run1", "train", 1, None, None, {"loss": 0.6}),
        ("run1", "test", None, "ok", 0.5, {"loss": 0.9}),
        ("run2", "train", 1, None, None, {"loss": 0.5, "val_loss": 0.4}),
    ]


def test_transformers_validation_goes_through_the_checks() -> None:
    lines = [b"{'loss': 0.8, 'epoch': 1.0}", b"{'eval_loss': nan, 'epoch': 1.0}"]
    (series,) = feed(lines).all_runs()
    assert series.checks["non_finite"].message == "non-finite val_loss=NaN at epoch 1"


def test_lightning_epochs_count_from_zero_and_tables_are_tests() -> None:
    lines = capture("lightning_tqdm.log")
    assert runs(feed(lines)) == [
        ("run1", "train", 3, "ok", None, {"train_loss_step": 0.0136, "val_loss": 0.0161, "train_loss_epoch": 0.024}),
        ("run1", "test", None, "ok", None, {"val_loss": 0.01607692614197731, "test_loss": 0.01607692614197731}),
    ]
    again = feed(lines + [b"\rEpoch 0: 100%|##| 8/8 [00:00<00:00, v_num=1, train_loss_step=0.5]"])
    assert [(run, phase, epoch) for run, phase, epoch, *_ in runs(again)] == [
        ("run1", "train", 3),
        ("run2", "train", 1),
        ("run1", "test", None),
    ]


def test_boosting_rounds_are_epochs_and_round_one_again_is_a_new_run() -> None:
    lines = capture("xgboost_sklearn.log") + capture("xgboost_train.log")
    assert runs(feed(lines)) == [
        (
            "run1",
            "train",
            12,
            None,
            None,
            {
                "validation_0_logloss": 0.07598,
                "validation_0_auc": 0.99821,
                "validation_1_logloss": 0.12045,
                "validation_1_auc": 0.99486,
            },
        ),
        ("run2", "train", 8, None, None, {"train_error": 0.01759, "eval_error": 0.04678}),
    ]


def test_lightgbm_best_round_printed_again_changes_nothing() -> None:
    ((_, _, epoch, _, _, metrics),) = runs(feed(capture("lightgbm_early_stopping.log")))
    assert (epoch, metrics["valid_1_binary_logloss"]) == (20, 0.0754937)
    (series,) = feed(capture("lightgbm_early_stopping.log")).all_runs()
    assert series.best["valid_1_auc"] == (0.997795, 17)


def test_csv_rows_update_their_epoch_and_a_rewritten_file_is_the_same_run() -> None:
    rows = capture("lightning_metrics.csv")
    store = feed(
        rows[:19] + rows[:7], source="/runs/version_0/metrics.csv"
    )  # Lightning rewrote the file with a new header
    assert runs(store) == [
        (
            "run1",
            "train",
            3,
            None,
            None,
            {
                "train_loss_step": 0.013573826290667057,
                "val_loss": 0.01607692614197731,
                "train_loss_epoch": 0.023963581770658493,
            },
        ),
    ]
    (series,) = store.all_runs()
    assert (series.step, series.best["train_loss_step"]) == (23, (0.009142225608229637, 3))
    keras = runs(feed(capture("keras_csvlogger.csv"), "csv"))
    assert [(epoch, metrics["val_loss"]) for _, _, epoch, _, _, metrics in keras] == [(3, 1.9669407606124878)]


def test_kv_and_patterns_place_values_as_printed() -> None:
    lines = [b"epoch=1 loss=0.5", b"step=7 loss=0.45", b"epoch=2 loss=0.4", b"epoch=1 loss=0.9"]
    assert runs(feed(lines, "kv")) == [
        ("run1", "train", 2, None, None, {"loss": 0.4}),
        ("run2", "train", 1, None, None, {"loss": 0.9}),
    ]
    patterns = Patterns(
        [compile_pattern(r"it (?P<step>\d+) loss=(?P<loss>\S+)"), compile_pattern(r"final acc (?P<acc>\S+)", "test")]
    )
    store = feed([b"it 10 loss=0.5", b"it 20 loss=0.25", b"final acc 0.875", b"[0]\tv-auc:0.5"], patterns=patterns)
    assert runs(store) == [
        ("run1", "train", 1, None, None, {"loss": 0.25, "v_auc": 0.5}),
        ("run1", "test", None, "ok", None, {"acc": 0.875}),
    ]


def test_protocol_records_win_over_every_framework_text() -> None:
    start = b'{"gangplank": 1, "event": "start", "run": "r1", "phase": "train", "time": 1.0, "params": {"total": 10}}'
    text = [
        b"{'loss': 0.5, 'epoch': 1.0}",
        "Epoch 0: 100%|██| 8/8 [00:00<00:00, loss=0.5]".encode(),
        b"[0]\tvalidation_0-logloss:0.5",
        b"[1]\ttraining's auc: 0.9",
    ]
    assert runs(feed([start, *text])) == [("run1", "train", None, None, None, {})]


def test_a_csv_row_that_does_not_fit_is_counted_and_the_file_goes_on() -> None:
    from gangplank_sidecar.pipeline import Pipeline
    from gangplank_sidecar.selfmetrics import SelfMetrics

    store, selfmetrics, reports = Store(), SelfMetrics(), []
    pipeline = Pipeline(store, selfmetrics, reports.append)
    for line in [b"epoch,loss", b"0,0.5", b"1,0.4,9", b"2", b"2,0.3"]:
        pipeline.feed("/x/metrics.csv", line)
    assert {fmt: n for fmt, n in selfmetrics.lines.by_format.items() if n} == {"csv": 3, "error": 2}
    assert selfmetrics.lines.parse_errors == 2
    assert reports == [
        "/x/metrics.csv:3: CSV row has 3 cells, its header 2",
        "/x/metrics.csv:4: CSV row has 1 cells, its header 2",
    ]
    assert runs(store) == [("run1", "train", 3, None, None, {"loss": 0.3})]


def test_a_line_without_an_epoch_is_a_step_of_the_epoch_in_progress() -> None:
    """Once a run has an epoch, a line without one updates the gauges only: the finished epoch keeps its
    values, its curve point and its best; before any epoch, such lines are the run's observations (Katib)."""
    (s,) = feed([b"epoch=1 loss=0.3", b"loss=0.9", b"step=7 loss=0.8"], "kv").all_runs()
    assert (s.metrics, s.epoch_metrics, s.metrics_epoch, s.best, s.step) == (
        {"loss": 0.8},
        {"loss": 0.3},
        1,
        {"loss": (0.3, 1)},
        7,
    )
    assert [(b.first, b.last, b.total) for b in s.curves["loss"].buckets] == [(1, 1, 0.3)]
    (s,) = feed([b"epoch=1 loss=0.3", b"loss=0.1", b"epoch=2 loss=0.2"], "kv").all_runs()
    assert (s.metrics, s.epoch_metrics, s.best) == ({"loss": 0.2}, {"loss": 0.2}, {"loss": (0.2, 2)})
    assert [(b.first, b.total) for b in s.curves["loss"].buckets] == [(1, 0.3), (2, 0.2)]
    (s,) = feed([b"loss=0.5", b"loss=0.4", b"loss=0.45"], "kv").all_runs()
    assert (s.metrics, s.epoch, s.best, s.curves) == ({"loss": 0.45}, None, {"loss": (0.4, None)}, {})


class _AlwaysPlaced(Interpreter):
    """The interpreter without ``_pairs``'s inline step: every training pattern match through ``_placed``."""

    def apply(self, item: object, when: float | None = None) -> None:
        assert isinstance(item, Match)
        self.when = when
        self._pairs_placed(item)

    def _pairs_placed(self, found: kv.Pairs | Match) -> None:
        train = self._train_series()
        back = train is not None and (
            (found.epoch is not None and train.epoch is not None and found.epoch < train.epoch)
            or (found.step is not None and train.step is not None and found.step < train.step)
        )
        self._placed(found.metrics, found.epoch, found.step, new_run=back or self._trained, train=train)


matches = st.builds(
    Match,
    st.dictionaries(st.sampled_from(["loss", "acc", "lr"]), st.floats(allow_nan=False), min_size=1, max_size=3),
    st.none() | st.integers(0, 4),
    st.none() | st.integers(0, 30),
    st.just("train"),
)


@given(st.lists(matches, max_size=30), st.integers(1, 8))
@settings(max_examples=400, deadline=None)
@example([Match({"loss": 1.0}, 1, None, "train"), *(Match({"loss": 0.5}, None, n, "train") for n in (3, 4, 2, 5))], 5)
def test_pairs_inline_step_equals_placed(found: list[Match], chunk: int) -> None:
    """Steps of known keys in an epoch in progress, read inline, one update each or folded ``chunk`` lines at a
    time (a step back in a fold starts a new run), leave the run state ``_placed`` leaves."""
    stores = []
    for kind, folding in ((Interpreter, False), (Interpreter, True), (_AlwaysPlaced, False)):
        store = Store()
        interpreter = kind(store, "stdin", None, lambda message: None)
        for start in range(0, len(found), chunk):
            interpreter.folding = folding
            for item in found[start : start + chunk]:
                interpreter.apply(item, when=1.0)
            interpreter.folding = False
            interpreter.flush()
        stores.append(store)
    fields = ("phase", "epoch", "step", "metrics", "epoch_metrics", "metrics_epoch", "best", "status", "time")
    states = [
        [
            [getattr(s, name) for name in fields] + [{k: c.buckets for k, c in s.curves.items()}]
            for s in store.all_runs()
        ]
        for store in stores
    ]
    assert states[0] == states[1] == states[2]


def _trainer_lines() -> list[bytes]:
    """A Trainer's logging steps (fractional epochs) and evaluations over three epochs, the loss at its best
    within the second, going up in the third (a finding that comes within an epoch), then the fit's summary."""
    lines = []
    for step in range(1, 31):
        epoch = step / 10
        loss = 1 / step if step <= 10 else 0.05 + abs(step - 15) / 100 if step <= 20 else 0.5 + step / 100
        lines.append(f"{{'loss': {loss:.4f}, 'grad_norm': 0.5, 'learning_rate': 1e-3, 'epoch': {epoch:.2f}}}".encode())
        if step % 10 == 0:
            lines.append(f"{{'eval_loss': {loss * 1.1:.4f}, 'eval_runtime': 0.1, 'epoch': {epoch:.1f}}}".encode())
    lines.append(b"{'train_runtime': 3.5, 'train_loss': 0.4, 'epoch': 3.0}")
    return lines


def _trainer_state(chunks: list[list[bytes]], listened: bool) -> list[object]:
    from gangplank_sidecar.pipeline import Pipeline
    from gangplank_sidecar.selfmetrics import SelfMetrics

    store = Store()
    if listened:
        store.listeners.append(lambda event, series: None)
    pipeline = Pipeline(store, SelfMetrics(), report=lambda message: None)
    for chunk in chunks:
        pipeline.feed_lines("stdin", chunk)
    fields = ("epoch", "step", "metrics", "epoch_metrics", "metrics_epoch", "best", "status", "failed_checks")
    return [
        [getattr(s, name) for name in fields] + [{k: c.buckets for k, c in s.curves.items()}, sorted(s.checks.items())]
        for s in store.all_runs()
    ]


@pytest.mark.parametrize("listened", [False, True])
def test_trainer_steps_read_in_one_chunk_leave_the_state_of_one_line_at_a_time(listened: bool) -> None:
    """A chunk's Trainer steps of the epoch in progress fold into one update: the same run state."""
    lines = _trainer_lines()
    state = _trainer_state([[line] for line in lines], listened)
    assert state[0][0] == 3 and state[0][6] == "ok"
    assert _trainer_state([lines], listened) == state
    assert _trainer_state([lines[i : i + 7] for i in range(0, len(lines), 7)], listened) == state


def _floydhub_lines() -> list[bytes]:
    """FloydHub step points of two metrics, an epoch point now and then, a step going back (a new run)."""
    lines = []
    for n, step in enumerate([*range(1, 25), *range(3, 12)]):
        loss = 0.2 + abs(n - 9) / 20
        lines.append(f'{{"metric": "loss", "value": {loss}, "step": {step}}}'.encode())
        lines.append(f'{{"metric": "accuracy", "value": {1 - loss}, "step": {step}}}'.encode())
        if step % 8 == 0:
            lines.append(f'{{"metric": "val_loss", "value": {loss * 1.1}, "epoch": {step // 8}}}'.encode())
    return lines


@pytest.mark.parametrize("listened", [False, True])
def test_floydhub_step_points_read_in_one_chunk_leave_the_state_of_one_line_at_a_time(listened: bool) -> None:
    """A chunk's FloydHub step points of known keys fold into one update: the same runs, values and bests."""
    lines = _floydhub_lines()
    state = _trainer_state([[line] for line in lines], listened)
    assert len(state) == 2 and state[0][1] == 24 and state[1][1] == 11  # the step back started the second run
    assert state[0][5]["loss"] == (0.2, 1)  # the first run's best, at epoch 1
    assert _trainer_state([lines], listened) == state
    assert _trainer_state([lines[i : i + 5] for i in range(0, len(lines), 5)], listened) == state


def test_a_floydhub_step_back_within_a_chunk_starts_a_new_run() -> None:
    """Steps 10, 11, then 5 in one chunk: 5 goes back from the folded 11, not from the run's 3 before it."""
    line = '{{"metric": "loss", "value": 0.5, "step": {}}}'.format
    first, second = [line(n).encode() for n in (1, 2, 3)], [line(n).encode() for n in (10, 11, 5)]
    state = _trainer_state([first, second], listened=False)
    assert [run[1] for run in state] == [11, 5]
    assert state == _trainer_state([[one] for one in first + second], listened=False)
