"""Wiring for PagerDuty incidents in chat (issue 17), called from the composition root.

Kept out of app.py so the root only gains a few lines; nothing here decides anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatopsd.core.commands import CommandProvider
from chatopsd.core.ports import UserEmails
from chatopsd.handlers.incident import destination
from chatopsd.handlers.pd import ROLE, Identities, PdHandler
from chatopsd.handlers.pd_sync import IncidentSync
from chatopsd.handlers.pd_take import TakeHandler
from chatopsd.handlers.swaps import SwapHandler
from chatopsd.integrations.pagerduty_incidents import PagerDutyIncidents
from chatopsd.store.links import SqliteIdentityLinks
from chatopsd.store.pd_cards import SqlClickClaims, SqliteIncidentCards
from chatopsd.store.swaps import SqlSwaps

if TYPE_CHECKING:
    from chatopsd.app import App


def build(app: App) -> list[CommandProvider]:
    """The `!pd` commands, `!ic take/handback`, `!incident page` and the incident poll job."""
    pd = app.config.pagerduty
    if pd is None or app.oncall_cache is None:
        return []

    async def lookup(platform: str, user_id: str) -> str | None:
        connector = app.outbox.connectors.get(platform)
        if isinstance(connector, UserEmails):
            return await connector.user_email(user_id)
        return None

    api = PagerDutyIncidents(app.oncall_cache.client, deadline=pd.page_deadline_seconds)
    services = pd.service_ids or [pd.service_id]
    app.pd_sync = sync = IncidentSync(
        api,
        SqliteIncidentCards(app.db),
        app.kv,
        app.outbox,
        app.clock,
        service_ids=services,
        destinations=[destination(t) for t in pd.incident_channels],
        times=app.times,
        lease=app.lease,  # the poll's writes are fenced with the leader's token
    )
    if pd.incident_channels:
        app.scheduler.every(
            "pagerduty-incidents", pd.incident_poll_seconds, app._leader_only(sync.poll)
        )
    identities = Identities(SqliteIdentityLinks(app.db), pd.users, lookup, clock=app.clock)
    handler = PdHandler(
        api,
        sync,
        identities,
        app.clock,
        service_ids=services,
        claims=SqlClickClaims(app.db),  # one PagerDuty write per click across instances
        times=app.times,
    )
    take = TakeHandler(
        api,
        handler,
        app.kv,
        app.clock,
        schedules=pd.ic_schedules,
        pageable=[*pd.responder_schedules, *(s for svc in pd.services for s in svc.schedules)],
        service_id=pd.service_id,
        times=app.times,
        on_paged=app.incidents.link_page,
        # read at call time: a config reload swaps app.policy
        may_page=lambda call: app.policy.holds(
            call, app.policy.command_roles.get("incident page", ROLE)
        ),
    )
    app.incidents.escalation_pager = take.escalation_page
    # `!ic swap` (issue 18): requests in the database, overrides made as the taker
    swaps = SwapHandler(
        api,
        handler,
        SqlSwaps(app.db),
        app.outbox,
        app.clock,
        schedules=pd.ic_schedules,
        tz=app.times.zone,
    )
    app.scheduler.every("swap-expire", 300, app._leader_only(swaps.sweep), run_now=False)
    app.swaps = swaps
    return [handler, take, swaps]
