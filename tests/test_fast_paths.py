"""Every fast path of the parsers gives the same items (or the same error) as its full parser.

Lines are drawn near the fast paths' edges: the shapes they take, one piece off.
"""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from gangplank_sidecar import parsers
from gangplank_sidecar.parsers import csv_log, floydhub, keras_log, lightning_log, transformers_log


def outcome(parse, line: bytes) -> tuple[str, object]:
    try:
        return "items", parse(line)
    except ValueError as exc:
        return "error", str(exc)


def keras_full(line: bytes) -> list:
    """keras_log.parse without its byte-level rejection of unfinished bars."""
    if not keras_log.candidate(line):
        return []
    marker = line.find(keras_log.MARKER)
    segment = keras_log._last_segment(line if marker < 0 else line[:marker])
    return keras_log._items(keras_log._cleaned(segment), finished=marker < 0)


digits = st.one_of(st.integers(0, 120).map(str), st.sampled_from(["0", "00", "075", "75", "7" * 20, ""]))
keras_piece = st.sampled_from(
    [
        " ",
        "  ",
        "\x1b[1m",
        "\x1b[0m",
        "\x1b[0m ",
        "\x1b[32m",
        "\x08",
        "\r",
        "/",
        "s",
        "ms",
        "━",
        "━━━━━━━━━━",
        "[=====>....]",
        " 0s 3ms/step",
        " - loss: 0.5",
        " - accuracy: 0.9",
        " - val_loss: 1e-3",
        " - 0s",
        "Epoch 3/10",
        "9",
        "x: 1",
        "\n",
        '{"gangplank": 1}',
    ]
)


@st.composite
def mutated(draw, line: str) -> bytes:
    """``line`` with up to two pieces inserted, dropped or replaced: a near miss, or the line itself."""
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2]))):
        at = draw(st.integers(0, len(line)))
        cut = draw(st.integers(0, 3))
        line = line[:at] + draw(st.one_of(st.just(""), keras_piece, st.text(max_size=2))) + line[at + cut :]
    return line.encode("utf-8", "surrogatepass")


@st.composite
def keras_lines(draw) -> bytes:
    current, target = draw(digits), draw(digits)
    if draw(st.booleans()):
        width = len(target)
        done = "━" * draw(st.integers(0, 20))
        line = (
            f"\x1b[1m{current:>{width}}/{target}\x1b[0m \x1b[32m{done}\x1b[0m\x1b[37m━\x1b[0m \x1b[1m0s\x1b[0m 3ms/step"
            f" - accuracy: 0.5 - loss: 0.25"
        )
        return draw(mutated(line))
    head = draw(st.lists(st.sampled_from([" ", "\x1b[1m", "\x08", "\r", "Epoch "]), max_size=3))
    tail = draw(st.lists(keras_piece, max_size=8))
    return "".join([*head, f"{current}/{target}" if draw(st.booleans()) else current, *tail]).encode()


@settings(max_examples=3000, deadline=None)
@given(keras_lines())
@example("\x1b[1m 12/75\x1b[0m \x1b[32m━━━\x1b[0m\x1b[37m━\x1b[0m \x1b[1m0s\x1b[0m 3ms/step - loss: 0.5".encode())
@example("\x1b[1m75/75\x1b[0m \x1b[32m━━━━\x1b[0m \x1b[1m1s\x1b[0m 3ms/step - loss: 0.5 - val_loss: 0.6".encode())
@example(b"075/75 - 0s - loss: 0.5")
@example(b"7/7\x1b[0m5 - loss: 0.5")
@example(b"75/7\x1b[0m5 - loss: 0.5")
def test_keras_rejection_of_unfinished_bars_matches_the_full_parser(line: bytes) -> None:
    assert keras_log.parse(line) == keras_full(line)


@given(st.binary(max_size=200))
def test_keras_rejection_on_arbitrary_bytes(line: bytes) -> None:
    assert keras_log.parse(line) == keras_full(line)


