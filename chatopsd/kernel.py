"""The kernel's parts, built from the config for app.py: the shared state (store, the
one-or-several strategy, event ledger, audit), the access policy, the middleware chain with
what features contribute, the connectors and their outbox, the bus, and the kernel's own jobs
(forgetting old event claims, the audit head in the journal, the take-over of a dead
instance's commands)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol, TextIO

from chatopsd import __version__, locations, logs
from chatopsd.config import Config
from chatopsd.connectors.base import Connector, Supervisor
from chatopsd.connectors.platform import Wiring
from chatopsd.core.bus import Bus, Middleware
from chatopsd.core.capabilities import Capabilities
from chatopsd.core.commands import Registry
from chatopsd.core.context import Call
from chatopsd.core.identity import Identity, configured_map
from chatopsd.core.messages import Inbound
from chatopsd.core.middleware import AccessPolicy, Audit, Authorize, Dedupe, RateLimit, Started
from chatopsd.core.ports import AuditLog, Clock, EventLedger, KeyValue, ReplySink
from chatopsd.core.times import Times
from chatopsd.ha.strategy import Strategy, choose
from chatopsd.ha.takeover import Takeover
from chatopsd.identity.service import IdentityService
from chatopsd.outbox import Outbox
from chatopsd.runtime import Feature, Job
from chatopsd.store.audit import SqlAuditLog
from chatopsd.store.db import Database, NewerDatabase
from chatopsd.store.events import SqlEventLedger
from chatopsd.store.kv import SqlKeyValue

log = logging.getLogger("chatopsd")
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


async def open_store(cfg: Config) -> Database:
    from chatopsd.store.backend import open_database

    path = cfg.chatopsd.db_path()
    try:
        return await open_database(
            cfg.chatopsd.database,
            path,
            connect_timeout=cfg.chatopsd.database_connect_timeout_seconds,
        )
    except (sqlite3.Error, OSError, NewerDatabase) as exc:
        if cfg.chatopsd.database:
            # "PostgreSQL at host:port/db: why" (never a password); no SQLite path
            raise StartupError(f"state database: {exc}") from exc
        raise StartupError(f"state database {path}: {exc}") from exc


@dataclass(frozen=True)
class Store:
    """The state every part shares: the database, the one-or-several strategy chosen from it,
    the event ledger (which chat events were handled), the audit trail, small key/values."""

    db: Database
    ha: Strategy
    ledger: SqlEventLedger
    audit: SqlAuditLog
    kv: SqlKeyValue


async def open_state(cfg: Config, clock: Clock, redact: Callable[[str], str]) -> Store:
    db = await open_store(cfg)
    # one instance or several: decided here, once (chatopsd/ha/strategy.py)
    ha = await choose(db, instance=cfg.chatopsd.instance, lease_seconds=cfg.chatopsd.lease_seconds)
    ledger = SqlEventLedger(db, clock, instance=ha.lease.instance, answerable=ha.lease.alive)
    await ledger.load()
    audit = SqlAuditLog(db, audit_key(cfg), redact=redact)
    await audit.key_chain(clock.now())  # so `audit verify` can expect keyed rows
    return Store(db, ha, ledger, audit, SqlKeyValue(db))


def audit_key(cfg: Config) -> bytes | None:
    return cfg.audit.hmac_key.get_secret_value().encode() or None


def configured_identities(cfg: Config) -> dict[str, str]:
    """The configured level of the identity service: `[pagerduty.users]` and
    `auth.identities` (which wins where both name one chat identity)."""
    users = cfg.pagerduty.users if cfg.pagerduty else {}
    if cfg.demo:  # the console's operator is a demo PagerDuty user, so `!pd ack` acts
        from chatopsd.connectors.console import console_user
        from chatopsd.features.pagerduty import demo

        users = demo.identities(console_user().id)
    return configured_map(users, cfg.auth.identities)


def identities(cfg: Config, db: Database, capabilities: Capabilities) -> IdentityService:
    """Who is who, for roles, approvals, `!pd`, shift DMs and mentions (core/identity.py)."""
    from chatopsd.identity.store import SqlIdentityLinks

    return IdentityService(SqlIdentityLinks(db), capabilities, configured_identities(cfg))


def access_policy(cfg: Config) -> AccessPolicy:
    roles = {
        role: frozenset(i.lower() if "@" in i and ":" not in i else i for i in ids)
        for role, ids in cfg.roles.items()
    }
    if cfg.demo:
        # The demo's only way in is the console, the operator at the machine: every role,
        # so every command can be tried (Config.demo: nothing real to act on).
        roles["admin"] = roles.get("admin", frozenset()) | {"*"}
    return AccessPolicy(
        roles=roles,
        command_roles=cfg.auth.command_roles,
        paging_channels=frozenset(cfg.auth.paging_channels),
        mutating_channels=frozenset(cfg.auth.mutating_channels),
    )


def middleware(
    cfg: Config,
    *,
    ledger: EventLedger,
    durable: bool,
    counted: Middleware,
    audit: AuditLog,
    clock: Clock,
    policy: AccessPolicy,
    identify: Callable[[Call], Awaitable[Identity]],
    features: Sequence[Feature],
) -> list[Middleware]:
    """The bus's chain, with what the features contribute (core/middleware.py: the order)."""
    exempt = [f.rate_exempt for f in features if f.rate_exempt is not None]
    channels = [f.work_channel for f in features if f.work_channel is not None]
    return [
        Dedupe(ledger, durable=durable),
        counted,  # the metrics' count and journal line
        Audit(audit, clock),
        RateLimit(clock, cfg.ratelimit.per_minute, cfg.ratelimit.burst, exempt=_any(exempt)),
        Authorize(policy, _any_async(channels), identify=identify),
        Started(ledger),
    ]


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


