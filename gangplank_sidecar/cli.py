"""The ``gangplank-sidecar`` command: options and environment -> settings; ``app`` runs them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from pydantic import ValidationError

from gangplank_sidecar import parsers
from gangplank_sidecar.app import EXIT_USAGE, report, run
from gangplank_sidecar.delivery import Retry, TransportConfig
from gangplank_sidecar.environment import env
from gangplank_sidecar.errors import ConfigError
from gangplank_sidecar.options import BY_FLAG, add_options, values
from gangplank_sidecar.settings import Settings, parse_labels
from gangplank_sidecar.sinks.transport import parse_headers, read_secret


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


# The settings' defaults, shown in --help: each is written once, in its model.
DEFAULTS = {
    name: f.default
    for model in (Settings, Retry, TransportConfig)
    for name, f in model.model_fields.items()
    if isinstance(f.default, (int, float)) and not isinstance(f.default, bool)
}


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="gangplank-sidecar",
        description="Read a training job's output and push its metrics to Prometheus.",
        usage="gangplank-sidecar [OPTIONS] [FILE ...]\n       gangplank-sidecar [OPTIONS] -- COMMAND [ARG ...]"
        "\n       gangplank-sidecar prune --pushgateway URL --older-than DURATION [--job REGEX] [--yes]",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="log files to follow (default: read stdin)")
    add_options(p, None, DEFAULTS, format={"choices": ("auto", *parsers.FORMATS)})
    add_delivery_options(p)
    add_options(p, "node agent", DEFAULTS)
    return p


def kubernetes_from(args: argparse.Namespace) -> dict[str, Any]:
    found = values(args, "node agent")
    found["kubernetes_namespaces"] = found.pop("kubernetes_namespace")
    return found


def add_delivery_options(p: argparse.ArgumentParser) -> None:
    add_options(p, "delivery", DEFAULTS)


def delivery_from(args: argparse.Namespace) -> dict[str, Any]:
    """Transport and retry settings; a secret is read from its file here and kept in a SecretStr."""
    found = values(args, "delivery")
    try:
        for flag in ("--basic-auth-password-file", "--bearer-token-file"):
            option = BY_FLAG[flag]
            path = found.pop(option.dest, None)
            secret = read_secret(str(path), flag) if path else env(option.secret_env or "")
            if secret is not None:
                found[option.dest.removesuffix("_file")] = secret
        found["headers"] = parse_headers(found.pop("header"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    retry: dict[str, Any] = {
        key: found.pop(key) for key in ("push_retries", "retry_backoff", "retry_backoff_max") if key in found
    }
    return {"transport": found, "retry": retry}


def settings_from(argv: Sequence[str]) -> Settings:
    argv = list(argv)
    command: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1 :]
        if not command:
            raise ConfigError("'--' must be followed by a command")
    args = build_parser().parse_args(argv)
    given = values(args, None)
    try:
        labels = parse_labels(given.pop("label"))
        history = not given.pop("no_history")
        settings = Settings(
            **given,
            labels=labels,
            history=history,
            files=args.files,
            command=command,
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
        (bool(args.linger) and not s.listen, "--linger needs --listen: it keeps serving /metrics after the end"),
        (args.exit_on_end and not following, "--exit-on-end only applies when following FILEs"),
        (
            bool(args.state_file) and not following,
            "--state-file only applies when following FILEs or --kubernetes-logs",
        ),
        (args.quiet and following, "--quiet has no effect on FILEs: they are never echoed"),
        (
            args.strict and not (s.pushgateway or s.remote_write or s.history),
            "--strict needs --pushgateway, --remote-write or the run history: nothing else can fail to deliver",
        ),
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