def test_keras_rejection_really_skips_the_regexes() -> None:
    """An unfinished Keras 3 bar is decided before any regex; a complete one still gives its result."""
    unfinished = (
        "\x1b[1m 12/75\x1b[0m \x1b[32m━━━\x1b[0m\x1b[37m━\x1b[0m \x1b[1m0s\x1b[0m 3ms/step - loss: 0.5".encode()
    )
    assert keras_log._unfinished(keras_log._last_segment(unfinished)) is True
    finished = unfinished.replace(b"12/75", b"75/75")
    assert keras_log._unfinished(keras_log._last_segment(finished)) is False
    assert keras_log.parse(finished) == [keras_log.Result({"loss": 0.5})]


number = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**40), 10**40).map(str),
    st.sampled_from(
        [
            "-0",
            "0",
            "00",
            "-",
            "1.",
            ".5",
            "1e5",
            "1E+400",
            "1e-400",
            "-1.5e3",
            "NaN",
            "Infinity",
            '"NaN"',
            "true",
            "1" * 31,
            "1" * 32,
            "0.1234567890123456789012345678901",
        ]
    ),
)
name = st.one_of(
    st.sampled_from(["loss", "val_loss", "acc", "", 'a"b', "a\\b", "é", "x" * 256, "x" * 257, "\x7f"]),
    st.text(max_size=8),
)
index = st.one_of(st.integers(-3, 10**20).map(str), st.sampled_from(["007", "1.0", "-0", '"3"', "null", "true"]))
space = st.sampled_from(["", " ", "  ", "\t", "\n", "\r"])


@st.composite
def floydhub_lines(draw) -> bytes:
    key = draw(st.sampled_from(["step", "epoch", "step", "epoch", "steps", "Step"]))
    if draw(st.integers(0, 3)):  # json.dumps' shape, then maybe a near miss
        value = draw(
            st.one_of(
                st.floats(-1e6, 1e6),
                st.floats(),
                st.integers(-(10**40), 10**40),
                st.sampled_from([-0.0, 1e300, 5e-324]),
            )
        )
        line = json.dumps(
            {"metric": draw(name), "value": value, key: draw(st.one_of(st.integers(0, 10**6), st.integers(-2, 10**19)))}
        )
        if draw(st.booleans()):
            line = line.replace(", ", ",").replace(": ", ":")
        return draw(mutated(line))
    parts = [
        draw(space),
        '{"metric":',
        draw(space),
        json.dumps(draw(name)) if draw(st.booleans()) else f'"{draw(name)}"',
        ",",
        draw(space),
        '"value":',
        draw(space),
        draw(number),
    ]
    if draw(st.booleans()):
        parts += [",", draw(space), f'"{key}":', draw(space), draw(index)]
    if draw(st.booleans()):
        parts += [', "epoch": 2']
    parts += [draw(st.sampled_from(["}", "} ", "}x", "", "}}"])), draw(space)]
    return "".join(parts).encode("utf-8", "surrogatepass")


@settings(max_examples=3000, deadline=None)
@given(floydhub_lines())
@example(b'{"metric": "loss", "value": -0, "step": 0}')
@example(b'{"metric": "loss", "value": 1E+400, "epoch": 12}')
@example(b'{"metric": "loss", "value": 5, "step": 007}')
@example(b'{"metric":"loss","value":0.25,"epoch":3}\r')
def test_floydhub_common_shape_matches_the_full_parser(line: bytes) -> None:
    assert outcome(floydhub.parse, line) == outcome(floydhub._parse, line)


@given(st.binary(max_size=120))
def test_floydhub_common_shape_on_arbitrary_bytes(line: bytes) -> None:
    assert outcome(floydhub.parse, b'{"metric"' + line) == outcome(floydhub._parse, b'{"metric"' + line)


def test_floydhub_common_shape_is_taken() -> None:
    line = b'{"metric": "loss", "value": 0.25, "step": 12}'
    assert floydhub._COMMON.fullmatch(line) is not None
    assert floydhub.parse(line) == [floydhub.Point("loss", 0.25, None, 12)]


