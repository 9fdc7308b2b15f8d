"""The composition root: the one place that builds the store, bus, scheduler and connectors."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from chatopsd import __version__, logs, platforms, redact
from chatopsd import config as config_mod
from chatopsd.config import Config
from chatopsd.connectors.base import Connector, Supervisor
from chatopsd.connectors.console import ConsoleConnector
from chatopsd.control import ControlServer, failing_jobs
from chatopsd.core.bus import Bus, Middleware
from chatopsd.core.commands import Registry
from chatopsd.core.errors import ConfigError
from chatopsd.core.identity import configured_map
from chatopsd.core.messages import Inbound
from chatopsd.core.middleware import (
    AccessPolicy,
    Audit,
    Authorize,
    Dedupe,
    RateLimit,
    Started,
)
from chatopsd.core.ports import Clock, SystemClock
from chatopsd.core.times import Times
from chatopsd.features import FEATURES
from chatopsd.ha import strategy
from chatopsd.identity.service import IdentityService
from chatopsd.identity.store import SqliteIdentityLinks
from chatopsd.logs import toggle_debug
from chatopsd.looplag import LoopLag
from chatopsd.metrics import Exporter, LiveState, Metrics
from chatopsd.outbox import Outbox
from chatopsd.platforms import Wiring
from chatopsd.runtime import ConnectorCapabilities, Feature, Job, Runtime, Services
from chatopsd.scheduler import Scheduler
from chatopsd.store.audit import SqlAuditLog
from chatopsd.store.backend import open_database
from chatopsd.store.db import Database, NewerDatabase
from chatopsd.store.events import SqlEventLedger
from chatopsd.store.kv import SqlKeyValue
from chatopsd.systemd import Notifier, Watchdog

if TYPE_CHECKING:
    import aiohttp


log = logging.getLogger("chatopsd")
T = TypeVar("T")
# What a reload applies besides what each feature reloads (Feature.reloads). [pagerduty.users]
# says who is who, and so grants roles and approvals.
RELOADED = (
    "roles",
    "auth",
    "ratelimit",
    "pagerduty.users",
    "chatopsd.log_level",
    "chatopsd.log_format",
)


class StartupError(Exception):
    """The daemon cannot start; the message is the one line an operator needs."""


def nothing_to_serve(cfg: Config, stdin: TextIO | None, config_path: Path | None) -> str | None:
    """Why this daemon could never be reached, in one line naming the file to edit; None when
    it can. With no chat platform the console is the only way in, and a closed stdin or
    /dev/null (systemd's StandardInput=null, the shipped config untouched) never says a word:
    such a start is a configuration error, not a daemon that reports ready and exits at once.
    A pipe or a file is input (`printf '!ic\n' | chatopsd run` answers and exits)."""
    from chatopsd.connectors.console import no_input

    if cfg.platforms or not cfg.console_enabled or not no_input(stdin):
        return None
    names = platforms.names()
    sections = ", ".join(f"[{name}]" for name in names[:-1]) + f" or [{names[-1]}]"
    guides = ", ".join(f"docs/{name}.md" for name in names)
    where = str(config_path) if config_path else "a config file given with --config"
    return (
        f"nothing can reach this daemon: no chat platform is configured and stdin is not a "
        f"terminal or a pipe; add a {sections} section to {where} ({guides})"
    )


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
        self._http_session: aiohttp.ClientSession | None = None
        self.metrics = Metrics()
        # every time shown in chat, in chatopsd.timezone (default: the host's zone)
        self.times = Times(self.config.chatopsd.zone())
        self._stopped = False
        self.features: list[Feature] = []
        self.jobs: dict[str, Callable[[], Awaitable[object]]] = {}  # by name, as scheduled
        # the configured tokens, kept out of chat and the audit trail as well as the logs
        self.secrets = redact.usable(config_mod.secrets_of(self.config))

    def redact_secrets(self, text: str) -> str:
        """`text` without any configured token (an outside system's error may quote one)."""
        return redact.mask(text, self.secrets)

    async def start(self) -> None:
        cfg = self.config
        started = time.perf_counter()
        path = cfg.chatopsd.db_path()
        try:
            self.db = await open_database(
                cfg.chatopsd.database,
                path,
                connect_timeout=cfg.chatopsd.database_connect_timeout_seconds,
            )
        except (sqlite3.Error, OSError, NewerDatabase) as exc:
            if cfg.chatopsd.database:
                # "PostgreSQL at host:port/db: why" (never a password); no SQLite path
                raise StartupError(f"state database: {exc}") from exc
            raise StartupError(f"state database {path}: {exc}") from exc
        # one instance or several: decided here, once (chatopsd/ha/strategy.py)
        self.ha = await strategy.choose(
            self.db, instance=cfg.chatopsd.instance, lease_seconds=cfg.chatopsd.lease_seconds
        )
        self.lease = self.ha.lease
        self.ledger = SqlEventLedger(
            self.db, self.clock, instance=self.lease.instance, answerable=self.lease.alive
        )
        await self.ledger.load()
        self.audit = SqlAuditLog(self.db, _audit_key(cfg), redact=self.redact_secrets)
        await self.audit.key_chain(self.clock.now())  # so `audit verify` can expect keyed rows
        self.kv = SqlKeyValue(self.db)

        connectors = self._connectors()
        self.outbox = Outbox({c.platform: c for c in connectors}, redact=self.redact_secrets)
        self.capabilities = ConnectorCapabilities(self.outbox.connectors)
        # who is who, for roles, approvals, `!pd`, shift DMs and mentions (core/identity.py)
        self.identities = IdentityService(
            SqliteIdentityLinks(self.db), self.outbox.connectors, _configured_identities(cfg)
        )
        self.registry = Registry()
        self.bus = Bus(
            self.registry,
            (),  # the chain comes once every feature is installed: they add to it
            self.outbox,
            prefix=cfg.chatopsd.prefix,
            bot_names=(cfg.chatopsd.bot_name,),
            redact=self.redact_secrets,
        )
        self.loop_lag = LoopLag(self.bus)  # warns when something holds the loop (looplag.py)
        self.policy = _access_policy(cfg)
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
            http=self._http,
            services=self.services,
            access=lambda: self.policy,  # the current one: reload replaces it
            commands=self.registry,
        )
        for install in FEATURES:
            self._add(install(self.runtime, cfg))
        self.bus.set_middleware(self.middleware())
        for feature in self.features:
            if feature.start is not None:
                await feature.start()

        self._every(Job("prune-events", 3600, self.ledger.prune, singleton=False, run_now=False))
        self._every(
            Job("audit-head", cfg.audit.head_log_seconds, self.log_audit_head, singleton=False)
        )
        from chatopsd.ha.takeover import Takeover

        self.takeover = Takeover(
            self.ledger,
            self.bus,
            self.clock,
            self.audit,
            dead_after_s=cfg.chatopsd.lease_seconds,
            times=self.times,
        )
        if self.ha.sweep_seconds is not None:
            self._every(Job("take-over", self.ha.sweep_seconds, self.takeover.sweep))
        self.scheduler.start()
        self.metrics.attach(
            LiveState(
                self.supervisors,
                self.outbox,
                self.scheduler,
                self.config.pagerduty is not None,
                self.loop_lag,
            )
        )
        for connector in connectors:
            supervisor = Supervisor(
                connector,
                self.bus.submit,
                self.clock,
                accepting=self.bus.accepting,
                admit=self.bus.admit,
            )
            self.supervisors.append(supervisor)
            self._tasks.append(
                asyncio.get_running_loop().create_task(
                    supervisor.run(), name=f"connector:{connector.platform}"
                )
            )
        if self.ha.sweep_at_start:
            self._tasks.append(
                asyncio.get_running_loop().create_task(
                    self._report_interrupted(), name="report-interrupted"
                )
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
            self._every(job)

    def _every(self, job: Job) -> None:
        run = self.ha.singleton(job.run, job.follower) if job.singleton else job.run
        self.jobs[job.name] = run
        self.scheduler.every(job.name, job.every, run, run_now=job.run_now)

    def part(self, kind: type[T]) -> T:
        """An installed feature's object of this type (`Feature.parts`): tools and tests."""
        for feature in self.features:
            for part in feature.parts:
                if isinstance(part, kind):
                    return part
        raise LookupError(f"no installed feature has a {kind.__name__}")

    async def _report_interrupted(self, connect_wait: float = 30.0) -> None:
        """SQLite: what the previous run started with outside effects and never finished
        (it was killed or crashed mid-command) is told in its channel and audited as
        `interrupted`, once the connectors are up (or after `connect_wait` s regardless)."""
        try:
            async with asyncio.timeout(connect_wait):
                for supervisor in self.supervisors:
                    await supervisor.ready_event.wait()
        except TimeoutError:
            pass
        try:
            await self.takeover.sweep()
        except Exception:
            log.exception("could not report the commands the previous run left unfinished")

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
                    prefix=cfg.chatopsd.prefix,
                    banner=self._console_banner(),
                )
            )
        # Platform libraries are imported only when their section is configured: a console-only
        # daemon then never loads slack-sdk, discord.py or aiohttp (start time, idle memory).
        wiring = Wiring(
            prefix=cfg.chatopsd.prefix, clock=self.clock, kv=self.ha.connector_kv(self.kv)
        )
        for platform, section in platforms.configured(cfg):
            found.append(platform.build(section, wiring))
        return found

    def _console_banner(self) -> str:
        cfg = self.config
        log_file = logs.log_file()
        quits = "Ctrl-D quits" if not cfg.platforms else "Ctrl-D ends the console, Ctrl-C stops"
        return (
            f"chatopsd {__version__} · platforms: {', '.join(['console', *cfg.platforms])}\n"
            f"Type {cfg.chatopsd.prefix}help for the commands; {quits}."
            + (f"\nLogs: {log_file}" if log_file else "")
        )

    def middleware(self) -> list[Middleware]:
        """The bus's chain, with what the features contribute (core/middleware.py: order)."""
        cfg = self.config
        exempt = [f.rate_exempt for f in self.features if f.rate_exempt is not None]
        channels = [f.work_channel for f in self.features if f.work_channel is not None]
        return [
            Dedupe(self.ledger, durable=self.ha.durable_claims),
            self.metrics.middleware,
            Audit(self.audit, self.clock),
            RateLimit(
                self.clock, cfg.ratelimit.per_minute, cfg.ratelimit.burst, exempt=_any(exempt)
            ),
            Authorize(self.policy, _any_async(channels), identify=self.identities.of_call),
            Started(self.ledger),
        ]

    def _http(self) -> aiohttp.ClientSession:
        """One HTTP session (connection pool) shared by the integrations, made on first use,
        so a console-only daemon never loads aiohttp."""
        if self._http_session is None:
            import aiohttp

            self._http_session = aiohttp.ClientSession()
        return self._http_session

    async def log_audit_head(self) -> None:
        """The chain's head in the journal: a copy outside the database, so cutting rows
        off the end shows (`chatopsd audit verify --head HASH`)."""
        row_id, digest = await self.audit.head()
        log.info("audit head: row %d hash %s", row_id, digest)

    def status_line(self) -> str:
        """Connector health for systemd's STATUS= (shown by `systemctl status`)."""
        parts = []
        for s in self.supervisors:
            text = f"{s.platform}: {s.health.state.value}"
            if s.health.reason and s.health.state.value != "ready":
                text += f" ({redact.text(s.health.reason)[:80]})"
            parts.append(text)
        parts.extend(failing_jobs(self))  # e.g. "PagerDuty refresh failing since 21:13 UTC (…)"
        return "; ".join(parts) or "no connectors"

    def reload(self, new: Config) -> list[str]:
        """Apply what is safe to change while running; returns what still needs a restart,
        by key path: every other difference between the running and the new config.

        Reloaded here: log level and format, roles, auth rules and identities,
        `[pagerduty.users]` and rate limits (buckets start afresh); and what each feature
        reloads (`Feature.reloads`: `[[approvals.rules]]`, `approvals.expire_seconds` for new
        requests, `[[commands]]`)."""
        old = self.config
        notes: list[str] = []
        keys = list(RELOADED)
        for feature in self.features:
            if feature.reload is not None:
                notes += feature.reload(new)
                keys += feature.reloads
        kept = {note.split(" ", 1)[0] for note in notes}  # each note starts with its key
        applied = config_mod.with_keys(old, new, [k for k in keys if k not in kept])
        self.config = applied
        self.identities.reconfigure(_configured_identities(applied))
        self.policy = _access_policy(applied)  # read by approvals at every vote too
        self.bus.set_middleware(self.middleware())
        # The running connectors still hold the old tokens: keep redacting those too.
        secrets = config_mod.secrets_of(old) + config_mod.secrets_of(new)
        logs.setup(new.chatopsd.log_level, new.chatopsd.log_format, secrets)
        self.secrets = redact.usable(secrets)
        return [d for d in config_mod.differences(applied, new) if d not in kept] + notes

    async def abort(self) -> None:
        """Undo a start that failed half way: close whatever was opened, so nothing keeps the
        process alive (an open aiosqlite connection is a thread that blocks exit)."""
        self.scheduler.shutdown()
        loop_lag: LoopLag | None = getattr(self, "loop_lag", None)
        if loop_lag is not None:
            loop_lag.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for supervisor in self.supervisors:
            try:
                await supervisor.connector.close()
            except Exception:
                log.exception("closing %s failed", supervisor.platform)
        outbox: Outbox | None = getattr(self, "outbox", None)
        if outbox is not None:
            await outbox.close()
        await self._stop_features()
        if self._http_session is not None:
            await self._http_session.close()
        ha: strategy.Strategy | None = getattr(self, "ha", None)
        if ha is not None:
            await ha.stop()
        db: Database | None = getattr(self, "db", None)
        if db is not None:
            await db.close()

    async def stop(self) -> None:
        if self._stopped:  # a second stop (e.g. a test's, then its fixture's) does nothing
            return
        self._stopped = True
        grace = self.config.chatopsd.shutdown_grace_seconds
        cancelled = await self.bus.drain(grace)
        if cancelled:
            log.warning("shutdown: %d commands did not finish within %.0f s", cancelled, grace)
        await self.scheduler.stop()
        await self._stop_features()
        await self.outbox.flush(timeout=min(grace, 5.0))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for supervisor in self.supervisors:
            try:
                await supervisor.connector.close()
            except Exception:
                log.exception("closing %s failed", supervisor.platform)
        await self.outbox.close()
        if self._http_session is not None:
            await self._http_session.close()
        await self.ha.stop()
        await self.log_audit_head()
        await self.db.close()
        self.loop_lag.stop()
        log.info("chatopsd stopped")

    async def _stop_features(self) -> None:
        for feature in reversed(self.features):
            if feature.stop is None:
                continue
            try:
                await feature.stop()
            except Exception:
                log.exception("stopping %s failed", feature.name)


