"""The control socket: a Unix socket for `chatopsd ctl health | send | broadcast`.

No TCP, ever. The socket file is created owner-only (0600) in the runtime directory, and each
connection's peer credentials (SO_PEERCRED) are checked as well, so a socket made reachable by a
lax directory mode still refuses other users. The protocol is one JSON request line and one
JSON answer line per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatopsd.core.messages import Destination, Reply

if TYPE_CHECKING:
    from chatopsd.app import App

log = logging.getLogger("chatopsd.control")
MAX_REQUEST = 64 * 1024
SEND_TIMEOUT = 30.0


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def _alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def health(app: App) -> dict[str, Any]:
    """What `ctl health` shows: connectors, scheduled jobs (PagerDuty refresh, status poll),
    queue depth."""
    mono = app.clock.monotonic()
    now = datetime.now(UTC)
    jobs: dict[str, Any] = {}
    for name in app.scheduler.jobs:
        last = app.scheduler.last_ok.get(name)
        jobs[name] = {
            "last_ok": last.isoformat() if last else None,
            "age_seconds": round((now - last).total_seconds(), 1) if last else None,
            "failures": app.scheduler.failures.get(name, 0),
        }

    def job_like(*words: str) -> Any:
        for name, info in jobs.items():
            if any(w in name for w in words):
                return {"job": name, **info}
        return None

    return {
        "connectors": [
            {
                "platform": s.platform,
                "state": s.health.state.value,
                "reason": s.health.reason,
                "for_seconds": round(mono - s.health.since, 1),
                "connects": s.health.connects,
                "failures": s.health.failures,
            }
            for s in app.supervisors
        ],
        "pagerduty_refresh": job_like("pagerduty", "oncall"),
        "status_poll": job_like("status", "stalk"),
        "jobs": jobs,
        "lease": _lease(app),
        "queue_depth": app.outbox.depth,
        "in_flight": app.bus.in_flight,
        "sent": app.outbox.sent,
        "send_failures": app.outbox.failed,
    }


class ControlServer:
    def __init__(self, app: App, path: Path, allow_uids: Iterable[int] = ()) -> None:
        self.app = app
        self.path = path
        self.allowed = {0, os.getuid(), *allow_uids}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.path.is_socket():
            if _alive(self.path):
                raise OSError(f"another chatopsd answers on {self.path}")
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # left by a killed predecessor
        # Bind with a tight umask so the file never exists with a wider mode, even briefly.
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._client, path=str(self.path), limit=MAX_REQUEST
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        log.info("control socket at %s", self.path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            answer = await self._serve(reader, writer)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("control request failed")
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> dict[str, Any]:
        uid = peer_uid(writer.get_extra_info("socket"))
        if uid not in self.allowed:
            log.warning("control socket: refused uid %d", uid)
            return {"ok": False, "error": f"uid {uid} is not allowed (control.allow_uids)"}
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            request = json.loads(line)
            cmd = request["cmd"]
        except (ValueError, KeyError, TypeError, asyncio.LimitOverrunError, TimeoutError):
            return {"ok": False, "error": 'send one JSON line like {"cmd": "health"}'}
        if cmd == "health":
            return {"ok": True, "health": health(self.app)}
        if cmd == "send":
            return await self._send(
                str(request.get("platform", "")),
                str(request.get("channel", "")),
                str(request.get("text", "")),
            )
        if cmd == "broadcast":
            return await self._broadcast(str(request.get("text", "")))
        return {"ok": False, "error": f"unknown command {cmd!r} (health, send, broadcast)"}

    async def _send(self, platform: str, channel: str, text: str) -> dict[str, Any]:
        known = sorted(self.app.outbox.connectors)
        if platform not in known:
            return {"ok": False, "error": f"unknown platform {platform!r} (have: {known})"}
        if not channel or not text:
            return {"ok": False, "error": "channel and text are required"}
        log.info("ctl send to %s:%s", platform, channel)
        try:
            await asyncio.wait_for(
                self.app.outbox.send(Destination(platform, channel), Reply(text=text)),
                SEND_TIMEOUT,
            )
        except Exception as exc:
            return {"ok": False, "error": f"{platform}:{channel}: {type(exc).__name__}: {exc}"}
        return {"ok": True, "sent": [f"{platform}:{channel}"]}

    async def _broadcast(self, text: str) -> dict[str, Any]:
        targets = self.app.config.control.broadcast_channels
        if not targets:
            return {"ok": False, "error": "no control.broadcast_channels configured"}
        results = await asyncio.gather(*(self._send(*t.partition(":")[::2], text) for t in targets))
        sent = [s for r in results if r["ok"] for s in r["sent"]]
        errors = [r["error"] for r in results if not r["ok"]]
        return {"ok": not errors, "sent": sent, "errors": errors}


def request(path: Path, payload: dict[str, Any], timeout: float = 40.0) -> dict[str, Any]:
    """Client side (the `ctl` command): one request, one answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(payload).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer


def _lease(app: App) -> dict[str, Any]:
    """Leader and instances (several instances on PostgreSQL; on SQLite, this one)."""
    st = app.lease.state()
    return {
        "instance": st.instance,
        "leader": st.leader,
        "holder": st.holder,
        "token": st.token,
        "instances": list(st.instances),
        "database": app.db.describe(),
        "claim_failures": app.ledger.failures,
    }


def render_health(h: dict[str, Any]) -> list[str]:
    lines = []
    for c in h["connectors"]:
        reason = f" ({c['reason']})" if c["reason"] else ""
        lines.append(
            f"{c['platform']}: {c['state']}{reason} for {c['for_seconds']:.0f} s, "
            f"{c['connects']} connects, {c['failures']} failures"
        )
    if not h["connectors"]:
        lines.append("no connectors")
    for key, label in (("pagerduty_refresh", "PagerDuty refresh"), ("status_poll", "status poll")):
        job = h.get(key)
        if job is None:
            lines.append(f"{label}: not scheduled")
        elif job["age_seconds"] is None:
            lines.append(f"{label}: never succeeded ({job['failures']} failures)")
        else:
            lines.append(f"{label}: {job['age_seconds']:.0f} s ago ({job['failures']} failures)")
    lease = h.get("lease")
    if lease:
        role = "leader" if lease["leader"] else f"follower (leader: {lease['holder'] or 'none'})"
        lines.append(
            f"instance {lease['instance']}: {role}; instances: {', '.join(lease['instances'])}"
        )
    lines.append(
        f"queue depth: {h['queue_depth']}, in flight: {h['in_flight']}, "
        f"sent: {h['sent']}, send failures: {h['send_failures']}"
    )
    return lines
