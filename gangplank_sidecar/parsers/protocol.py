"""Line protocol v1: the pydantic models of what the emitter writes, and the parser for them.

The JSON Schema shipped in the package (``protocol.schema.json``) is generated from these
models by ``python -m gangplank_sidecar.parsers.protocol``; a test checks it is current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

MARKER = b'{"gangplank":'
VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "protocol.schema.json"

Phase = Literal["train", "test"]
Metrics = dict[str, float]


class _Model(BaseModel):
    # Built at first use: a stream of text formats never pays for the protocol's validators at start.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class Params(_Model):
    total: int = Field(ge=0)
    trainable: int | None = Field(default=None, ge=0)


class Weights(_Model):
    """Cumulative histogram of the model's weights (Prometheus ``le`` semantics)."""

    le: list[float]
    counts: list[int]
    count: int = Field(ge=0)
    sum: float
    min: float | None = None
    max: float | None = None
    nonfinite: int = Field(default=0, ge=0)

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

    code: str = ""
    name: str
    severity: Literal["info", "warning", "error"] = "warning"
    message: str = ""
    fired: bool = True


class _Record(_Model):
    gangplank: Literal[1]
    run: str = Field(min_length=1, max_length=256)
    phase: Phase
    time: float


class Start(_Record):
    event: Literal["start"]
    params: Params
    job: str | None = Field(default=None, max_length=256)
    epochs: int | None = None
    framework: str | None = None
    checks: list[Check] = Field(default_factory=list, json_schema_extra={"default": []})  # a factory: a default is copied per record


class Step(_Record):
    event: Literal["step"]
    step: int = Field(ge=0)
    metrics: Metrics


class Epoch(_Record):
    event: Literal["epoch"]
    epoch: int = Field(ge=1)
    elapsed_seconds: float
    metrics: Metrics
    params: Params
    weights: Weights | None = None
    checks: list[Check] = Field(default_factory=list, json_schema_extra={"default": []})  # a factory: a default is copied per record


class Evaluate(_Record):
    event: Literal["evaluate"]
    elapsed_seconds: float
    metrics: Metrics
    params: Params
    weights: Weights | None = None


class End(_Record):
    event: Literal["end"]
    status: Literal["ok", "interrupted", "failed"]
    elapsed_seconds: float


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
