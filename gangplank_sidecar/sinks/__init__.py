"""Where the run state goes: a Pushgateway, a /metrics endpoint, remote write, the run history."""

from __future__ import annotations

from typing import Protocol


class Sink(Protocol):
    """The lifecycle every sink shares, so that the sidecar starts and ends them all the same way."""

    def start(self) -> None:
        """Starts the sink's thread; nothing happens in the constructor but checks and setup."""

    def close(self, deadline: float) -> bool:
        """Delivers what is pending, trying until ``deadline`` (monotonic); True when all of it arrived."""
        ...

    def delivered_through(self) -> int:
        """The store version up to which everything this sink was given is delivered (what a checkpoint
        may claim); with nothing pending, the latest version it has heard of."""
        ...
