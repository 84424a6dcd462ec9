"""The CRI log format: timestamps, streams, partial lines joined up to F, and anything else survived."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gangplank_sidecar.sources import cri
from gangplank_sidecar.sources.lines import OVERSIZED, LineSplitter

T = b"2026-12-03T10:15:00.123456789Z"


def test_a_full_line_with_nanoseconds_and_an_offset() -> None:
    assert cri.parse(T + b" stdout F hello world") == (1796292900.123456789, False, False, b"hello world")
    assert cri.parse(b"2026-12-03T11:15:00.5+01:00 stderr P part") == (1796292900.5, True, True, b"part")
    assert cri.parse(b"2026-12-03T10:15:00Z stdout F ") == (1796292900.0, False, False, b"")
    assert cri.parse(b"2026-12-03T10:15:00Z stdout F") == (1796292900.0, False, False, b"")


def test_what_is_not_cri_is_none() -> None:
    for line in [
        b"",
        b"hello",
        b'{"log":"x","stream":"stdout"}',
        T + b" stdin F x",
        T + b" stdout X x",
        b"2026-13-03T10:15:00Z stdout F x",
        b"2026-12-03T10:15:00 stdout F x",
        T + b"  stdout F x",
        b"1969-12-31T23:59:59Z stdout F x",
        b"9999-12-31T23:59:59-01:00 stdout F x",
        b"0000-01-01T00:00:00Z stdout F x",
    ]:
        assert cri.parse(line) is None, line


def test_parts_are_joined_per_stream_up_to_f() -> None:
    d = cri.Decoder()
    lines = [
        T + b' stdout P {"gangplank": 1, ',
        T + b" stderr P warn",
        T + b' stdout P "event": ',
        T + b" stderr F ing",
        b'2026-12-03T10:15:01Z stdout F "end"}',
    ]
    out = [item for line in lines for item in d.feed(line)]
    assert out == [(1796292900.123456789, b"warning"), (1796292901.0, b'{"gangplank": 1, "event": "end"}')]
    assert (d.malformed, d.oversized) == (0, 0)


def test_a_joined_line_past_the_cap_is_oversized_and_the_next_one_is_whole() -> None:
    d = cri.Decoder(max_line=10)
    out = [
        item
        for line in [T + b" stdout P 123456", T + b" stdout P 789012", T + b" stdout F 3", T + b" stdout F ok"]
        for item in d.feed(line)
    ]
    assert out == [(1796292900.123456789, OVERSIZED), (1796292900.123456789, b"ok")]
    assert out[0][1] is OVERSIZED and d.oversized == 1


def test_an_oversized_cri_line_passes_on_and_drops_the_parts_before_it() -> None:
    d = cri.Decoder()
    assert list(d.feed(T + b" stdout P abc")) == []
    assert list(d.feed(OVERSIZED)) == [(None, OVERSIZED)]
    assert list(d.feed(T + b" stdout F def")) == [(1796292900.123456789, b"def")]


def test_a_line_that_is_not_cri_is_counted_and_skipped() -> None:
    d = cri.Decoder()
    assert list(d.feed(b"garbage")) == [] and d.malformed == 1


@given(st.binary(max_size=300), st.integers(1, 64))
def test_any_bytes_never_crash_and_hold_at_most_the_cap(data: bytes, cap: int) -> None:
    d = cri.Decoder(max_line=cap)
    splitter = LineSplitter(max_line=4 * cap)
    for line in [*splitter.feed(data), *splitter.flush()]:
        for when, content in d.feed(line):
            assert content is OVERSIZED or len(content) <= cap
            assert when is None or isinstance(when, float)
        assert sum(d._sizes) <= 2 * (cap + 4 * cap)


@given(
    st.binary(max_size=400).filter(lambda b: b"\n" not in b),
    st.lists(st.integers(0, 400), max_size=6),
    st.sampled_from([b"stdout", b"stderr"]),
)
def test_joined_parts_equal_the_original_line(line: bytes, cuts: list[int], stream: bytes) -> None:
    bounds = sorted({0, len(line), *(c for c in cuts if c < len(line))})
    pieces = [line[a:b] for a, b in zip(bounds, bounds[1:])] or [b""]
    raw = [T + b" " + stream + (b" F " if i == len(pieces) - 1 else b" P ") + piece for i, piece in enumerate(pieces)]
    d = cri.Decoder()
    out = [item for r in raw for item in d.feed(r)]
    assert out == [(1796292900.123456789, line)]
