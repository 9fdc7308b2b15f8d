"""`chatopsd run | check-config | doctor | ctl | audit`: argument parsing only."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from chatopsd import __version__, config, logs
from chatopsd.core.errors import ConfigError

if TYPE_CHECKING:
    from chatopsd.store.sqlite import Database


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chatopsd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"chatopsd {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", type=Path, help="TOML config (default: console + demo data)")
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file", type=Path)
    doctor = sub.add_parser("doctor", help="probe every configured part and say what to fix")
    doctor.add_argument("--config", type=Path)
    ctl = sub.add_parser("ctl", help="talk to the running daemon over its control socket")
    ctl.add_argument("--config", type=Path)
    ctl.add_argument("--socket", type=Path, help="default: from the config")
    ctl.add_argument("--json", action="store_true")
    ctl_sub = ctl.add_subparsers(dest="ctl_cmd", required=True)
    ctl_sub.add_parser("health", help="connector states, job ages, queue depth")
    ctl_send = ctl_sub.add_parser("send", help="post a message")
    ctl_send.add_argument("platform")
    ctl_send.add_argument("channel")
    ctl_send.add_argument("text")
    ctl_broadcast = ctl_sub.add_parser("broadcast", help="post to control.broadcast_channels")
    ctl_broadcast.add_argument("text")
    audit = sub.add_parser("audit", help="print (or verify) the audit log")
    audit.add_argument(
        "action",
        nargs="?",
        choices=("show", "verify"),
        default="show",
        help="show (default) the rows, or verify the hash chain (exit 1 if broken)",
    )
    audit.add_argument("--config", type=Path)
    audit.add_argument("--since", help="e.g. 30m, 12h, 7d, or an ISO date/time")
    audit.add_argument("--actor", help="user id or display name")
    audit.add_argument("--command", help="command, e.g. 'ic page' or 'deploy' (and its runs)")
    audit.add_argument(
        "--outcome",
        help="ok, failed, user_error, denied, rate_limited, error, pending; "
        "or text in the cause, e.g. 'exit 1'",
    )
    audit.add_argument("--json", action="store_true", help="JSON Lines: one object per row")
    args = parser.parse_args(argv)
    if args.cmd == "doctor":
        from chatopsd import doctor as doctor_mod

        return doctor_mod.main(args.config)
    try:
        cfg = config.load(getattr(args, "config", None) or getattr(args, "file", None))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.cmd == "ctl":
        return _ctl(cfg, args)
    if args.cmd == "check-config":
        print(f"{args.file}: OK (platforms: {', '.join(cfg.platforms) or 'console only'})")
        return 0
    if args.cmd == "audit":
        try:
            since = _since(args.since)
        except ValueError as exc:
            print(f"--since: {exc}", file=sys.stderr)
            return 2
        if args.action == "verify":
            return asyncio.run(_verify(cfg))
        return asyncio.run(_audit(cfg, since, args))
    logs.setup(cfg.chatopsd.log_level, cfg.chatopsd.log_format, config.secrets_of(cfg))
    return _run(cfg, args.config)


def _run(cfg: config.Config, path: Path | None = None) -> int:
    from chatopsd.app import serve

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep running without it
        asyncio.run(serve(cfg, config_path=path))
    else:
        uvloop.run(serve(cfg, config_path=path))
    return 0


def _ctl(cfg: config.Config, args: argparse.Namespace) -> int:
    from chatopsd import control

    path = args.socket or cfg.control.socket_path(cfg.chatopsd.db_path())
    payload: dict[str, str] = {"cmd": args.ctl_cmd}
    for key in ("platform", "channel", "text"):
        if hasattr(args, key):
            payload[key] = getattr(args, key)
    try:
        answer = control.request(path, payload)
    except OSError as exc:
        print(f"{path}: {exc.strerror or exc} (is chatopsd running?)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2))
    elif not answer.get("ok"):
        print(answer.get("error") or "; ".join(answer.get("errors", [])), file=sys.stderr)
    elif args.ctl_cmd == "health":
        print("\n".join(control.render_health(answer["health"])))
    else:
        print("sent to " + ", ".join(answer["sent"]))
    return 0 if answer.get("ok") else 1


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
    from chatopsd.store.sqlite import Database

    path = cfg.chatopsd.db_path()
    if not path.exists():
        print(f"no state database at {path}", file=sys.stderr)
        return None
    return await Database.open(path)


async def _audit(cfg: config.Config, since: datetime | None, args: argparse.Namespace) -> int:
    from chatopsd.store.audit import SqliteAuditLog

    db = await _open(cfg)
    if db is None:
        return 1
    try:
        entries = await SqliteAuditLog(db).query(
            since=since,
            actor=args.actor,
            command=args.command,
            outcome=args.outcome,
            limit=10_000_000,
        )
    finally:
        await db.close()
    for e in entries:
        if args.json:
            row = {k: getattr(e, k) for k in e.__dataclass_fields__}
            row["at"] = e.at.isoformat()
            print(json.dumps(row, ensure_ascii=False))
        else:
            print(
                f"{e.at:%Y-%m-%d %H:%M:%S} {e.platform}:{e.channel} {e.actor_name} "
                f"{e.text!r} → {e.outcome}{f': {e.cause}' if e.cause else ''} "
                f"({e.duration_ms:.1f} ms)"
            )
    return 0


async def _verify(cfg: config.Config) -> int:
    from chatopsd.store.audit import SqliteAuditLog

    db = await _open(cfg)
    if db is None:
        return 1
    try:
        verdict = await SqliteAuditLog(db).verify()
    finally:
        await db.close()
    legacy = f" ({verdict.unchained} older rows predate the chain)" if verdict.unchained else ""
    if verdict.ok:
        print(f"audit log OK: {verdict.rows} rows{legacy}, head {verdict.head}")
        return 0
    print(
        f"audit log TAMPERED: row id {verdict.broken_at}: {verdict.reason}; "
        f"the chain is intact up to the row before it{legacy}",
        file=sys.stderr,
    )
    return 1
