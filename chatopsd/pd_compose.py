"""Wiring for PagerDuty incidents in chat (issue 17), called from the composition root.

Kept out of app.py so the root only gains a few lines; nothing here decides anything.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chatopsd.core.capabilities import DIRECT_MESSAGES
from chatopsd.core.commands import CommandProvider
from chatopsd.core.context import Call
from chatopsd.core.messages import Destination, Reply
from chatopsd.features.incidents.commands import destination
from chatopsd.features.oncall.overrides import TakeHandler
from chatopsd.features.oncall.shift_rules import Lookahead
from chatopsd.features.oncall.swaps import SwapHandler
from chatopsd.features.oncall.swaps_store import SqlSwaps
from chatopsd.features.pagerduty.cards import IncidentSync
from chatopsd.features.pagerduty.cards_store import SqlClickClaims, SqliteIncidentCards
from chatopsd.features.pagerduty.commands import ROLE, PdHandler
from chatopsd.features.pagerduty.incidents_api import PagerDutyIncidents
from chatopsd.features.pagerduty.links import LinkHandler

if TYPE_CHECKING:
    from chatopsd.app import App

log = logging.getLogger("chatopsd.pd")


def build(app: App) -> list[CommandProvider]:
    """The `!pd` commands, `!ic take/handback`, `!incident page` and the incident poll job."""
    pd = app.config.pagerduty
    if pd is None or app.oncall_cache is None:
        return []

    async def direct(chat: str, reply: Reply) -> bool:
        """A direct message to one chat identity; False if it could not be sent."""
        platform, _, user_id = chat.partition(":")
        dms = app.capabilities.get(platform, DIRECT_MESSAGES)
        if dms is None:
            return False
        try:
            channel = await dms.dm_channel(user_id)
        except Exception:
            log.warning("could not open a direct message with %s", chat, exc_info=True)
            return False
        return await app.outbox.send(Destination(platform, channel), reply) is not None

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
    handler = PdHandler(
        api,
        sync,
        app.identities,
        app.clock,
        service_ids=services,
        claims=SqlClickClaims(app.db),  # one PagerDuty write per click across instances
        times=app.times,
    )

    async def may_page(call: Call) -> bool:
        # read at call time: a config reload swaps app.policy
        role = app.policy.command_roles.get("incident page", ROLE)
        return app.policy.holds(await app.identities.of_call(call), role)

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
        may_page=may_page,
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
        # built later (oncall_compose): read at call time
        lookahead=lambda: app.shifts.lookahead if app.shifts is not None else Lookahead((), None),
    )
    app.scheduler.every("swap-expire", 300, app._leader_only(swaps.sweep), run_now=False)
    app.swaps = swaps
    links = LinkHandler(app.identities, api, app.approvals, direct, app.clock, times=app.times)
    return [handler, links, take, swaps]