# ``auto``'s prefilter: a line without any byte or word of ours is "other" before any format looks at it.
framework_piece = st.sampled_from(
    [
        "{",
        "|",
        "[",
        "]",
        "\t",
        "Epoch ",
        "Epoch 3/10",
        " - ",
        " - loss: 0.5",
        "%|",
        "100%|██████████| 16/16 [00:00<00:00]",
        "/? [",
        "{'loss': 0.5, 'epoch': 1.0}",
        '{"metric": "loss", "value": 0.5, "step": 1}',
        '{"gangplank": 1}',
        "[3]\tvalidation_0-logloss:0.5",
        "[3]\ttraining's auc: 0.9",
        " metric",
        "\r",
        "loss: 0.5",
        "-",
        "E",
    ]
)


@st.composite
def framework_lines(draw) -> bytes:
    noise = "2025-11-25 10:15:07 INFO loader: batch 7 of shard 0 prefetched in 0.123 ms"
    pieces = draw(st.lists(st.one_of(framework_piece, st.text(max_size=4), st.just(noise)), max_size=6))
    return "".join(pieces).encode("utf-8", "surrogatepass")


@settings(max_examples=3000, deadline=None)
@given(framework_lines())
@example(b"Epoch 3/10")
@example(b" - 20s - loss: 0.4097 - acc: 0.8078")
@example(b"[11]\tvalidation_0-logloss:0.05123")
@example(b"Epoch 0: |          | 5/? [00:00<?, ?it/s, loss=0.5]")
def test_auto_prefilter_matches_the_formats(line: bytes) -> None:
    assert outcome(parsers.PARSERS["auto"], line) == outcome(parsers._formats, line)


@given(st.binary(max_size=200))
def test_auto_prefilter_on_arbitrary_bytes(line: bytes) -> None:
    assert outcome(parsers.PARSERS["auto"], line) == outcome(parsers._formats, line)


def test_auto_prefilter_really_skips_the_formats(monkeypatch) -> None:
    called = []
    monkeypatch.setattr(parsers, "_formats", lambda line: called.append(line))
    assert (
        parsers.PARSERS["auto"](b"2025-11-25 10:15:07 INFO loader: batch 7 of shard 0 prefetched in 0.123 ms")
        is parsers.OTHER
    )
    assert parsers.PARSERS["auto"](b"[LightGBM] [Info] Number of data points: 7") is parsers.OTHER
    assert called == []
    parsers.PARSERS["auto"](b"[3]\ttraining's auc: 0.9")
    assert called == [b"[3]\ttraining's auc: 0.9"]


# transformers: a flat dict of numbers is read by one regex; ``_full`` (ast.literal_eval) reads any dict.
trainer_piece = st.sampled_from(
    [
        "'loss'",
        "'epoch'",
        "'eval_loss'",
        ": ",
        ", ",
        "'0.5'",
        "0.5",
        "1e-3",
        "'1e-3'",
        "nan",
        "inf",
        "-inf",
        "'nan'",
        "True",
        "None",
        "'a b'",
        "[1]",
        "{",
        "}",
        "'",
        '"',
        "np.float64(0.5)",
        "1_0",
        "0x1",
        ".5",
        "5.",
        "+1",
        "--1",
        "1e400",
    ]
)


@st.composite
def trainer_dicts(draw) -> bytes:
    pairs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["loss", "epoch", "eval_loss", "grad_norm", "a.b", "x-y"]),
                st.sampled_from(["0.5", "'0.5'", "1e-05", "'1e-05'", "3", "'3'", "nan", "'inf'", "-0.0"]),
            ),
            min_size=1,
            max_size=4,
        )
    )
    line = "{" + ", ".join(f"'{key}': {value}" for key, value in pairs) + "}"
    return draw(mutated(line)) if draw(st.booleans()) else (line + draw(trainer_piece)).encode()


def same_values(fast: dict | None, full: dict | None) -> bool:
    """The fast path declines (None: the full parser reads the line) or finds the full parser's values."""
    return (
        fast is None
        or full is not None
        and fast.keys() == full.keys()
        and all(x == y or (x != x and y != y) for x, y in zip(fast.values(), full.values()))
    )


