"""`!status` and the stalkers (`!status stalk`): what the monitoring says, read from the
configured sources (Alertmanager, Prometheus, HTTP, a command) by one shared poll."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatopsd.config import Config
    from chatopsd.features.status.api import StatusSource
    from chatopsd.runtime import Feature, Runtime


def install(runtime: Runtime, config: Config) -> Feature:
    import logging

    from chatopsd.core.errors import JobFailed
    from chatopsd.features.status.commands import StatusBoard, StatusHandler
    from chatopsd.features.status.stalkers import Stalkers
    from chatopsd.features.status.store import SqlStalkerStore
    from chatopsd.logs import OutageLog
    from chatopsd.runtime import Feature, Job

    section = config.status
    board = StatusBoard(_sources(runtime, config), timeout=section.read_timeout_seconds)
    stalking = Stalkers(
        board,
        SqlStalkerStore(runtime.store),
        runtime.outbox,
        runtime.clock,
        poll_seconds=section.stalk_seconds,
        unknown_after=section.unknown_after,
        max_per_channel=section.max_stalkers_per_channel,
        max_total=section.max_stalkers,
        lease=runtime.ha.lease,
    )
    outages = OutageLog(logging.getLogger("chatopsd.status"), runtime.clock)
    others_write = runtime.ha.others_write

    async def poll() -> None:
        """ONE poll for every stalker. It reads the sources even when nobody stalks, so an
        unreachable source is logged (once, then every 5 minutes) and fails the job."""
        if others_write:  # the other instances add and remove stalkers too
            await stalking.resync()
        result = await stalking.poll()
        readings = result.readings or tuple(await board.readings())
        failing = []
        for reading in readings:
            outages.report(f"status source {reading.source}", reading.error)
            if reading.error is not None:
                failing.append(f"{reading.source} unreachable ({reading.error})")
        if failing:
            raise JobFailed("; ".join(failing), logged=True)  # logged per source above

    async def stop() -> None:
        await stalking.wait_posted(timeout=min(config.chatopsd.shutdown_grace_seconds, 5.0))

    def health() -> dict[str, object]:
        return {"sources": len(board.sources), "stalkers": len(stalking.stalkers)}

    return Feature(
        "status",
        health=health,
        commands=[*StatusHandler(board, runtime.clock).commands(), *stalking.commands()],
        jobs=[Job("status-poll", section.stalk_seconds, poll)],
        start=stalking.load,
        stop=stop,
        parts=[stalking, board],
    )


def _sources(runtime: Runtime, config: Config) -> list[StatusSource]:
    if not config.status.sources:
        if not config.demo:  # made-up alerts only where nothing real is configured
            return []
        from chatopsd.features.status.demo import DemoStatusSource

        return [DemoStatusSource()]
    from chatopsd.features.status import sources  # parsers only when something needs them

    return sources.build(config.status.sources, runtime.http)
