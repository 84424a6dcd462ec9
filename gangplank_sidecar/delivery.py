"""How every network sink delivers: its connection settings, its retry policy and its one error type.

A leaf module: settings validate these models and the sinks use them, and neither imports the other.
"""

from __future__ import annotations

import random
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

MIN_BACKOFF = 0.01


class PushError(OSError):
    """One push failed; the message says why in words a user can act on, with no secret in it.

    ``status`` is the HTTP status when the server answered, None when it did not (network, TLS).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def final(self) -> bool:
        """A 4xx other than 429: sending the same request again cannot succeed."""
        return self.status is not None and 400 <= self.status < 500 and self.status != 429


class Retry(BaseModel):
    """How often and how patiently a failed round is tried again (--push-retries, --retry-backoff)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    push_retries: int = Field(default=3, ge=0)
    retry_backoff: float = Field(
        default=0.5, ge=MIN_BACKOFF, allow_inf_nan=False
    )  # smaller would spin on a dead gateway
    retry_backoff_max: float = Field(default=10.0, ge=MIN_BACKOFF, allow_inf_nan=False)

    def delay(self, failures: int) -> float:
        """Capped exponential backoff with equal jitter: between half and all of the step."""
        step = min(self.retry_backoff_max, self.retry_backoff * 2 ** min(failures - 1, 30))
        return random.uniform(step / 2, step)


class TransportConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    connect_timeout: float = Field(default=3.0, gt=0)
    push_timeout: float = Field(default=5.0, gt=0)
    basic_auth_user: str | None = None
    basic_auth_password: SecretStr | None = None
    bearer_token: SecretStr | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    headers: tuple[tuple[str, SecretStr], ...] = ()
