"""Wiring for on-call awareness pushed out (issue 18), called from the composition root.

Kept out of app.py so the root only gains a few lines; nothing here decides anything.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from chatopsd.core.capabilities import CHANNEL_TOPICS, DIRECT_MESSAGES, USER_GROUPS
from chatopsd.core.commands import CommandProvider
from chatopsd.features.incidents.commands import destination
from chatopsd.features.oncall.handoffs import Handoffs
from chatopsd.features.oncall.lookahead import LookaheadRefresher
from chatopsd.features.oncall.posts import PostDelivery
from chatopsd.features.oncall.reminders import Reminders
from chatopsd.features.oncall.shift_commands import ShiftHandler
from chatopsd.features.oncall.shift_rules import Lookahead
from chatopsd.features.oncall.shifts_store import SqlShifts
from chatopsd.features.oncall.store import SqliteKeptState, SqliteOnCallPush
from chatopsd.features.oncall.topics import KeptTrue, Topic
from chatopsd.features.pagerduty.oncall_store import Snapshot
from chatopsd.features.paging.api import Person

if TYPE_CHECKING:
    from chatopsd.app import App

log = logging.getLogger("chatopsd.oncall_push")

Hook = Callable[[Snapshot], Awaitable[None]]


def build(app: App) -> list[CommandProvider]:
    """The lookahead cache and `!ic next/schedule`; handoff announcements after each refresh."""
    pd = app.config.pagerduty
    cache = app.oncall_cache
    if pd is None or cache is None:
        return []
    store = SqliteOnCallPush(app.db)
    schedules = [*pd.ic_schedules, *pd.responder_schedules]
    app.shifts = shifts = LookaheadRefresher(
        SqlShifts(app.db), cache.client, app.clock, schedule_ids=schedules, days=pd.lookahead_days
    )
    hooks: list[tuple[str, Hook]] = []

    async def dm_channel(platform: str, user_id: str) -> str:
        dms = app.capabilities.get(platform, DIRECT_MESSAGES)
        if dms is None:
            raise RuntimeError(f"{platform} cannot open direct messages")
        return await dms.dm_channel(user_id)

    # the lease: handoffs and reminders are decided and sent under the leader's token
    delivery = PostDelivery(store, app.outbox, dm_channel, app.lease)
    if pd.handoff_channels:
        app.handoffs = handoffs = Handoffs(
            store,
            delivery,
            destinations=[destination(t) for t in pd.handoff_channels],
            tz=app.times.zone,  # chatopsd.timezone
        )

        async def announce(snap: Snapshot) -> None:
            await handoffs.after_refresh([e for group in snap.entries.values() for e in group])

        hooks.append(("handoffs", announce))

    async def lookahead(snap: Snapshot) -> None:
        if not await shifts.refresh():
            raise RuntimeError(f"on-call lookahead failed: {shifts.lookahead.error}")

    hooks.append(("lookahead", lookahead))

    def current() -> Lookahead:
        return shifts.lookahead

    if pd.topic_channels or pd.slack_usergroups:

        async def set_topic(platform: str, channel: str, text: str) -> None:
            topics = app.capabilities.get(platform, CHANNEL_TOPICS)
            if topics is None:
                raise RuntimeError(f"{platform} cannot set channel topics")
            await topics.set_topic(channel, text)

        async def set_group(group_id: str, user_ids: list[str]) -> None:
            groups = app.capabilities.get("slack", USER_GROUPS)
            if groups is None:
                raise RuntimeError("no Slack connector to update user groups with")
            await groups.set_usergroup(group_id, user_ids)

        async def chat_ids(person: Person, platform: str) -> list[str]:
            found = await app.identities.chat_ids(person.email, platform)
            return [c.partition(":")[2] for c in found]

        kept = KeptTrue(
            SqliteKeptState(app.db),
            topics=[
                Topic(target.partition(":")[0], target.partition(":")[2], template)
                for target, template in pd.topic_channels.items()
            ],
            usergroups=pd.slack_usergroups,
            set_topic=set_topic,
            set_group=set_group,
            chat_ids=chat_ids,
            lease=app.lease,  # topics and user groups are written under the leader's token
        )

        async def keep(snap: Snapshot) -> None:
            await kept.after_refresh(snap.entries)

        hooks.append(("topics and user groups", keep))

    if pd.remind_before_minutes:

        async def targets(person_id: str) -> list[str]:
            """Every DM-capable chat identity the identity service trusts for this PagerDuty
            user's email (configured, or a confirmed link: never an unconfirmed claim)."""
            person = cache.snapshot.people.get(person_id)
            email = person.email if person is not None else ""
            if not email:
                email = str((await cache.client.user(person_id)).get("email") or "")
            return [
                chat
                for chat in await app.identities.chat_ids(email)
                if app.capabilities.has(chat.partition(":")[0], DIRECT_MESSAGES)
            ]

        app.reminders = reminders = Reminders(
            store,
            delivery,
            current,
            app.clock,
            targets,
            minutes=pd.remind_before_minutes,
            tz=app.times.zone,
        )

        async def remind(snap: Snapshot) -> None:
            await reminders.run()

        hooks.append(("reminders", remind))

    async def after_refresh(snap: Snapshot) -> None:
        # Each part runs even when one before it failed; the job then raises, so the
        # scheduler counts the failure and health shows it.
        failed = []
        for name, hook in hooks:
            try:
                await hook(snap)
            except Exception as exc:
                log.exception("after the PagerDuty refresh: %s failed", name)
                failed.append(f"{name}: {exc}")
        if failed:
            raise RuntimeError("; ".join(failed))

    cache.after_refresh.append(after_refresh)

    return [
        ShiftHandler(
            current,
            app.clock,
            ic_schedules=pd.ic_schedules,
            schedules=schedules,
            days=pd.lookahead_days,
            tz=app.times.zone,
        )
    ]


async def start(app: App) -> None:
    """Load what the previous run cached (before the first refresh can replace it)."""
    shifts = getattr(app, "shifts", None)
    if isinstance(shifts, LookaheadRefresher):
        await shifts.load()


async def follow(app: App) -> None:
    """On an instance that does not lead (several instances on PostgreSQL), each round of the
    `pagerduty-refresh` job: re-read the lookahead the leader's refresh wrote, so `!ic next`
    and `!ic schedule` answer here what they answer on the leader (one interval late at most).
    """
    shifts = getattr(app, "shifts", None)
    if isinstance(shifts, LookaheadRefresher):
        await shifts.load()
