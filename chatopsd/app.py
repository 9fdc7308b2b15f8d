"""The composition root: the one place that builds the store, bus, scheduler and connectors."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import BaseModel

from chatopsd import __version__, locations, logs, redact
from chatopsd import config as config_mod
from chatopsd.config import Config
from chatopsd.connectors.base import Connector, Supervisor
from chatopsd.connectors.console import ConsoleConnector
from chatopsd.connectors.platform import Wiring
from chatopsd.control import ControlServer, failing_jobs
from chatopsd.core.bus import Bus, Middleware
from chatopsd.core.capabilities import Capabilities
from chatopsd.core.commands import CommandProvider, Registry
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
from chatopsd.core.ports import Clock, KeyValue, Lease, SystemClock
from chatopsd.core.times import Times
from chatopsd.features.approvals.rules import Rule
from chatopsd.features.approvals.service import ApprovalService
from chatopsd.features.approvals.store import SqlApprovals
from chatopsd.features.help.commands import HelpHandler
from chatopsd.features.incidents.commands import IncidentHandler, settings_from_config
from chatopsd.features.incidents.store import SqlIncidentStore
from chatopsd.features.intents.commands import IntentHandler
from chatopsd.features.ops.commands import OpsHandler
from chatopsd.features.paging import demo
from chatopsd.features.paging.api import Directory, MemoryPageLog, PageLog, Pager, Person
from chatopsd.features.paging.commands import IcHandler
from chatopsd.features.status.api import StatusSource
from chatopsd.features.status.commands import StatusBoard, StatusHandler
from chatopsd.features.status.stalkers import Stalking
from chatopsd.features.status.store import SqlStalkerStore
from chatopsd.httpclient import HttpTransport
from chatopsd.identity.service import IdentityService
from chatopsd.identity.store import SqliteIdentityLinks
from chatopsd.logs import toggle_debug
from chatopsd.looplag import LoopLag
from chatopsd.metrics import Exporter, LiveState, Metrics
from chatopsd.outbox import Outbox
from chatopsd.scheduler import JobFailed, Scheduler
from chatopsd.store.audit import SqlAuditLog
from chatopsd.store.backend import open_database
from chatopsd.store.db import Database, NewerDatabase
from chatopsd.store.events import SqlEventLedger
from chatopsd.store.kv import SqlKeyValue
from chatopsd.systemd import Notifier, Watchdog

if TYPE_CHECKING:
    from chatopsd.features.followups.trackers import Tracker
    from chatopsd.features.oncall.handoffs import Handoffs
    from chatopsd.features.oncall.lookahead import LookaheadRefresher
    from chatopsd.features.oncall.reminders import Reminders
    from chatopsd.features.oncall.swaps import SwapHandler
    from chatopsd.features.pagerduty.cards import IncidentSync
    from chatopsd.features.pagerduty.oncall_refresher import OnCallRefresher

log = logging.getLogger("chatopsd")


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
    names = [platform.name for platform in cfg.platform_registry]
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
        self.metrics = Metrics()
        # every time shown in chat, in chatopsd.timezone (default: the host's zone)
        self.times = Times(self.config.chatopsd.zone())
        self._stopped = False
        self.pd_sync: IncidentSync | None = None  # PagerDuty incidents in chat (issue 17)
        self.handoffs: Handoffs | None = None  # handoff announcements (issue 18)
        self.shifts: LookaheadRefresher | None = None  # the on-call lookahead (issue 18)
        self.reminders: Reminders | None = None  # shift reminders by DM (issue 18)
        self.swaps: SwapHandler | None = None  # `!ic swap` requests (issue 18)
        # the configured tokens, kept out of chat and the audit trail as well as the logs
        self.secrets = redact.usable(config_mod.secrets_of(self.config))
        # the outbound HTTP transport of every integration (aiohttp loads on first use)
        self.http = HttpTransport(self.clock, secrets=self.secrets)

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
        self.ledger = SqlEventLedger(self.db, self.clock)
        await self.ledger.load()
        self.audit = SqlAuditLog(self.db, _audit_key(cfg), redact=self.redact_secrets)
        await self.audit.key_chain(self.clock.now())  # so `audit verify` can expect keyed rows
        self.kv = SqlKeyValue(self.db)
        self.incident_store = SqlIncidentStore(self.db)
        self.lease = await self._lease()
        self.ledger.instance = self.lease.instance
        self.ledger.answerable = self.lease.alive
        self.oncall_cache = await self._oncall_cache()

        connectors, self.capabilities = self._connectors()
        self.outbox = Outbox(
            {c.platform: c for c in connectors},
            redact=self.redact_secrets,
            capabilities=self.capabilities,
        )
        # who is who, for roles, approvals, `!pd`, shift DMs and mentions (core/identity.py)
        self.identities = IdentityService(
            SqliteIdentityLinks(self.db), self.capabilities, _configured_identities(cfg)
        )
        self.registry = Registry()
        self.bus = Bus(
            self.registry,
            self._middleware(),
            self.outbox,
            prefix=cfg.chatopsd.prefix,
            bot_names=(cfg.chatopsd.bot_name,),
            redact=self.redact_secrets,
        )
        self.loop_lag = LoopLag(self.bus)  # warns when something holds the loop (looplag.py)
        self._handlers()
        await self.stalking.load()
        if self.config.pagerduty is not None:
            from chatopsd import oncall_compose

            await oncall_compose.start(self)

        self.scheduler.every("prune-events", 3600, self._prune, run_now=False)
        self.scheduler.every("audit-head", cfg.audit.head_log_seconds, self.log_audit_head)
        self.scheduler.every(
            "incident-pulses",
            cfg.incidents.pulse_check_seconds,
            self._leader_only(self.incidents.pulse_job),
            run_now=False,
        )
        self.scheduler.every("status-poll", cfg.status.stalk_seconds, self._status_poll)
        from chatopsd.ha.takeover import Takeover

        self.takeover = Takeover(
            self.ledger,
            self.bus,
            self.clock,
            self.audit,
            dead_after_s=cfg.chatopsd.lease_seconds,
            times=self.times,
        )
        if self.db.shared:
            self.scheduler.every(
                "take-over", cfg.chatopsd.lease_seconds / 5, self._leader_only(self.takeover.sweep)
            )
        self.stalking.fence = lambda: self.lease.token
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
        if not self.db.shared:
            self._tasks.append(
                asyncio.get_running_loop().create_task(
                    self._report_interrupted(), name="report-interrupted"
                )
            )
        if self.config.statuspage is not None:
            self.public.start()  # the status page queue; resumes what a previous run left
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

    def _connectors(self) -> tuple[list[Connector], Capabilities]:
        """The connectors, and what each platform can do besides posting (the console:
        nothing), as its platform package declares it."""
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
                    commands=lambda: (spec.path for spec in self.registry),
                    history=locations.locate(cfg).state_db.with_suffix(".history"),
                )
            )
        # Platform libraries are imported only when their section is configured: a console-only
        # daemon then never loads slack-sdk, discord.py or aiohttp (start time, idle memory).
        wiring = Wiring(prefix=cfg.chatopsd.prefix, clock=self.clock, kv=self._own_kv())
        offers = []
        for platform, section in cfg.configured_platforms():
            connector = platform.build(section, wiring)
            found.append(connector)
            offers.append((platform.name, connector, platform.capabilities))
        return found, Capabilities(offers)

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
        # Order and why: core/middleware.py's docstring.
        return [
            Dedupe(self.ledger, durable=self.db.shared),
            self.metrics.middleware,
            Audit(self.audit, self.clock),
            RateLimit(
                self.clock, cfg.ratelimit.per_minute, cfg.ratelimit.burst, exempt=self._is_grant
            ),
            Authorize(
                policy,
                self.incident_store.is_open_incident_channel,
                identify=self.identities.of_call,
            ),
            Started(self.ledger),
        ]

    def _is_grant(self, event: Inbound) -> bool:
        approvals: ApprovalService | None = getattr(self, "approvals", None)
        return approvals is not None and approvals.is_grant(event)

    def _handlers(self) -> None:
        directory, pager = self._oncall()
        self.incidents = IncidentHandler(
            self.incident_store,
            self.outbox,
            self.clock,
            settings_from_config(self.config.incidents, self.config.chatopsd.prefix),
            self.capabilities,
            times=self.times,
        )
        self.bus.reaction_commands.append(self.incidents.reaction_command)
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
            max_per_channel=status.max_stalkers_per_channel,
            max_total=status.max_stalkers,
        )
        handlers: list[CommandProvider] = [
            HelpHandler(self.registry),
            self._ic_handler(directory, pager),
            StatusHandler(board, self.clock),
            self.stalking,
            self.incidents,
            *extras,
            *self._approvals_and_ops(),
            *self._pagerduty_extras(),
        ]
        for handler in handlers:
            for spec in handler.commands():
                self.registry.add(spec)

    def _ic_handler(self, directory: Directory, pager: Pager) -> IcHandler:
        pd = self.config.pagerduty
        page_log: PageLog = MemoryPageLog()  # the demo: nothing is really paged
        if pd is not None:
            from chatopsd.features.pagerduty.oncall_store import SqlPageLog

            page_log = SqlPageLog(self.db)
        return IcHandler(
            directory,
            pager,
            page_deadline=self._page_deadline(),
            on_paged=self.incidents.link_page,
            times=self.times,
            clock=self.clock,
            fallback=[
                Person(f"fallback-{i}", c.name, phones=(c.phone,))
                for i, c in enumerate(pd.fallback_contacts if pd is not None else [])
            ],
            page_log=page_log,
            repage_window=pd.repage_window_seconds if pd is not None else 300.0,
            services=self._services(),
            identities=self.identities,
        )

    def _services(self) -> list[str]:
        pd = self.config.pagerduty
        return [s.name for s in pd.services] if pd is not None else []

    def _pagerduty_extras(self) -> list[CommandProvider]:
        """`!pd`, `!ic take/next/schedule/swap`, the incident poll, handoffs and reminders:
        built only with a [pagerduty] section (they load the PagerDuty client and aiohttp,
        which a console-only daemon never needs)."""
        if self.config.pagerduty is None:
            return []
        from chatopsd import oncall_compose, pd_compose

        return [*pd_compose.build(self), *oncall_compose.build(self)]

    def _incident_extras(self) -> list[CommandProvider]:
        """Status page, follow-ups and the video bridge, hooked into the incident lifecycle."""
        from chatopsd.features.followups.commands import FollowUps
        from chatopsd.features.followups.store import SqlFollowUps
        from chatopsd.features.incidents.bridge import Bridge
        from chatopsd.features.statuspage.commands import PublicStatus
        from chatopsd.features.statuspage.store import SqlitePublications

        cfg = self.config
        sp = cfg.statuspage
        provider = None
        if sp is not None:
            from chatopsd.features.statuspage import providers

            provider = providers.build(sp, self._http())
        self.public = PublicStatus(
            SqlitePublications(self.db),
            self.incidents,
            provider,
            self.outbox,
            self.audit,
            self.clock,
            components=sp.components if sp else None,
            auto_publish=sp.auto_publish if sp else (),
            public_title=sp.public_title if sp else "",
            min_interval=sp.min_interval_seconds if sp else 1.0,
            # several instances: the leader sends, and picks up what followers queued
            lease=self.lease,
            poll_seconds=cfg.chatopsd.lease_seconds / 5 if self.db.shared else None,
        )
        self.followups = FollowUps(
            SqlFollowUps(self.db),
            self.incidents,
            self._tracker(),
            self.outbox,
            self.audit,
            self.clock,
            labels=cfg.tickets.labels if cfg.tickets else (),
            incident_url=cfg.tickets.incident_url if cfg.tickets else None,
        )
        self.followups.submit = self.bus.submit
        self.bus.reaction_commands.append(self.followups.reaction_command)
        self.incidents.hooks += [self.public, self.followups]
        self.incidents.followups = self.followups
        if cfg.incidents.bridge_url:
            self.incidents.hooks.append(
                Bridge(
                    cfg.incidents.bridge_url, self.incident_store, self.outbox, self.capabilities
                )
            )
        return [self.public, self.followups]

    def _tracker(self) -> Tracker | None:
        t = self.config.tickets
        if t is None:
            return None
        from chatopsd.features.followups.trackers import GitHubIssues, JiraIssues

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

    def _approvals_and_ops(self) -> list[CommandProvider]:
        cfg = self.config
        self.approvals = ApprovalService(
            SqlApprovals(self.db),
            self.audit,
            self.clock,
            lambda: self.policy,  # the current one: reload replaces it
            self.outbox,
            self.identities,
            expire_seconds=cfg.approvals.expire_seconds,
            prefix=cfg.chatopsd.prefix,
            times=self.times,
        )
        self.approvals.submit = self.bus.submit
        self.bus.reaction_commands.append(self.approvals.reaction_command)
        self.scheduler.every(
            "approvals-expire", cfg.approvals.sweep_seconds, self._leader_only(self.approvals.sweep)
        )
        rules = _rules(cfg)
        self.ops = ops = OpsHandler(
            cfg.commands, rules, self.approvals, self.audit, self.clock, prefix=cfg.chatopsd.prefix
        )
        intents = IntentHandler(
            self.registry, self.approvals, prefix=cfg.chatopsd.prefix, services=self._services()
        )
        intents.submit = self.bus.submit
        self.bus.mention_fallback = intents.spec()
        return [self.approvals, ops, intents]

    def _demo(self) -> bool:
        """Demo data only for a console-only daemon: never show made-up people in a real chat."""
        return not self.config.platforms

    async def _oncall_cache(self) -> OnCallRefresher | None:
        """The PagerDuty on-call cache (loaded from SQLite) and its refresh job."""
        pd = self.config.pagerduty
        if pd is None:
            return None
        from chatopsd.features.pagerduty.client import PagerDutyClient
        from chatopsd.features.pagerduty.oncall_refresher import OnCallRefresher
        from chatopsd.features.pagerduty.oncall_store import OnCallSnapshots

        cache = OnCallRefresher(
            OnCallSnapshots(self.db),
            PagerDutyClient(self.http, pd.api_url, pd.api_token.get_secret_value()),
            self.clock,
            schedules={
                "ic": pd.ic_schedules,
                "responders": pd.responder_schedules,
                **{f"service:{s.name}": s.schedules for s in pd.services},
            },
            refresh_seconds=pd.refresh_seconds,
        )
        await cache.load()

        async def follow() -> None:
            # a follower re-reads what the leader's refresh wrote: on-call, then lookahead
            from chatopsd import oncall_compose

            await cache.load()
            await oncall_compose.follow(self)

        self.scheduler.every(
            "pagerduty-refresh",
            pd.refresh_seconds,
            self._leader_only(cache.refresh_job, follower=follow),
        )
        return cache

    def _page_deadline(self) -> float:
        pd = self.config.pagerduty
        return pd.page_deadline_seconds if pd is not None else 8.0

    def _oncall(self) -> tuple[Directory, Pager]:
        pd = self.config.pagerduty
        if pd is not None and self.oncall_cache is not None:
            from chatopsd.features.pagerduty.client import PagerDutyPager

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
        from chatopsd.features.status import sources  # aiohttp only when something needs it

        return sources.build(self.config.status.sources, self._http())

    def _http(self) -> HttpTransport:
        return self.http

    async def _status_poll(self) -> None:
        if not self.lease.leader:
            return
        if self.db.shared:
            await self.stalking.resync()
        # The shared poll reads the sources even when nobody stalks, so an unreachable source
        # is logged (once, then every 5 minutes) and counted as a failing job.
        result = await self.stalking.poll()
        readings = result.readings or tuple(await self.stalking.board.readings())
        failing = []
        for reading in readings:
            self.scheduler.outages.report(f"status source {reading.source}", reading.error)
            if reading.error is not None:
                failing.append(f"{reading.source} unreachable ({reading.error})")
        if failing:
            raise JobFailed("; ".join(failing), logged=True)  # logged per source above

    async def log_audit_head(self) -> None:
        """The chain's head in the journal: a copy outside the database, so cutting rows
        off the end shows (`chatopsd audit verify --head HASH`)."""
        row_id, digest = await self.audit.head()
        log.info("audit head: row %d hash %s", row_id, digest)

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
        from chatopsd.ha import lease

        if not self.db.shared:
            return lease.LocalLease()
        held = lease.PgLease(
            self.db,  # type: ignore[arg-type]
            lease_seconds=self.config.chatopsd.lease_seconds,
            instance=f"{self._instance_name()}:{os.getpid()}",
        )
        await held.start()
        return held

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
                text += f" ({redact.text(s.health.reason)[:80]})"
            parts.append(text)
        parts.extend(failing_jobs(self))  # e.g. "PagerDuty refresh failing since 21:13 UTC (…)"
        return "; ".join(parts) or "no connectors"

    def reload(self, new: Config) -> list[str]:
        """Apply what is safe to change while running; returns what still needs a restart,
        by key path: every other difference between the running and the new config.

        Reloaded: log level and format, roles, auth rules and identities, `[pagerduty.users]`,
        rate limits (buckets start afresh), `[[approvals.rules]]`, `approvals.expire_seconds`
        (new requests) and `[[commands]]`."""
        old = self.config
        commands_note = self._reload_commands(new)
        applied = old.model_copy(
            update={
                "roles": new.roles,
                "auth": new.auth,
                "ratelimit": new.ratelimit,
                # [pagerduty.users] says who is who, and so grants roles and approvals
                "pagerduty": old.pagerduty.model_copy(update={"users": new.pagerduty.users})
                if old.pagerduty is not None and new.pagerduty is not None
                else old.pagerduty,
                "commands": new.commands if commands_note is None else old.commands,
                "approvals": old.approvals.model_copy(
                    update={
                        "rules": new.approvals.rules,
                        "expire_seconds": new.approvals.expire_seconds,
                    }
                ),
                "chatopsd": old.chatopsd.model_copy(
                    update={
                        "log_level": new.chatopsd.log_level,
                        "log_format": new.chatopsd.log_format,
                    }
                ),
            }
        )
        self.config = applied
        self.identities.reconfigure(_configured_identities(applied))
        self.bus.set_middleware(self._middleware())  # a new AccessPolicy, read by approvals too
        self.approvals.expire_seconds = new.approvals.expire_seconds
        self.ops.reconfigure(applied.commands, _rules(applied))
        # The running connectors still hold the old tokens: keep redacting those too.
        secrets = config_mod.secrets_of(old) + config_mod.secrets_of(new)
        logs.setup(new.chatopsd.log_level, new.chatopsd.log_format, secrets)
        self.secrets = redact.usable(secrets)
        needs_restart = [d for d in _differences(applied, new) if d != "commands"]
        if commands_note is not None:
            needs_restart.append(commands_note)
        return needs_restart

    def _reload_commands(self, new: Config) -> str | None:
        """Swap the `[[commands]]` in the registry; on a name clash keep the old ones and say so."""
        ours = {spec.path for spec in self.ops.commands()}
        fresh = OpsHandler(new.commands, [], self.approvals, self.audit, self.clock).commands()
        for spec in fresh:
            if spec.path not in ours and self.registry.get(spec.path) is not None:
                return f"commands (kept the running ones: {spec.name!r} is a built-in command)"
        for path in ours:
            self.registry.remove(path)
        self.ops.reconfigure(new.commands, self.ops.rules)
        for spec in self.ops.commands():
            self.registry.add(spec)
        return None

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
        await self.http.close()
        lease: Lease | None = getattr(self, "lease", None)
        if lease is not None:
            await lease.stop()
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
        await self.http.close()
        await self.lease.stop()
        await self.log_audit_head()
        await self.db.close()
        self.loop_lag.stop()
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


def _rules(cfg: Config) -> list[Rule]:
    return [Rule(r.command, dict(r.when), r.count, r.role) for r in cfg.approvals.rules]


def _configured_identities(cfg: Config) -> dict[str, str]:
    """The configured level of the identity service: `[pagerduty.users]` and
    `auth.identities` (which wins where both name one chat identity)."""
    return configured_map(cfg.pagerduty.users if cfg.pagerduty else {}, cfg.auth.identities)


def _differences(running: Config, new: Config) -> list[str]:
    """Key paths whose value differs ("incidents.pulse_minutes"; a whole section when it was
    added or removed): after a reload, exactly what it could not apply."""
    found: list[str] = []
    for name in type(running).model_fields:
        a, b = getattr(running, name), getattr(new, name)
        if a == b:
            continue
        if isinstance(a, BaseModel) and isinstance(b, BaseModel) and type(a) is type(b):
            found += [f"{name}.{k}" for k in type(a).model_fields if getattr(a, k) != getattr(b, k)]
        else:
            found.append(name)
    return found


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
