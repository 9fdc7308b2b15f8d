"""`chatopsd run | check-config | doctor | ctl | audit`: argument parsing only."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from chatopsd import __version__, locations, logs, redact
from chatopsd.core.errors import ConfigError
from chatopsd.core.outcome import Outcome
from chatopsd.core.times import Times

if TYPE_CHECKING:
    from chatopsd import config
    from chatopsd.app import App
    from chatopsd.store.db import Database


def _options(*, socket: bool = False, suppress: bool = False) -> argparse.ArgumentParser:
    """--config (and --socket) for the top level and again for each subcommand, so either order
    works. On a subcommand the default is SUPPRESS: an option given before the subcommand is
    not overwritten by the subcommand's own default."""
    default = argparse.SUPPRESS if suppress else None
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=default,
        help="TOML config file (ctl/audit/doctor: default /etc/chatopsd/chatopsd.toml if present)",
    )
    if socket:
        common.add_argument(
            "--socket",
            type=Path,
            default=default,
            help="control socket (default: the daemon's own rule: control.socket, "
            "$RUNTIME_DIRECTORY/control.sock, /run/chatopsd/control.sock, next to the database)",
        )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatopsd",
        description="chatopsd: a ChatOps daemon for on-call teams.",
        parents=[_options(socket=True)],
    )
    parser.add_argument("--version", action="version", version=f"chatopsd {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    opts = _options(suppress=True)
    ctl_opts = _options(socket=True, suppress=True)
    sub.add_parser("run", help="run the daemon", parents=[opts])
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file", type=Path, help="the TOML file to validate")
    sub.add_parser("doctor", help="probe every configured part and say what to fix", parents=[opts])
    ctl = sub.add_parser(
        "ctl", help="talk to the running daemon over its control socket", parents=[ctl_opts]
    )
    ctl.add_argument("--json", action="store_true", help="print the raw JSON answer")
    ctl_sub = ctl.add_subparsers(dest="ctl_cmd", required=True, metavar="ACTION")
    ctl_sub.add_parser("health", help="connector states, job ages, queue depth", parents=[ctl_opts])
    ctl_send = ctl_sub.add_parser("send", help="post a message", parents=[ctl_opts])
    ctl_send.add_argument("platform", help="slack, discord, mattermost, teams or console")
    ctl_send.add_argument("channel", help="the platform's channel id")
    ctl_send.add_argument("text", help="the message")
    ctl_broadcast = ctl_sub.add_parser(
        "broadcast", help="post to control.broadcast_channels", parents=[ctl_opts]
    )
    ctl_broadcast.add_argument("text", help="the message")
    audit = sub.add_parser("audit", help="print (or verify) the audit log", parents=[opts])
    audit.add_argument(
        "action",
        nargs="?",
        choices=("show", "verify"),
        default="show",
        help="show (default) the rows, or verify the hash chain (exit 1 if broken)",
    )
    audit.add_argument("--since", help="e.g. 30m, 12h, 7d, or an ISO date/time")
    audit.add_argument("--actor", help="user id or display name")
    audit.add_argument("--command", help="command, e.g. 'ic page' or 'deploy' (and its runs)")
    audit.add_argument(
        "--outcome",
        choices=[str(o) for o in Outcome],
        help="one of %(choices)s (see README, outcomes)",
    )
    audit.add_argument("--cause", help="text in the cause, e.g. 'exit 1' or 'PagerDuty'")
    audit.add_argument("--json", action="store_true", help="JSON Lines: one object per row")
    audit.add_argument("--head", help="verify: a head hash from the journal that must be there")
    sub.add_parser(
        "runbook",
        help="print the fallback card (who to call, what to do by hand); works with the "
        "daemon stopped",
        parents=[opts],
    )
    teams = sub.add_parser("teams", help="Microsoft Teams tools (docs/teams.md)", parents=[opts])
    teams_sub = teams.add_subparsers(dest="teams_cmd", required=True, metavar="ACTION")
    manifest = teams_sub.add_parser(
        "manifest", help="write the Teams app package to upload", parents=[opts]
    )
    manifest.add_argument("--out", type=Path, required=True, help="the zip file to write")
    manifest.add_argument("--website", required=True, help="https:// URL of your ops site")
    manifest.add_argument("--app-id", help="the bot's app id (default: teams.app_id of --config)")
    manifest.add_argument("--name", default="chatopsd", help="the app's name in Teams")
    migrate = sub.add_parser(
        "migrate-state", help="copy a single-host SQLite state into PostgreSQL (docs/ha.md)"
    )
    migrate.add_argument("--from", dest="source", required=True, help="sqlite:PATH")
    migrate.add_argument("--to", dest="target", required=True, help="postgresql://user@host/db")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Start-up (imports, the config models, building the app) makes tens of thousands of
    # objects that live as long as the process and next to no garbage: the cyclic collector
    # running meanwhile only walks them over and over (~7 % of the time to ready). It is
    # paused until the daemon is ready (App.start then freezes what it built) or the command
    # ends. A few hundred start-up cycles stay uncollected: a one-off, bounded cost.
    gc.disable()
    try:
        return _main(argv)
    finally:
        gc.enable()


def _main(argv: Sequence[str] | None) -> int:
    from chatopsd import config  # after gc.disable(): it loads pydantic and builds the models

    args = build_parser().parse_args(argv)
    if args.cmd in ("ctl", "audit", "doctor", "runbook", "teams"):
        # A client on the service's host reads the service's config unless told otherwise.
        args.config = locations.default_config(args.config)
    if args.cmd == "migrate-state":
        return _migrate_state(args.source, args.target)
    if args.cmd == "teams":
        return _teams_manifest(args)
    if args.cmd == "doctor":
        from chatopsd import doctor as doctor_mod

        return doctor_mod.main(args.config)
    try:
        cfg = config.load(args.file if args.cmd == "check-config" else args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.cmd == "ctl":
        return _ctl(cfg, args)
    if args.cmd == "runbook":
        return _runbook(cfg)
    if args.cmd == "check-config":
        unreachable = cfg.unreachable()
        if unreachable is not None:
            print(f"{args.file}: {unreachable}", file=sys.stderr)
            return 2
        print(f"{args.file}: OK (platforms: {', '.join(cfg.platforms) or 'console only'})")
        return 0
    if args.cmd == "audit":
        try:
            since = _since(args.since)
        except ValueError as exc:
            print(f"--since: {exc}", file=sys.stderr)
            return 2
        if args.action == "verify":
            return asyncio.run(_verify(cfg, args.head))
        return asyncio.run(_audit(cfg, since, args))
    logs.setup(
        cfg.chatopsd.log_level,
        cfg.chatopsd.log_format,
        config.secrets_of(cfg),
        file=_interactive_log(cfg),
    )
    return _run(cfg, args.config)


def _teams_manifest(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    from chatopsd import config
    from chatopsd.connectors import teams
    from chatopsd.connectors.teams.manifest import package

    app_id = args.app_id
    if app_id is None:
        if args.config is None:
            print(
                "teams manifest: give --app-id or --config with a [teams] section", file=sys.stderr
            )
            return 2
        try:
            cfg = config.load(args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        section = cfg.section(teams.PLATFORM)
        if section is None:
            print(f"teams manifest: {args.config} has no [teams] section", file=sys.stderr)
            return 2
        app_id = section.app_id
    site = urlsplit(args.website)
    if site.scheme != "https" or not site.hostname:
        print("teams manifest: --website must be an https:// URL", file=sys.stderr)
        return 2
    args.out.write_bytes(package(app_id, args.website, name=args.name))
    print(f"{args.out}: Teams app package for bot {app_id}; upload it in Teams (docs/teams.md)")
    return 0


def _migrate_state(source: str, target: str) -> int:
    from chatopsd.config import database_url_problem
    from chatopsd.store import migrate_state as ms
    from chatopsd.store.postgres import redact

    problem = database_url_problem(target)
    if problem is not None:
        print(f"migrate-state: --to {problem}", file=sys.stderr)  # never the URL itself
        return 2
    try:
        path = ms.parse_source(source)
        copied = asyncio.run(ms.migrate_state(path, target))
    except (ms.MigrateError, ConnectionError, RuntimeError) as exc:
        print(f"migrate-state: {exc}", file=sys.stderr)
        return 1
    for c in copied:
        print(f"{c.table}: {c.rows} rows")
    print(f"copied {sum(c.rows for c in copied)} rows from {path} to {redact(target)}")
    return 0


def _interactive_log(cfg: config.Config) -> Path | None:
    """A person typing at the console: log lines go to a file beside the database, so they do
    not mix with the replies on screen (the banner says where)."""
    from chatopsd.connectors.console import interactive

    if not cfg.console_enabled or not interactive(cfg.console.format, sys.stdin, sys.stdout):
        return None
    return locations.locate(cfg).state_db.with_suffix(".log")


def _run(cfg: config.Config, path: Path | None = None) -> int:
    from chatopsd.kernel import StartupError, nothing_to_serve
    from chatopsd.serve import serve

    if why := nothing_to_serve(cfg, sys.stdin, path):
        # EX_CONFIG: the unit's RestartPreventExitStatus=78 shows "failed" with this line
        # instead of restarting a daemon that would only stop again.
        print(f"chatopsd: {why}", file=sys.stderr)
        return os.EX_CONFIG
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency; keep running without it
            asyncio.run(serve(cfg, config_path=path, on_ready=_collect_again))
        else:
            uvloop.run(serve(cfg, config_path=path, on_ready=_collect_again))
    except StartupError as exc:
        # one line for the journal; systemd sees the failure at once (no kill loop)
        print(f"chatopsd: cannot start: {redact.text(str(exc))}", file=sys.stderr)
        return 1
    return 0


def _collect_again(_app: App) -> None:
    """Ready: the collector may run again (see main)."""
    gc.enable()


def _ctl(cfg: config.Config, args: argparse.Namespace) -> int:
    from chatopsd import control

    found = locations.locate(cfg, client=True)
    path = args.socket or found.socket
    payload: dict[str, str] = {"cmd": args.ctl_cmd}
    for key in ("platform", "channel", "text"):
        if hasattr(args, key):
            payload[key] = getattr(args, key)
    try:
        answer = control.request(path, payload)
    except OSError as exc:
        source = "--socket" if args.socket else found.socket_source
        print(control.connect_failure(path, source, exc), file=sys.stderr)
        if args.ctl_cmd == "health":  # a daemon that is not there is failing; else: unknown
            return control.FAILING if control.not_running(exc) else control.UNKNOWN
        return 1
    if args.json:
        print(json.dumps(answer, indent=2))
    elif not answer.get("ok"):
        print(answer.get("error") or "; ".join(answer.get("errors", [])), file=sys.stderr)
    elif args.ctl_cmd == "health":
        print("\n".join(control.render_health(answer["health"])))
    else:
        print("sent to " + ", ".join(answer["sent"]))
    if args.ctl_cmd == "health":
        return control.verdict(answer["health"])[0] if answer.get("ok") else control.UNKNOWN
    return 0 if answer.get("ok") else 1


def _runbook(cfg: config.Config) -> int:
    """The fallback card the daemon last wrote, found by the daemon's own rules: it needs
    neither the daemon nor its database, so it works when chatopsd is down."""
    found = locations.locate(cfg, client=True)
    path = locations.fallback_card(found.state_db)
    try:
        card = path.read_text(encoding="utf-8")
        age = datetime.now(UTC).timestamp() - path.stat().st_mtime
    except OSError as exc:
        why = "none there" if isinstance(exc, FileNotFoundError) else exc.strerror
        print(
            f"no fallback card at {path} (beside the database, from {found.db_source}): "
            f"{why}. The daemon writes it when PagerDuty is configured, at start and at every "
            "on-call change; give --config if it runs with another one.",
            file=sys.stderr,
        )
        return 1
    sys.stdout.write(card)
    if age > 2 * 86400:
        print(
            f"note: this card is {age / 86400:.0f} days old: the daemon has not written one "
            "since; the numbers may be out of date (check PagerDuty's app)",
            file=sys.stderr,
        )
    return 0


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    units = {"m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (30m, 12h, 7d) nor an ISO date") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def _open(cfg: config.Config) -> Database | None:
    """The service's database, read-only: `audit` reads while the daemon runs and must
    neither migrate nor write it (a file owned by the service stays as it is)."""
    from chatopsd.store.backend import open_readonly

    url = cfg.chatopsd.database
    found = locations.locate(cfg, client=True)
    path = found.state_db
    if not url and not path.exists():
        print(
            f"no state database at {path} (from {found.db_source}); give --config with "
            "chatopsd.state_db, or run where the daemon runs",
            file=sys.stderr,
        )
        return None
    try:
        return await open_readonly(url, path)
    except (OSError, RuntimeError, sqlite3.Error) as exc:
        # (NewerDatabase/OlderDatabase are RuntimeErrors; PostgreSQL's ConnectionError an
        # OSError, its message without a password)
        where = redact.text(str(exc))
        print(f"cannot read the state database: {where}", file=sys.stderr)
        return None


async def _audit(cfg: config.Config, since: datetime | None, args: argparse.Namespace) -> int:
    from chatopsd.store.audit import SqlAuditLog

    db = await _open(cfg)
    if db is None:
        return 1
    try:
        entries = await SqlAuditLog(db).query(
            since=since,
            actor=args.actor,
            command=args.command,
            outcome=args.outcome,
            cause=args.cause,
            limit=10_000_000,
        )
    finally:
        await db.close()
    if not entries:
        asked = [
            f"--{name} {value}"
            for name in ("since", "actor", "command", "outcome", "cause")
            if (value := getattr(args, name))
        ]
        print(f"no audit rows{' match ' + ' '.join(asked) if asked else ''}", file=sys.stderr)
    times = Times(cfg.chatopsd.zone())  # --json keeps UTC ISO times, for machines
    for e in entries:
        if args.json:
            row = {k: getattr(e, k) for k in e.__dataclass_fields__}
            row["at"] = e.at.isoformat()
            print(_json_printable(json.dumps(row, ensure_ascii=False)))
        else:
            # Names, channels and outcomes are chat input: an ESC sequence must not reach
            # the terminal of whoever reads the audit trail.
            print(
                f"{times.stamp(e.at)} {times.zone_name(e.at)} "
                f"{_printable(f'{e.platform}:{e.channel}')} {_printable(e.actor_name)} "
                f"{_printable(repr(e.text))} → {_printable(e.outcome)}"
                f"{_printable(f': {e.cause}') if e.cause else ''} ({e.duration_ms:.1f} ms)"
            )
    return 0


def _json_printable(line: str) -> str:
    # json escapes C0 itself; C1 and bidi controls stay raw unless escaped (still valid JSON)
    return "".join(ch if ch.isprintable() or ch == " " else json.dumps(ch)[1:-1] for ch in line)


def _printable(text: str) -> str:
    """Control and format characters (ESC, C1, bidi overrides) shown as escapes."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


async def _verify(cfg: config.Config, head: str | None = None) -> int:
    from chatopsd.store.audit import SqlAuditLog

    db = await _open(cfg)
    if db is None:
        return 1
    key = cfg.audit.hmac_key.get_secret_value().encode() or None
    try:
        verdict = await SqlAuditLog(db, key).verify(expect_head=head)
    finally:
        await db.close()
    legacy = f" ({verdict.unchained} older rows predate the chain)" if verdict.unchained else ""
    keyed = f", {verdict.keyed} keyed" if verdict.keyed else ""
    if verdict.ok:
        print(f"audit log OK: {verdict.rows} rows{legacy}{keyed}, head {verdict.head}")
        return 0
    if verdict.broken_at is None:
        if verdict.unkeyed:
            print(f"audit log NOT VERIFIED: {verdict.reason}", file=sys.stderr)
        if verdict.head_seen is False:
            print(
                f"audit log TRUNCATED or rewritten: head {head} is not in the chain "
                f"({verdict.rows} rows, head now {verdict.head})",
                file=sys.stderr,
            )
        return 1
    print(
        f"audit log TAMPERED: row id {verdict.broken_at}: {verdict.reason}; "
        f"the chain is intact up to the row before it{legacy}",
        file=sys.stderr,
    )
    return 1
