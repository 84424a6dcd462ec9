"""Line protocol v1: the pydantic models of what the emitter writes, and the parser for them.

The JSON Schema shipped in the package (``protocol.schema.json``) is generated from these
models by ``python -m gangplank_sidecar.parsers.protocol``; a test checks it is current.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

MARKER = b'{"gangplank":'
VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "protocol.schema.json"

# Validate at the boundary: every number a record carries is range-checked here, so that a bad
# record is one parse error and nothing downstream (history, remote write, the exposition) has
# to guard against a time of 1e300 or an epoch past int64.
MAX_TIME = 253402300800.0  # 10000-01-01 UTC: later Unix times are no clock's, and overflow datetime
MAX_COUNT = 2**53  # epochs, steps, counts and parameters: exact as a float64 sample and as an SQLite integer
MAX_BUCKETS = 1000  # histogram bounds: each one is a series
MAX_CHECKS = 256  # checks in one record: each one is a series too

# The protocol's spelling of non-finite metric values, which Python's json module also reads and writes.
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def spell_non_finite(value: float) -> str:
    """The protocol's string for a non-finite value (NaN, Infinity, -Infinity), for messages and exports."""
    return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"


Phase = Literal["train", "test"]
Severity = Literal["info", "warning", "error"]
Metrics = dict[str, float]  # metric values may be NaN or infinite (spelled as NON_FINITE's keys)
Seconds = Annotated[float, Field(ge=0, lt=MAX_TIME, allow_inf_nan=False)]  # a Unix time or a duration
Count = Annotated[int, Strict(), Field(ge=0, le=MAX_COUNT)]  # strict: JSON true or 3.0 is no count
Finite = Annotated[float, Field(allow_inf_nan=False)]
Name = Annotated[str, Field(max_length=256)]


class _Model(BaseModel):
    # Built at first use: a stream of text formats never pays for the protocol's validators at start.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class Params(_Model):
    total: Count
    trainable: Count | None = None


class Weights(_Model):
    """Cumulative histogram of the model's weights (Prometheus ``le`` semantics)."""

    le: list[Finite] = Field(max_length=MAX_BUCKETS)
    counts: list[Count] = Field(max_length=MAX_BUCKETS + 1)
    count: Count
    sum: Finite
    min: Finite | None = None
    max: Finite | None = None
    nonfinite: Count = 0

    @model_validator(mode="after")
    def _cumulative(self) -> Weights:
        if any(not a < b for a, b in zip(self.le, self.le[1:])):
            raise ValueError("weights.le must be strictly increasing")
        if len(self.counts) != len(self.le) + 1:
            raise ValueError("weights.counts needs len(le) + 1 entries")
        if any(a > b for a, b in zip(self.counts, self.counts[1:])) or (self.counts and self.counts[0] < 0):
            raise ValueError("weights.counts must be cumulative")
        if self.counts[-1] != self.count:
            raise ValueError("weights.counts[-1] must equal weights.count")
        return self


class Check(_Model):
    """A sanity check that fired; ``fired: false`` marks one that ran and passed (exported as 0)."""

    code: Name = ""
    name: Name
    severity: Severity = "warning"
    message: str = Field(default="", max_length=4096)
    fired: bool = True


class _RecordBase(_Model):
    gangplank: Literal[1]
    run: str = Field(min_length=1, max_length=256)
    phase: Phase
    time: Seconds

    @field_validator("gangplank", mode="before")
    @classmethod
    def _not_bool(cls, value: object) -> object:
        """JSON ``true`` is no version: in Python it would equal 1."""
        if isinstance(value, bool):
            raise ValueError("the protocol version must be the integer 1")
        return value


class Start(_RecordBase):
    event: Literal["start"]
    params: Params
    job: str | None = Field(default=None, max_length=256)
    epochs: Count | None = None
    framework: Name | None = None
    checks: list[Check] = Field(
        default_factory=list, max_length=MAX_CHECKS, json_schema_extra={"default": []}
    )  # a factory: a default is copied per record


class Step(_RecordBase):
    event: Literal["step"]
    step: Count
    metrics: Metrics


class Epoch(_RecordBase):
    event: Literal["epoch"]
    epoch: Annotated[int, Strict(), Field(ge=1, le=MAX_COUNT)]
    elapsed_seconds: Seconds
    metrics: Metrics
    params: Params
    weights: Weights | None = None
    checks: list[Check] = Field(
        default_factory=list, max_length=MAX_CHECKS, json_schema_extra={"default": []}
    )  # a factory: a default is copied per record


class Evaluate(_RecordBase):
    event: Literal["evaluate"]
    elapsed_seconds: Seconds
    metrics: Metrics
    params: Params
    weights: Weights | None = None


class End(_RecordBase):
    event: Literal["end"]
    status: Literal["ok", "interrupted", "failed"]
    elapsed_seconds: Seconds


Record = Annotated[Union[Start, Step, Epoch, Evaluate, End], Field(discriminator="event")]
RECORD = TypeAdapter(Record, config=ConfigDict(defer_build=True))


class UnknownVersion(ValueError):
    """A record of a protocol version newer than this sidecar knows."""


def _version(text: bytes) -> object:
    try:
        return json.loads(text).get("gangplank")
    except (ValueError, AttributeError, RecursionError):
        return None


def parse(line: bytes) -> list[Record]:
    """The protocol record in ``line`` (which may follow other text), or nothing.

    Raises ValueError for a marked record that is not valid v1, and UnknownVersion for a
    newer protocol, so that the caller can count and report it.
    """
    start = line.find(MARKER)
    if start < 0:
        return []
    text = line[start:].rstrip()
    try:
        return [RECORD.validate_json(text)]
    except ValidationError as exc:
        version = _version(text)
        if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
            raise UnknownVersion(f"protocol version {version} (this sidecar reads {VERSION})") from None
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise ValueError(f"bad gangplank record: {where}: {first['msg']}") from None
    except RecursionError:
        raise ValueError("bad gangplank record: nested too deeply") from None


def json_schema() -> dict:
    return RECORD.json_schema(mode="validation") | {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "gangplank line protocol v1",
    }


if __name__ == "__main__":
    SCHEMA_PATH.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
