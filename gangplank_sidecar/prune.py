"""``gangplank-sidecar prune``: delete the Pushgateway groups whose last push is older than a cutoff.

The Pushgateway never forgets a group (it refuses metric expiry by design), so a finished
job's series stay until someone deletes them. This lists the groups through the gateway's
API (``GET /api/v1/metrics``), keeps those whose ``push_time_seconds`` is older than
``--older-than`` (and whose job matches ``--job``), and deletes each one whole with
``DELETE /metrics/job/...`` (the same grouping-key path as our pushes, base64 where a value
needs it) when ``--yes`` is given; without it, nothing is deleted.

Exit codes: 0 done (also a dry run, or nothing to prune); 1 the gateway could not be read
or a group could not be deleted; 2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from gangplank_sidecar.cli import _Parser, add_delivery_options, delivery_from
from gangplank_sidecar.delivery import PushError, Retry, TransportConfig
from gangplank_sidecar.errors import ConfigError
from gangplank_sidecar.options import BY_FLAG
from gangplank_sidecar.settings import gateway_url
from gangplank_sidecar.sinks.pushgateway import group_path
from gangplank_sidecar.sinks.transport import Transport, check

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_LISTING = 256 << 20  # bytes of /api/v1/metrics we read; a bigger answer is an error, never cut silently
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION = re.compile(r"(?:(\d+)(ms|[smhdwy]))+\Z")
_PART = re.compile(r"(\d+)(ms|[smhdwy])")
_SHOWN = re.compile(r"[A-Za-z0-9_.:/@+=-]+\Z")


def duration(text: str) -> float:
    """A Prometheus duration (``90s``, ``12h``, ``7d``, ``1h30m``) in seconds, more than zero."""
    if not _DURATION.match(text.strip()):
        raise ConfigError(
            f"--older-than: bad duration {text!r}: expected a number and a unit (ms, s, m, h, d, w, y), e.g. 7d or "
            "1h30m"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    if seconds <= 0:
        raise ConfigError("--older-than must be more than zero")
    return float(seconds)


def age(seconds: float) -> str:
    """``3d 4h``, ``2h 5m``, ``40s``: the two largest units."""
    seconds = max(0, int(seconds))
    parts = [(seconds // 86400, "d"), (seconds % 86400 // 3600, "h"), (seconds % 3600 // 60, "m"), (seconds % 60, "s")]
    shown = [f"{n}{u}" for n, u in parts if n]
    return " ".join(shown[:2]) or "0s"


@dataclass(frozen=True)
class Group:
    """One group on the gateway: its grouping key and the time of its last successful push."""

    labels: dict[str, str]
    pushed: float

    @property
    def job(self) -> str:
        return self.labels.get("job", "")

    @property
    def path(self) -> str:
        return group_path(self.job, {k: v for k, v in self.labels.items() if k != "job"})

    def __str__(self) -> str:
        """``job=mnist phase=train``; a value that is empty or not plain is quoted (no escape reaches the terminal)."""
        return " ".join(f"{k}={v}" if _SHOWN.match(v) else f"{k}={v!r}" for k, v in self.labels.items())


def parse_groups(body: bytes) -> list[Group]:
    """The groups in a ``/api/v1/metrics`` answer; a group without ``push_time_seconds`` counts as never pushed (0)."""
    try:
        answer = json.loads(body)
        if answer.get("status") != "success" or not isinstance(answer.get("data"), list):
            raise ValueError("status is not success")
        groups = []
        for item in answer["data"]:
            labels = {str(k): str(v) for k, v in item["labels"].items()}
            samples = (item.get("push_time_seconds") or {}).get("metrics") or [{"value": "0"}]
            groups.append(
                Group(dict(sorted(labels.items(), key=lambda kv: (kv[0] != "job", kv[0]))), float(samples[0]["value"]))
            )
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise PushError(f"unexpected answer from /api/v1/metrics ({exc.__class__.__name__}: {exc})") from None
    return groups


def stale(groups: list[Group], cutoff: float, job: re.Pattern[str] | None) -> list[Group]:
    """The groups last pushed before ``cutoff`` whose job matches, oldest first."""
    return sorted(
        (g for g in groups if g.pushed < cutoff and (job is None or job.fullmatch(g.job))), key=lambda g: g.pushed
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="gangplank-sidecar prune",
        description="Delete the Pushgateway groups whose last push is older than --older-than (a dry run without "
        "--yes).",
        epilog="Exit codes: 0 done (or dry run); 1 the gateway could not be read or a group not deleted; 2 usage.",
    )
    BY_FLAG["--pushgateway"].add_to(p)
    p.add_argument(
        "--older-than", required=True, metavar="DURATION", help="last push longer ago than this: 90s, 12h, 7d, 1h30m"
    )
    p.add_argument("--job", metavar="REGEX", help="only groups whose job matches (the whole name, as in PromQL)")
    p.add_argument("--yes", action="store_true", help="delete them (default: only list them)")
    add_delivery_options(p)
    return p


def _retried(retry: Retry, request: Callable[[], bytes]) -> bytes:
    """``request()``, tried again ``--push-retries`` times after a failure, with the push's backoff."""
    for failures in range(1, retry.push_retries + 1):
        try:
            return request()
        except PushError:
            time.sleep(retry.delay(failures))
    return request()


