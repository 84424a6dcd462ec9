"""Every option of ``gangplank-sidecar`` in one table: flag, environment variable, parser, help.

The argument parser, the environment fallback and --help are all built from these rows, so an
option's variable is named once; ``gangplank-runs`` reads the ``--db`` row. A leaf module: it
imports nothing of the sidecar but the environment helper, so the SQLite reader stays light.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gangplank_sidecar.environment import env

KUBERNETES_ROOT = "/var/log/pods"  # where the kubelet keeps every container's log
GROUPS = {
    "delivery": "delivery (secrets only from files or the environment)",
    "node agent": "node agent (one per Kubernetes node, reading every container's logs)",
}
_UNSET: tuple[object, ...] = (None, "", [])


@dataclass(frozen=True)
class Option:
    flag: str
    help: str
    env: str | None = None
    split: str | None = None  # a repeatable flag: how its environment variable separates the items
    secret_env: str | None = None  # a file option: the variable that may hold the secret itself
    group: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)  # argparse's: metavar, type, action, choices, ...

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    def env_note(self) -> str:
        if self.env is None:
            return ""
        how = {None: "", ",": ", comma-separated", "\n": ": one per line"}[self.split]
        alternative = f"; or {self.secret_env}" if self.secret_env else ""
        return f" [{self.env}{how}{alternative}]"

    def add_to(self, parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: object = None) -> None:
        """``default`` (the settings' own, which apply when the flag is not given) fills the help's ``{default}``."""
        kwargs = dict(self.kwargs)
        if self.split is not None:
            kwargs.update(action="append", default=[])
        shown = f"{default:g}" if isinstance(default, float) else default
        help = self.help.format(default=shown) if "{default}" in self.help else self.help
        parser.add_argument(self.flag, help=(help + self.env_note()).strip(), **kwargs)

    def value(self, args: argparse.Namespace) -> Any:  # argparse's values are untyped; Settings validates them
        """The flag's value, else the environment's (an empty variable counts as unset), else the flag's default."""
        given = getattr(args, self.dest)
        raw = env(self.env) if self.env and given in _UNSET else None
        if raw is None:
            return given
        if self.split == "\n":
            return raw.splitlines()
        if self.split is not None:
            return [item.strip() for item in raw.split(self.split) if item.strip()]
        return raw


def _o(flag: str, help: str, env: str | None = None, **kwargs: Any) -> Option:
    fields = {k: kwargs.pop(k) for k in ("split", "secret_env", "group") if k in kwargs}
    return Option(flag, help, env, kwargs=kwargs, **fields)


OPTIONS = (
    _o("--pushgateway", "Pushgateway to push to", "GANGPLANK_PUSHGATEWAY", metavar="URL"),
    _o(
        "--remote-write",
        "also send every record's samples with its timestamp to this Prometheus remote-write URL (repeatable)",
        "GANGPLANK_REMOTE_WRITE",
        split=",",
        metavar="URL",
    ),
    _o(
        "--listen",
        "serve /metrics for Prometheus to scrape (host default 127.0.0.1)",
        "GANGPLANK_LISTEN",
        metavar="[HOST:]PORT",
    ),
    _o(
        "--linger",
        "pipe mode: keep serving --listen this long after EOF (default {default} s)",
        type=float,
        metavar="SECONDS",
    ),
    _o("--job", "job label", "GANGPLANK_JOB", metavar="NAME"),
    _o("--label", "extra grouping label", "GANGPLANK_LABELS", split=",", metavar="KEY=VALUE"),
    _o("--quiet", "do not echo stdin", action="store_true"),
    _o(
        "--echo",
        "all: echo every byte; text: leave the protocol records out (default: text to a terminal, all to a pipe or "
        "file)",
        choices=("all", "text"),
    ),
    _o("--strict", "exit 1 if anything could not be delivered", action="store_true"),
    _o(
        "--flush-timeout",
        "time to deliver the final state (default {default} s)",
        "GANGPLANK_FLUSH_TIMEOUT",
        type=float,
        metavar="SECONDS",
    ),
    _o(
        "--push-timeout",
        "wait for the gateway's answer (default {default} s)",
        "GANGPLANK_PUSH_TIMEOUT",
        group="delivery",
        metavar="SECONDS",
    ),
    _o(
        "--connect-timeout",
        "wait for a connection (default {default} s)",
        "GANGPLANK_CONNECT_TIMEOUT",
        group="delivery",
        metavar="SECONDS",
    ),
    _o(
        "--push-retries",
        "retries before a push counts as failed (default {default})",
        "GANGPLANK_PUSH_RETRIES",
        group="delivery",
        metavar="N",
    ),
    _o(
        "--retry-backoff",
        "first wait before a retry, doubled each time (default {default} s)",
        "GANGPLANK_RETRY_BACKOFF",
        group="delivery",
        metavar="SECONDS",
    ),
    _o(
        "--retry-backoff-max",
        "longest wait between retries (default {default} s)",
        "GANGPLANK_RETRY_BACKOFF_MAX",
        group="delivery",
        metavar="SECONDS",
    ),
    _o("--basic-auth-user", "HTTP basic auth user", "GANGPLANK_BASIC_AUTH_USER", group="delivery", metavar="USER"),
    _o(
        "--basic-auth-password-file",
        "",
        "GANGPLANK_BASIC_AUTH_PASSWORD_FILE",
        secret_env="GANGPLANK_BASIC_AUTH_PASSWORD",
        group="delivery",
        metavar="FILE",
    ),
    _o(
        "--bearer-token-file",
        "",
        "GANGPLANK_BEARER_TOKEN_FILE",
        secret_env="GANGPLANK_BEARER_TOKEN",
        group="delivery",
        metavar="FILE",
    ),
    _o(
        "--tls-ca-file",
        "CA certificates that sign the gateway's",
        "GANGPLANK_TLS_CA_FILE",
        group="delivery",
        metavar="FILE",
    ),
    _o("--tls-cert-file", "client certificate, PEM", "GANGPLANK_TLS_CERT_FILE", group="delivery", metavar="FILE"),
    _o("--tls-key-file", "client certificate's key, PEM", "GANGPLANK_TLS_KEY_FILE", group="delivery", metavar="FILE"),
    _o("--header", "extra HTTP header", "GANGPLANK_HEADERS", split="\n", group="delivery", metavar="'NAME: VALUE'"),
    _o("--format", "input format (default: auto)", default="auto"),  # choices: the parsers', added by cli
    _o(
        "--patterns",
        "YAML list of {match: REGEX, phase: train|test}, tried before the formats",
        "GANGPLANK_PATTERNS",
        metavar="FILE",
    ),
    _o(
        "--pattern",
        "a pattern whose named groups are metrics (epoch, step place them; repeatable)",
        action="append",
        default=[],
        metavar="REGEX",
    ),
    _o("--state-file", "where to keep the positions in the FILEs", "GANGPLANK_STATE_FILE", metavar="PATH"),
    _o("--exit-on-end", "stop following once every run in the FILEs has ended", action="store_true"),
    _o("--db", "run history database (default: $XDG_DATA_HOME/gangplank/runs.db)", "GANGPLANK_DB", metavar="PATH"),
    _o("--no-history", "do not record runs in the run history", action="store_true"),
    _o(
        "--check-threshold",
        "change a training check's threshold (repeatable; see README, Checks)",
        "GANGPLANK_CHECK_THRESHOLDS",
        split=",",
        metavar="NAME=VALUE",
    ),
    _o(
        "--system-interval",
        "sample CPU, memory, disk and GPU every SECONDS (default {default}, 0: off)",
        "GANGPLANK_SYSTEM_INTERVAL",
        type=float,
        metavar="SECONDS",
    ),
    _o(
        "--pid",
        "measure this process tree (default: the wrapped command, a shared pod's other containers, or our cgroup)",
        type=int,
        metavar="PID",
    ),
    _o("--disk-path", "report the disk of PATH (default: the working directory or the first FILE's)", metavar="PATH"),
    _o(
        "--max-series",
        "metric keys kept per run; further keys are dropped and counted (default {default})",
        "GANGPLANK_MAX_SERIES",
        type=int,
        metavar="N",
    ),
    _o(
        "--kubernetes-logs",
        f"follow every container log the kubelet keeps under DIR (default {KUBERNETES_ROOT})",
        "GANGPLANK_KUBERNETES_LOGS",
        group="node agent",
        nargs="?",
        const=KUBERNETES_ROOT,
        metavar="DIR",
    ),
    _o(
        "--kubernetes-namespace",
        "only read the pods of this namespace (repeatable)",
        "GANGPLANK_KUBERNETES_NAMESPACES",
        split=",",
        group="node agent",
        metavar="NS",
    ),
    _o(
        "--kubernetes-forget-after",
        "delete a deleted pod's groups from the Pushgateway this long after (default {default} s)",
        "GANGPLANK_KUBERNETES_FORGET_AFTER",
        group="node agent",
        metavar="DURATION",
    ),
)
BY_FLAG = {option.flag: option for option in OPTIONS}


def add_options(
    parser: argparse.ArgumentParser,
    group: str | None,
    defaults: Mapping[str, object] | None = None,
    **extra: dict[str, Any],
) -> None:
    """Adds the table's rows of ``group`` (None: the main options) in their order; ``defaults``: the settings'
    defaults by dest, for the help; ``extra``: argparse arguments known only to the caller, by dest."""
    target = parser if group is None else parser.add_argument_group(GROUPS[group])
    for option in OPTIONS:
        if option.group == group:
            if option.dest in extra:
                option = dataclasses.replace(option, kwargs={**option.kwargs, **extra[option.dest]})
            option.add_to(target, (defaults or {}).get(option.dest))


def values(args: argparse.Namespace, group: str | None) -> dict[str, Any]:
    """The resolved value of every option of ``group`` that has one, by dest."""
    found = {o.dest: o.value(args) for o in OPTIONS if o.group == group}
    return {dest: value for dest, value in found.items() if value is not None}
