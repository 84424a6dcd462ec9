"""Settings: command-line options over environment variables over defaults, validated once.

``cli`` resolves each option from its flag or its environment variable; this model validates the result.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from gangplank_sidecar.aggregation.checks import Thresholds, thresholds_from
from gangplank_sidecar.aggregation.state import DEFAULT_MAX_SERIES
from gangplank_sidecar.delivery import Retry, TransportConfig
from gangplank_sidecar.errors import ConfigError
from gangplank_sidecar.parsers import patterns as user_patterns

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
# Every label name the sidecar writes itself (design.md, section 8): a --label with one of these
# would clash with ours (a duplicate ``le`` takes a whole gateway target down). New labels go here.
RESERVED_LABELS = (
    "job",
    "phase",
    "le",
    "quantile",
    "metric",
    "check",
    "code",
    "result",
    "format",
    "reason",
    "gpu",
    "run",
    "namespace",
    "pod",
    "container",
)


def parse_labels(pairs: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not _LABEL_NAME.match(key) or key.startswith("__"):
            raise ConfigError(f"bad label {pair!r}: expected KEY=VALUE with KEY a Prometheus label name")
        if key == "job":
            raise ConfigError(f"label {key!r} is reserved (use --job for the job)")
        if key in RESERVED_LABELS:
            raise ConfigError(
                f"label {key!r} is reserved: the sidecar writes it (reserved: {', '.join(RESERVED_LABELS)})"
            )
        labels[key] = value
    return labels


def parse_duration(value: str | float) -> float:
    """Seconds from ``600``, ``30s``, ``10m`` or ``1h``."""
    text = str(value).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smh]?)", text)
    if m is None:
        raise ConfigError(f"bad duration {text!r}: expected a number of seconds or one like 30s, 10m, 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def gateway_url(value: str, path: bool = False) -> str:
    """``host:port`` means ``http://host:port``; anything else that is not plainly a server's URL is refused.

    The gateway's URL is a server and nothing more (we add ``/metrics/job/...``): a path, a query or
    a fragment would only fail after the flush timeout. ``path``: a remote-write URL needs one.
    """
    url = value.strip()
    if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://", url):
        url = "http://" + url
    if any(c.isspace() for c in url):
        raise ConfigError(f"bad URL {value!r}: no spaces")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed "[" of an IPv6 address
        raise ConfigError(f"bad URL {value!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"bad URL {value!r}: the scheme must be http or https")
    if not parts.hostname:
        raise ConfigError(f"bad URL {value!r}: no host")
    after_host = parts.netloc.rpartition("@")[2].rpartition("]")[2]  # "]" ends an IPv6 address
    sep, port = after_host.partition(":")[1:]
    if sep and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ConfigError(f"bad URL {value!r}: the port must be a number from 1 to 65535")
    try:
        parts.port  # noqa: B018 - whatever else urllib cannot read as a port
    except ValueError as exc:
        raise ConfigError(f"bad URL {value!r}: {exc}") from None
    if parts.fragment or "#" in url:
        raise ConfigError(f"bad URL {value!r}: no #fragment")
    if not path and (parts.query or "?" in url):
        raise ConfigError(f"bad URL {value!r}: no ?query (the Pushgateway URL is the server's, e.g. http://host:9091)")
    if not path and parts.path.strip("/"):
        raise ConfigError(f"bad URL {value!r}: no path (the Pushgateway URL is the server's, e.g. http://host:9091)")
    return url.rstrip("/")


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pushgateway: str | None = None
    remote_write: list[str] = []
    listen: str | None = None
    linger: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    job: str | None = None
    labels: dict[str, str] = {}
    quiet: bool = False
    echo: Literal["auto", "all", "text"] = "auto"
    strict: bool = False
    flush_timeout: float = Field(default=10.0, ge=0, allow_inf_nan=False)
    transport: TransportConfig = TransportConfig()
    retry: Retry = Retry()
    format: str = "auto"
    db: str | None = None
    history: bool = True
    check_threshold: Thresholds = Thresholds()  # from NAME=VALUE pairs, parsed once here
    files: list[str] = []
    state_file: str | None = None
    exit_on_end: bool = False
    command: list[str] = []
    system_interval: float = Field(default=15.0, ge=0, allow_inf_nan=False)
    pid: int | None = Field(default=None, gt=0)
    disk_path: str | None = None
    patterns: str | None = None
    pattern: list[str] = []
    max_series: int = Field(default=DEFAULT_MAX_SERIES, ge=1)
    kubernetes_logs: str | None = None
    kubernetes_namespaces: list[str] = []
    kubernetes_forget_after: float = Field(default=600.0, ge=0)

    @field_validator("pushgateway")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return gateway_url(value) if value else None

    @field_validator("remote_write")
    @classmethod
    def _remote_write(cls, values: list[str]) -> list[str]:
        urls = []
        for value in values:
            url = gateway_url(value, path=True)
            if "@" in url.split("://", 1)[1].split("/", 1)[0]:
                raise ConfigError(
                    "put credentials in --basic-auth-user and its password file, not in the remote-write URL"
                )
            urls.append(url)
        return urls

    @field_validator("check_threshold", mode="before")
    @classmethod
    def _thresholds(cls, values: object) -> object:
        if not isinstance(values, list):
            return values
        try:
            return thresholds_from(values)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @field_validator("patterns")
    @classmethod
    def _patterns_file(cls, path: str | None) -> str | None:
        """The user patterns' file is read and each of its patterns compiled before anything is read."""
        try:
            user_patterns.from_options(path, [])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return path

    @field_validator("pattern")
    @classmethod
    def _patterns(cls, values: list[str]) -> list[str]:
        try:
            user_patterns.from_options(None, values)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return values

    @field_validator("kubernetes_forget_after", mode="before")
    @classmethod
    def _forget_after(cls, value: str | float) -> float:
        return parse_duration(value)

    @field_validator("kubernetes_logs")
    @classmethod
    def _node_agent(cls, value: str | None, info: ValidationInfo) -> str | None:
        """The node agent reads the kubelet's logs and nothing else."""
        if value and (info.data.get("files") or info.data.get("command") or info.data.get("exit_on_end")):
            raise ConfigError("it follows every container's logs: no FILE, command or --exit-on-end with it")
        return value

    @field_validator("kubernetes_namespaces")
    @classmethod
    def _namespaces(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if value and not info.data.get("kubernetes_logs"):
            raise ConfigError("needs --kubernetes-logs")
        return value

    @field_validator("job")
    @classmethod
    def _job(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ConfigError("the job name must not be empty")
        return value