def prune(
    url: str,
    transport: Transport,
    older_than: float,
    job: re.Pattern[str] | None,
    delete: bool,
    out: Callable[[str], None],
    report: Callable[[str], None],
    retry: Retry = Retry(),
    now: float | None = None,
) -> int:
    """Lists (and with ``delete``, deletes) the stale groups; returns the exit code."""
    now = time.time() if now is None else now
    try:
        groups = parse_groups(
            _retried(
                retry,
                lambda: transport.request(
                    url + "/api/v1/metrics", "GET", b"", [("Accept", "application/json")], max_body=MAX_LISTING
                ),
            )
        )
    except PushError as exc:
        report(f"cannot list the groups of the Pushgateway at {url}: {exc}")
        return EXIT_FAILED
    old = stale(groups, now - older_than, job)
    for g in old:
        pushed = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(g.pushed)) if g.pushed else "never"
        out(f"{age(now - g.pushed) if g.pushed else '-':>8}  {pushed:<19}  {g}")
    what = (
        f"{len(old)} of {len(groups)} group{'s' if len(groups) != 1 else ''} last pushed more than "
        f"{age(older_than)} ago"
    )
    if not delete:
        report(f"{what}; dry run, nothing deleted" + (" (add --yes to delete them)" if old else ""))
        return EXIT_OK
    for deleted, g in enumerate(old):
        try:
            _retried(retry, lambda: transport.request(url + g.path, "DELETE", b"", []))  # noqa: B023 - called at once
        except PushError as exc:  # the gateway is likely gone for the others too: stop, the next run goes on
            report(f"{what}; deleted {deleted}, then cannot delete {g}: {exc}; stopped")
            return EXIT_FAILED
    report(f"{what}; deleted {len(old)}")
    return EXIT_OK


def report(message: str) -> None:
    sys.stderr.write(f"gangplank-sidecar prune: {message}\n")
    sys.stderr.flush()


def main(argv: Sequence[str]) -> int:
    """``gangplank-sidecar prune ...``: the same --pushgateway, auth and TLS options as a push."""
    try:
        args = build_parser().parse_args(argv)
        raw = BY_FLAG["--pushgateway"].value(args)
        if not raw:
            raise ConfigError("--pushgateway (or GANGPLANK_PUSHGATEWAY) is needed")
        url = gateway_url(str(raw))
        older_than = duration(args.older_than)
        try:
            job = re.compile(args.job) if args.job is not None else None
        except re.error as exc:
            raise ConfigError(f"--job: bad regular expression {args.job!r}: {exc}") from None
        delivery = delivery_from(args)
        config = TransportConfig(**delivery["transport"])
        retry = Retry(**delivery["retry"])
        check(url, config)
        transport = Transport(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        report(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}")
        return EXIT_USAGE
    except ValueError as exc:  # ConfigError, and what check() refuses
        report(str(exc))
        return EXIT_USAGE

    def out(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    return prune(url, transport, older_than, job, args.yes, out, report, retry)
