"""The PagerDuty feature's side of pagerduty/api.PagerDuty: what the on-call feature reads and
does through it (built from the client, the on-call refresher and the `!pd` handler)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from chatopsd.core.context import Call
from chatopsd.features.pagerduty.api import AfterRefresh
from chatopsd.features.pagerduty.client import PagerDutyClient, ShiftRow
from chatopsd.features.pagerduty.commands import PagerDutyHandler
from chatopsd.features.pagerduty.oncall_refresher import OnCallRefresher
from chatopsd.features.pagerduty.oncall_store import Snapshot
from chatopsd.features.pagerduty.rules import IncidentApi, PdUser
from chatopsd.identity.service import IdentityService

log = logging.getLogger("chatopsd.oncall")

Follow = Callable[[], Awaitable[None]]


class PagerDutyAccess:
    def __init__(
        self,
        client: PagerDutyClient,
        cache: OnCallRefresher,
        api: IncidentApi,
        handler: PagerDutyHandler,
        identities: IdentityService,
    ) -> None:
        self.client, self.cache, self.api, self.handler = client, cache, api, handler
        self.identities = identities
        self._after: list[tuple[AfterRefresh, Follow]] = []

    async def sender(self, call: Call) -> str:
        return await self.handler.sender(call)

    async def user(self, call: Call, query: str) -> PdUser:
        return await self.handler.user(call, query)

    @property
    def snapshot(self) -> Snapshot:
        return self.cache.snapshot

    def on_refresh(self, after: AfterRefresh, follow: Follow) -> None:
        if not self._after:
            self.cache.after_refresh.append(self._refreshed)
        self._after.append((after, follow))

    async def _refreshed(self, snap: Snapshot) -> None:
        for after, _ in self._after:
            await after(snap)

    async def follow(self) -> None:
        """A follower's round of the refresh job: re-read what the leader's refresh wrote
        (on-call, then what the subscribers keep, e.g. the lookahead)."""
        await self.cache.load()
        for _, follow in self._after:
            await follow()

    async def shifts(
        self, schedule_ids: Sequence[str], since: datetime, until: datetime
    ) -> list[ShiftRow]:
        return await self.client.shifts(schedule_ids, since, until)

    async def raw_user(self, user_id: str) -> dict[str, Any]:
        return await self.client.user(user_id)