async def serve(
    config: Config,
    io: Io | None = None,
    on_ready: Callable[[App], None] | None = None,
    config_path: Path | None = None,
) -> None:
    """Run the daemon until SIGTERM/SIGINT (or end of console input when console-only).

    Under systemd (Type=notify): READY=1 once the store is open and the scheduler runs,
    WATCHDOG=1 while the loop is responsive, RELOADING=1 on SIGHUP, STOPPING=1 on the way out."""
    app = App(config, io=io or Io())
    notifier = Notifier()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP)
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, app.stopping.set)
        loop.add_signal_handler(
            signal.SIGUSR1, lambda: log.warning("log level now %s", toggle_debug())
        )
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload(app, notifier, config_path))
        await _serve(app, notifier, on_ready)
    finally:
        # A start-up failure must leave no handler that swallows SIGTERM behind.
        for sig in signals:
            loop.remove_signal_handler(sig)


async def _serve(app: App, notifier: Notifier, on_ready: Callable[[App], None] | None) -> None:
    control: ControlServer | None = None
    exporter = Exporter(app, app.metrics)
    started = False
    try:
        try:
            # first: a busy port fails before any job or connector has started
            await exporter.start()
        except OSError as exc:
            m = app.config.metrics
            where = f"metrics.listen {m.listen}" if m.listen else f"metrics.textfile {m.textfile}"
            raise StartupError(f"{where}: {exc.strerror or exc}") from exc
        started = await _unless_stopped(app.start(), app.stopping)
        if started:
            control = await _start_control(app)
    except BaseException:
        if control is not None:
            await control.close()
        await exporter.close()
        await app.abort()
        raise
    if not started:
        log.warning("stopped during start-up")
        await exporter.close()
        await app.abort()
        return
    watchdog = Watchdog(notifier, status=app.status_line)
    watchdog.start()
    notifier.ready(app.status_line())
    if on_ready is not None:
        on_ready(app)
    try:
        await app.stopping.wait()
    finally:
        log.info("stopping")
        notifier.stopping()
        await watchdog.stop()
        if control is not None:
            await control.close()
        await exporter.close()
        await app.stop()
        notifier.close()


