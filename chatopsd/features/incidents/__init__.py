"""`!incident ...`: declare and run an incident from chat (announcements, its own channel or
thread, the pinned status, the timeline, pulses, the postmortem draft), and the incident
service other features follow and change incidents through (api.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatopsd.config import Config
    from chatopsd.runtime import Feature, Runtime


def install(runtime: Runtime, config: Config) -> Feature:
    from chatopsd.features.incidents.api import ESCALATION_PAGER, FOLLOWUP_ROWS, INCIDENTS
    from chatopsd.features.incidents.commands import IncidentHandler, settings_from_config
    from chatopsd.features.incidents.service import IncidentLifecycle
    from chatopsd.features.incidents.store import SqlIncidentStore
    from chatopsd.runtime import Feature, Job

    prefix = config.chatopsd.prefix
    store = SqlIncidentStore(runtime.store)
    lifecycle = IncidentLifecycle(
        store, runtime.outbox, runtime.clock, prefix=prefix, times=runtime.times
    )
    runtime.services.provide(INCIDENTS, lifecycle)
    services = runtime.services
    handler = IncidentHandler(
        store,
        runtime.outbox,
        runtime.clock,
        settings_from_config(config.incidents, prefix),
        runtime.capabilities,
        times=runtime.times,
        lifecycle=lifecycle,
        # provided by features installed later: found when a command needs them
        escalation=lambda: services.find(ESCALATION_PAGER),
        followup_rows=lambda: services.find(FOLLOWUP_ROWS),
    )
    return Feature(
        "incidents",
        commands=handler.commands(),
        jobs=[
            Job(
                "incident-pulses",
                config.incidents.pulse_check_seconds,
                handler.pulse_job,
                run_now=False,
            )
        ],
        reactions=[handler.reaction_command],
        # incident and paging commands are allowed in an open incident's own channel
        work_channel=store.is_open_incident_channel,
        parts=[handler, lifecycle, store],
    )


def install_bridge(runtime: Runtime, config: Config) -> Feature:
    """`incidents.bridge_url`: the video bridge link, posted and pinned when an incident
    opens. Listed after the status page and the follow-ups, so it follows the lifecycle
    after them."""
    from chatopsd.runtime import Feature

    template = config.incidents.bridge_url
    if not template:
        return Feature("bridge")
    from chatopsd.features.incidents.api import INCIDENTS
    from chatopsd.features.incidents.bridge import Bridge

    incidents = runtime.services.get(INCIDENTS)
    bridge = Bridge(template, incidents, runtime.outbox, runtime.capabilities)
    incidents.subscribe(bridge)
    return Feature("bridge", parts=[bridge])
