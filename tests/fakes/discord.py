"""A protocol-level fake Discord: REST under /api/v10 and a gateway websocket, on 127.0.0.1.

The REAL discord.py client talks to it. Faithful where discord.py is strict:
- JSON responses carry `Content-Type: application/json` exactly (no charset);
- the gateway speaks zlib-stream transport compression: one compressobj per connection,
  `Z_SYNC_FLUSH` per message, binary frames;
- HELLO, IDENTIFY -> READY + GUILD_CREATE, RESUME -> replay + RESUMED, heartbeat ACKs, op 7,
  op 9, close codes; a 429 carries `Via` (or not, to look like Cloudflare).
Tests script it: `dispatch()` events (buffered per session for replay on RESUME), `drop()` the
socket abruptly, `send_op()`, `fail_next()` on REST, stop acking heartbeats.
Several sessions of one bot (several instances, no sharding) each get every dispatch, as on
Discord; `drop()`, `send_op()` and `close_socket()` act on the newest connection. An
interaction is answered once: a second callback for its id gets 400, code 40060 ("Interaction
has already been acknowledged"), and follow-ups through its token need that first callback
(else 404, code 10015 "Unknown Webhook"). A message sent with a `nonce` and `enforce_nonce`
already used gives back the first message instead of a second (`Recorded.duplicate`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

try:  # discord.py asks for zstd-stream instead of zlib-stream when zstandard is importable
    import zstandard
except ImportError:  # pragma: no cover - depends on the environment
    zstandard = None

BOT_ID = 900000000000000001
APP_ID = 900000000000000002
GUILD_ID = 800000000000000001
CHANNEL_ID = 800000000000000010
TOKEN = "discord-test-token"
_TS = "2026-11-23T12:00:00.000000+00:00"


def user(uid: int, name: str, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(uid),
        "username": name,
        "global_name": name,
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
    }


def member(u: dict[str, Any]) -> dict[str, Any]:
    return {
        "user": u,
        "roles": [],
        "joined_at": _TS,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "permissions": "2147483647",
    }


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    query: dict[str, str]
    at: float = field(default_factory=time.monotonic)  # when it came in
    duplicate: bool = False  # a message whose enforced nonce was seen: no new message made


@dataclass
class _Session:
    id: str
    seq: int = 0
    events: list[tuple[int, str, Any]] = field(default_factory=list)
    live: bool = True  # False once a RESUME of it was refused: it gets no more events


class _Conn:
    """One gateway connection: ONE compression stream for its whole life, flushed per message."""

    def __init__(self, ws: web.WebSocketResponse, compress: str) -> None:
        self.ws = ws
        self.compress = compress
        if compress == "zstd-stream":
            self.zstd = zstandard.ZstdCompressor().compressobj()
        else:
            self.zlib = zlib.compressobj()
        self.session: _Session | None = None
        self.lock = asyncio.Lock()

    async def send(self, payload: dict[str, Any]) -> None:
        async with self.lock:
            raw = json.dumps(payload).encode()
            if self.compress == "zstd-stream":
                data = self.zstd.compress(raw) + self.zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            else:
                data = self.zlib.compress(raw) + self.zlib.flush(zlib.Z_SYNC_FLUSH)
            await self.ws.send_bytes(data)


class FakeDiscord:
    def __init__(self, *, guilds: int = 1, members: int = 0, channels: int = 1) -> None:
        self.requests: list[Recorded] = []
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.command_writes = 0
        self.failures: list[tuple[str, str, int, dict[str, str], Any]] = []
        self.heartbeat_interval_ms = 300
        self.ack_heartbeats = True
        self.close_after_identify: int | None = None
        self.resumable = True
        self.acknowledged: set[str] = set()
        self.callback_types: dict[str, Any] = {}  # interaction id -> callback type
        self.originals: dict[str, str] = {}  # interaction token -> its response message id
        self.dm_channels: dict[str, str] = {}  # recipient id -> DM channel id
        self.topics: dict[str, str] = {}  # channel id -> topic set by Modify Channel
        self.refuse_gateway = 0  # refuse this many websocket handshakes (an outage)
        self.identifies = 0
        self.resumes = 0
        self.heartbeats = 0
        self.connections = 0
        self.guild_count, self.member_count, self.channel_count = guilds, members, channels
        self._sessions: dict[str, _Session] = {}
        self._conn: _Conn | None = None  # the newest open connection
        self.conns: list[_Conn] = []  # every open connection, oldest first
        self._tokens: dict[str, str] = {}  # interaction token -> interaction id
        self._nonces: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, nonce) -> message
        self._ids = itertools.count(700000000000000001)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.connected = asyncio.Event()
        self.ready_sent = asyncio.Event()
        self.posted = asyncio.Queue[Recorded]()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for conn in list(self.conns):
            await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def snowflake(self) -> str:
        return str(next(self._ids))

    # -- REST ------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_part: str,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `method` request whose path contains `path_part` gets this answer."""
        self.failures.append((method, path_part, status, headers or {}, body))

    @staticmethod
    def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        # discord.py checks the content type exactly: no "; charset=utf-8"
        return web.Response(
            body=json.dumps(data).encode(),
            status=status,
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        raw = await request.read()
        body = json.loads(raw) if raw and request.content_type == "application/json" else None
        rec = Recorded(request.method, path, dict(request.headers), body, dict(request.query))
        self.requests.append(rec)
        for i, (method, part, status, headers, fbody) in enumerate(self.failures):
            if method == request.method and part in path:
                del self.failures[i]
                return self._json(fbody, status, headers)
        auth = request.headers.get("Authorization")
        is_webhook = path.startswith(("/webhooks/", "/interactions/"))
        if not is_webhook and auth != f"Bot {TOKEN}":
            return self._json({"message": "401: Unauthorized", "code": 0}, 401)
        return await self._route(request.method, path, rec)

    async def _route(self, method: str, path: str, rec: Recorded) -> web.Response:
        parts = path.strip("/").split("/")
        if path == "/users/@me":
            return self._json(user(BOT_ID, "chatopsd", bot=True))
        if path == "/users/@me/channels" and method == "POST":
            # Create DM: {"recipient_id"} -> a DM channel (type 1), the same one each time
            recipient = str((rec.body or {}).get("recipient_id") or "")
            if not recipient.isdigit():
                return self._json({"message": "Invalid Form Body", "code": 50035}, 400)
            cid = self.dm_channels.setdefault(recipient, self.snowflake())
            return self._json(
                {
                    "id": cid,
                    "type": 1,
                    "last_message_id": None,
                    "flags": 0,
                    "recipients": [user(int(recipient), "someone")],
                }
            )
        if path == "/oauth2/applications/@me":
            return self._json(
                {
                    "id": str(APP_ID),
                    "name": "chatopsd",
                    "icon": None,
                    "description": "",
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "owner": user(1, "owner"),
                    "verify_key": "00",
                    "flags": 0,
                }
            )
        if parts[0] == "applications" and parts[-1] == "commands":
            scope = parts[3] if len(parts) == 5 else "global"
            if method == "GET":
                return self._json(self.commands.get(scope, []))
            if method == "PUT":
                self.command_writes += 1
                self.commands[scope] = [
                    {**c, "id": self.snowflake(), "application_id": str(APP_ID), "version": "1"}
                    for c in rec.body
                ]
                return self._json(self.commands[scope])
        if parts[0] == "channels" and parts[-1] == "messages" and method == "POST":
            nonce = (rec.body or {}).get("nonce")
            if nonce is not None and (not isinstance(nonce, (str, int)) or len(str(nonce)) > 25):
                return self._json({"message": "Invalid Form Body", "code": 50035}, 400)
            if nonce is not None and (rec.body or {}).get("enforce_nonce"):
                # Discord returns the message made with this nonce (a few minutes back)
                # instead of making a second one
                first = self._nonces.get((parts[1], str(nonce)))
                if first is not None:
                    rec.duplicate = True
                    return self._json(first)
            message = self._message(parts[1], rec.body)
            if nonce is not None:
                message["nonce"] = nonce
                self._nonces[parts[1], str(nonce)] = message
            await self.posted.put(rec)
            return self._json(message)
        if parts[0] == "channels" and len(parts) == 2 and method == "PATCH":
            # Modify Channel: a guild text channel's topic is 0-1024 characters
            topic = (rec.body or {}).get("topic")
            if not isinstance(topic, str) or len(topic) > 1024:
                return self._json({"message": "Invalid Form Body", "code": 50035}, 400)
            self.topics[parts[1]] = topic
            return self._json(
                {
                    "id": parts[1],
                    "type": 0,
                    "guild_id": str(GUILD_ID),
                    "name": "incidents",
                    "position": 0,
                    "permission_overwrites": [],
                    "nsfw": False,
                    "parent_id": None,
                    "topic": topic,
                    "last_message_id": None,
                    "rate_limit_per_user": 0,
                    "flags": 0,
                }
            )
        if parts[0] == "channels" and method == "PATCH":
            await self.posted.put(rec)
            return self._json(self._message(parts[1], rec.body, parts[3]))
        if parts[0] == "interactions" and parts[-1] == "callback":
            if parts[1] in self.acknowledged:
                return self._json(
                    {"message": "Interaction has already been acknowledged.", "code": 40060}, 400
                )
            self.acknowledged.add(parts[1])
            self.callback_types[parts[1]] = rec.body.get("type")
            await self.posted.put(rec)
            kind = rec.body.get("type")
            return self._json(
                {
                    "interaction": {
                        "id": parts[1],
                        "type": 2,
                        "response_message_loading": kind == 5,
                        "response_message_ephemeral": False,
                    }
                }
            )
        if parts[0] == "webhooks":
            token = parts[2] if len(parts) > 2 else ""
            interaction = self._tokens.get(token)
            if interaction is not None and interaction not in self.acknowledged:
                # a follow-up before any callback: the interaction's webhook does not exist yet
                return self._json({"message": "Unknown Webhook", "code": 10015}, 404)
            await self.posted.put(rec)
            if parts[-1] == "@original" and method == "PATCH":
                # the deferred response itself: one message per interaction, edited
                if interaction is None or self.callback_types.get(interaction) != 5:
                    return self._json({"message": "Unknown Message", "code": 10008}, 404)
                original = self.originals.setdefault(token, self.snowflake())
                return self._json(self._message(str(CHANNEL_ID), rec.body, original))
            return self._json(self._message(str(CHANNEL_ID), rec.body))
        return self._json({"message": "404: Not Found", "code": 0}, 404)

    def _message(self, channel: str, body: Any, mid: str | None = None) -> dict[str, Any]:
        return {
            "id": mid or self.snowflake(),
            "channel_id": channel,
            "author": user(BOT_ID, "chatopsd", bot=True),
            "content": (body or {}).get("content", ""),
            "timestamp": _TS,
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": (body or {}).get("embeds", []),
            "components": (body or {}).get("components", []),
            "pinned": False,
            "type": 0,
            "flags": (body or {}).get("flags", 0),
        }

    async def next_post(self, timeout: float = 5.0) -> Recorded:
        return await asyncio.wait_for(self.posted.get(), timeout)

    # -- gateway ---------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_gateway > 0:
            self.refuse_gateway -= 1
            return web.Response(status=503, text="upstream unavailable")
        compress = request.query.get("compress")
        expected = "zstd-stream" if zstandard is not None else "zlib-stream"
        assert compress == expected, request.query
        assert request.query.get("v") == "10"
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, compress)
        self._conn = conn
        self.conns.append(conn)
        self.connections += 1
        self.connected.set()
        try:
            await conn.send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT and msg.type is not WSMsgType.BINARY:
                    break
                payload = json.loads(msg.data)
                await self._on_op(conn, payload)
        finally:
            self._forget(conn)
        return ws

    def _forget(self, conn: _Conn) -> None:
        if conn in self.conns:
            self.conns.remove(conn)
        if self._conn is conn:
            self._conn = self.conns[-1] if self.conns else None

    async def _on_op(self, conn: _Conn, payload: dict[str, Any]) -> None:
        op, d = payload.get("op"), payload.get("d")
        if op == 1:
            self.heartbeats += 1
            if self.ack_heartbeats:
                await conn.send({"op": 11})
        elif op == 2:
            self.identifies += 1
            if d.get("token") != TOKEN:
                await conn.ws.close(code=4004, message=b"Authentication failed.")
                return
            if self.close_after_identify is not None:
                await conn.ws.close(code=self.close_after_identify, message=b"closed")
                return
            session = _Session(id=f"session-{self.identifies}")
            self._sessions[session.id] = session
            conn.session = session
            await self._ready(conn, session)
        elif op == 6:
            session = self._sessions.get(d.get("session_id", ""))
            if session is None or not self.resumable or d.get("token") != TOKEN:
                if session is not None:
                    session.live = False  # invalid: the client identifies a new one
                await conn.send({"op": 9, "d": False})
                return
            self.resumes += 1
            conn.session = session
            for seq, t, data in session.events:
                if seq > (d.get("seq") or 0):
                    await conn.send({"op": 0, "s": seq, "t": t, "d": data})
            session.seq += 1
            await conn.send({"op": 0, "s": session.seq, "t": "RESUMED", "d": {}})

    async def _ready(self, conn: _Conn, session: _Session) -> None:
        guild_ids = [GUILD_ID + i for i in range(self.guild_count)]
        ready = {
            "v": 10,
            "user": user(BOT_ID, "chatopsd", bot=True),
            "guilds": [{"id": str(g), "unavailable": True} for g in guild_ids],
            "session_id": session.id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(APP_ID), "flags": 0},
        }
        await self._send_event(conn, session, "READY", ready)
        for g in guild_ids:
            await self._send_event(conn, session, "GUILD_CREATE", self.guild(g))
        self.ready_sent.set()

    def guild(self, gid: int) -> dict[str, Any]:
        channels = [
            {
                "id": str(CHANNEL_ID + i),
                "type": 0,
                "name": f"channel-{i}",
                "position": i,
                "permission_overwrites": [],
                "guild_id": str(gid),
            }
            for i in range(self.channel_count)
        ]
        members = [member(user(BOT_ID, "chatopsd", bot=True))]
        members += [member(user(100000 + i, f"user{i}")) for i in range(self.member_count)]
        return {
            "id": str(gid),
            "name": f"guild {gid}",
            "icon": None,
            "owner_id": "1",
            "roles": [
                {
                    "id": str(gid),
                    "name": "@everyone",
                    "permissions": "0",
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "features": [],
            "member_count": len(members),
            "members": members,
            "channels": channels,
            "threads": [],
            "voice_states": [],
            "presences": [],
            "large": len(members) > 250,
            "unavailable": False,
            "joined_at": _TS,
        }

    async def _send_event(self, conn: _Conn | None, session: _Session, t: str, d: Any) -> None:
        session.seq += 1
        if t not in ("READY", "RESUMED"):
            session.events.append((session.seq, t, d))
        if conn is not None and not conn.ws.closed:
            try:
                await conn.send({"op": 0, "s": session.seq, "t": t, "d": d})
            except ConnectionError:  # its instance just died; the event waits for a RESUME
                self._forget(conn)

    async def dispatch(self, t: str, d: Any) -> None:
        """Send an event to every live session of the bot (one per instance), each on its
        open connection, or buffered for its next RESUME."""
        for session in [s for s in self._sessions.values() if s.live]:
            conn = next((c for c in reversed(self.conns) if c.session is session), None)
            await self._send_event(conn, session, t, d)

    def ready_sessions(self) -> int:
        """Open connections whose session got READY (each instance that can receive events)."""
        return sum(1 for c in self.conns if c.session is not None and not c.ws.closed)

    async def send_raw(self, payload: dict[str, Any]) -> None:
        assert self._conn is not None
        await self._conn.send(payload)

    async def send_op(self, op: int, d: Any = None) -> None:
        await self.send_raw({"op": op, "d": d})

    async def drop(self) -> None:
        """Abrupt TCP drop: no close frame."""
        conn = self._conn
        assert conn is not None
        self._forget(conn)
        transport = conn.ws._req.transport if conn.ws._req is not None else None  # type: ignore[union-attr]
        if transport is not None:
            transport.abort()

    async def close_socket(self, code: int) -> None:
        conn = self._conn
        assert conn is not None
        await conn.ws.close(code=code)

    # -- event builders --------------------------------------------------------------------

    def message(
        self, content: str, *, author_id: int = 42, name: str = "alice", bot: bool = False
    ) -> dict[str, Any]:
        author = user(author_id, name, bot=bot)
        mentions = [user(BOT_ID, "chatopsd", bot=True)] if f"<@{BOT_ID}>" in content else []
        return {
            "id": self.snowflake(),
            "channel_id": str(CHANNEL_ID),
            "guild_id": str(GUILD_ID),
            "author": author,
            "member": {k: v for k, v in member(author).items() if k != "user"},
            "content": content,
            "timestamp": _TS,
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions,
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
        }

    def interaction(
        self, kind: int, data: dict[str, Any], *, user_id: int = 42, name: str = "alice"
    ) -> dict[str, Any]:
        interaction_id, token = self.snowflake(), f"interaction-token-{self.snowflake()}"
        self._tokens[token] = interaction_id
        return {
            "id": interaction_id,
            "application_id": str(APP_ID),
            "type": kind,
            "token": token,
            "version": 1,
            "data": data,
            "guild_id": str(GUILD_ID),
            "channel_id": str(CHANNEL_ID),
            "member": member(user(user_id, name)),
            "app_permissions": "2147483647",
            "attachment_size_limit": 10485760,
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(GUILD_ID)},
            "context": 0,
        }

    def slash(self, name: str, args: str | None = None) -> dict[str, Any]:
        options = [] if args is None else [{"name": "args", "type": 3, "value": args}]
        return self.interaction(
            2, {"id": self.snowflake(), "name": name, "type": 1, "options": options}
        )

    def click(self, custom_id: str, message_id: str = "1") -> dict[str, Any]:
        return self.interaction(3, {"custom_id": custom_id, "component_type": 2})

    def reaction(self, emoji: str, message_id: str, *, user_id: int = 42) -> dict[str, Any]:
        return {
            "user_id": str(user_id),
            "channel_id": str(CHANNEL_ID),
            "message_id": message_id,
            "guild_id": str(GUILD_ID),
            "emoji": {"id": None, "name": emoji},
            "member": member(user(user_id, "alice")),
            "burst": False,
            "type": 0,
        }
