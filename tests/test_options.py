"""One table of options: argparse, the environment fallback, --help and gangplank-runs all read it."""

from __future__ import annotations

import re

import pytest

from gangplank_sidecar import options
from gangplank_sidecar.aggregation.checks import Thresholds
from gangplank_sidecar.cli import build_parser, settings_from
from gangplank_sidecar.errors import ConfigError
from gangplank_sidecar.runs import cli as runs_cli


def test_every_flag_and_variable_is_named_once_and_shown_in_help() -> None:
    flags = [o.flag for o in options.OPTIONS]
    variables = [v for o in options.OPTIONS for v in (o.env, o.secret_env) if v]
    assert len(flags) == len(set(flags)) == 37 and len(variables) == len(set(variables)) == 29
    text = " ".join(re.sub(r"-\n\s*", "-", build_parser().format_help()).split())  # argparse wraps at hyphens too
    assert all(variable in text for variable in variables)
    assert "extra grouping label [GANGPLANK_LABELS, comma-separated]" in text
    assert runs_cli.DB is options.BY_FLAG["--db"] and "[GANGPLANK_DB]" in runs_cli.build_parser().format_help()


def test_a_flag_beats_its_variable_which_beats_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GANGPLANK_PUSHGATEWAY", "GANGPLANK_REMOTE_WRITE", "GANGPLANK_LISTEN"):
        monkeypatch.delenv(name, raising=False)
    assert (settings_from([]).flush_timeout, settings_from([]).system_interval) == (10.0, 15.0)
    monkeypatch.setenv("GANGPLANK_FLUSH_TIMEOUT", "30")
    monkeypatch.setenv("GANGPLANK_SYSTEM_INTERVAL", "0")
    monkeypatch.setenv("GANGPLANK_LABELS", "team=a, site=b")
    monkeypatch.setenv("GANGPLANK_PUSH_RETRIES", "7")
    monkeypatch.setenv("GANGPLANK_JOB", "")  # empty counts as unset
    s = settings_from([])
    assert (s.flush_timeout, s.system_interval, s.labels, s.retry.push_retries, s.job) == (
        30.0,
        0.0,
        {"team": "a", "site": "b"},
        7,
        None,
    )
    s = settings_from(["--flush-timeout", "0", "--label", "team=c", "--push-retries", "1", "--job", "j"])
    assert (s.flush_timeout, s.labels, s.retry.push_retries, s.job) == (0.0, {"team": "c"}, 1, "j")


def test_help_shows_the_settings_defaults_written_once() -> None:
    """Each default shown by --help comes from the settings model that applies it; none is left unfilled."""
    text = " ".join(re.sub(r"-\n\s*", "-", build_parser().format_help()).split())
    assert "{default}" not in text
    for shown in (
        "(default 15, 0: off)",
        "time to deliver the final state (default 10 s)",
        "(default 2000)",
        "retries before a push counts as failed (default 3)",
        "first wait before a retry, doubled each time (default 0.5 s)",
        "wait for a connection (default 3 s)",
        "this long after (default 600 s)",
    ):
        assert shown in text


def test_check_thresholds_are_parsed_once_into_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_from(["--check-threshold", "plateau_epochs=8"]).check_threshold == Thresholds(plateau_epochs=8)
    monkeypatch.setenv("GANGPLANK_CHECK_THRESHOLDS", "min_delta=0.01, gap_epochs=6")
    assert settings_from([]).check_threshold == Thresholds(min_delta=0.01, gap_epochs=6)
    with pytest.raises(ConfigError, match=r"^--check-threshold: bad check threshold 'gap_epochs=1.5': '1.5' is not an"):
        settings_from(["--check-threshold", "gap_epochs=1.5"])