async def _unless_stopped(start: Coroutine[Any, Any, None], stopping: asyncio.Event) -> bool:
    """Run start-up unless a stop signal comes first: True once it has finished, False when
    SIGTERM came first (start-up is then cancelled). Start-up can wait long on the outside
    (a database that accepts connections and never answers), and systemd's stop must not
    wait for that."""
    starting = asyncio.ensure_future(start)
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({starting, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not starting.done():
            starting.cancel()
            # whatever start-up raises while being cancelled is moot: we are stopping
            await asyncio.gather(starting, return_exceptions=True)
    if starting.cancelled():
        return False
    starting.result()  # start-up's own error, if it failed before the stop came
    return True


async def _start_control(app: App) -> ControlServer | None:
    cfg = app.config
    if not cfg.control.enabled:
        return None
    control = ControlServer(
        app, cfg.control.socket_path(cfg.chatopsd.db_path()), cfg.control.allow_uids
    )
    try:
        await control.start()
    except OSError as exc:
        # The daemon is more useful running without `ctl` than not running at all.
        log.error("control socket %s: %s; `chatopsd ctl` will not work", control.path, exc)
        return None
    return control


def _audit_key(cfg: Config) -> bytes | None:
    return cfg.audit.hmac_key.get_secret_value().encode() or None


def _configured_identities(cfg: Config) -> dict[str, str]:
    """The configured level of the identity service: `[pagerduty.users]` and
    `auth.identities` (which wins where both name one chat identity)."""
    return configured_map(cfg.pagerduty.users if cfg.pagerduty else {}, cfg.auth.identities)


def _access_policy(cfg: Config) -> AccessPolicy:
    return AccessPolicy(
        roles={
            role: frozenset(i.lower() if "@" in i and ":" not in i else i for i in ids)
            for role, ids in cfg.roles.items()
        },
        command_roles=cfg.auth.command_roles,
        paging_channels=frozenset(cfg.auth.paging_channels),
        mutating_channels=frozenset(cfg.auth.mutating_channels),
    )


def _any(tests: list[Callable[[Inbound], bool]]) -> Callable[[Inbound], bool] | None:
    """One test that holds when any of `tests` does (the one itself when alone: it runs for
    every command)."""
    if len(tests) <= 1:
        return tests[0] if tests else None
    return lambda event: any(test(event) for test in tests)


def _any_async(
    tests: list[Callable[[str, str], Awaitable[bool]]],
) -> Callable[[str, str], Awaitable[bool]] | None:
    if len(tests) <= 1:
        return tests[0] if tests else None

    async def held(platform: str, channel: str) -> bool:
        for test in tests:
            if await test(platform, channel):
                return True
        return False

    return held


def _reload(app: App, notifier: Notifier, path: Path | None) -> None:
    notifier.reloading()
    try:
        new = config_mod.load(path)
    except ConfigError as exc:
        log.error("reload failed, keeping the running config: %s", exc)
    else:
        later = app.reload(new)
        log.warning(
            "config reloaded (log level/format, roles, auth, pagerduty.users, rate limits, "
            "approval rules, commands)%s",
            f"; changed but needs a restart: {', '.join(later)}" if later else "",
        )
    notifier.ready(app.status_line())
