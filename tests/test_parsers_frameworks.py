"""Framework logs (transformers, Lightning, XGBoost, LightGBM, CSV loggers, name=value, user patterns):
golden items from real captures, hostile lines, cross-detection, and arbitrary bytes.

The captures are what real trainings printed (tests/fixtures/frameworks/make_framework_fixtures.py).
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gangplank_sidecar import parsers
from gangplank_sidecar.parsers import boosting, kv, lightning_log, patterns, transformers_log
from gangplank_sidecar.parsers.boosting import Round
from gangplank_sidecar.parsers.csv_log import CsvLog, Header, Row
from gangplank_sidecar.parsers.kv import Pairs
from gangplank_sidecar.parsers.lightning_log import Bar, Results, Tables
from gangplank_sidecar.parsers.patterns import Match, Patterns, compile_pattern
from gangplank_sidecar.parsers.transformers_log import Log

FRAMEWORKS = Path(__file__).parent / "fixtures" / "frameworks"
FIXTURES = Path(__file__).parent / "fixtures"
NAN, INF = math.nan, math.inf

# capture -> the format that must read it
CAPTURES = {
    "transformers_tqdm.log": "transformers",
    "transformers_notqdm.log": "transformers",
    "transformers4_tqdm.log": "transformers",
    "transformers4_notqdm.log": "transformers",
    "lightning_tqdm.log": "lightning",
    "lightning_rich.log": "lightning",
    "xgboost_sklearn.log": "xgboost",
    "xgboost_train.log": "xgboost",
    "lightgbm_train.log": "lightgbm",
    "lightgbm_early_stopping.log": "lightgbm",
    "lightning_metrics.csv": "csv",
    "keras_csvlogger.csv": "csv",
}


def lines(name: str) -> list[bytes]:
    return (FRAMEWORKS / name).read_bytes().split(b"\n")  # not splitlines(): a \r is no line end here


def items(name: str, fmt: str, source: str = "stdin") -> list[object]:
    parse = parsers.stream_parser(fmt, source)
    return [item for line in lines(name) for item in parse(line)[1]]


def test_transformers5_tqdm_capture() -> None:
    got = items("transformers_tqdm.log", "transformers")
    assert len(got) == 11
    assert got[0] == Log({"loss": 0.694, "grad_norm": 0.2091, "learning_rate": 0.0009167, "epoch": 0.5})
    assert got[2] == Log(
        {
            "eval_loss": 0.6923,
            "eval_runtime": 0.0976,
            "eval_samples_per_second": 164.0,
            "eval_steps_per_second": 20.5,
            "epoch": 1.0,
        }
    )
    assert got[7] == Log({"loss": 0.6892, "grad_norm": 0.6027, "learning_rate": 8.333e-05, "epoch": 3.0})
    assert got[9] == Log(
        {
            "train_runtime": 3.674,
            "train_samples_per_second": 26.13,
            "train_steps_per_second": 3.266,
            "train_loss": 0.6923,
            "epoch": 3.0,
        }
    )
    # print(trainer.evaluate()) after training: floats at full precision
    assert got[10] == Log(
        {
            "eval_loss": 0.6911638975143433,
            "eval_runtime": 0.0507,
            "eval_samples_per_second": 315.489,
            "eval_steps_per_second": 39.436,
            "epoch": 3.0,
        }
    )


def test_transformers4_capture_prints_floats() -> None:
    got = items("transformers4_notqdm.log", "transformers")
    assert [sorted(log.metrics) == sorted(got[0].metrics) for log in got].count(True) == 6
    assert got[1] == Log({"loss": 0.6933, "grad_norm": 0.21706938743591309, "learning_rate": 0.00075, "epoch": 1.0})
    assert got[9].metrics["train_loss"] == 0.6922544240951538
    assert [log.metrics["epoch"] for log in items("transformers4_tqdm.log", "transformers")] == [
        0.5,
        1,
        1,
        1.5,
        2,
        2,
        2.5,
        3,
        3,
        3,
        3,
    ]


def test_lightning_tqdm_capture() -> None:
    got = items("lightning_tqdm.log", "lightning")
    assert got == [
        Bar(0, {"train_loss_step": 1.26}),
        Bar(0, {"train_loss_step": 1.26, "val_loss": 0.387, "train_loss_epoch": 7.18}),
        Bar(1, {"train_loss_step": 0.0883, "val_loss": 0.387, "train_loss_epoch": 7.18}),
        Bar(1, {"train_loss_step": 0.0883, "val_loss": 0.0294, "train_loss_epoch": 0.205}),
        Bar(2, {"train_loss_step": 0.0136, "val_loss": 0.0294, "train_loss_epoch": 0.205}),
        Bar(2, {"train_loss_step": 0.0136, "val_loss": 0.0161, "train_loss_epoch": 0.024}),
        Bar(2, {"train_loss_step": 0.0136, "val_loss": 0.0161, "train_loss_epoch": 0.024}),
        Results("validate", {"val_loss": 0.01607692614197731}),
        Results("test", {"test_loss": 0.01607692614197731}),
    ]


def test_lightning_rich_capture_gives_its_tables_only() -> None:
    assert items("lightning_rich.log", "lightning") == [
        Results("validate", {"val_loss": 0.01607692614197731}),
        Results("test", {"test_loss": 0.01607692614197731}),
    ]


def test_xgboost_captures() -> None:
    got = items("xgboost_sklearn.log", "xgboost")
    assert [r.rounds for r in got] == list(range(1, 13))
    assert got[0] == Round(
        1,
        {
            "validation_0_logloss": 0.45782,
            "validation_0_auc": 0.95514,
            "validation_1_logloss": 0.46209,
            "validation_1_auc": 0.94988,
        },
    )
    assert got[-1] == Round(
        12,
        {
            "validation_0_logloss": 0.07598,
            "validation_0_auc": 0.99821,
            "validation_1_logloss": 0.12045,
            "validation_1_auc": 0.99486,
        },
    )
    assert items("xgboost_train.log", "xgboost")[-1] == Round(8, {"train_error": 0.01759, "eval_error": 0.04678})


def test_lightgbm_captures() -> None:
    got = items("lightgbm_train.log", "lightgbm")
    assert [r.rounds for r in got] == list(range(1, 13))
    assert got[-1] == Round(
        12,
        {
            "training_auc": 0.999003,
            "training_binary_logloss": 0.0659432,
            "valid_1_auc": 0.995003,
            "valid_1_binary_logloss": 0.105095,
        },
    )
    stopped = items("lightgbm_early_stopping.log", "lightgbm")
    assert [r.rounds for r in stopped] == [
        *range(1, 21),
        17,
    ]  # the best round again after "Early stopping, best iteration is:"


def test_csv_captures() -> None:
    got = items("keras_csvlogger.csv", "csv")
    assert got[0] == Header(("epoch", "accuracy", "loss", "val_accuracy", "val_loss"))
    assert got[3] == Row(
        {
            "accuracy": 0.32080724835395813,
            "loss": 2.009014368057251,
            "val_accuracy": 0.31388887763023376,
            "val_loss": 1.9669407606124878,
        },
        2,
        None,
    )
    lightning = items("lightning_metrics.csv", "csv")
    assert lightning[0] == Header(("epoch", "step", "test_loss", "train_loss_epoch", "train_loss_step", "val_loss"))
    assert lightning[1:7] == [
        Row({"train_loss_step": 14.564318656921387}, 0, 1),
        Row({"train_loss_step": 2.422322988510132}, 0, 3),
        Row({"train_loss_step": 1.0838024616241455}, 0, 5),
        Row({"train_loss_step": 1.25798499584198}, 0, 7),
        Row({"val_loss": 0.3869124948978424}, 0, 7),
        Row({"train_loss_epoch": 7.179246425628662}, 0, 7),
    ]
    assert len(lightning) == 21 and lightning[-1] == Row({"test_loss": 0.01607692614197731}, 3, 24)


# Each format reads its own captures only: no other format's parser (nor auto, but for the
# capture's own format) finds anything in another's capture, the Keras logs or plain noise.
NOISE = [
    b"2025-11-25 10:15:01 INFO loader: batch 12 of shard 3 prefetched in 0.123 ms",
    b"[INFO] step=3 done",
    b"[LightGBM] [Warning] No further splits with positive gain, best gain: -inf",
    b"Epoch 3: starting",
    b"{'a': 1, 'b': 2}",
    b"x = 1, y = 2",
    b"metric  value",
    b"validation_0-logloss:0.5",
    b"",
]


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_formats_do_not_read_each_others_captures(name: str) -> None:
    own = CAPTURES[name]
    for fmt in ("transformers", "lightning", "xgboost", "lightgbm"):
        if fmt != own:
            assert items(name, fmt) == [], fmt
    found = {parsers.stream_parser("auto", "stdin")(line)[0] for line in lines(name)} - {"other"}
    assert found == ({own} if own != "csv" else set())


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.log")))
def test_new_formats_ignore_keras_and_floydhub_logs(name: str) -> None:
    data = (FIXTURES / name).read_bytes().split(b"\n")
    for fmt in ("transformers", "lightning", "xgboost", "lightgbm"):
        parse = parsers.stream_parser(fmt, "stdin")
        assert [line for line in data if parse(line)[1]] == [], fmt


def test_noise_is_nobodys() -> None:
    for fmt in ("auto", "transformers", "lightning", "xgboost", "lightgbm", "csv"):
        parse = parsers.stream_parser(fmt, "stdin")
        assert [line for line in NOISE if parse(line)[1]] == [], fmt


def test_csv_is_auto_only_for_files_named_csv_and_kv_never() -> None:
    row = b"epoch,loss"
    assert parsers.stream_parser("auto", "/logs/run/metrics.csv")(row) == ("csv", [Header(("epoch", "loss"))])
    assert parsers.stream_parser("auto", "/logs/run/metrics.log")(row) == parsers.OTHER
    assert parsers.stream_parser("auto", "stdin")(b"epoch=1 loss=0.5") == parsers.OTHER
    assert parsers.stream_parser("kv", "stdin")(b"epoch=1 loss=0.5") == ("kv", [Pairs({"loss": 0.5}, 1, None)])


# ---- hostile lines ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"{'loss': '0.5', 'epoch': '1'}", [Log({"loss": 0.5, "epoch": 1.0})]),
        (b"\r 50%|###  | 1/2\r   \r\x1b[A{'loss': 0.5, 'epoch': 0.25}\r", [Log({"loss": 0.5, "epoch": 0.25})]),
        (
            b"{'loss': nan, 'x': inf, 'epoch': 1.0}",
            [Log({"loss": NAN, "x": INF, "epoch": 1.0})],
        ),  # as Python prints them
        (b"{'loss': 'nan', 'x': '-inf', 'epoch': '1'}", [Log({"loss": NAN, "x": -INF, "epoch": 1.0})]),
        (b"{'loss': 0.5, 'epoch': 1.0", []),  # truncated
        (b"{'loss': 0.5, 'ep", []),
        (
            b"{'loss': 0.5, 'nested': {'a': 1}, 'tags': [1, 2], 'ok': True, 'name': 'bert', 'epoch': 2.0}",
            [Log({"loss": 0.5, "epoch": 2.0})],
        ),
        (b"{'loss': 0.5}", []),  # no epoch, no eval_*: somebody's dict
        (
            b"{'eval_acc': np.float64(0.75), 'eval_n': np.int64(3), 'epoch': 1.0}",
            [Log({"eval_acc": 0.75, "eval_n": 3.0, "epoch": 1.0})],
        ),
        (b"{'eval_accuracy': 0.75}", [Log({"eval_accuracy": 0.75})]),
        (b"{'loss': __import__('os').system('true'), 'epoch': 1}", []),
        (b"{'epoch': 1e999999}", [Log({"epoch": INF})]),
        (b"{" + b"{" * 5000 + b"}" * 5000, []),
    ],
)
def test_transformers_hostile(line: bytes, expected: list | None) -> None:
    got = transformers_log.parse(line)
    if expected is None:
        assert got == []
    else:
        assert repr(got) == repr(expected)


BAR = (
    "Epoch 3: 100%|██████████| 16/16 [00:00<00:00, 717.17it/s, v_num=0, train_loss_step=0.00644, val_loss=0.00927]"
).encode()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (BAR, [Bar(3, {"train_loss_step": 0.00644, "val_loss": 0.00927})]),
        (
            b"\r" + BAR + b"\r" + BAR[:60],
            [Bar(3, {"train_loss_step": 0.00644, "val_loss": 0.00927})],
        ),  # cut mid-segment: the last whole one
        (BAR[:-12], []),  # cut inside the postfix
        ("Epoch 3:  50%|█████     | 8/16 [00:00<00:00, 7it/s, loss=0.5]".encode(), []),
        (
            b"Epoch 3: |          | 16/? [00:00<00:00, 7it/s, v_num=a1b2, loss=nan, acc=1e-05]",
            [Bar(3, {"loss": NAN, "acc": 1e-05})],
        ),
        (b"Epoch 3: 100%|xx| 16/16 [00:00<00:00, loss=abc, x=1.5.5, y=2]", [Bar(3, {"y": 2.0})]),
        (
            "Epoch 1: 100%|██| 4/4 [00:01, loss=1]\rEpoch 2: 100%|██| 4/4 [00:01, loss=2]".encode(),
            [Bar(1, {"loss": 1.0}), Bar(2, {"loss": 2.0})],
        ),
        (b"Epoch 3/10", []),
    ],
)
def test_lightning_bar_hostile(line: bytes, expected: list) -> None:
    assert repr(lightning_log.parse_bar(line)) == repr(expected)


def test_lightning_table_interrupted_or_wrapped() -> None:
    tables = Tables()
    plain = [
        "─" * 40,
        "     Test metric           DataLoader 0",
        "─" * 40,
        "        test_loss           0.25",
        "        acc    0.5   0.75",
        "─" * 40,
    ]
    assert [r for line in plain for r in tables.parse(line.encode())] == [
        Results("test", {"test_loss": 0.25, "acc": 0.5})
    ]
    cut = [
        "     Validate metric           DataLoader 0",
        "─" * 40,
        "        val_loss           0.25",
        "Traceback (most recent call last):",
    ]
    assert [r for line in cut for r in tables.parse(line.encode())] == [] and not tables.open
    endless = [b"     Test metric           DataLoader 0", *(b"k%d 1.0" % i for i in range(lightning_log.MAX_ROWS + 5))]
    assert [r for line in endless for r in tables.parse(line)] == [] and not tables.open and tables.rows == {}
    # the stream parser reads the line that broke the table as any other line
    parse = parsers.stream_parser("auto", "stdin")
    assert [parse(line.encode())[0] for line in [*cut[:3], "[3]\tvalid_0-auc:0.5"]] == [
        "lightning",
        "lightning",
        "lightning",
        "xgboost",
    ]


@pytest.mark.parametrize(
    ("line", "xgb", "lgb"),
    [
        (
            b"[0]\tvalidation_0-logloss:0.5\tvalidation_0-error@0.7:0.1",
            [Round(1, {"validation_0_logloss": 0.5, "validation_0_error@0.7": 0.1})],
            [],
        ),
        (
            b"[4]\ttrain-logloss:0.61+0.002\ttest-logloss:0.62+0.011",
            [
                Round(
                    5,
                    {
                        "train_logloss": 0.61,
                        "train_logloss_std": 0.002,
                        "test_logloss": 0.62,
                        "test_logloss_std": 0.011,
                    },
                )
            ],
            [],
        ),
        (
            b"[3]\tcv_agg's valid auc: 0.98 + 0.0114",
            [],
            [Round(3, {"cv_agg_valid auc": 0.98, "cv_agg_valid auc_std": 0.0114})],
        ),
        (b"[7]\tvalid_0's l2: nan\tvalid_0's l1: inf", [], [Round(7, {"valid_0_l2": NAN, "valid_0_l1": INF})]),
        (b"[7]\tvalid_0's l2: 0.5\tvalid_0's l1: ", [], []),  # cut
        (b"[7]\tvalidation_0-logloss:", [], []),
        (b"[7]", [], []),
        (b"[LightGBM] [Info] Total Bins 3978", [], []),
        (b"[" + b"9" * 20 + b"]\ta-b:1", [], []),
    ],
)
def test_boosting_hostile(line: bytes, xgb: list, lgb: list) -> None:
    assert (repr(boosting.parse_xgboost(line)), repr(boosting.parse_lightgbm(line))) == (repr(xgb), repr(lgb))


def test_csv_rows_that_do_not_fit_their_header() -> None:
    log = CsvLog()
    assert log.parse(b"1,0.5") == []  # no header yet
    assert log.parse(b"epoch,loss,acc\r") == [Header(("epoch", "loss", "acc"))]
    with pytest.raises(ValueError, match="2 cells, its header 3"):
        log.parse(b"1,0.5")
    with pytest.raises(ValueError, match="4 cells, its header 3"):
        log.parse(b"1,0.5,0.25,9")
    assert log.parse(b"2,,abc") == [Row({}, 2, None)]
    assert repr(log.parse(b'3,"0.5",nan')) == repr([Row({"loss": 0.5, "acc": NAN}, 3, None)])
    assert log.parse(b"-1,0.5,0.5") == [Row({"loss": 0.5, "acc": 0.5}, None, None)]
    assert log.parse(b"") == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            b"epoch=3 loss=0.41 accuracy = .87 lr=1e-3 mode=fast note=",
            [Pairs({"loss": 0.41, "accuracy": 0.87, "lr": 0.001}, 3, None)],
        ),
        (b"step=10 train|loss=-2.5E+2", [Pairs({"train|loss": -250.0}, None, 10)]),
        (b"epoch=1.5 loss=1", [Pairs({"epoch": 1.5, "loss": 1.0}, None, None)]),
        (b"a=b c=d", []),
        (b"x=.", []),
    ],
)
def test_kv_lines(line: bytes, expected: list) -> None:
    assert kv.parse(line) == expected


def test_patterns_first_match_wins_and_bad_numbers_are_errors() -> None:
    ps = Patterns(
        [compile_pattern(r"Epoch (?P<epoch>\d+) .*loss (?P<loss>\S+)"), compile_pattern(r"acc=(?P<acc>\S+)", "test")]
    )
    assert ps.parse(b"Epoch 2 done, loss 0.5 acc=0.9\r") == [Match({"loss": 0.5}, 2, None, "train")]
    assert ps.parse(b"final acc=0.9") == [Match({"acc": 0.9}, None, None, "test")]
    assert ps.parse(b"nothing here") == []
    with pytest.raises(ValueError, match="pattern 2: group 'acc' is not a number: 'high'"):
        ps.parse(b"acc=high")
    with pytest.raises(ValueError, match="epoch must be a whole number"):
        ps.parse(b"Epoch 99999999999 x loss 1")
    stream = parsers.stream_parser("auto", "stdin", ps)
    assert stream(b"acc=0.5") == ("patterns", [Match({"acc": 0.5}, None, None, "test")])
    assert stream(b"[0]\tv-a:1")[0] == "xgboost"


@pytest.mark.parametrize(
    ("text", "phase", "message"),
    [
        ("(?P<loss", "train", "not a regular expression"),
        (r"loss (\S+)", "train", "no named group"),
        (r"Epoch (?P<epoch>\d+)", "train", "names no metric"),
        (r"(?P<loss>\S+)", "eval", "phase must be one of train, test"),
    ],
)
def test_bad_patterns(text: str, phase: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_pattern(text, phase)


def test_patterns_file(tmp_path: Path) -> None:
    good = tmp_path / "p.yaml"
    good.write_text("- match: 'loss=(?P<loss>\\S+)'\n- match: 'acc (?P<acc>\\S+)'\n  phase: test\n")
    assert [p.phase for p in patterns.load(str(good))] == ["train", "test"]
    for text, message in [
        ("- match: [1\n", "is not YAML"),
        ("match: x\n", "must hold a list"),
        ("- {match: '(?P<a>x)', phase: train, extra: 1}\n", "entry 1: expected"),
        ("- match: '(?P<a>x)'\n- match: '(x'\n", "entry 2: pattern '(x' is not a regular expression"),
    ]:
        good.write_text(text)
        with pytest.raises(ValueError, match=re.escape(message)):
            patterns.load(str(good))
    with pytest.raises(ValueError, match="cannot read the patterns file"):
        patterns.load(str(tmp_path / "missing.yaml"))


# ---- properties ---------------------------------------------------------------------------

fragments = st.sampled_from(
    [
        b"\r",
        b"\x1b[A",
        b"{'",
        b"'",
        b": ",
        b", ",
        b"}",
        b"{",
        b"loss",
        b"epoch",
        b"eval_loss",
        b"0.5",
        b"'0.5'",
        b"nan",
        b"1e-4",
        b"Epoch 1: ",
        b"100%|",
        b"| ",
        b"8/8",
        b" [",
        b"]",
        b"=",
        b"v_num",
        b"[3]",
        b"\t",
        b"-",
        b":",
        b"'s ",
        b" + ",
        b",",
        b"\xe2\x94\x80",
        b"\xe2\x94\x82",
        b" metric",
        b"Test",
        b"\n",
        b"\x00",
        b"\xff",
        b" ",
    ]
)
arbitrary = st.lists(fragments | st.binary(max_size=8), max_size=60).map(b"".join)


@given(st.lists(arbitrary, max_size=8))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_never_crash(chunk: list[bytes]) -> None:
    ps = Patterns([compile_pattern(r"loss (?P<loss>\S+)"), compile_pattern(r"(?P<epoch>\d+)/(?P<acc>[\d.]+)")])
    streams = {
        fmt: parsers.stream_parser(fmt, "stdin", ps)
        for fmt in ("auto", "transformers", "lightning", "xgboost", "lightgbm", "csv", "kv")
    }
    for line in chunk:
        for parse in streams.values():
            try:
                fmt, found = parse(line)
            except ValueError:
                continue  # a bad record: counted by the pipeline
            assert isinstance(fmt, str) and isinstance(found, (list, tuple))


keys = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)
numbers = st.floats(allow_nan=False, allow_infinity=True) | st.integers(-(10**20), 10**20)


@given(st.dictionaries(keys, numbers | numbers.map(lambda n: f"{n:.4g}"), min_size=1, max_size=8))
@settings(max_examples=400, deadline=None)
def test_transformers_fast_path_equals_full_parser(logs: dict) -> None:
    text = repr({**logs, "epoch": 1.0}).encode()
    fast, full = transformers_log._fast(text), transformers_log._full(text)
    if fast is not None:
        assert repr(fast) == repr(full)
    assert repr(transformers_log.parse(text)) == repr([Log(full)])


PATTERN_SETS = [
    # combined: an epoch and a step, a top-level alternation, an optional group, a step alone
    [
        r"loss (?P<loss>[\d.]+)",
        r"acc=(?P<acc>[\d.e]+)|E(?P<epoch>[\d.-]+)(?P<x>\d*)",
        r"(?P<step>[\d.]+)/(?P<y>\d)?",
        r"^(?P<epoch>\d+)#(?P<step>\d+) (?P<z>\S+)$",
    ],
    [
        r"loss (?P<loss>[\d.]+)",
        r"acc=(?P<acc>[\d.]+)",
        r"E(?P<epoch>\d)(?P<x>\d*)",
        r"(?i)LOSS (?P<big>\d)",
    ],  # each alone
    [r"(?P<w>\d)(\d)\2 (?P<v>\S+)", r"loss (?P<loss>[\d.]+)"],  # a numbered backreference: each alone
    [r"E(?P<epoch>\d+) loss (?P<loss>\S+)"],  # one pattern
]


@given(
    st.sampled_from(range(len(PATTERN_SETS))),
    st.lists(
        st.sampled_from(
            [b"loss 0.5", b"acc=0.25", b"acc=e", b"E3", b"E1.0", b"E-1", b"E99999999999", b"xx", b"7/0.5", b"7/5"]
            + [b"1.5/", b"Loss 1", b"loss ", b"0#12 ", b"3#4 x", b"\r", b" ", b"117 ", b"9"]
        ),
        max_size=6,
    ).map(b"".join),
)
@settings(max_examples=1500, deadline=None)
def test_patterns_combined_equals_trying_each(which: int, line: bytes) -> None:
    """The combined regex and its groups' fast reading give what each pattern, tried alone in order, gives."""
    compiled = [compile_pattern(t) for t in PATTERN_SETS[which]]
    combined = Patterns(compiled)
    assert (combined._any is None) == (which in (1, 2))

    def each() -> list[Match]:
        for number, pattern in enumerate(compiled, 1):
            found = pattern.regex.search(line.rstrip(b"\r\n"))
            if found is not None:
                return [patterns._match(found, pattern, number)]
        return []

    try:
        expected: list[Match] | str = each()
    except ValueError as exc:
        expected = str(exc)
    try:
        assert combined.parse(line) == expected
    except ValueError as exc:
        assert str(exc) == expected


