"""PagerDuty: the on-call refresher (who is on call, cached in the database), the pager behind
`!ic page`, `!pd` (incidents: list, acknowledge, resolve, escalate, snooze, note; `!pd link`),
and the PagerDuty incidents followed in chat as cards. Nothing without a [pagerduty] section
(the client and aiohttp are then never loaded)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatopsd.config import Config
    from chatopsd.runtime import Feature, Runtime


def install(runtime: Runtime, config: Config) -> Feature:
    from chatopsd.runtime import Feature

    if config.pagerduty is None and not config.demo:
        from chatopsd.core.commands import needs_section

        # `!pd …` says what to configure instead of "unknown command"
        return Feature(
            "pagerduty",
            commands=[needs_section(("pd",), "PagerDuty", "pagerduty", "docs/pagerduty.md")],
        )
    from chatopsd.features.pagerduty.api import section

    pd = section(config)

    import logging

    from chatopsd.core.capabilities import DIRECT_MESSAGES
    from chatopsd.core.messages import Destination, Reply, destination
    from chatopsd.features.approvals.api import APPROVALS
    from chatopsd.features.pagerduty.api import PAGERDUTY
    from chatopsd.features.pagerduty.cards import IncidentSync
    from chatopsd.features.pagerduty.cards_store import SqlClickClaims, SqlIncidentCards
    from chatopsd.features.pagerduty.client import PagerDutyClient, PagerDutyPager
    from chatopsd.features.pagerduty.commands import PagerDutyHandler
    from chatopsd.features.pagerduty.incidents_api import PagerDutyIncidents
    from chatopsd.features.pagerduty.links import LinkHandler
    from chatopsd.features.pagerduty.oncall_refresher import OnCallRefresher
    from chatopsd.features.pagerduty.oncall_store import (
        MemorySnapshots,
        OnCallSnapshots,
        SqlPageLog,
    )
    from chatopsd.features.pagerduty.service import PagerDutyAccess
    from chatopsd.features.paging.api import DIRECTORY, PAGE_LOG, PAGER
    from chatopsd.runtime import Job

    log = logging.getLogger("chatopsd.pd")
    if config.demo:  # no account: the demo PagerDuty answers in memory (demo.py)
        from chatopsd.features.pagerduty.demo import DemoPagerDuty

        client: PagerDutyClient = DemoPagerDuty(runtime.http)
    else:
        client = PagerDutyClient(runtime.http, pd.api_url, pd.api_token.get_secret_value())
    cache = OnCallRefresher(
        # the demo's made-up people stay in memory, out of the database
        MemorySnapshots() if config.demo else OnCallSnapshots(runtime.store),
        client,
        runtime.clock,
        schedules={
            "ic": pd.ic_schedules,
            "responders": pd.responder_schedules,
            **{f"service:{s.name}": s.schedules for s in pd.services},
        },
        refresh_seconds=pd.refresh_seconds,
    )
    services = runtime.services
    services.provide(DIRECTORY, cache)
    # The client's own deadline is a little shorter than the handler's, so its specific
    # error ("rate limited", "bad token") wins over a bare timeout.
    services.provide(
        PAGER,
        PagerDutyPager(
            client,
            from_email=pd.from_email,
            service_id=pd.service_id,
            deadline=max(0.5, pd.page_deadline_seconds - 0.5),
        ),
    )
    if not config.demo:  # the demo's pages are logged in memory (paging's own log)
        services.provide(PAGE_LOG, SqlPageLog(runtime.store))

    api = PagerDutyIncidents(client, deadline=pd.page_deadline_seconds)
    service_ids = pd.service_ids or [pd.service_id]
    sync = IncidentSync(
        api,
        SqlIncidentCards(runtime.store),
        runtime.kv,
        runtime.outbox,
        runtime.clock,
        service_ids=service_ids,
        destinations=[destination(t) for t in pd.incident_channels],
        times=runtime.times,
        lease=runtime.ha.lease,  # the poll's writes are fenced with the leader's token
    )
    handler = PagerDutyHandler(
        api,
        sync,
        runtime.identity,
        runtime.clock,
        service_ids=service_ids,
        claims=SqlClickClaims(runtime.store),  # one PagerDuty write per click across instances
        times=runtime.times,
    )
    capabilities, outbox = runtime.capabilities, runtime.outbox

    async def direct(chat: str, reply: Reply) -> bool:
        """A direct message to one chat identity; False if it could not be sent."""
        platform, _, user_id = chat.partition(":")
        dms = capabilities.get(platform, DIRECT_MESSAGES)
        if dms is None:
            return False
        try:
            channel = await dms.dm_channel(user_id)
        except Exception:
            log.warning("could not open a direct message with %s", chat, exc_info=True)
            return False
        return await outbox.send(Destination(platform, channel), reply) is not None

    links = LinkHandler(
        runtime.identity,
        api,
        services.get(APPROVALS),
        direct,
        runtime.clock,
        times=runtime.times,
    )
    access = PagerDutyAccess(client, cache, api, handler, runtime.identity)
    services.provide(PAGERDUTY, access)
    jobs = [Job("pagerduty-refresh", pd.refresh_seconds, cache.refresh_job, follower=access.follow)]
    if pd.incident_channels:
        jobs.append(Job("pagerduty-incidents", pd.incident_poll_seconds, sync.poll))

    def health() -> dict[str, object]:
        """How old the on-call snapshot is (what `!ic` answers from)."""
        snap = cache.snapshot
        return {
            "oncall_as_of": snap.last_ok.isoformat() if snap.last_ok else None,
            "failing_since": snap.failing_since.isoformat() if snap.failing_since else None,
        }

    async def start() -> None:
        await cache.load()  # what the previous run cached, before the first refresh
        if config.demo:
            # in memory, so at once: the first command typed finds people on call
            await cache.refresh_job()

    return Feature(
        "pagerduty",
        commands=[*handler.commands(), *links.commands()],
        jobs=jobs,
        health=health,
        start=start,
        parts=[cache, sync, handler, links, access],
    )
