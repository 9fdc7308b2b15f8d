"""System status domain: verdicts, alerts, readings from sources, and combining them. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
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
# The key of the alert that stands for the series a source did not list ("and 12 more").
MORE_KEY = "+more"


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
        _once(a for r in readings for a in r.alerts), key=lambda a: (-a.verdict.rank, a.name)
    )
    return Overview(verdict, tuple(readings), tuple(alerts))


def _once(alerts: Iterable[Alert]) -> list[Alert]:
    """One alert read by several sources (two Alertmanagers of one cluster give the same
    fingerprint; two Prometheus servers the same series) counts once: the same name and key,
    kept at its highest verdict and shown with every source that reported it. Alerts
    without a key (a scalar, a command's exit) are each their own."""
    found: dict[tuple[str, str], Alert] = {}
    loose: list[Alert] = []
    for alert in alerts:
        if not alert.key or alert.key == MORE_KEY:
            loose.append(alert)
            continue
        seen = found.get((alert.name, alert.key))
        if seen is None:
            found[(alert.name, alert.key)] = alert
            continue
        top = seen if seen.verdict.rank >= alert.verdict.rank else alert
        sources = seen.source.split(", ")
        if alert.source not in sources:
            sources.append(alert.source)
        since = min((t for t in (seen.since, alert.since) if t is not None), default=None)
        found[(alert.name, alert.key)] = replace(top, source=", ".join(sources), since=since)
    return [*found.values(), *loose]