@pytest.mark.parametrize(
    "line",
    [
        b"{'" + b"'a': 1, " * 200_000 + b"}",
        b"{'" * 500_000,
        b"\r" * 1_000_000,
        b"Epoch 1: 100%|" * 60_000,
        b"Epoch 1: 100%|| 1/1 [" + b"x=1, " * 100_000 + b"]",
        b"[1]" + b"\ta-b:1" * 100_000,
        b"[1]" + b"\ta's b: 1" * 100_000,
        b"a=1 " * 200_000,
        b"," * 1_000_000,
    ],
)
def test_long_lines_take_bounded_time(line: bytes) -> None:
    ps = Patterns([compile_pattern(r"(?P<a>\d+) (?P<b>\d+)")])
    started = time.perf_counter()
    for fmt in ("auto", "transformers", "lightning", "xgboost", "lightgbm", "csv", "kv"):
        try:
            parsers.stream_parser(fmt, "stdin", ps)(line)
        except ValueError:
            pass
    assert time.perf_counter() - started < 5.0


segments = st.lists(
    st.sampled_from(
        [
            b"Epoch ",
            b"1",
            b"12",
            b": ",
            b"100%",
            b"50%",
            b"|",
            b"##",
            b" 8/8",
            b"8/?",
            b" 4/8",
            b" [",
            b"00:00",
            b", ",
            b"loss=0.5",
            b"v_num=0",
            b"]",
            b"x",
            b" ",
        ]
    ),
    max_size=24,
).map(b"".join)


