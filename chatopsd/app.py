"""The composition root: the one place that builds the store, bus, scheduler and connectors."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from chatopsd import __version__, logs, oncall_compose, pd_compose, platforms
from chatopsd import config as config_mod
from chatopsd.config import Config
from chatopsd.connectors.base import Connector, Supervisor
from chatopsd.connectors.console import ConsoleConnector
from chatopsd.control import ControlServer
from chatopsd.core.approvals import Rule
from chatopsd.core.bus import Bus, Middleware
from chatopsd.core.commands import CommandProvider, Registry
from chatopsd.core.errors import ConfigError
from chatopsd.core.messages import Inbound
from chatopsd.core.middleware import AccessPolicy, Audit, Authorize, Dedupe, RateLimit
from chatopsd.core.oncall import Directory, Pager
from chatopsd.core.ports import ChannelAdmin, Clock, KeyValue, Lease, SystemClock
from chatopsd.core.status import StatusSource
from chatopsd.core.times import Times
from chatopsd.handlers.approvals import ApprovalService
from chatopsd.handlers.help import HelpHandler
from chatopsd.handlers.ic import IcHandler
from chatopsd.handlers.incident import IncidentHandler, settings_from_config
from chatopsd.handlers.intents import IntentHandler
from chatopsd.handlers.ops import OpsHandler
from chatopsd.handlers.stalk import Stalking
from chatopsd.handlers.status import StatusBoard, StatusHandler
from chatopsd.integrations import demo
from chatopsd.logs import toggle_debug
from chatopsd.metrics import Exporter, LiveState, Metrics
from chatopsd.outbox import Outbox
from chatopsd.platforms import Wiring
from chatopsd.scheduler import Scheduler
from chatopsd.store.approvals import SqlApprovals
from chatopsd.store.audit import SqlAuditLog
from chatopsd.store.backend import open_database
from chatopsd.store.events import SqlEventLedger
from chatopsd.store.incidents import SqlIncidentStore
from chatopsd.store.kv import SqlKeyValue
from chatopsd.store.stalkers import SqlStalkerStore
from chatopsd.systemd import Notifier, Watchdog

if TYPE_CHECKING:
    import aiohttp

    from chatopsd.handlers.handoffs import Handoffs
    from chatopsd.handlers.pd_sync import IncidentSync
    from chatopsd.handlers.reminders import Reminders
    from chatopsd.handlers.swaps import SwapHandler
    from chatopsd.integrations.tickets import Tracker
    from chatopsd.store.oncall import OnCallCache
    from chatopsd.store.shifts import ShiftCache

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
        self._http_session: aiohttp.ClientSession | None = None
        self.metrics = Metrics()
        # every time shown in chat, in chatopsd.timezone (default: the host's zone)
        self.times = Times(self.config.chatopsd.zone())
        self.pd_sync: IncidentSync | None = None  # PagerDuty incidents in chat (issue 17)
        self.handoffs: Handoffs | None = None  # handoff announcements (issue 18)
        self.shifts: ShiftCache | None = None  # the on-call lookahead (issue 18)
        self.reminders: Reminders | None = None  # shift reminders by DM (issue 18)
        self.swaps: SwapHandler | None = None  # `!ic swap` requests (issue 18)

    async def start(self) -> None:
        cfg = self.config
        started = time.perf_counter()
        self.db = await open_database(cfg.chatopsd.database, cfg.chatopsd.db_path())
        self.ledger = SqlEventLedger(self.db, self.clock)
        await self.ledger.load()
        self.audit = SqlAuditLog(self.db)
        self.kv = SqlKeyValue(self.db)
        self.incident_store = SqlIncidentStore(self.db)
        self.lease = await self._lease()
        self.oncall_cache = await self._oncall_cache()

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
        await self.stalking.load()
        await oncall_compose.start(self)

        self.scheduler.every("prune-events", 3600, self._prune, run_now=False)
        self.scheduler.every(
            "incident-pulses",
            cfg.incidents.pulse_check_seconds,
            self._leader_only(self.incidents.pulse_job),
            run_now=False,
        )
        self.scheduler.every("status-poll", cfg.status.stalk_seconds, self._status_poll)
        self.stalking.fence = lambda: self.lease.token
        self.scheduler.start()
        self.metrics.attach(
            LiveState(
                self.supervisors, self.outbox, self.scheduler, self.config.pagerduty is not None
            )
        )
        for connector in connectors:
            supervisor = Supervisor(
                connector, self.bus.submit, self.clock, accepting=self.bus.accepting
            )
            self.supervisors.append(supervisor)
            self._tasks.append(
                asyncio.get_running_loop().create_task(
                    supervisor.run(), name=f"connector:{connector.platform}"
                )
            )
        if self.config.statuspage is not None:
            self.public.start()  # the status page queue; resumes what a previous run left
        # Everything built so far lives as long as the daemon: keep it out of the collector's
        # full passes, which otherwise walk it all and show up as latency spikes.
        gc.freeze()
        log.info(
            "chatopsd ready in %.0f ms: platforms=%s db=%s",
            (time.perf_counter() - started) * 1000,
            ",".join(c.platform for c in connectors),
            self.db.describe(),
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
                    prefix=cfg.chatopsd.prefix,
                    banner=self._console_banner(),
                )
            )
        # Platform libraries are imported only when their section is configured: a console-only
        # daemon then never loads slack-sdk, discord.py or aiohttp (start time, idle memory).
        wiring = Wiring(prefix=cfg.chatopsd.prefix, clock=self.clock, kv=self._own_kv())
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

    def _middleware(self) -> list[Middleware]:
        cfg = self.config
        self.policy = policy = AccessPolicy(
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
            self.metrics.middleware,
            Authorize(policy, self.audit, self.clock, self.incident_store.is_incident_channel),
            Audit(self.audit, self.clock),
            RateLimit(self.clock, cfg.ratelimit.per_minute, cfg.ratelimit.burst),
        ]

    def _handlers(self) -> None:
        directory, pager = self._oncall()
        self.incidents = IncidentHandler(
            self.incident_store,
            self.outbox,
            self.clock,
            settings_from_config(self.config.incidents, self.config.chatopsd.prefix),
            self._channel_admin,
            threads=lambda p: bool(getattr(self.outbox.connectors.get(p), "threads", True)),
            times=self.times,
        )
        self.bus.reaction_listeners.append(self._claimed("incidents", self.incidents.on_reaction))
        extras = self._incident_extras()
        status = self.config.status
        board = StatusBoard(self._status_sources(), timeout=status.read_timeout_seconds)
        self.stalking = Stalking(
            board,
            SqlStalkerStore(self.db),
            self.outbox,
            self.clock,
            poll_seconds=status.stalk_seconds,
            unknown_after=status.unknown_after,
        )
        handlers: list[CommandProvider] = [
            HelpHandler(self.registry),
            IcHandler(
                directory,
                pager,
                page_deadline=self._page_deadline(),
                on_paged=self.incidents.link_page,
                times=self.times,
            ),
            StatusHandler(board, self.clock),
            self.stalking,
            self.incidents,
            *extras,
            *self._approvals_and_ops(),
            *pd_compose.build(self),
            *oncall_compose.build(self),
        ]
        for handler in handlers:
            for spec in handler.commands():
                self.registry.add(spec)

    def _incident_extras(self) -> list[CommandProvider]:
        """Status page, follow-ups and the video bridge, hooked into the incident lifecycle."""
        from chatopsd.handlers.bridge import Bridge
        from chatopsd.handlers.followups import FollowUps
        from chatopsd.handlers.publish import PublicStatus
        from chatopsd.store.followups import SqliteFollowUps
        from chatopsd.store.publications import SqlitePublications

        cfg = self.config
        sp = cfg.statuspage
        client = None
        if sp is not None:
            from chatopsd.integrations.statuspage import StatuspageClient

            client = StatuspageClient(
                self._http(),
                sp.api_url,
                sp.api_key.get_secret_value(),
                sp.page_id,
                timeout=sp.timeout_seconds,
            )
        self.public = PublicStatus(
            SqlitePublications(self.db),
            self.incidents,
            client,
            self.outbox,
            self.audit,
            self.clock,
            components=sp.components if sp else None,
            auto_publish=sp.auto_publish if sp else (),
            min_interval=sp.min_interval_seconds if sp else 1.0,
        )
        self.followups = FollowUps(
            SqliteFollowUps(self.db),
            self.incidents,
            self._tracker(),
            self.outbox,
            self.audit,
            self.clock,
            labels=cfg.tickets.labels if cfg.tickets else (),
            incident_url=cfg.tickets.incident_url if cfg.tickets else None,
        )
        self.followups.submit = self.bus.submit
        self.bus.reaction_listeners.append(self._claimed("followups", self.followups.on_reaction))
        self.incidents.hooks += [self.public, self.followups]
        self.incidents.followups = self.followups
        if cfg.incidents.bridge_url:
            self.incidents.hooks.append(
                Bridge(
                    cfg.incidents.bridge_url, self.incident_store, self.outbox, self._channel_admin
                )
            )
        return [self.public, self.followups]

    def _tracker(self) -> Tracker | None:
        t = self.config.tickets
        if t is None:
            return None
        from chatopsd.integrations.tickets import GitHubIssues, JiraIssues

        token = t.token.get_secret_value()
        if t.kind == "github":
            return GitHubIssues(
                self._http(),
                token,
                t.project,
                api_url=t.url or "https://api.github.com",
                timeout=t.timeout_seconds,
            )
        assert t.url is not None  # the config requires it for jira
        return JiraIssues(
            self._http(),
            token,
            t.project,
            site_url=t.url,
            email=t.email,
            issue_type=t.issue_type,
            timeout=t.timeout_seconds,
        )

    def _channel_admin(self, platform: str) -> ChannelAdmin | None:
        """The platform's connector if it can create channels (an optional capability)."""
        connector = self.outbox.connectors.get(platform)
        return connector if isinstance(connector, ChannelAdmin) else None

    def _approvals_and_ops(self) -> list[CommandProvider]:
        cfg = self.config
        self.approvals = ApprovalService(
            SqlApprovals(self.db),
            self.audit,
            self.clock,
            self.policy,
            self.outbox,
            expire_seconds=cfg.approvals.expire_seconds,
            prefix=cfg.chatopsd.prefix,
            times=self.times,
        )
        self.approvals.submit = self.bus.submit
        self.bus.reaction_listeners.append(self._claimed("approvals", self.approvals.on_reaction))
        self.scheduler.every(
            "approvals-expire", cfg.approvals.sweep_seconds, self._leader_only(self.approvals.sweep)
        )
        rules = [Rule(r.command, dict(r.when), r.count, r.role) for r in cfg.approvals.rules]
        ops = OpsHandler(
            cfg.commands, rules, self.approvals, self.audit, self.clock, prefix=cfg.chatopsd.prefix
        )
        intents = IntentHandler(self.registry, self.approvals, prefix=cfg.chatopsd.prefix)
        intents.submit = self.bus.submit
        self.bus.mention_fallback = intents.spec()
        return [self.approvals, ops, intents]

    def _demo(self) -> bool:
        """Demo data only for a console-only daemon: never show made-up people in a real chat."""
        return not self.config.platforms

    async def _oncall_cache(self) -> OnCallCache | None:
        """The PagerDuty on-call cache (loaded from SQLite) and its refresh job."""
        pd = self.config.pagerduty
        if pd is None:
            return None
        from chatopsd.integrations.pagerduty import PagerDutyClient  # aiohttp: only when used
        from chatopsd.store.oncall import OnCallCache

        cache = OnCallCache(
            self.db,
            PagerDutyClient(pd.api_url, pd.api_token.get_secret_value()),
            self.clock,
            schedules={"ic": pd.ic_schedules, "responders": pd.responder_schedules},
            refresh_seconds=pd.refresh_seconds,
        )
        await cache.load()
        self.scheduler.every(
            "pagerduty-refresh",
            pd.refresh_seconds,
            self._leader_only(cache.refresh_job, follower=cache.load),
        )
        return cache

    def _page_deadline(self) -> float:
        pd = self.config.pagerduty
        return pd.page_deadline_seconds if pd is not None else 8.0

    def _oncall(self) -> tuple[Directory, Pager]:
        pd = self.config.pagerduty
        if pd is not None and self.oncall_cache is not None:
            from chatopsd.integrations.pagerduty import PagerDutyPager

            # The client's own deadline is a little shorter than the handler's, so its
            # specific error ("rate limited", "bad token") wins over a bare timeout.
            pager = PagerDutyPager(
                self.oncall_cache.client,
                from_email=pd.from_email,
                service_id=pd.service_id,
                deadline=max(0.5, pd.page_deadline_seconds - 0.5),
            )
            return self.oncall_cache, pager
        if self.config.pagerduty is None and self._demo():
            return demo.DemoDirectory(self.clock), demo.DemoPager()
        return demo.NotConfigured(), demo.NotConfigured()

    def _status_sources(self) -> list[StatusSource]:
        if not self.config.status.sources:
            return [demo.DemoStatusSource()] if self._demo() else []
        from chatopsd.integrations import sources  # aiohttp only when something needs it

        return sources.build(self.config.status.sources, self._http())

    def _http(self) -> aiohttp.ClientSession:
        """One HTTP session (connection pool) shared by the integrations, made on first use,
        so a console-only daemon never loads aiohttp."""
        if self._http_session is None:
            import aiohttp

            self._http_session = aiohttp.ClientSession()
        return self._http_session

    async def _status_poll(self) -> None:
        if not self.lease.leader:
            return
        if self.db.shared:
            await self.stalking.resync()
        await self.stalking.poll()

    def _own_kv(self) -> KeyValue:
        """Connector state (session ids, cursors): this instance's own when the database is
        shared; as before on SQLite."""
        if not self.db.shared:
            return self.kv
        from chatopsd.store.kv import ScopedKeyValue

        return ScopedKeyValue(self.kv, self._instance_name())

    def _instance_name(self) -> str:
        import socket

        return self.config.chatopsd.instance or socket.gethostname()

    async def _lease(self) -> Lease:
        """Who runs the singleton jobs: the one SQLite process, or the PostgreSQL lease holder."""
        from chatopsd.store import lease

        if not self.db.shared:
            return lease.LocalLease()
        held = lease.PgLease(
            self.db,  # type: ignore[arg-type]
            lease_seconds=self.config.chatopsd.lease_seconds,
            instance=f"{self._instance_name()}:{os.getpid()}",
        )
        await held.start()
        return held

    def _claimed(
        self, what: str, listener: Callable[[Inbound], Awaitable[None]]
    ) -> Callable[[Inbound], Awaitable[None]]:
        """A reaction listener behind the event ledger's claim: with several instances every
        one sees the reaction, exactly one acts on it (and a redelivery acts on nothing)."""

        async def run(event: Inbound) -> None:
            if not event.event_id or await self.ledger.claim(
                event.platform, f"{event.event_id}#{what}"
            ):
                await listener(event)

        return run

    def _leader_only(
        self,
        job: Callable[[], Awaitable[object]],
        follower: Callable[[], Awaitable[object]] | None = None,
    ) -> Callable[[], Awaitable[None]]:
        """A singleton job: runs only on the lease holder; the other instances run
        `follower` instead (e.g. re-read the cache the leader refreshed), or nothing."""

        async def run() -> None:
            if self.lease.leader:
                await job()
            elif follower is not None:
                await follower()

        run.__name__ = getattr(job, "__name__", "job")
        return run

    async def _prune(self) -> None:
        await self.ledger.prune()

    def status_line(self) -> str:
        """Connector health for systemd's STATUS= (shown by `systemctl status`)."""
        parts = []
        for s in self.supervisors:
            text = f"{s.platform}: {s.health.state.value}"
            if s.health.reason and s.health.state.value != "ready":
                text += f" ({s.health.reason[:80]})"
            parts.append(text)
        return "; ".join(parts) or "no connectors"

    def reload(self, new: Config) -> list[str]:
        """Apply what is safe to change while running; returns what still needs a restart.

        Reloaded: log level and format, roles, auth rules, rate limits (buckets start afresh).
        Not reloaded: tokens, platform sections, state_db, prefix, bot_name, pagerduty, status."""
        old = self.config
        self.config = old.model_copy(
            update={"roles": new.roles, "auth": new.auth, "ratelimit": new.ratelimit}
        )
        self.bus.set_middleware(self._middleware())
        # The running connectors still hold the old tokens: keep redacting those too.
        secrets = config_mod.secrets_of(old) + config_mod.secrets_of(new)
        logs.setup(new.chatopsd.log_level, new.chatopsd.log_format, secrets)
        fixed = (*platforms.names(), "pagerduty", "status", "console")
        needs_restart = [name for name in fixed if getattr(old, name) != getattr(new, name)]
        needs_restart += [
            n for n in ("statuspage", "tickets") if getattr(old, n) != getattr(new, n)
        ]
        for key in ("state_db", "prefix", "bot_name"):
            if getattr(old.chatopsd, key) != getattr(new.chatopsd, key):
                needs_restart.append(f"chatopsd.{key}")
        return needs_restart

    async def stop(self) -> None:
        grace = self.config.chatopsd.shutdown_grace_seconds
        cancelled = await self.bus.drain(grace)
        if cancelled:
            log.warning("shutdown: %d commands did not finish within %.0f s", cancelled, grace)
        self.scheduler.shutdown()
        await self.public.stop()
        await self.stalking.wait_posted(timeout=min(grace, 5.0))
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
        if self.oncall_cache is not None:
            await self.oncall_cache.client.close()
        if self._http_session is not None:
            await self._http_session.close()
        await self.lease.stop()
        await self.db.close()
        log.info("chatopsd stopped")


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
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.stopping.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: log.warning("log level now %s", toggle_debug()))
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(app, notifier, config_path))
    await app.start()
    control = await _start_control(app)
    exporter = Exporter(app, app.metrics)
    await exporter.start()
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


def _reload(app: App, notifier: Notifier, path: Path | None) -> None:
    notifier.reloading()
    try:
        new = config_mod.load(path)
    except ConfigError as exc:
        log.error("reload failed, keeping the running config: %s", exc)
    else:
        later = app.reload(new)
        log.warning(
            "config reloaded (log level/format, roles, auth, rate limits)%s",
            f"; changed but needs a restart: {', '.join(later)}" if later else "",
        )
    notifier.ready(app.status_line())
