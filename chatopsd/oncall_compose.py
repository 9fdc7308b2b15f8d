"""Wiring for on-call awareness pushed out (issue 18), called from the composition root.

Kept out of app.py so the root only gains a few lines; nothing here decides anything.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from chatopsd.core.commands import CommandProvider
from chatopsd.core.shifts import Lookahead
from chatopsd.handlers.handoffs import Handoffs
from chatopsd.handlers.ic_shifts import ShiftHandler
from chatopsd.handlers.incident import destination
from chatopsd.store.oncall import Snapshot
from chatopsd.store.oncall_push import SqliteOnCallPush
from chatopsd.store.shifts import ShiftCache

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
    app.shifts = shifts = ShiftCache(
        app.db, cache.client, app.clock, schedule_ids=schedules, days=pd.lookahead_days
    )
    hooks: list[tuple[str, Hook]] = []
    if pd.handoff_channels:
        app.handoffs = handoffs = Handoffs(
            store, app.outbox, destinations=[destination(t) for t in pd.handoff_channels]
        )

        async def announce(snap: Snapshot) -> None:
            await handoffs.after_refresh([e for group in snap.entries.values() for e in group])

        hooks.append(("handoffs", announce))

    async def lookahead(snap: Snapshot) -> None:
        if not await shifts.refresh():
            raise RuntimeError(f"on-call lookahead failed: {shifts.lookahead.error}")

    hooks.append(("lookahead", lookahead))

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

    def current() -> Lookahead:
        return shifts.lookahead

    return [
        ShiftHandler(
            current,
            app.clock,
            ic_schedules=pd.ic_schedules,
            schedules=schedules,
            days=pd.lookahead_days,
        )
    ]


async def start(app: App) -> None:
    """Load what the previous run cached (before the first refresh can replace it)."""
    shifts = getattr(app, "shifts", None)
    if isinstance(shifts, ShiftCache):
        await shifts.load()