@settings(max_examples=3000, deadline=None)
@given(trainer_dicts())
@example(b"{'loss': '0.6931', 'grad_norm': '1.234', 'learning_rate': '0.0009', 'epoch': '0.5'}")
@example(b"{'loss': nan, 'epoch': 1.0}")
def test_transformers_flat_dicts_match_the_full_parser(line: bytes) -> None:
    fast = transformers_log._fast(line)
    assert same_values(fast, transformers_log._full(line))


@given(st.binary(max_size=120))
def test_transformers_flat_dicts_on_arbitrary_bytes(line: bytes) -> None:
    assert same_values(transformers_log._fast(line), transformers_log._full(line))


def test_transformers_flat_dict_is_taken() -> None:
    line = b"{'loss': '0.6931', 'grad_norm': 1.5, 'epoch': '0.5'}"
    assert transformers_log._fast(line) == {"loss": 0.6931, "grad_norm": 1.5, "epoch": 0.5}


# The shape the fast path takes, as the regex it once was: byte operations now read exactly these dicts.
_TRAINER_NUMBER = rb"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_TRAINER_PAIR = rb"'[A-Za-z0-9_./-]{1,200}': (?:'(?:" + _TRAINER_NUMBER + rb")'|(?:" + _TRAINER_NUMBER + rb"))"
TRAINER_FLAT = re.compile(rb"\{" + _TRAINER_PAIR + rb"(?:, " + _TRAINER_PAIR + rb")*\}")
TRAINER_OCTAL = re.compile(rb"(?:\{|, )'[^']*': [-+]?0\d+(?=[,}])")


def flat_shape(line: bytes) -> bool:
    return TRAINER_FLAT.fullmatch(line) is not None and TRAINER_OCTAL.search(line) is None


@settings(max_examples=3000, deadline=None)
@given(trainer_dicts())
@example(b"{'loss': ' 1', 'epoch': 1}")
@example(b"{'loss': '1_0', 'epoch': 'Infinity'}")
@example(b"{'loss': 00.5, 'epoch': -0}")
@example(b"{'a': '', 'b': ''}")
def test_transformers_fast_path_takes_exactly_the_flat_shape(line: bytes) -> None:
    assert (transformers_log._fast(line) is not None) == flat_shape(line)


@given(st.binary(max_size=120))
def test_transformers_fast_path_shape_on_arbitrary_bytes(line: bytes) -> None:
    assert (transformers_log._fast(line) is not None) == flat_shape(line)


# CSV: a row of numbers and empty cells is read without decoding; ``_full`` reads any row.
csv_cell = st.one_of(
    st.sampled_from(
        [
            "",
            "0",
            "1",
            "12",
            "0.5",
            "1e-3",
            "-2",
            "nan",
            "inf",
            "-inf",
            "1_0",
            " 1",
            "1 ",
            " ",
            "x",
            "loss",
            '"1"',
            "é",
            "١",
            "\t2",
            "\x1c3",
            "1e400",
            "0x1",
            "007",
            "3.0",
            "1e9",
            "2e9",
            "-0",
        ]
    ),
    st.text(max_size=3),
)


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(csv_cell, min_size=1, max_size=6),
    st.sampled_from(
        [
            ("epoch", "step", "loss", "val_loss"),
            ("epoch", "loss"),
            ("a", "b", "c"),
            ("step", "epoch", "loss"),  # the places first in another order
            ("loss", "epoch"),  # a place after a metric: the fast path's general form
            ("epoch", "epoch", "loss"),
            ("epoch", "step"),
        ]
    ),
)
@example(["0", "7", "", "0.5"], ("epoch", "step", "loss", "val_loss"))
def test_csv_numeric_rows_match_the_full_parser(cells: list[str], keys: tuple[str, ...]) -> None:
    line = ",".join(cells).encode("utf-8", "surrogatepass")
    fast, full = csv_log.CsvLog(), csv_log.CsvLog()
    fast.keys = full.keys = keys
    trimmed = line.rstrip(b"\r\n")
    assume(trimmed)  # an empty line is nothing before either path
    assert repr(outcome(fast.parse, line)) == repr(outcome(full._full, trimmed))


