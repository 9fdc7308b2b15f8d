"""The composition root: the one place that builds the store, bus, scheduler and connectors."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from chatopsd.config import Config
from chatopsd.connectors.base import Connector, Supervisor
from chatopsd.connectors.console import ConsoleConnector
from chatopsd.connectors.discord import DiscordConnector
from chatopsd.core.bus import Bus, Middleware
from chatopsd.core.commands import CommandProvider, Registry
from chatopsd.core.middleware import AccessPolicy, Audit, Authorize, Dedupe, RateLimit
from chatopsd.core.oncall import Directory, Pager
from chatopsd.core.ports import Clock, SystemClock
from chatopsd.core.status import StatusSource
from chatopsd.handlers.help import HelpHandler
from chatopsd.handlers.ic import IcHandler
from chatopsd.handlers.status import StatusBoard, StatusHandler
from chatopsd.integrations import demo
from chatopsd.logs import toggle_debug
from chatopsd.outbox import Outbox
from chatopsd.scheduler import Scheduler
from chatopsd.store.audit import SqliteAuditLog
from chatopsd.store.events import SqliteEventLedger
from chatopsd.store.kv import SqliteKeyValue
from chatopsd.store.sqlite import Database

log = logging.getLogger("chatopsd")


@dataclass
class Io:
    """The console's streams (tests and benchmarks pass their own)."""

    stdin: TextIO | None = None
    stdout: TextIO | None = None


@dataclass
class App:
    config: Config
    clock: Clock = field(default_factory=SystemClock)
    io: Io = field(default_factory=Io)

    def __post_init__(self) -> None:
        self.stopping = asyncio.Event()
        self.supervisors: list[Supervisor] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.scheduler = Scheduler()

    async def start(self) -> None:
        cfg = self.config
        started = time.perf_counter()
        self.db = await Database.open(cfg.chatopsd.db_path())
        self.ledger = SqliteEventLedger(self.db, self.clock)
        await self.ledger.load()
        self.audit = SqliteAuditLog(self.db)
        self.kv = SqliteKeyValue(self.db)

        connectors = self._connectors()
        self.outbox = Outbox({c.platform: c for c in connectors})
        self.registry = Registry()
        self.bus = Bus(
            self.registry,
            self._middleware(),
            self.outbox,
            prefix=cfg.chatopsd.prefix,
            bot_names=(cfg.chatopsd.bot_name,),
        )
        self._handlers()

        self.scheduler.every("prune-events", 3600, self._prune, run_now=False)
        self.scheduler.start()
        for connector in connectors:
            supervisor = Supervisor(connector, self.bus.submit, self.clock)
            self.supervisors.append(supervisor)
            self._tasks.append(
                asyncio.get_running_loop().create_task(
                    supervisor.run(), name=f"connector:{connector.platform}"
                )
            )
        log.info(
            "chatopsd ready in %.0f ms: platforms=%s db=%s",
            (time.perf_counter() - started) * 1000,
            ",".join(c.platform for c in connectors),
            self.db.path,
        )

    def _connectors(self) -> list[Connector]:
        cfg = self.config
        found: list[Connector] = []
        if cfg.console_enabled:
            on_eof = None if cfg.platforms else self.stopping.set
            found.append(
                ConsoleConnector(
                    fmt=cfg.console.format,
                    stdin=self.io.stdin,
                    stdout=self.io.stdout,
                    on_eof=on_eof,
                )
            )
        if cfg.discord is not None:
            found.append(DiscordConnector(cfg.discord, prefix=cfg.chatopsd.prefix))
        return found

    def _middleware(self) -> list[Middleware]:
        cfg = self.config
        policy = AccessPolicy(
            roles={
                role: frozenset(i.lower() if "@" in i and ":" not in i else i for i in ids)
                for role, ids in cfg.roles.items()
            },
            command_roles=cfg.auth.command_roles,
            paging_channels=frozenset(cfg.auth.paging_channels),
            mutating_channels=frozenset(cfg.auth.mutating_channels),
        )
        return [
            Dedupe(self.ledger),
            Authorize(policy, self.audit, self.clock),
            Audit(self.audit, self.clock),
            RateLimit(self.clock, cfg.ratelimit.per_minute, cfg.ratelimit.burst),
        ]

    def _handlers(self) -> None:
        directory, pager = self._oncall()
        handlers: list[CommandProvider] = [
            HelpHandler(self.registry),
            IcHandler(directory, pager),
            StatusHandler(StatusBoard(self._status_sources())),
        ]
        for handler in handlers:
            for spec in handler.commands():
                self.registry.add(spec)

    def _demo(self) -> bool:
        """Demo data only for a console-only daemon: never show made-up people in a real chat."""
        return not self.config.platforms

    def _oncall(self) -> tuple[Directory, Pager]:
        if self.config.pagerduty is None and self._demo():
            return demo.DemoDirectory(self.clock), demo.DemoPager()
        return demo.NotConfigured(), demo.NotConfigured()

    def _status_sources(self) -> list[StatusSource]:
        if not self.config.status.sources and self._demo():
            return [demo.DemoStatusSource()]
        return []

    async def _prune(self) -> None:
        await self.ledger.prune()

    async def stop(self) -> None:
        grace = self.config.chatopsd.shutdown_grace_seconds
        cancelled = await self.bus.drain(grace)
        if cancelled:
            log.warning("shutdown: %d commands did not finish within %.0f s", cancelled, grace)
        await self.outbox.flush(timeout=min(grace, 5.0))
        self.scheduler.shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for supervisor in self.supervisors:
            try:
                await supervisor.connector.close()
            except Exception:
                log.exception("closing %s failed", supervisor.platform)
        await self.outbox.close()
        await self.db.close()
        log.info("chatopsd stopped")


async def serve(
    config: Config, io: Io | None = None, on_ready: Callable[[App], None] | None = None
) -> None:
    """Run the daemon until SIGTERM/SIGINT (or end of console input when console-only)."""
    app = App(config, io=io or Io())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.stopping.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: log.warning("log level now %s", toggle_debug()))
    await app.start()
    if on_ready is not None:
        on_ready(app)
    try:
        await app.stopping.wait()
    finally:
        log.info("stopping")
        await app.stop()
