"""The ``gangplank-sidecar`` command: options and environment -> settings; ``app`` runs them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from gangplank_sidecar import parsers
from gangplank_sidecar.aggregation.state import DEFAULT_MAX_SERIES
from gangplank_sidecar.app import EXIT_USAGE, report, run
from gangplank_sidecar.settings import ConfigError, Settings, env, parse_labels
from gangplank_sidecar.sinks.transport import parse_headers, read_secret
from gangplank_sidecar.sources.kubernetes import DEFAULT_ROOT


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="gangplank-sidecar",
        description="Read a training job's output and push its metrics to Prometheus.",
        usage="gangplank-sidecar [OPTIONS] [FILE ...]\n       gangplank-sidecar [OPTIONS] -- COMMAND [ARG ...]"
        "\n       gangplank-sidecar prune --pushgateway URL --older-than DURATION [--job REGEX] [--yes]",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="log files to follow (default: read stdin)")
    p.add_argument("--pushgateway", metavar="URL", help="Pushgateway to push to [GANGPLANK_PUSHGATEWAY]")
    p.add_argument(
        "--remote-write", action="append", default=[], metavar="URL",
        help="also send every record's samples with its timestamp to this Prometheus remote-write URL (repeatable) [GANGPLANK_REMOTE_WRITE, comma-separated]",
    )
    p.add_argument("--listen", metavar="[HOST:]PORT", help="serve /metrics for Prometheus to scrape (host default 127.0.0.1) [GANGPLANK_LISTEN]")
    p.add_argument("--linger", type=float, default=0.0, metavar="SECONDS", help="pipe mode: keep serving --listen this long after EOF (default 0)")
    p.add_argument("--job", metavar="NAME", help="job label [GANGPLANK_JOB]")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="extra grouping label [GANGPLANK_LABELS]")
    p.add_argument("--quiet", action="store_true", help="do not echo stdin")
    p.add_argument(
        "--echo", choices=("all", "text"),
        help="all: echo every byte; text: leave the protocol records out (default: text to a terminal, all to a pipe or file)",
    )  # fmt: skip
    p.add_argument("--strict", action="store_true", help="exit 1 if anything could not be delivered")
    p.add_argument("--flush-timeout", type=float, metavar="SECONDS", help="time to deliver the final state [GANGPLANK_FLUSH_TIMEOUT]")
    add_delivery_options(p)
    p.add_argument("--format", choices=parsers.FORMATS, default="auto", help="input format (default: auto)")
    p.add_argument("--patterns", metavar="FILE", help="YAML list of {match: REGEX, phase: train|test}, tried before the formats [GANGPLANK_PATTERNS]")
    p.add_argument("--pattern", action="append", default=[], metavar="REGEX", help="a pattern whose named groups are metrics (epoch, step place them; repeatable)")
    p.add_argument("--state-file", metavar="PATH", help="where to keep the positions in the FILEs [GANGPLANK_STATE_FILE]")
    p.add_argument("--exit-on-end", action="store_true", help="stop following once every run in the FILEs has ended")
    p.add_argument("--db", metavar="PATH", help="run history database (default: $XDG_DATA_HOME/gangplank/runs.db) [GANGPLANK_DB]")
    p.add_argument("--no-history", action="store_true", help="do not record runs in the run history")
    p.add_argument(
        "--check-threshold", action="append", default=[], metavar="NAME=VALUE",
        help="change a training check's threshold (repeatable; see README, Checks) [GANGPLANK_CHECK_THRESHOLDS, comma-separated]",
    )
    p.add_argument(
        "--system-interval", type=float, metavar="SECONDS",
        help="sample CPU, memory, disk and GPU every SECONDS (default 15, 0: off) [GANGPLANK_SYSTEM_INTERVAL]",
    )
    p.add_argument("--pid", type=int, metavar="PID", help="measure this process tree (default: the wrapped command, a shared pod's other containers, or our cgroup)")
    p.add_argument("--disk-path", metavar="PATH", help="report the disk of PATH (default: the working directory or the first FILE's)")
    p.add_argument("--max-series", type=int, metavar="N", help="metric keys kept per run; further keys are dropped and counted (default 2000) [GANGPLANK_MAX_SERIES]")
    add_kubernetes_options(p)
    return p


def add_kubernetes_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("node agent (one per Kubernetes node, reading every container's logs)")
    g.add_argument(
        "--kubernetes-logs", nargs="?", const=DEFAULT_ROOT, metavar="DIR",
        help=f"follow every container log the kubelet keeps under DIR (default {DEFAULT_ROOT}) [GANGPLANK_KUBERNETES_LOGS]",
    )
    g.add_argument(
        "--kubernetes-namespace", action="append", default=[], metavar="NS",
        help="only read the pods of this namespace (repeatable) [GANGPLANK_KUBERNETES_NAMESPACES, comma-separated]",
    )
    g.add_argument(
        "--kubernetes-forget-after", metavar="DURATION",
        help="delete a deleted pod's groups from the Pushgateway this long after (default 10m) [GANGPLANK_KUBERNETES_FORGET_AFTER]",
    )


def kubernetes_from(args: argparse.Namespace) -> dict[str, object]:
    forget = args.kubernetes_forget_after or env("GANGPLANK_KUBERNETES_FORGET_AFTER")
    found = {
        "kubernetes_logs": args.kubernetes_logs or env("GANGPLANK_KUBERNETES_LOGS"),
        "kubernetes_namespaces": args.kubernetes_namespace
        or [n.strip() for n in (env("GANGPLANK_KUBERNETES_NAMESPACES") or "").split(",") if n.strip()],
        "kubernetes_forget_after": forget,
    }
    return {k: v for k, v in found.items() if v is not None}


def add_delivery_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("delivery (secrets only from files or the environment)")
    g.add_argument("--push-timeout", metavar="SECONDS", help="wait for the gateway's answer (default 5) [GANGPLANK_PUSH_TIMEOUT]")
    g.add_argument("--connect-timeout", metavar="SECONDS", help="wait for a connection (default 3) [GANGPLANK_CONNECT_TIMEOUT]")
    g.add_argument("--push-retries", metavar="N", help="retries before a push counts as failed (default 3) [GANGPLANK_PUSH_RETRIES]")
    g.add_argument("--retry-backoff", metavar="SECONDS", help="first wait before a retry, doubled each time (default 0.5) [GANGPLANK_RETRY_BACKOFF]")
    g.add_argument("--retry-backoff-max", metavar="SECONDS", help="longest wait between retries (default 10) [GANGPLANK_RETRY_BACKOFF_MAX]")
    g.add_argument("--basic-auth-user", metavar="USER", help="HTTP basic auth user [GANGPLANK_BASIC_AUTH_USER]")
    g.add_argument("--basic-auth-password-file", metavar="FILE", help="[GANGPLANK_BASIC_AUTH_PASSWORD_FILE; or GANGPLANK_BASIC_AUTH_PASSWORD]")
    g.add_argument("--bearer-token-file", metavar="FILE", help="[GANGPLANK_BEARER_TOKEN_FILE; or GANGPLANK_BEARER_TOKEN]")
    g.add_argument("--tls-ca-file", metavar="FILE", help="CA certificates that sign the gateway's [GANGPLANK_TLS_CA_FILE]")
    g.add_argument("--tls-cert-file", metavar="FILE", help="client certificate, PEM [GANGPLANK_TLS_CERT_FILE]")
    g.add_argument("--tls-key-file", metavar="FILE", help="client certificate's key, PEM [GANGPLANK_TLS_KEY_FILE]")
    g.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'", help="extra HTTP header [GANGPLANK_HEADERS: one per line]")


def delivery_from(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """Transport and retry settings; a secret is read from its file here and kept in a SecretStr."""

    def pick(option: str, name: str) -> object:
        return getattr(args, option) or env(name)

    def secret(file_option: str, file_env: str, value_env: str) -> object:
        path = pick(file_option, file_env)
        return read_secret(str(path), "--" + file_option.replace("_", "-")) if path else env(value_env)

    try:
        found = {
            "push_timeout": pick("push_timeout", "GANGPLANK_PUSH_TIMEOUT"),
            "connect_timeout": pick("connect_timeout", "GANGPLANK_CONNECT_TIMEOUT"),
            "basic_auth_user": pick("basic_auth_user", "GANGPLANK_BASIC_AUTH_USER"),
            "basic_auth_password": secret("basic_auth_password_file", "GANGPLANK_BASIC_AUTH_PASSWORD_FILE", "GANGPLANK_BASIC_AUTH_PASSWORD"),
            "bearer_token": secret("bearer_token_file", "GANGPLANK_BEARER_TOKEN_FILE", "GANGPLANK_BEARER_TOKEN"),
            "tls_ca_file": pick("tls_ca_file", "GANGPLANK_TLS_CA_FILE"),
            "tls_cert_file": pick("tls_cert_file", "GANGPLANK_TLS_CERT_FILE"),
            "tls_key_file": pick("tls_key_file", "GANGPLANK_TLS_KEY_FILE"),
            "headers": parse_headers(args.header or (env("GANGPLANK_HEADERS") or "").splitlines()),
        }
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    retry = {
        "push_retries": pick("push_retries", "GANGPLANK_PUSH_RETRIES"),
        "retry_backoff": pick("retry_backoff", "GANGPLANK_RETRY_BACKOFF"),
        "retry_backoff_max": pick("retry_backoff_max", "GANGPLANK_RETRY_BACKOFF_MAX"),
    }
    return {
        "transport": {k: v for k, v in found.items() if v is not None},
        "retry": {k: v for k, v in retry.items() if v is not None},
    }


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
    interval = args.system_interval if args.system_interval is not None else env("GANGPLANK_SYSTEM_INTERVAL")
    try:
        settings = Settings(
            pushgateway=args.pushgateway or env("GANGPLANK_PUSHGATEWAY"),
            remote_write=args.remote_write or [u for u in (env("GANGPLANK_REMOTE_WRITE") or "").split(",") if u.strip()],
            listen=args.listen or env("GANGPLANK_LISTEN"),
            linger=args.linger,
            job=args.job or env("GANGPLANK_JOB"),
            labels=parse_labels(label_pairs),
            quiet=args.quiet,
            echo=args.echo or "auto",
            strict=args.strict,
            flush_timeout=10.0 if flush is None else flush,
            format=args.format,
            db=args.db or env("GANGPLANK_DB"),
            history=not args.no_history,
            check_threshold=args.check_threshold or [p for p in (env("GANGPLANK_CHECK_THRESHOLDS") or "").split(",") if p.strip()],
            files=args.files,
            state_file=args.state_file or env("GANGPLANK_STATE_FILE"),
            exit_on_end=args.exit_on_end,
            command=command,
            system_interval=15.0 if interval is None else interval,
            pid=args.pid,
            disk_path=args.disk_path,
            patterns=args.patterns or env("GANGPLANK_PATTERNS"),
            pattern=args.pattern,
            max_series=args.max_series if args.max_series is not None else env("GANGPLANK_MAX_SERIES") or DEFAULT_MAX_SERIES,
            **delivery_from(args),
            **kubernetes_from(args),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = next(str(p) for p in reversed(first["loc"]) if isinstance(p, str)).replace("_", "-")
        raise ConfigError(f"--{where}: {first['msg'].removeprefix('Value error, ')}") from None
    pointless = no_effect(args, settings)
    if pointless:
        raise ConfigError(pointless)
    return settings


def no_effect(args: argparse.Namespace, s: Settings) -> str | None:
    """An option given on the command line that would do nothing in the chosen mode: a mistake to say.

    Only options from the command line: an environment variable may be shared by several modes.
    """
    following = (bool(s.files) and not s.command) or bool(s.kubernetes_logs)
    rules = (
        (bool(s.files and s.command), "FILEs and '-- COMMAND' do not go together: the sidecar reads one or the other"),
        (args.linger > 0 and not s.listen, "--linger needs --listen: it keeps serving /metrics after the end"),
        (args.exit_on_end and not following, "--exit-on-end only applies when following FILEs"),
        (bool(args.state_file) and not following, "--state-file only applies when following FILEs or --kubernetes-logs"),
        (args.quiet and following, "--quiet has no effect on FILEs: they are never echoed"),
        (args.strict and not (s.pushgateway or s.remote_write or s.history), "--strict needs --pushgateway, --remote-write or the run history: nothing else can fail to deliver"),
        (args.pid is not None and not s.system_interval, "--pid has no effect with --system-interval 0"),
        (bool(args.disk_path) and not s.system_interval, "--disk-path has no effect with --system-interval 0"),
    )
    return next((message for wrong, message in rules if wrong), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "prune":
        from gangplank_sidecar import prune  # imports this module: loaded only for the subcommand

        return prune.main(argv[1:])
    try:
        settings = settings_from(argv)
    except ConfigError as exc:
        report(str(exc))
        return EXIT_USAGE
    return run(settings)
