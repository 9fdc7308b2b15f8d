"""Wiring for on-call awareness pushed out (issue 18), called from the composition root.

Kept out of app.py so the root only gains a line; nothing here decides anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatopsd.core.commands import CommandProvider
from chatopsd.handlers.handoffs import Handoffs
from chatopsd.handlers.incident import destination
from chatopsd.store.oncall import Snapshot
from chatopsd.store.oncall_push import SqliteOnCallPush

if TYPE_CHECKING:
    from chatopsd.app import App


def build(app: App) -> list[CommandProvider]:
    """Handoff announcements after each PagerDuty refresh."""
    pd = app.config.pagerduty
    cache = app.oncall_cache
    if pd is None or cache is None:
        return []
    store = SqliteOnCallPush(app.db)
    if pd.handoff_channels:
        app.handoffs = handoffs = Handoffs(
            store, app.outbox, destinations=[destination(t) for t in pd.handoff_channels]
        )

        async def announce(snap: Snapshot) -> None:
            await handoffs.after_refresh([e for group in snap.entries.values() for e in group])

        cache.after_refresh.append(announce)
    return []
