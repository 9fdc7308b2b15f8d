"""What `chatopsd ctl health`, systemd's STATUS= and the metrics read of the running daemon:
a read-only view, built by app.py. Nothing here can change the daemon."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from chatopsd import redact

if TYPE_CHECKING:
    from chatopsd.connectors.base import Supervisor
    from chatopsd.core.ports import Clock
    from chatopsd.ha.fence import LeaseState
    from chatopsd.looplag import LoopLag
    from chatopsd.scheduler import Scheduler


class OutboxFigures(Protocol):
    """The outbox's counters (outbox.Outbox)."""

    @property
    def depth(self) -> int: ...

    @property
    def sent(self) -> int: ...

    @property
    def failed(self) -> int: ...

    @property
    def sent_by(self) -> Mapping[str, int]: ...

    @property
    def failed_by(self) -> Mapping[str, int]: ...

    @property
    def connectors(self) -> Mapping[str, object]: ...


@dataclass(frozen=True)
class HealthView:
    clock: Clock
    supervisors: Sequence[Supervisor]  # one per connector: its state and counters
    outbox: OutboxFigures
    scheduler: Scheduler  # the jobs and how each last ran
    lease: Callable[[], LeaseState]  # who leads, and the instances seen
    in_flight: Callable[[], int]  # commands running now
    database: str  # where the state lives (never a password)
    claim_failures: Callable[[], int]  # events the shared database could not record
    loop_lag: LoopLag | None = None
    # what each feature reports of itself (Feature.health), by feature name
    features: Mapping[str, Callable[[], Mapping[str, object]]] | None = None


# Job names as people say them (the rest: "job <name>").
LABELS = {"pagerduty-refresh": "PagerDuty refresh", "status-poll": "status poll"}


def failing_jobs(view: HealthView) -> list[str]:
    """One phrase per failing job, e.g. "PagerDuty refresh failing since 21:13 UTC (PagerDuty
    server error (500))", for STATUS= and logs."""
    return [
        f"{LABELS.get(name, f'job {name}')} failing since "
        f"{job.failing_since:%H:%M UTC} ({job.cause[:120]})"
        for name, job in sorted(view.scheduler.failing().items())
        if job.failing_since is not None
    ]


def status_line(view: HealthView) -> str:
    """Connector health and failing jobs for systemd's STATUS= (`systemctl status`)."""
    parts = []
    for s in view.supervisors:
        text = f"{s.platform}: {s.health.state.value}"
        if s.health.reason and s.health.state.value != "ready":
            text += f" ({redact.text(s.health.reason)[:80]})"
        parts.append(text)
    problem = view.lease().database_error
    if problem is not None:
        parts.append(f"database unreachable ({problem[:80]})")
    parts.extend(failing_jobs(view))  # e.g. "PagerDuty refresh failing since 21:13 UTC (…)"
    return "; ".join(parts) or "no connectors"
