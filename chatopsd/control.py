"""The control socket: a Unix socket for `chatopsd ctl health | send | broadcast`.

No TCP, ever. Each connection's peer credentials (SO_PEERCRED) are checked against root, the
daemon's own uid and `control.allow_uids`. Without allow_uids the socket file is owner-only
(0600); with them it is 0666, so that the listed users can connect at all, and the peer-uid
check is what keeps everyone else out. The protocol is one JSON request line and one JSON answer
line per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from chatopsd import redact
from chatopsd.core.messages import Destination, Reply, Sent
from chatopsd.health import LABELS, HealthView
from chatopsd.scheduler import JobHealth

log = logging.getLogger("chatopsd.control")
MAX_REQUEST = 64 * 1024
SEND_TIMEOUT = 30.0


def overflow_uid() -> int:
    try:
        return int(Path("/proc/sys/kernel/overflowuid").read_text().strip())
    except (OSError, ValueError):
        return 65534


def refusal(uid: int) -> str:
    """Why a refused uid may not be what the caller expects. Under `PrivateUsers=yes` the
    daemon lives in a user namespace where only root and its own user are mapped: every
    other caller shows up as the overflow uid (nobody), so `control.allow_uids` cannot name
    them; such callers must run as root or as the service's user, or the unit needs
    PrivateUsers=no."""
    if uid != overflow_uid():
        return ""
    return (
        f"; uid {uid} is also the kernel's overflow uid: if the daemon runs with systemd's "
        "PrivateUsers=yes, every uid but root's and its own looks like this to it, and "
        "control.allow_uids cannot match it. Run chatopsd ctl as root (sudo) or as the "
        "service user, or add PrivateUsers=no in a drop-in (docs/operations.md)."
    )


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


class Sender(Protocol):
    """The outbox, as `ctl send` and `ctl broadcast` use it."""

    @property
    def connectors(self) -> Mapping[str, object]: ...

    async def send(self, destination: Destination, reply: Reply) -> Sent | None: ...


def health(view: HealthView) -> dict[str, Any]:
    """What `ctl health` shows: connectors, scheduled jobs (PagerDuty refresh, status poll),
    queue depth."""
    mono = view.clock.monotonic()
    now = view.clock.now()
    jobs: dict[str, Any] = {}
    for name in view.scheduler.jobs:
        job = view.scheduler.health.get(name) or JobHealth()
        last, since = job.last_ok, job.failing_since
        jobs[name] = {
            "last_ok": last.isoformat() if last else None,
            "age_seconds": round((now - last).total_seconds(), 1) if last else None,
            "failures": job.failures,
            "failing_since": since.isoformat() if since else None,
            "cause": job.cause or None,
        }

    def job_like(exact: str, *words: str) -> Any:
        # The job by its name first: "pagerduty-incidents" also contains "pagerduty".
        if exact in jobs:
            return {"job": exact, **jobs[exact]}
        for name, info in jobs.items():
            if any(w in name for w in words):
                return {"job": name, **info}
        return None

    found = {
        "connectors": [
            {
                "platform": s.platform,
                "state": s.health.state.value,
                "reason": redact.text(s.health.reason),
                "for_seconds": round(mono - s.health.since, 1),
                "connects": s.health.connects,
                "failures": s.health.failures,
            }
            for s in view.supervisors
        ],
        "pagerduty_refresh": job_like("pagerduty-refresh", "oncall"),
        "status_poll": job_like("status-poll", "stalk"),
        "jobs": jobs,
        "lease": _lease(view),
        "queue_depth": view.outbox.depth,
        "in_flight": view.in_flight(),
        "sent": view.outbox.sent,
        "send_failures": view.outbox.failed,
    }
    if view.features:
        found["features"] = {name: dict(report()) for name, report in view.features.items()}
    return found


def uid_map(text: str | None = None) -> list[tuple[int, int, int]]:
    """This process's user namespace map: (inside, outside, count) ranges. Outside a user
    namespace it is the identity over every uid."""
    if text is None:
        try:
            text = Path("/proc/self/uid_map").read_text()
        except OSError:
            return [(0, 0, 2**32 - 1)]
    ranges = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and all(f.isdigit() for f in fields):
            inside, outside, count = (int(f) for f in fields)
            ranges.append((inside, outside, count))
    return ranges


def inside_uid(uid: int, ranges: Iterable[tuple[int, int, int]]) -> int | None:
    """The uid a host user (as `id -u` shows it) has inside this namespace; None when it is
    not mapped (it then shows up as the overflow uid and cannot be told apart)."""
    for inside, outside, count in ranges:
        if outside <= uid < outside + count:
            return inside + uid - outside
    return None


def unreachable(
    path: Path, allow_uids: Iterable[int], ranges: Iterable[tuple[int, int, int]]
) -> list[str]:
    """Why a user listed in control.allow_uids still could not use the socket, one line each:
    a directory on the way that others may not enter, or a uid this daemon cannot see."""
    listed = sorted(set(allow_uids))
    if not listed:
        return []
    why = []
    folder = path.parent.resolve()
    for parent in (*reversed(folder.parents), folder):  # from / down
        try:
            mode = parent.stat().st_mode
        except OSError:
            continue
        if not mode & stat.S_IXOTH:
            why.append(
                f"control.allow_uids: {parent} (mode {stat.S_IMODE(mode):04o}) keeps other "
                "users from the socket: make it searchable by others (chmod o+x; under "
                "systemd, RuntimeDirectoryMode=0755)"
            )
    ranges = list(ranges)
    hidden = [uid for uid in listed if inside_uid(uid, ranges) is None]
    if hidden:
        why.append(
            f"control.allow_uids: uid {', '.join(map(str, hidden))} cannot be told apart inside "
            f"this daemon's user namespace (systemd PrivateUsers=yes shows it as "
            f"{overflow_uid()}) and is refused: add PrivateUsers=no in a drop-in "
            "(systemctl edit chatopsd), or run chatopsd ctl as root or the service user"
        )
    return why


class ControlServer:
    def __init__(
        self,
        view: HealthView,
        path: Path,
        allow_uids: Iterable[int] = (),
        *,
        outbox: Sender,
        broadcast: Sequence[str] = (),
    ) -> None:
        self.view, self.outbox = view, outbox
        self.broadcast_channels = tuple(broadcast)  # control.broadcast_channels
        self.path = path
        self.allow_uids = sorted(set(allow_uids))
        ranges = uid_map()
        # root and the daemon's own user, plus each listed host uid as this namespace sees it
        seen = (inside_uid(uid, ranges) for uid in self.allow_uids)
        self.allowed = {0, os.getuid(), *(uid for uid in seen if uid is not None)}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def mode(self) -> int:
        """Owner-only, unless other users are listed: then they must be able to connect, and
        the peer-uid check decides."""
        return 0o666 if self.allow_uids else 0o600

    async def start(self) -> None:
        # A directory made here lets listed users through (search only, no listing).
        self.path.parent.mkdir(
            parents=True, exist_ok=True, mode=0o711 if self.allow_uids else 0o700
        )
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
        os.chmod(self.path, self.mode)
        log.info("control socket at %s (mode %04o)", self.path, self.mode)
        for line in unreachable(self.path, self.allow_uids, uid_map()):
            log.warning("%s", line)

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
            why = refusal(uid)
            log.warning("control socket: refused uid %d%s", uid, why)
            return {"ok": False, "error": f"uid {uid} is not allowed (control.allow_uids){why}"}
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            request = json.loads(line)
            cmd = request["cmd"]
        except (ValueError, KeyError, TypeError, asyncio.LimitOverrunError, TimeoutError):
            return {"ok": False, "error": 'send one JSON line like {"cmd": "health"}'}
        if cmd == "health":
            return {"ok": True, "health": health(self.view)}
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
        known = sorted(self.outbox.connectors)
        if platform not in known:
            return {"ok": False, "error": f"unknown platform {platform!r} (have: {known})"}
        if not channel or not text:
            return {"ok": False, "error": "channel and text are required"}
        log.info("ctl send to %s:%s", platform, channel)
        try:
            await asyncio.wait_for(
                self.outbox.send(Destination(platform, channel), Reply(text=text)),
                SEND_TIMEOUT,
            )
        except Exception as exc:
            return {"ok": False, "error": f"{platform}:{channel}: {type(exc).__name__}: {exc}"}
        return {"ok": True, "sent": [f"{platform}:{channel}"]}

    async def _broadcast(self, text: str) -> dict[str, Any]:
        targets = self.broadcast_channels
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


def not_running(exc: OSError) -> bool:
    """No socket, or nobody listening on it: the daemon is not running (there)."""
    return exc.errno in (errno.ENOENT, errno.ECONNREFUSED)


def connect_failure(path: Path, source: str, exc: OSError) -> str:
    """What `ctl` says when it cannot talk to the socket. Only a missing socket or a refused
    connection suggest that the daemon is not running; a permission error says whose it is."""
    where = f"{path} (from {source})"
    if not_running(exc):
        return f"{where}: {exc.strerror} (is chatopsd running?)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (
            f"{where}: {exc.strerror}: the socket admits root, the service's user and "
            f"control.allow_uids; run as root (sudo), or add uid {os.getuid()} to "
            "control.allow_uids"
        )
    return f"{where}: {exc.strerror or exc}"


def _lease_line(lease: dict[str, Any]) -> str:
    """This instance's role, the live instances and the dead ones. "leader" only while the
    lease is held; a follower that cannot read who holds it says "unknown"."""
    if lease["leader"]:
        role = "leader"
    elif lease.get("database_error"):
        role = "follower (leader: unknown)"
    else:
        role = f"follower (leader: {lease['holder'] or 'none'})"
    line = f"instance {lease['instance']}: {role}; instances: {', '.join(lease['instances'])}"
    dead = [
        f"{d['instance']} dead, last seen {datetime.fromisoformat(d['last_seen']):%H:%M:%S UTC}"
        for d in lease.get("dead", [])
    ]
    return line + (f"; {', '.join(dead)}" if dead else "")


def _hhmm(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%H:%M UTC")


def _lease(view: HealthView) -> dict[str, Any]:
    """Leader and instances (several instances on PostgreSQL; on SQLite, this one)."""
    st = view.lease()
    return {
        "instance": st.instance,
        "leader": st.leader,
        "holder": st.holder,
        "token": st.token,
        "instances": list(st.instances),
        "dead": [
            {"instance": name, "last_seen": datetime.fromtimestamp(seen, UTC).isoformat()}
            for name, seen in st.dead
        ],
        "database": view.database,
        "database_error": st.database_error,
        "claim_failures": view.claim_failures(),
    }


# `ctl health` exit statuses, as monitoring plugins use them (Nagios, Icinga, Sensu...).
HEALTHY, DEGRADED, FAILING, UNKNOWN = 0, 1, 2, 3
VERDICT_WORDS = {HEALTHY: "healthy", DEGRADED: "degraded", FAILING: "failing", UNKNOWN: "unknown"}


def verdict(h: dict[str, Any]) -> tuple[int, list[str]]:
    """The daemon's health as one status and its reasons, from the `health` answer:

    - failing (2): nobody can reach the bot (no connector ready), a connector gave up
      (a fatal error such as a revoked token: it will not come back by itself), or the
      shared database cannot be reached (no command is recorded, no singleton job runs);
    - degraded (1): a connector is reconnecting while another works, or a scheduled job is
      failing (answers come from a stale cache, a status source is not read);
    - healthy (0): everything else."""
    failing: list[str] = []
    degraded: list[str] = []
    connectors = h.get("connectors", [])
    for c in connectors:
        if c["state"] == "failed":
            failing.append(f"{c['platform']} failed" + (f" ({c['reason']})" if c["reason"] else ""))
        elif c["state"] != "ready":
            degraded.append(f"{c['platform']} {c['state']}")
    if not any(c["state"] == "ready" for c in connectors):
        failing.insert(0, "no connector is ready")
    lease = h.get("lease") or {}
    if lease.get("database_error"):
        failing.append(f"database {lease['database']} unreachable ({lease['database_error']})")
    for name, job in h.get("jobs", {}).items():
        if job.get("failing_since"):
            degraded.append(f"{LABELS.get(name, f'job {name}')} failing")
    if failing:
        return FAILING, failing + degraded
    return (DEGRADED, degraded) if degraded else (HEALTHY, [])


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
        elif job.get("failing_since"):
            last = "never" if job["age_seconds"] is None else f"{job['age_seconds']:.0f} s ago"
            lines.append(
                f"{label} failing since {_hhmm(job['failing_since'])} ({job['cause']}); "
                f"last success {last} ({job['failures']} failures)"
            )
        elif job["age_seconds"] is None:
            lines.append(f"{label}: never succeeded ({job['failures']} failures)")
        else:
            lines.append(f"{label}: {job['age_seconds']:.0f} s ago ({job['failures']} failures)")
    for name, job in h.get("jobs", {}).items():
        if job.get("failing_since") and name not in LABELS:
            lines.append(f"job {name} failing since {_hhmm(job['failing_since'])} ({job['cause']})")
    lease = h.get("lease")
    if lease:
        if lease.get("database_error"):
            lines.append(f"database {lease['database']}: failing ({lease['database_error']})")
        lines.append(_lease_line(lease))
    lines.append(
        f"queue depth: {h['queue_depth']}, in flight: {h['in_flight']}, "
        f"sent: {h['sent']}, send failures: {h['send_failures']}"
    )
    code, reasons = verdict(h)
    lines.append(f"health: {VERDICT_WORDS[code]}" + (f" ({'; '.join(reasons)})" if reasons else ""))
    return lines