class ConsoleStreams(Protocol):
    stdin: TextIO | None
    stdout: TextIO | None


def connectors(
    cfg: Config,
    io: ConsoleStreams,
    on_eof: Callable[[], None],
    ha: Strategy,
    kv: KeyValue,
    clock: Clock,
    registry: Registry,
) -> tuple[list[Connector], Capabilities]:
    """The connectors, and what each platform can do besides posting (the console: nothing),
    as its platform package declares it. Each keeps its session state in this instance's own
    keys (`ha.connector_kv`), and what any instance may need later in the shared `kv`."""
    found: list[Connector] = []
    if cfg.console_enabled:
        from chatopsd.connectors.console import ConsoleConnector

        found.append(
            ConsoleConnector(
                fmt=cfg.console.format,
                stdin=io.stdin,
                stdout=io.stdout,
                # a console-only daemon stops at the end of its input
                on_eof=None if cfg.platforms else on_eof,
                prefix=cfg.chatopsd.prefix,
                banner=console_banner(cfg),
                # what a terminal completes: the commands registered by then
                commands=lambda: (spec.path for spec in registry),
                history=locations.locate(cfg).state_db.with_suffix(".history"),
            )
        )
    # Platform libraries are imported only when their section is configured: a console-only
    # daemon then never loads slack-sdk, discord.py or aiohttp (start time, idle memory).
    wiring = Wiring(prefix=cfg.chatopsd.prefix, clock=clock, kv=ha.connector_kv(kv), shared=kv)
    offers = []
    for platform, section in cfg.configured_platforms():
        connector = platform.build(section, wiring)
        found.append(connector)
        offers.append((platform.name, connector, platform.capabilities))
    return found, Capabilities(offers)


def console_banner(cfg: Config) -> str:
    log_file = logs.log_file()
    quits = "Ctrl-D quits" if not cfg.platforms else "Ctrl-D ends the console, Ctrl-C stops"
    return (
        f"chatopsd {__version__} · platforms: {', '.join(['console', *cfg.platforms])}\n"
        f"Type {cfg.chatopsd.prefix}help for the commands; {quits}."
        + (
            "\nDemo: PagerDuty, monitoring, the status page and the ticket tracker are "
            "in-memory demos (nothing real is configured; nothing leaves this machine)."
            if cfg.demo
            else ""
        )
        + (f"\nLogs: {log_file}" if log_file else "")
    )


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


def outbox(
    connectors: Sequence[Connector], capabilities: Capabilities, redact: Callable[[str], str]
) -> Outbox:
    return Outbox({c.platform: c for c in connectors}, redact=redact, capabilities=capabilities)


def bus(cfg: Config, registry: Registry, outbox: ReplySink, redact: Callable[[str], str]) -> Bus:
    return Bus(
        registry,
        (),  # the chain is built once every feature is installed: they add to it
        outbox,
        prefix=cfg.chatopsd.prefix,
        bot_names=(cfg.chatopsd.bot_name,),
        redact=redact,
    )


async def close_connectors(supervisors: Sequence[Supervisor]) -> None:
    for supervisor in supervisors:
        try:
            await supervisor.connector.close()
        except Exception:
            log.exception("closing %s failed", supervisor.platform)


def supervisors(connectors: Sequence[Connector], bus: Bus, clock: Clock) -> list[Supervisor]:
    """One supervisor per connector: it keeps the connection up and hands events to the bus."""
    return [
        Supervisor(
            c,
            bus.submit,
            clock,
            accepting=bus.accepting,
            admit=bus.admit,
            admit_soon=bus.admit_soon,
        )
        for c in connectors
    ]


def jobs(
    cfg: Config, ledger: SqlEventLedger, audit: SqlAuditLog, ha: Strategy, bus: Bus, times: Times
) -> Feature:
    """The kernel's own jobs, registered like a feature's; with several instances, the
    take-over of the commands a dead instance claimed and never answered (ha/takeover.py)."""
    takeover = Takeover(
        ledger, bus, ledger.clock, audit, dead_after_s=cfg.chatopsd.lease_seconds, times=times
    )
    found = [
        Job("prune-events", 3600, ledger.prune, singleton=False, run_now=False),
        Job("audit-head", cfg.audit.head_log_seconds, partial(log_audit_head, audit), False),
    ]
    if ha.sweep_seconds is not None:  # several instances: the leader takes over
        found.append(Job("take-over", ha.sweep_seconds, takeover.sweep))
    return Feature("kernel", jobs=found, parts=[takeover])


async def log_audit_head(audit: SqlAuditLog) -> None:
    """The chain's head in the journal: a copy outside the database, so cutting rows off the
    end shows (`chatopsd audit verify --head HASH`)."""
    row_id, digest = await audit.head()
    log.info("audit head: row %d hash %s", row_id, digest)


async def report_interrupted(
    takeover: Takeover, supervisors: Sequence[Supervisor], connect_wait: float = 30.0
) -> None:
    """One instance: what the previous run started with outside effects and never finished
    (it was killed or crashed mid-command) is told in its channel and audited as
    `interrupted`, once the connectors are up (or after `connect_wait` s regardless)."""
    try:
        async with asyncio.timeout(connect_wait):
            for supervisor in supervisors:
                await supervisor.ready_event.wait()
    except TimeoutError:
        pass
    try:
        await takeover.sweep()
    except Exception:
        log.exception("could not report the commands the previous run left unfinished")
