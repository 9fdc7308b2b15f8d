"""System status domain: verdicts, alerts, readings from sources, and combining them. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Protocol


class SourceError(Exception):
    """A source answered, but not what its kind promises (a list of alerts, a Prometheus
    answer, the configured field); the message is shown in chat as it is."""


class Verdict(Enum):
    NORMAL = "NORMAL"
    DEGRADED = "DEGRADED"
    UNKNOWN = "UNKNOWN"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        # CRITICAL outranks UNKNOWN: a known outage says more than a source we cannot read.
        return _RANK[self]


_RANK = {Verdict.NORMAL: 0, Verdict.DEGRADED: 1, Verdict.UNKNOWN: 2, Verdict.CRITICAL: 3}


@dataclass(frozen=True, slots=True)
class Alert:
    name: str
    verdict: Verdict
    summary: str = ""
    source: str = ""
    # What makes two alerts the same alert (Alertmanager's fingerprint); name when empty.
    key: str = ""
    # When it started firing, if the source says (Alertmanager's startsAt).
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """What one source said. `error` set means it could not be read (verdict UNKNOWN)."""

    source: str
    verdict: Verdict
    alerts: tuple[Alert, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Overview:
    verdict: Verdict
    readings: tuple[Reading, ...]
    alerts: tuple[Alert, ...] = field(default=())

    @property
    def problems(self) -> list[Reading]:
        return [r for r in self.readings if r.error]


class StatusSource(Protocol):
    name: str

    async def read(self) -> Reading:
        """Never raises: failures come back as a Reading with `error` set."""
        ...


def combine(readings: Sequence[Reading]) -> Overview:
    if not readings:
        return Overview(Verdict.UNKNOWN, (), ())
    verdict = max((r.verdict for r in readings), key=lambda v: v.rank)
    alerts = sorted(
        (a for r in readings for a in r.alerts), key=lambda a: (-a.verdict.rank, a.name)
    )
    return Overview(verdict, tuple(readings), tuple(alerts))
