"""Channel topics and Slack user groups kept true after each PagerDuty refresh.

For each target the bot computes what it would write now (a topic from its template, a user
group's members) and compares it with what it last wrote, stored in the database: equal means
no call at all. So a topic a person edited stays as they left it until who is on call changes,
and a restart writes nothing new. Only a successful write is recorded: a failed one is tried
again at the next refresh, and the run raises so the scheduler counts it.

Several instances: the run reads the lease's token once and checks it still holds
before each write, so a leader paused past its lease that wakes up writes nothing stale. A
write whose record is then refused (the lease moved in between) is forgotten, so whoever
leads writes that target again at its next refresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial

from chatopsd.features.oncall.ports import KeptState
from chatopsd.features.paging.api import OnCall, Person
from chatopsd.ha.fence import Lease, Superseded, read_fence

log = logging.getLogger("chatopsd.kept_true")

SetTopic = Callable[[str, str, str], Awaitable[None]]  # platform, channel, text
SetGroup = Callable[[str, list[str]], Awaitable[None]]  # group id, user ids
# PagerDuty person -> their user ids on one platform ("slack")
ChatIds = Callable[[Person, str], Awaitable[list[str]]]


@dataclass(frozen=True, slots=True)
class Topic:
    platform: str
    channel: str
    template: str


class OnCallTopics:
    def __init__(
        self,
        state: KeptState,
        *,
        topics: list[Topic],
        usergroups: Mapping[str, str],  # schedule id -> Slack user group id
        set_topic: SetTopic,
        set_group: SetGroup,
        chat_ids: ChatIds,
        lease: Lease | None = None,
    ) -> None:
        self.state = state
        self.lease = lease  # None: the only instance (always leads, nothing to fence)
        self.topics = topics
        self.usergroups = dict(usergroups)
        self.set_topic, self.set_group, self.chat_ids = set_topic, set_group, chat_ids
        # one run at a time: two overlapping refreshes must not both see "not written yet"
        self._lock = asyncio.Lock()

    async def after_refresh(self, entries: Mapping[str, tuple[OnCall, ...]]) -> None:
        leading, fence = read_fence(self.lease)
        if not leading:
            return
        async with self._lock:
            try:
                await self._after_refresh(entries, fence)
            except Superseded:
                log.warning("topics and user groups: the lease moved to another instance")

    async def _after_refresh(
        self, entries: Mapping[str, tuple[OnCall, ...]], fence: int | None
    ) -> None:
        written = await self.state.written()
        failed: list[str] = []
        ic = _names(entries.get("ic", ()))
        responders = _names(entries.get("responders", ()))
        for t in self.topics:
            target = f"topic:{t.platform}:{t.channel}"
            text = t.template.format(ic=ic or "nobody listed", responders=responders or "-")
            await self._keep(
                target,
                text,
                written,
                failed,
                partial(self.set_topic, t.platform, t.channel, text),
                fence,
            )
        every = [e for group in entries.values() for e in group]
        for schedule, group_id in self.usergroups.items():
            people = {e.person.id: e.person for e in every if e.schedule_id == schedule}
            ids: list[str] = []
            for person in people.values():
                ids += await self.chat_ids(person, "slack")
            members = sorted(set(ids))
            if not members:
                # Slack refuses an empty group, and nobody linked is no reason to empty it.
                log.warning("user group %s: nobody on %s is linked to Slack", group_id, schedule)
                continue
            target = f"usergroup:{group_id}"
            await self._keep(
                target,
                ",".join(members),
                written,
                failed,
                partial(self.set_group, group_id, members),
                fence,
            )
        if failed:
            raise RuntimeError("could not keep true: " + "; ".join(failed))

    async def _keep(
        self,
        target: str,
        value: str,
        written: Mapping[str, str],
        failed: list[str],
        write: Callable[[], Awaitable[None]],
        fence: int | None,
    ) -> None:
        if written.get(target) == value:
            return
        if not await self.state.holds(fence):
            raise Superseded(f"lease token {fence} superseded")
        try:
            await write()
        except Exception as exc:  # connector errors of every kind: retried next refresh
            log.warning("%s: %s", target, exc)
            failed.append(f"{target}: {exc}")
            return
        try:
            await self.state.record(target, value, fence=fence)
        except Superseded:
            await self.state.forget(target)
            raise


def _names(entries: tuple[OnCall, ...]) -> str:
    return ", ".join(dict.fromkeys(e.person.name for e in entries))