@given(st.lists(segments, max_size=5))
@settings(max_examples=500, deadline=None)
def test_lightning_byte_test_loses_no_bar(parts: list[bytes]) -> None:
    """The byte test that skips segments short of their total keeps every segment the regex alone would take."""
    line = b"\r".join(parts)
    reference: dict[int, Bar] = {}
    for segment in reversed(line.split(b"\r")):
        start = segment.find(b"Epoch ")
        bar = lightning_log._BAR.match(segment, start) if start >= 0 else None
        if bar is not None and (bar[3] == b"?" or bar[2] == bar[3]) and int(bar[1]) not in reference:
            reference[int(bar[1])] = Bar(int(bar[1]), lightning_log._postfix(bar[4]))
    assert lightning_log.parse_bar(line) == [reference[epoch] for epoch in sorted(reference)]


rounds = st.lists(
    st.sampled_from(
        [b"[", b"3", b"]", b"\t", b"valid_0", b"-", b"'s ", b"auc", b":", b": ", b"0.5", b"+", b" + ", b"nan", b"x"]
    ),
    max_size=20,
).map(b"".join)


@given(rounds)
@settings(max_examples=500, deadline=None)
def test_boosting_byte_test_loses_no_round(line: bytes) -> None:
    for parse, whole, pair, first in (
        (boosting.parse_xgboost, boosting._XGB_LINE, boosting._XGB, 1),
        (boosting.parse_lightgbm, boosting._LGB_LINE, boosting._LGB, 0),
    ):
        assert repr(parse(line)) == repr(boosting._parse(line, whole, pair, first))


cells = st.lists(
    st.sampled_from(["epoch", "loss", "0", "1", "0.5", "", "nan", " 2 ", "x y", "a'b", "1e-3"]), min_size=1, max_size=6
).map(",".join)


@given(cells, cells)
@settings(max_examples=500, deadline=None)
def test_csv_split_equals_the_csv_module_without_quotes(header: str, row: str) -> None:
    fast, full = CsvLog(), CsvLog()
    for line in (header, row):
        if not line:
            continue  # an empty line is nothing to either parser; its quoted form '""' would be one empty cell
        try:
            got = fast.parse(line.encode())
        except ValueError as exc:
            got = str(exc)
        full_line = '"' + line.replace(",", '","') + '"'  # the same cells, quoted: read by the csv module
        try:
            expected = full.parse(full_line.encode())
        except ValueError as exc:
            expected = str(exc)
        assert repr(got) == repr(expected)
