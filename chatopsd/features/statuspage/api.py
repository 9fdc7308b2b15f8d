"""The public status page as the statuspage feature sees it: the `StatusPageProvider` port and
its neutral vocabulary. The feature's commands and durable queue speak only this; a provider
(atlassian.py: Atlassian Statuspage) turns it into its own API's requests and answers.

A page incident moves through `STATUSES`. Each call to the page is a `PageCall`: the status it
moves to, the public text a person gave (never an internal one), the components it is about,
and, when the impact changes (publication, escalation), the incident's severity.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# The public lifecycle of a page incident, in order.
STATUSES = ("investigating", "identified", "monitoring", "resolved")
# What `statuspage.public_title` may name: config.py refuses a template naming anything else.
TITLE_PLACEHOLDERS = frozenset({"service", "sev", "title"})
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def placeholders(template: str) -> set[str]:
    """The {names} a title template refers to."""
    return set(PLACEHOLDER.findall(template))


@dataclass(frozen=True, slots=True)
class PageCall:
    """One change to make on the status page, as queued (durably) and then sent."""

    status: str  # one of STATUSES
    message: str | None = None  # the text for the public, exactly as a person gave it
    components: tuple[str, ...] = ()  # the page's component ids this incident affects
    # SEV-1..4 as 1..4: the impact to show, given when it is set (publication, escalation);
    # None: unchanged. A resolved call puts the components back to operational.
    severity: int | None = None
    name: str | None = None  # the public name: a new page incident only
    notify: bool = True  # tell the page's subscribers

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "components": list(self.components),
            "severity": self.severity,
            "name": self.name,
            "notify": self.notify,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PageCall:
        severity = data.get("severity")
        return cls(
            status=str(data["status"]),
            message=_text(data.get("message")),
            components=tuple(str(c) for c in data.get("components") or ()),
            severity=int(severity) if severity is not None else None,
            name=_text(data.get("name")),
            notify=bool(data.get("notify", True)),
        )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class PageIncident:
    """A page incident as the provider answered it."""

    id: str
    status: str
    shortlink: str | None = None
    latest_update: tuple[str, str] | None = None  # (status, message) of its newest update


class StatusPageError(Exception):
    """A call that did not take effect, or may have: the message says why, for a person.

    `slow_down`: the page asked us to send less (its rate limit), for `retry_after` seconds
    when it said. `maybe_done`: the call may have taken effect although no usable answer came
    (timeout, dropped connection, malformed answer): look before sending it again."""

    def __init__(
        self,
        message: str,
        *,
        slow_down: bool = False,
        retry_after: float | None = None,
        maybe_done: bool = False,
    ) -> None:
        super().__init__(message)
        self.slow_down = slow_down
        self.retry_after = retry_after
        self.maybe_done = maybe_done


class StatusPageProvider(Protocol):
    """A public status page. One request per call, no retries: the feature's durable queue
    decides when to try again, so retries survive a restart and keep an incident's calls in
    order. Every failure is a StatusPageError; no secret appears in one."""

    async def create(self, incident_id: str, call: PageCall) -> PageIncident:
        """Open a page incident for our incident `incident_id` (which `find` finds later)."""
        ...

    async def update(self, page_incident_id: str, call: PageCall) -> PageIncident: ...

    async def get(self, page_incident_id: str) -> PageIncident: ...

    async def find(self, incident_id: str) -> PageIncident | None:
        """The unresolved page incident opened for our incident, if any: after a create
        whose answer was lost, so it is not opened twice."""
        ...
