"""What the on-call feature uses of PagerDuty: its REST API (incidents, on-call, overrides,
users), the PagerDuty user a chat user acts as, the on-call snapshot the refresher keeps, and
a subscription to each refresh (on the leader) or to each re-read of it (on the others).

Imported only when a [pagerduty] section is configured (it loads the PagerDuty client)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from chatopsd.config import Config, PagerDutySection
from chatopsd.core.context import Call
from chatopsd.features.pagerduty.client import PagerDutyError, ShiftRow, pd_time, role_of
from chatopsd.features.pagerduty.commands import ROLE, parse_duration
from chatopsd.features.pagerduty.oncall_refresher import person_of
from chatopsd.features.pagerduty.oncall_store import Snapshot
from chatopsd.features.pagerduty.rules import IncidentApi, PdUser, hhmm
from chatopsd.identity.service import IdentityService
from chatopsd.runtime import ServiceKey

__all__ = [
    "PAGERDUTY",
    "ROLE",
    "AfterRefresh",
    "IncidentApi",
    "PagerDuty",
    "PagerDutyError",
    "PdUser",
    "ShiftRow",
    "Snapshot",
    "hhmm",
    "parse_duration",
    "pd_time",
    "person_of",
    "role_of",
    "section",
    "web_url",
]

AfterRefresh = Callable[[Snapshot], Awaitable[None]]


class PagerDuty(Protocol):
    api: IncidentApi  # the REST API, each call under the page deadline
    identities: IdentityService

    async def sender(self, call: Call) -> str:
        """The caller's PagerDuty email, or Forbidden saying what to do."""
        ...

    async def user(self, call: Call, query: str) -> PdUser:
        """A PagerDuty user from an email, a name, or a chat mention of a linked person."""
        ...

    @property
    def snapshot(self) -> Snapshot:
        """Who is on call, as of the last refresh (or the last re-read on a follower)."""
        ...

    def on_refresh(self, after: AfterRefresh, follow: Callable[[], Awaitable[None]]) -> None:
        """`after` runs after each refresh that succeeded, with what it read (never after a
        failed one: an outage is not "nobody on call"); on an instance that does not lead,
        `follow` runs instead, after the snapshot the leader wrote was read again."""
        ...

    async def shifts(
        self, schedule_ids: Sequence[str], since: datetime, until: datetime
    ) -> list[ShiftRow]:
        """Every shift on these schedules overlapping since..until. PagerDutyError."""
        ...

    async def raw_user(self, user_id: str) -> dict[str, Any]:
        """GET /users/{id} as PagerDuty answers it. PagerDutyError."""
        ...


PAGERDUTY: ServiceKey[PagerDuty] = ServiceKey("pagerduty")


def section(config: Config) -> PagerDutySection:
    """The `[pagerduty]` section this daemon runs with: the configured one, else the demo's
    (`config.demo`: features/pagerduty/demo.py). Asked only when one of them is there."""
    if config.pagerduty is not None:
        return config.pagerduty
    assert config.demo, "PagerDuty is neither configured nor a demo"
    from chatopsd.features.pagerduty import demo

    return demo.section()


def web_url(config: Config) -> str:
    """PagerDuty's web app, where people act by hand (the demo's own address in the demo)."""
    if config.pagerduty is None and config.demo:
        from chatopsd.features.pagerduty import demo

        return demo.WEB
    return "https://app.pagerduty.com"
