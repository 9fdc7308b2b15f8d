"""The daemon's lifecycle: start, reload, stop (serve.py runs an App as a process).

Start: the state (store, one-or-several strategy, event ledger, audit), the connectors and
their outbox, the bus, the runtime; every feature installed in the order of features/__init__.py
and what it returns registered; the middleware with what features contribute; then features,
scheduler and connectors start. Stop runs it backwards. kernel.py builds the parts."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

from chatopsd import config as config_mod
from chatopsd import health, kernel, logs, redact
from chatopsd.config import Config
from chatopsd.connectors.base import Supervisor
from chatopsd.core.bus import Middleware
from chatopsd.core.commands import Registry
from chatopsd.core.ports import Clock, SystemClock
from chatopsd.core.times import Times
from chatopsd.features import FEATURES
from chatopsd.ha.takeover import Takeover
from chatopsd.httpclient import HttpTransport
from chatopsd.looplag import LoopLag
from chatopsd.metrics import Metrics
from chatopsd.runtime import Feature, Runtime, Services, find_part
from chatopsd.scheduler import Scheduler

log = logging.getLogger("chatopsd")
T = TypeVar("T")


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
        self.scheduler = Scheduler(self.clock)
        self.metrics = Metrics()
        self.times = Times(self.config.chatopsd.zone())  # times shown: chatopsd.timezone
        self._stopped = False
        self.features: list[Feature] = []
        self.jobs: dict[str, Callable[[], Awaitable[object]]] = {}  # by name, as scheduled
        # the configured tokens, kept out of chat and the audit trail as well as the logs
        self.secrets = redact.usable(config_mod.secrets_of(self.config))
        # the outbound HTTP transport of every integration (aiohttp loads on first use)
        self.http = HttpTransport(self.clock, secrets=self.secrets)

    def redact_secrets(self, text: str) -> str:
        """`text` without any configured token (an outside system's error may quote one)."""
        return redact.mask(text, self.secrets)

    async def start(self) -> None:
        cfg, started = self.config, time.perf_counter()
        state = await kernel.open_state(cfg, self.clock, self.redact_secrets)
        self.db, self.ha, self.ledger, self.audit = state.db, state.ha, state.ledger, state.audit
        self.kv, self.lease = state.kv, state.ha.lease
        self.registry = Registry()  # every command: the features' installs fill it
        connectors, self.capabilities = kernel.connectors(
            cfg, self.io, self.stopping.set, self.ha, self.kv, self.clock, self.registry
        )
        self.outbox = kernel.outbox(connectors, self.capabilities, self.redact_secrets)
        self.identities = kernel.identities(cfg, self.db, self.capabilities)
        self.bus = kernel.bus(cfg, self.registry, self.outbox, self.redact_secrets)
        self.loop_lag = LoopLag(self.bus)  # warns when something holds the loop (looplag.py)
        self.policy = kernel.access_policy(cfg)
        self.services = Services()
        self.runtime = Runtime(
            store=self.db,
            kv=self.kv,
            audit=self.audit,
            clock=self.clock,
            times=self.times,
            outbox=self.outbox,
            capabilities=self.capabilities,
            submit=self.bus.submit,
            ha=self.ha,
            identity=self.identities,
            http=self.http,
            services=self.services,
            access=lambda: self.policy,  # the current one: reload replaces it
            commands=self.registry,
        )
        for install in FEATURES:
            self._add(install(self.runtime, cfg))
        self._add(kernel.jobs(cfg, self.ledger, self.audit, self.ha, self.bus, self.times))
        self.takeover = self.part(Takeover)
        self.bus.set_middleware(self.middleware())
        for feature in self.features:
            if feature.start is not None:
                await feature.start()
        self.scheduler.start()
        self.metrics.attach(self.health())
        self.supervisors.extend(kernel.supervisors(connectors, self.bus, self.clock))
        for supervisor in self.supervisors:
            self._spawn(supervisor.run(), f"connector:{supervisor.platform}")
        if self.ha.sweep_at_start:
            self._spawn(
                kernel.report_interrupted(self.takeover, self.supervisors), "report-interrupted"
            )
        self.loop_lag.start()  # from here on (start-up itself imports and migrates)
        # Everything built so far lives as long as the daemon: keep it out of the collector's
        # full passes, which otherwise walk it all and show up as latency spikes.
        gc.freeze()
        log.info(
            "chatopsd ready in %.0f ms: platforms=%s db=%s",
            (time.perf_counter() - started) * 1000,
            ",".join(c.platform for c in connectors),
            self.db.describe(),
        )

    def _add(self, feature: Feature) -> None:
        """Register what an installed feature contributes."""
        self.features.append(feature)
        for spec in feature.commands:
            self.registry.add(spec)
        for to_command in feature.reactions:
            self.registry.add_reaction(to_command)
        if feature.mention_fallback is not None:
            self.registry.set_mention_fallback(feature.mention_fallback)
        for job in feature.jobs:
            run = self.ha.singleton(job.run, job.follower) if job.singleton else job.run
            self.jobs[job.name] = run
            self.scheduler.every(job.name, job.every, run, run_now=job.run_now)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(work, name=name))

    def part(self, kind: type[T]) -> T:
        """An installed feature's object of this type (`Feature.parts`): tools and tests."""
        return find_part(self.features, kind)

    def middleware(self) -> list[Middleware]:
        return kernel.middleware(
            self.config,
            ledger=self.ledger,
            durable=self.ha.durable_claims,
            counted=self.metrics.middleware,
            audit=self.audit,
            clock=self.clock,
            policy=self.policy,
            identify=self.identities.of_call,
            features=self.features,
        )

    def health(self) -> health.HealthView:
        """What `ctl health`, STATUS= and the metrics read of the running daemon."""
        return health.HealthView(
            self.clock,
            self.supervisors,
            self.outbox,
            self.scheduler,
            self.lease.state,
            lambda: self.bus.in_flight,
            self.db.describe(),
            lambda: self.ledger.failures,
            self.loop_lag,
            {f.name: f.health for f in self.features if f.health is not None},
        )

    def status_line(self) -> str:
        return health.status_line(self.health())

    def reload(self, new: Config) -> list[str]:
        """Apply what is safe to change while running (kernel.RELOADED, rate limits start afresh,
        each feature's `reloads`); returns what still needs a restart, by key path."""
        old, keys = self.config, list(kernel.RELOADED)
        notes: list[str] = []
        for feature in self.features:
            if feature.reload is not None:
                notes += feature.reload(new)
                keys += feature.reloads
        kept = {note.split(" ", 1)[0] for note in notes}  # each note starts with its key
        applied = config_mod.with_keys(old, new, [k for k in keys if k not in kept])
        self.config = applied
        self.identities.reconfigure(kernel.configured_identities(applied))
        self.policy = kernel.access_policy(applied)  # read by approvals at every vote too
        self.bus.set_middleware(self.middleware())
        # Connectors still hold the old tokens (redact those too); log lines stay in their file.
        secrets = config_mod.secrets_of(old) + config_mod.secrets_of(new)
        logs.setup(new.chatopsd.log_level, new.chatopsd.log_format, secrets, logs.log_file())
        self.secrets = redact.usable(secrets)
        return [d for d in config_mod.differences(applied, new) if d not in kept] + notes

    async def abort(self) -> None:
        """Undo a start that failed half way: close whatever was opened, so nothing keeps the
        process alive (an open aiosqlite connection is a thread that blocks exit)."""
        self.scheduler.shutdown()
        if hasattr(self, "loop_lag"):
            self.loop_lag.stop()
        await self._stop_features()
        await self._close()

    async def stop(self) -> None:
        if self._stopped:  # a second stop (e.g. a test's, then its fixture's) does nothing
            return
        self._stopped = True
        grace = self.config.chatopsd.shutdown_grace_seconds
        cancelled = await self.bus.drain(grace)
        if cancelled:
            log.warning("shutdown: %d commands did not finish within %.0f s", cancelled, grace)
        await self.scheduler.stop()
        await self._stop_features()  # what they post is queued before the outbox flushes
        await self.outbox.flush(timeout=min(grace, 5.0))
        await self._close()
        self.loop_lag.stop()
        log.info("chatopsd stopped")

    async def _stop_features(self) -> None:
        for feature in reversed(self.features):
            try:
                if feature.stop is not None:
                    await feature.stop()
            except Exception:
                log.exception("stopping %s failed", feature.name)

    async def _close(self) -> None:
        """The connectors, the outbox, the HTTP session, the lease, and the store."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await kernel.close_connectors(self.supervisors)
        if hasattr(self, "outbox"):
            await self.outbox.close()
        await self.http.close()
        if hasattr(self, "ha"):
            await self.ha.stop()
        if hasattr(self, "audit") and self._stopped:
            await kernel.log_audit_head(self.audit)
        if hasattr(self, "db"):
            await self.db.close()