@given(st.binary(max_size=80))
def test_csv_numeric_rows_on_arbitrary_bytes(line: bytes) -> None:
    fast, full = csv_log.CsvLog(), csv_log.CsvLog()
    fast.keys = full.keys = ("epoch", "step", "loss")
    trimmed = line.rstrip(b"\r\n")
    if trimmed and len(trimmed) <= csv_log.MAX_LINE:
        assert repr(outcome(fast.parse, line)) == repr(outcome(full._full, trimmed))


def test_csv_numeric_row_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """A numeric row never reaches the full parse."""
    log = csv_log.CsvLog()
    log.parse(b"epoch,step,train_loss_epoch,train_loss_step,val_loss\n")
    monkeypatch.setattr(log, "_full", None)
    assert log.parse(b"0,7,,0.5,") == [csv_log.Row({"train_loss_step": 0.5}, 0, 7)]
    assert log.parse(b"0,8,0.25,,0.5") == [csv_log.Row({"train_loss_epoch": 0.25, "val_loss": 0.5}, 0, 8)]


def lightning_full(line: bytes) -> list:
    """lightning_log.parse_bar without its line-level test: the bar regex on every segment that tqdm shows
    finished (``100%|`` or an unknown total ``/? [``; a bar drawn without a percentage is not read either way)."""
    if len(line) > lightning_log.MAX_LINE:
        return []
    found: dict[int, lightning_log.Bar] = {}
    for segment in reversed(line.split(b"\r")):
        start = segment.find(b"Epoch ")
        finished = b"100%|" in segment or b"/? [" in segment
        bar = lightning_log._BAR.match(segment, start) if start >= 0 and finished else None
        if bar is None or (bar[3] != b"?" and bar[2] != bar[3]):
            continue
        epoch = int(bar[1])
        if epoch not in found:
            found[epoch] = lightning_log.Bar(epoch, lightning_log._postfix(bar[4]))
    return [found[epoch] for epoch in sorted(found)]


lightning_piece = st.sampled_from(
    [
        "\r",
        "Epoch ",
        "Epoch 3: ",
        "100%|",
        "50%|",
        "|",
        "/? [",
        "16/16 ",
        "8/16 ",
        "5/? ",
        "[",
        "]",
        ", ",
        "loss=0.5",
        "%",
    ]
)


@st.composite
def lightning_lines(draw) -> bytes:
    """Bar segments as Lightning draws them (finished, unfinished, unknown total), then near misses of them."""
    segments = []
    for _ in range(draw(st.integers(1, 3))):
        done, total = draw(st.sampled_from([(16, 16), (8, 16), (5, None), (0, 16)]))
        percent = "" if total is None else f"{100 * done // total}%"
        segments.append(
            f"Epoch {draw(st.integers(0, 3))}: {percent}|█████     | {done}/{total or '?'} "
            f"[00:00<00:00, 717.17it/s, v_num=0, train_loss_step=0.5]"
        )
    line = "\r".join(segments)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        at = draw(st.integers(0, len(line)))
        cut = draw(st.integers(0, 4))
        line = line[:at] + draw(st.one_of(st.just(""), lightning_piece, st.text(max_size=2))) + line[at + cut :]
    return line.encode("utf-8", "surrogatepass")


@settings(max_examples=3000, deadline=None)
@given(lightning_lines())
@example("Epoch 3: 50%|█████     | 8/16 [00:00<00:00, v_num=0]\rEpoch 3: 100%|██████████| 16/16 [00:00<00:00]".encode())
@example(b"Epoch 0: |          | 5/? [00:00<?, ?it/s, loss=0.5]")
@example(b"Epoch 2: 100%|| 15/16 [x]\rEpoch 1: 100%|| 16/16 [x]")
def test_lightning_bar_rejections_match_the_full_parser(line: bytes) -> None:
    assert lightning_log.parse_bar(line) == lightning_full(line)


@given(st.binary(max_size=200))
def test_lightning_bar_rejections_on_arbitrary_bytes(line: bytes) -> None:
    assert lightning_log.parse_bar(line) == lightning_full(line)


