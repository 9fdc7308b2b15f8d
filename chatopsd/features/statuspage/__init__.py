"""The public status page: `!incident publish/unpublish/identified/monitor`, publication by
severity, incident updates with `--public` text, and the durable queue of page calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatopsd.config import Config
    from chatopsd.runtime import Feature, Runtime


def install(runtime: Runtime, config: Config) -> Feature:
    from chatopsd.features.incidents.api import INCIDENTS
    from chatopsd.features.statuspage.commands import PublicStatus
    from chatopsd.features.statuspage.store import SqlPublications
    from chatopsd.runtime import Feature

    sp = config.statuspage
    provider = None
    components = sp.components if sp else None
    if sp is not None:
        from chatopsd.features.statuspage import providers

        provider = providers.build(sp, runtime.http)
    elif config.demo:  # nothing real configured: a status page in memory
        from chatopsd.features.statuspage.demo import COMPONENTS, DemoStatusPage

        provider = DemoStatusPage()
        components = COMPONENTS
    incidents = runtime.services.get(INCIDENTS)
    public = PublicStatus(
        SqlPublications(runtime.store),
        incidents,
        provider,
        runtime.outbox,
        runtime.audit,
        runtime.clock,
        components=components,
        auto_publish=sp.auto_publish if sp else (),
        public_title=sp.public_title if sp else "",
        min_interval=sp.min_interval_seconds if sp else 1.0,
        # several instances: the leader sends, and picks up what the others queued
        lease=runtime.ha.lease,
        poll_seconds=runtime.ha.pickup_seconds,
    )
    incidents.subscribe(public)

    async def start() -> None:
        public.start()  # the queue; resumes what a previous run left

    return Feature(
        "statuspage",
        commands=public.commands(),
        start=start if provider is not None else None,
        stop=public.stop,
        parts=[public],
    )
