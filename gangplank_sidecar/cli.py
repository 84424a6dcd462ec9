"""The ``gangplank-sidecar`` command: options and environment -> settings -> one pipeline."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from prometheus_client import disable_created_metrics
from pydantic import ValidationError

from gangplank_sidecar import parsers
from gangplank_sidecar.aggregation.state import Store
from gangplank_sidecar.pipeline import Pipeline
from gangplank_sidecar.selfmetrics import SelfMetrics
from gangplank_sidecar.settings import ConfigError, Settings, env, parse_labels
from gangplank_sidecar.sinks.pushgateway import PushgatewaySink
from gangplank_sidecar.sinks.summary import summarize
from gangplank_sidecar.sources.stdin import Echo, read_stdin

EXIT_OK, EXIT_UNDELIVERED, EXIT_USAGE = 0, 1, 2


class Stop(Exception):
    """SIGTERM, turned into the same shutdown path as Ctrl-C."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="gangplank-sidecar",
        description="Read a training job's output and push its metrics to Prometheus.",
        usage="gangplank-sidecar [OPTIONS] [FILE ...]\n       gangplank-sidecar [OPTIONS] -- COMMAND [ARG ...]",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="log files to follow (default: read stdin)")
    p.add_argument("--pushgateway", metavar="URL", help="Pushgateway to push to [GANGPLANK_PUSHGATEWAY]")
    p.add_argument("--job", metavar="NAME", help="job label [GANGPLANK_JOB]")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="extra grouping label [GANGPLANK_LABELS]")
    p.add_argument("--quiet", action="store_true", help="do not echo stdin")
    p.add_argument("--strict", action="store_true", help="exit 1 if anything could not be delivered")
    p.add_argument("--flush-timeout", type=float, metavar="SECONDS", help="time to deliver the final state [GANGPLANK_FLUSH_TIMEOUT]")
    p.add_argument("--format", choices=parsers.FORMATS, default="auto", help="input format (default: auto)")
    return p


def settings_from(argv: Sequence[str]) -> Settings:
    argv = list(argv)
    command: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1 :]
        if not command:
            raise ConfigError("'--' must be followed by a command")
    args = build_parser().parse_args(argv)
    label_pairs = args.label or [p for p in (env("GANGPLANK_LABELS") or "").split(",") if p.strip()]
    flush = args.flush_timeout if args.flush_timeout is not None else env("GANGPLANK_FLUSH_TIMEOUT")
    try:
        return Settings(
            pushgateway=args.pushgateway or env("GANGPLANK_PUSHGATEWAY"),
            job=args.job or env("GANGPLANK_JOB"),
            labels=parse_labels(label_pairs),
            quiet=args.quiet,
            strict=args.strict,
            flush_timeout=10.0 if flush is None else flush,
            format=args.format,
            files=args.files,
            command=command,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]).replace("_", "-")
        raise ConfigError(f"--{where}: {first['msg'].removeprefix('Value error, ')}") from None


def report(message: str) -> None:
    print(f"gangplank-sidecar: {message}", file=sys.stderr, flush=True)


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop


def run(settings: Settings) -> int:
    disable_created_metrics()
    store = Store()
    selfmetrics = SelfMetrics()
    pipeline = Pipeline(store, selfmetrics, report, fmt=settings.format, job=settings.job)
    sink = None
    if settings.pushgateway:
        sink = PushgatewaySink(store, settings.pushgateway, settings.labels, selfmetrics, report, job=settings.job)
        sink.start()
    signal.signal(signal.SIGTERM, _raise_stop)
    echo = Echo(None if settings.quiet else sys.stdout.buffer, report)
    try:
        read_stdin(pipeline.feed, echo)
    except (Stop, KeyboardInterrupt):
        report("stopping: delivering the final state")
    delivered = sink.close(settings.flush_timeout) if sink else True
    if sink is None:
        sys.stderr.write(("\n" if echo.mid_line else "") + summarize(store.all_runs()))
    if not delivered:
        report(f"the final state could not be delivered to {settings.pushgateway} within {settings.flush_timeout:g} s")
        return EXIT_UNDELIVERED if settings.strict else EXIT_OK
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = settings_from(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        report(str(exc))
        return EXIT_USAGE
    return run(settings)