def test_lightning_unfinished_bars_skip_the_regex(monkeypatch) -> None:
    """A line of bars short of 100% is decided by byte tests; a finished bar still gives its values."""
    line = "\rEpoch 3: 50%|█████     | 8/16 [00:00<00:00, loss=0.5]\rEpoch 3: 56%|█████▌    | 9/16 [00:00<00:00]"
    monkeypatch.setattr(lightning_log, "_BAR", None)  # any regex use would raise
    assert lightning_log.parse_bar(line.encode()) == []
    monkeypatch.undo()
    done = b"Epoch 3: 100%|##########| 16/16 [00:00<00:00, v_num=0, loss=0.5]"
    assert lightning_log.parse_bar(done) == [lightning_log.Bar(3, {"loss": 0.5})]


# CSV rows of the epoch in progress with known keys take ``Interpreter._more_of_epoch``, one update a row or,
# while a chunk's lines are read (``folding``), one update for the rows in a row: the same run state as
# ``_placed``, the full path, for any sequence of rows (but for the store's version, which counts updates).
csv_value = st.one_of(st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0]))
csv_row = st.builds(
    csv_log.Row,
    st.dictionaries(st.sampled_from(["loss", "val_loss", "acc", "train_loss_step"]), csv_value, max_size=3),
    st.sampled_from([None, 0, 0, 0, 1, 2, 4]),  # epoch 0 often: rows of the epoch in progress
    st.one_of(st.none(), st.integers(0, 50)),
)


def _run_state(rows: list[csv_log.Row], path: str, listened: bool, chunk: int = 1) -> tuple[object, ...]:
    """``path``: "full", "lean" or "folded" (``chunk`` rows at a time); ``listened``: a sink hears of every
    update, so each settles the epoch's checks (the history's case)."""
    from gangplank_sidecar.aggregation.interpret import Interpreter
    from gangplank_sidecar.aggregation.state import Store

    store = Store()
    if listened:
        store.listeners.append(lambda event, series: None)
    interpreter = Interpreter(store, "m.csv", "j", lambda message: None)
    if path == "full":

        def placed(series: object, rows: list[tuple[dict[str, float], int | None]], epoch: int) -> None:
            for metrics, step in rows:
                interpreter._placed(metrics, epoch, step, train=series)  # type: ignore[arg-type]

        interpreter._more_of_epoch = placed  # type: ignore[method-assign]
    for start in range(0, len(rows), chunk):
        interpreter.folding = path == "folded"
        for row in rows[start : start + chunk]:
            interpreter.apply(row, when=1.0)
        interpreter.folding = False
        interpreter.flush()
    return tuple(
        repr(
            (
                s.run == interpreter._text_run,
                s.metrics,
                s.epoch_metrics,
                s.metrics_epoch,
                s.best,
                s.epoch,
                s.step,
                sorted(s.checks.items()),
                sorted(s.failed_checks),
                {key: c.buckets for key, c in s.curves.items()},
                s.version if path != "folded" else "(counts the folded updates once)",
            )
        )
        for s in store.snapshot()
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(csv_row, max_size=40), st.booleans(), st.integers(1, 8))
@example(
    [
        csv_log.Row({"loss": 1.0, "acc": math.nan}, 0, 1),
        csv_log.Row({"acc": 0.5}, 0, 2),  # a non-finite value replaced: non_finite no longer fires
        csv_log.Row({"acc": 0.6, "val_loss": math.inf}, 0, 3),
        csv_log.Row({"loss": 0.5}, 0, 4),
    ],
    True,
    3,
)
@example(
    [csv_log.Row({"loss": 1.0}, 0, 1), csv_log.Row({"loss": 2.0}, 0, 2), csv_log.Row({"loss": 3.0}, 0, 3)], False, 3
)
def test_csv_rows_of_the_epoch_in_progress_update_the_state_as_the_full_path(
    rows: list[csv_log.Row], listened: bool, chunk: int
) -> None:
    full = _run_state(rows, "full", listened)
    assert _run_state(rows, "lean", listened) == full
    folded = _run_state(rows, "folded", listened, chunk)
    assert [state.rsplit(", ", 1)[0] for state in folded] == [state.rsplit(", ", 1)[0] for state in full]
