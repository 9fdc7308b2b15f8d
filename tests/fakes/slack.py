"""A protocol-level fake Slack: Web API + Socket Mode websocket on 127.0.0.1, port 0.

The REAL slack-sdk talks to it. It behaves like Slack where it matters to us:
  * apps.connections.open wants the xapp- token, every other method the xoxb- token
    (anything else gets {"ok": false, "error": "invalid_auth"});
  * the websocket says `hello`, sends envelopes, and keeps every envelope that was not acked;
    a new connection gets them again with retry_attempt + 1 (Slack redelivers unacked events);
  * several connections of one app (Slack allows up to 10, each `apps.connections.open` hands
    out a new URL) share the envelopes: each goes to ONE open connection, round-robin. One not
    acked within `ack_timeout` (3 s on Slack), or whose connection closed before its ack, goes
    again to another open connection with `retry_attempt` + 1 and a `retry_reason` (events_api
    envelopes; an unacked slash command or click is not retried, as on Slack: it is kept in
    `expired`). `deliveries` records (envelope_id, connection number, retry_attempt);
  * every ack received is checked (a known envelope id; a response payload only where the
    envelope accepts one); what breaks that lands in `violations`;
  * failures are scripted per method (`fail`), or injected on the socket (`drop`, `go_half_open`,
    `disconnect`);
  * conversations.create / setTopic / invite keep `channels` (name, topic, members), pins.add
    keeps `pins`; `refuse_create` makes creation fail with that error (restricted_action,
    missing_scope, ...), `taken` holds names someone else already has;
  * conversations.open gives one DM channel id per user (kept in `dms`);
    conversations.history / conversations.replies list the channel's messages (the users' sent
    through `event`, the bot's posts with their blocks) after `oldest`; a ts is epoch time;
    usergroups.users.update replaces the members of a group in `usergroups` (known ids only);
    users.info and users.lookupByEmail answer from `USERS` (users.info fails for the ids in
    `user_failures`).
`timeline` records ("ack", envelope_id) and ("api", method) in the order they happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from tests.waiting import eventually

BOT_TOKEN = "xoxb-test-bot"
APP_TOKEN = "xapp-test-app"
BOT_USER = "UBOT"
BOT_ID = "BBOT"

USERS: dict[str, dict[str, Any]] = {
    "U1": {
        "id": "U1",
        "name": "jane",
        "real_name": "Jane Doe",
        "is_bot": False,
        "profile": {
            "display_name": "Jane Doe",
            "real_name": "Jane Doe",
            "email": "Jane@Example.com",
        },
    },
    "U2": {
        "id": "U2",
        "name": "bob",
        "is_bot": False,
        "profile": {"display_name": "", "real_name": "Bob Roe", "email": "bob@example.com"},
    },
    # an id of Slack's real length (the published schemas want 3+ characters)
    "U0CAROL": {
        "id": "U0CAROL",
        "name": "carol",
        "is_bot": False,
        "profile": {
            "display_name": "carol",
            "real_name": "Carol Poe",
            "email": "carol@example.com",
        },
    },
}


@dataclass
class _Socket:
    """One Socket Mode connection: its number (the ticket in its URL) and its websocket."""

    n: int
    ws: web.WebSocketResponse
    request: web.Request


@dataclass
class _InFlight:
    """An envelope not acked yet: where it went last and when (None: waits for a socket)."""

    on: int | None
    at: float


class FakeSlack:
    def __init__(
        self,
        bot_token: str = BOT_TOKEN,
        app_token: str = APP_TOKEN,
        *,
        ack_timeout: float = 3.0,
    ) -> None:
        self.bot_token, self.app_token = bot_token, app_token
        self.calls: list[tuple[str, dict[str, Any], float]] = []
        self.timeline: list[tuple[str, str]] = []
        # the client ends (address, port) Web API calls came from: one per TCP connection
        self.api_peers: set[Any] = set()
        self.acks: dict[str, dict[str, Any]] = {}
        self.ack_times: dict[str, float] = {}
        self.sent_times: dict[str, float] = {}
        self.pending: dict[str, dict[str, Any]] = {}
        self.scripted: dict[str, list[tuple[int, dict[str, Any], dict[str, str]]]] = {}
        self.delay: dict[str, float] = {}
        self.connections = 0
        self.ws_url: str | None = None  # what apps.connections.open hands out, if not ours
        self.active: web.WebSocketResponse | None = None  # the newest open connection
        self.ack_timeout = ack_timeout  # Slack's window before it redelivers elsewhere
        self.deliveries: list[tuple[str, int, int]] = []  # (envelope_id, connection, attempt)
        self.expired: list[str] = []  # unacked envelopes Slack does not retry
        self.violations: list[str] = []  # acks that break the protocol
        self.acked_on: dict[str, int] = {}  # envelope_id -> the connection its ack came on
        self._open: list[_Socket] = []  # connections envelopes may go to, oldest first
        self._in_flight: dict[str, _InFlight] = {}
        self._turn = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._muted: set[int] = set()
        self._ids = itertools.count(1)
        self._last_ts = 0.0
        self.history: dict[str, list[dict[str, Any]]] = {}  # channel -> messages, oldest first
        self._history_ts: dict[str, set[str]] = {}  # channel -> the ts of the users' messages
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.channels: dict[str, dict[str, Any]] = {}
        self.pins: dict[str, list[str]] = {}  # channel -> pinned ts
        self.posted: dict[str, dict[str, Any]] = {}  # ts -> chat.postMessage arguments
        self.taken: set[str] = set()
        self.refuse_create: str | None = None
        self.refuse_pin: str | None = None
        self._channel_ids = itertools.count(1)
        self.dms: dict[str, str] = {}  # DM channel id -> user (conversations.open)
        self.usergroups: dict[str, list[str]] = {}  # usergroup id -> members
        self.user_failures: set[str] = set()  # user ids whose users.info answers fatal_error
        self._sent: dict[str, dict[str, Any]] = {}  # every envelope ever sent, by id

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link", self._ws)
        app.router.add_post("/commands/{n}", self._response_url)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._sweeper = asyncio.get_running_loop().create_task(
            self._sweep(), name="fake-slack:ack-timeouts"
        )

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    # -- scripting -------------------------------------------------------------------------

    def fail(
        self, method: str, status: int, error: str, headers: dict[str, str] | None = None
    ) -> None:
        """The next call of `method` answers `status` with {"ok": false, "error": error}."""
        self.scripted.setdefault(method, []).append(
            (status, {"ok": False, "error": error}, headers or {})
        )

    def posts(self, method: str = "chat.postMessage") -> list[dict[str, Any]]:
        return [args for m, args, _ in self.calls if m == method]

    def ts_of(self, post: dict[str, Any]) -> str:
        """The ts chat.postMessage answered for one of `posts()`."""
        return next(ts for ts, args in self.posted.items() if args is post)

    def call_times(self, method: str) -> list[float]:
        return [t for m, _, t in self.calls if m == method]

    async def wait_for(self, cond: Callable[[], bool], timeout: float = 5.0) -> None:
        """tests/waiting.eventually, naming the calls the fake saw when it gives up."""
        await eventually(cond, timeout=timeout, what=lambda: f"calls={[c[0] for c in self.calls]}")

    # -- web API ---------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        self.calls.append((method, args, time.monotonic()))
        self.timeline.append(("api", method))
        self.api_peers.add(
            request.transport.get_extra_info("peername") if request.transport else None
        )
        if delay := self.delay.get(method):
            await asyncio.sleep(delay)
        if self.scripted.get(method):
            status, body, headers = self.scripted[method].pop(0)
            return web.json_response(body, status=status, headers=headers)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        want = self.app_token if method == "apps.connections.open" else self.bot_token
        if not token:
            return web.json_response({"ok": False, "error": "not_authed"})
        if token != want:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        result: dict[str, Any] = handler(args)
        return web.json_response(result)

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake.slack.com/",
            "team": "Fake",
            "user": "chatopsd",
            "team_id": "T1",
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _m_apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        url = self.ws_url or f"ws://127.0.0.1:{self.port}/link?ticket={next(self._ids)}"
        return {"ok": True, "url": url}

    def _next_ts(self) -> str:
        # Slack's ts is the epoch time of the message (what conversations.history's `oldest`
        # compares with), unique per channel
        self._last_ts = max(self._last_ts + 1e-6, time.time())
        return f"{self._last_ts:.6f}"

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel") or not (args.get("text") or args.get("blocks")):
            return {"ok": False, "error": "no_text"}
        ts = self._next_ts()
        self.posted[ts] = args
        message = {"type": "message", "text": args.get("text"), "user": BOT_USER, "ts": ts}
        blocks = args.get("blocks")
        stored = {**message, "bot_id": BOT_ID}
        if blocks:
            stored["blocks"] = json.loads(blocks) if isinstance(blocks, str) else blocks
        if args.get("thread_ts"):
            stored["thread_ts"] = str(args["thread_ts"])
        self.history.setdefault(str(args["channel"]), []).append(stored)
        return {"ok": True, "channel": args["channel"], "ts": ts, "message": message}

    def _m_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        """A channel's messages (not thread replies), newest first, after `oldest`."""
        channel = str(args.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        oldest, limit = float(args.get("oldest") or 0), int(args.get("limit") or 100)
        found = [
            m
            for m in self.history.get(channel, [])
            if float(m["ts"]) > oldest and m.get("thread_ts", m["ts"]) == m["ts"]
        ]
        found.reverse()
        return {"ok": True, "messages": found[:limit], "has_more": len(found) > limit}

    def _m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        """A thread: its parent, then its replies after `oldest`, oldest first."""
        channel, parent = str(args.get("channel") or ""), str(args.get("ts") or "")
        messages = self.history.get(channel, [])
        if not any(m["ts"] == parent for m in messages):
            return {"ok": False, "error": "thread_not_found"}
        oldest, limit = float(args.get("oldest") or 0), int(args.get("limit") or 100)
        found = [
            m
            for m in messages
            if m["ts"] == parent or (m.get("thread_ts") == parent and float(m["ts"]) > oldest)
        ]
        return {"ok": True, "messages": found[:limit], "has_more": len(found) > limit}

    def _m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("user"):
            return {"ok": False, "error": "user_not_in_channel"}
        return {"ok": True, "message_ts": self._next_ts()}

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("ts"):
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": args["channel"], "ts": args["ts"], "text": args.get("text")}

    # conversations.* and pins.add: shapes from shared/specs/slack/web-api-openapi-v2.json

    def _m_conversations_create(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.refuse_create:
            error: dict[str, Any] = {"ok": False, "error": self.refuse_create}
            if self.refuse_create == "missing_scope":
                error.update(needed="channels:manage", provided="chat:write,commands")
            return error
        name = str(args.get("name") or "")
        if not name:
            return {"ok": False, "error": "invalid_name_required"}
        if len(name) > 80:
            return {"ok": False, "error": "invalid_name_maxlength"}
        if not re.fullmatch(r"[a-z0-9_-]+", name):
            return {"ok": False, "error": "invalid_name_specials"}
        if name in self.taken or any(c["name"] == name for c in self.channels.values()):
            return {"ok": False, "error": "name_taken"}
        channel_id = f"CINC{next(self._channel_ids):04d}"
        self.channels[channel_id] = {
            "id": channel_id,
            "name": name,
            "is_private": str(args.get("is_private")).lower() == "true",
            "topic": "",
            "members": [BOT_USER],  # the creator is a member
        }
        return {"ok": True, "channel": self._conversation(channel_id)}

    def _conversation(self, channel_id: str) -> dict[str, Any]:
        c = self.channels[channel_id]
        topic = {"value": c["topic"], "creator": BOT_USER if c["topic"] else "", "last_set": 0}
        return {
            "id": channel_id,
            "name": c["name"],
            "name_normalized": c["name"],
            "is_channel": not c["is_private"],
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": c["is_private"],
            "is_archived": False,
            "is_general": False,
            "is_shared": False,
            "is_org_shared": False,
            "is_ext_shared": False,
            "is_pending_ext_shared": False,
            "is_member": True,
            "created": 1700000000,
            "creator": BOT_USER,
            "unlinked": 0,
            "topic": topic,
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [],
            "num_members": len(c["members"]),
        }

    def _m_conversations_setTopic(self, args: dict[str, Any]) -> dict[str, Any]:
        channel_id = str(args.get("channel") or "")
        if channel_id not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        topic = str(args.get("topic") or "")
        if len(topic) > 250:
            return {"ok": False, "error": "too_long"}
        self.channels[channel_id]["topic"] = topic
        return {"ok": True, "channel": self._conversation(channel_id)}

    def _m_conversations_invite(self, args: dict[str, Any]) -> dict[str, Any]:
        channel_id = str(args.get("channel") or "")
        if channel_id not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if not users:
            return {"ok": False, "error": "no_user"}
        members: list[str] = self.channels[channel_id]["members"]
        errors = []
        for user in users:
            if user == BOT_USER:
                errors.append({"ok": False, "error": "cant_invite_self", "user": user})
            elif user not in USERS:
                errors.append({"ok": False, "error": "user_not_found", "user": user})
            elif user in members:
                errors.append({"ok": False, "error": "already_in_channel", "user": user})
        if errors:
            return {"ok": False, "error": errors[0]["error"], "errors": errors}
        members.extend(users)
        return {"ok": True, "channel": self._conversation(channel_id)}

    def _m_pins_add(self, args: dict[str, Any]) -> dict[str, Any]:
        channel_id, ts = str(args.get("channel") or ""), str(args.get("timestamp") or "")
        if self.refuse_pin:
            return {"ok": False, "error": self.refuse_pin}
        if not channel_id:
            return {"ok": False, "error": "channel_not_found"}
        if not ts:
            return {"ok": False, "error": "no_item_specified"}
        if ts not in self.posted or self.posted[ts]["channel"] != channel_id:
            return {"ok": False, "error": "message_not_found"}
        pins = self.pins.setdefault(channel_id, [])
        if ts in pins:
            return {"ok": False, "error": "already_pinned"}
        pins.append(ts)
        return {"ok": True}

    def _m_conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        """A DM with one user; the same id every time, as Slack does."""
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if not users:
            return {"ok": False, "error": "users_list_not_supplied"}
        if len(users) > 1:
            return {"ok": False, "error": "method_not_supported_for_channel_type"}
        if users[0] not in USERS:
            return {"ok": False, "error": "user_not_found"}
        dm = "D" + users[0][1:].rjust(8, "0")
        self.dms[dm] = users[0]
        channel = {"id": dm, "created": "1700000000", "is_im": True, "is_open": True}
        return {"ok": True, "channel": {**channel, "user": users[0]}}

    def _m_usergroups_users_update(self, args: dict[str, Any]) -> dict[str, Any]:
        group = str(args.get("usergroup") or "")
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if group not in self.usergroups:
            return {"ok": False, "error": "no_permission"}  # Slack's answer for a foreign id
        if not users or any(u not in USERS for u in users):
            return {"ok": False, "error": "invalid_arg_name"}
        self.usergroups[group] = users
        subteam = {
            "id": group,
            "team_id": "T01",
            "is_usergroup": True,
            "is_subteam": True,
            "name": "IC on call",
            "description": "",
            "handle": "ic-oncall",
            "is_external": False,
            "date_create": 1700000000,
            "date_update": 1700000001,
            "date_delete": 0,
            "auto_type": None,
            "auto_provision": False,
            "enterprise_subteam_id": "",
            "created_by": "U0CAROL",
            "updated_by": "U0CAROL",
            "deleted_by": None,
            "prefs": {"channels": [], "groups": []},
            "users": users,
            "user_count": len(users),
        }
        return {"ok": True, "usergroup": subteam}

    def _m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        if str(args.get("user")) in self.user_failures:
            return {"ok": False, "error": "fatal_error"}
        user = USERS.get(str(args.get("user")))
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    def _m_users_lookupByEmail(self, args: dict[str, Any]) -> dict[str, Any]:
        """users.lookupByEmail (web-api-openapi-v2.json): `email` is required; an address no
        member has is `users_not_found`."""
        email = str(args.get("email") or "").lower()
        if not email:
            return {"ok": False, "error": "invalid_arg_name"}
        for user in USERS.values():
            if str(user.get("profile", {}).get("email", "")).lower() == email:
                return {"ok": True, "user": user}
        return {"ok": False, "error": "users_not_found"}

    async def _response_url(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.calls.append(("response_url", body, time.monotonic()))
        self.timeline.append(("api", "response_url"))
        return web.Response(text="ok", content_type="text/html")

    # -- socket mode -----------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False)  # pongs are ours to give (or withhold)
        await ws.prepare(request)
        self.connections += 1
        sock = _Socket(int(request.query.get("ticket") or 0) or -self.connections, ws, request)
        self._open.append(sock)
        self.active = ws
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._open),
                "debug_info": {"host": "fake-slack", "approximate_connection_time": 18060},
                "connection_info": {"app_id": "A1"},
            }
        )
        for envelope_id, flight in list(self._in_flight.items()):
            if flight.on is None:  # Slack redelivers what was not acked
                await self._deliver(self.pending[envelope_id], sock, retry="timeout")
        try:
            async for msg in ws:
                if id(ws) in self._muted:
                    continue  # half-open: nothing gets through, not even pings
                if msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    self._on_ack(json.loads(msg.data), sock.n)
        finally:
            self._forget(sock)
            # what it was given and never acked goes to another connection now
            for envelope_id, flight in list(self._in_flight.items()):
                if flight.on == sock.n:
                    flight.on = None
                    await self._redeliver(envelope_id, "connection_failed")
        return ws

    def _forget(self, sock: _Socket) -> None:
        """No more envelopes go to this connection."""
        if sock in self._open:
            self._open.remove(sock)
        if self.active is sock.ws:
            self.active = self._open[-1].ws if self._open else None

    def _socket_of(self, ws: web.WebSocketResponse | None) -> _Socket:
        found = next((s for s in self._open if s.ws is ws), None)
        assert found is not None, "no socket connected"
        return found

    def _on_ack(self, data: Any, connection: int) -> None:
        envelope_id = str(data.get("envelope_id")) if isinstance(data, dict) else "None"
        envelope = self.pending.get(envelope_id)
        if envelope_id not in self.sent_times:
            self.violations.append(f"ack of an unknown envelope: {str(data)[:200]}")
        elif "payload" in data and not self.sent_envelope(envelope_id)["accepts_response_payload"]:
            self.violations.append(f"response payload on envelope {envelope_id}")
        if envelope is None and envelope_id in self.acks:
            return  # a late second ack (its redelivery was acked first): Slack ignores it
        self.acks[envelope_id] = data
        self.acked_on[envelope_id] = connection
        self.ack_times[envelope_id] = time.monotonic()
        self.timeline.append(("ack", envelope_id))
        self.pending.pop(envelope_id, None)
        self._in_flight.pop(envelope_id, None)

    def sent_envelope(self, envelope_id: str) -> dict[str, Any]:
        return self._sent[envelope_id]

    async def _deliver(
        self, envelope: dict[str, Any], sock: _Socket | None, retry: str = ""
    ) -> None:
        envelope_id = envelope["envelope_id"]
        if retry and "retry_attempt" in envelope:
            envelope["retry_attempt"] += 1
            envelope["retry_reason"] = retry
        if sock is None or sock.ws.closed:
            self._in_flight[envelope_id] = _InFlight(None, time.monotonic())
            return
        self._in_flight[envelope_id] = _InFlight(sock.n, time.monotonic())
        try:
            await sock.ws.send_json(envelope)
        except ConnectionError:
            # That connection is going away (its process died, say): another one gets it,
            # or it waits for the next to open.
            self._forget(sock)
            await self._deliver(envelope, self._next_socket())
            return
        self.deliveries.append((envelope_id, sock.n, int(envelope.get("retry_attempt") or 0)))

    def _next_socket(self, avoid: int | None = None) -> _Socket | None:
        """Round-robin over the open connections (not `avoid`, the one that failed)."""
        choices = [s for s in self._open if s.n != avoid and not s.ws.closed]
        if not choices:
            return None
        self._turn += 1
        return choices[self._turn % len(choices)]

    async def _redeliver(self, envelope_id: str, reason: str, avoid: int | None = None) -> None:
        envelope = self.pending[envelope_id]
        if envelope["type"] != "events_api" and reason == "timeout":
            # an unanswered slash command or click is an error for the user, never retried
            self.pending.pop(envelope_id)
            self._in_flight.pop(envelope_id)
            self.expired.append(envelope_id)
            return
        await self._deliver(envelope, self._next_socket(avoid), retry=reason)

    async def _sweep(self) -> None:
        """Envelopes not acked within ack_timeout go to another open connection."""
        while True:
            await asyncio.sleep(min(0.05, self.ack_timeout / 4))
            now = time.monotonic()
            for envelope_id, flight in list(self._in_flight.items()):
                if flight.on is None or now - flight.at < self.ack_timeout:
                    continue
                if not any(s.n != flight.on for s in self._open) and (
                    self.pending[envelope_id]["type"] == "events_api"
                ):
                    continue  # no other connection: it waits for one (or for its ack)
                await self._redeliver(envelope_id, "timeout", avoid=flight.on)

    async def send_raw(self, text: str) -> None:
        assert self.active is not None, "no socket connected"
        await self.active.send_str(text)

    async def send_envelope(
        self,
        kind: str,
        payload: Any,
        *,
        envelope_id: str | None = None,
        retry_attempt: int | None = None,
    ) -> str:
        envelope_id = envelope_id or f"env-{next(self._ids)}"
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
        }
        if kind == "events_api":
            envelope["retry_attempt"] = retry_attempt or 0
            envelope["retry_reason"] = "timeout" if retry_attempt else ""
        self.pending[envelope_id] = envelope
        self._sent[envelope_id] = envelope
        self.sent_times[envelope_id] = time.monotonic()
        await self._deliver(envelope, self._next_socket())
        return envelope_id

    async def event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_attempt: int = 0
    ) -> str:
        payload = {
            "token": "verification-token",
            "team_id": "T1",
            "api_app_id": "A1",
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(self._ids):08d}",
            "event_time": 1700000000,
            "authorizations": [{"team_id": "T1", "user_id": BOT_USER, "is_bot": True}],
        }
        if event.get("type") == "message" and event.get("channel") and event.get("ts"):
            # a set of the ts seen: a burst of a thousand events stays linear
            channel, ts = str(event["channel"]), str(event["ts"])
            seen = self._history_ts.setdefault(channel, set())
            if ts not in seen:
                seen.add(ts)
                self.history.setdefault(channel, []).append(
                    {k: event[k] for k in ("type", "user", "text", "ts") if k in event}
                )
        return await self.send_envelope("events_api", payload, retry_attempt=retry_attempt)

    def message(
        self,
        text: str,
        *,
        user: str = "U1",
        channel: str = "C1",
        thread_ts: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": self._next_ts(),
            "event_ts": "1700000000.000001",
            "channel_type": "channel",
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        event.update(extra)
        return event

    async def slash(self, command: str, text: str = "", *, user: str = "U1") -> str:
        n = next(self._ids)
        return await self.send_envelope(
            "slash_commands",
            {
                "token": "verification-token",
                "team_id": "T1",
                "channel_id": "C1",
                "channel_name": "ops",
                "user_id": user,
                "user_name": USERS.get(user, {}).get("name", user),
                "command": command,
                "text": text,
                "api_app_id": "A1",
                "response_url": f"http://127.0.0.1:{self.port}/commands/{n}",
                "trigger_id": f"trigger-{n}",
            },
        )

    async def click(
        self,
        value: str,
        *,
        action_id: str = "chatopsd:0",
        thread_ts: str | None = None,
        user: str = "U1",
    ) -> str:
        n = next(self._ids)
        name = str(USERS.get(user, {}).get("name", user))
        message: dict[str, Any] = {"type": "message", "user": BOT_USER, "ts": "1700000000.000100"}
        if thread_ts:
            message["thread_ts"] = thread_ts
        return await self.send_envelope(
            "interactive",
            {
                "type": "block_actions",
                "user": {"id": user, "username": name, "name": name, "team_id": "T1"},
                "api_app_id": "A1",
                "container": {
                    "type": "message",
                    "message_ts": "1700000000.000100",
                    "channel_id": "C1",
                    "is_ephemeral": False,
                },
                "trigger_id": f"trigger-{n}",
                "team": {"id": "T1", "domain": "fake"},
                "channel": {"id": "C1", "name": "ops"},
                "message": message,
                "response_url": f"https://hooks.slack.invalid/actions/{n}",
                "actions": [
                    {
                        "action_id": action_id,
                        "block_id": "b1",
                        "text": {"type": "plain_text", "text": "Page"},
                        "value": value,
                        "type": "button",
                        "action_ts": "1700000001.000001",
                    }
                ],
            },
        )

    # -- socket failures -------------------------------------------------------------------

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Slack's warning before it closes a socket; new envelopes go to the others (or wait
        for the next socket)."""
        sock = self._socket_of(self.active)
        self._forget(sock)
        await sock.ws.send_json(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-slack"}}
        )

    def drop(self) -> None:
        """Abrupt TCP drop of the newest connection: no close frame, it just goes away."""
        sock = self._socket_of(self.active)
        self._forget(sock)
        transport = sock.request.transport
        assert transport is not None
        transport.abort()

    def go_half_open(self) -> None:
        """The newest socket stays open but nothing arrives any more: no pongs, no acks."""
        sock = self._socket_of(self.active)
        self._forget(sock)
        self._muted.add(id(sock.ws))

    def open_connections(self) -> int:
        """Connections envelopes may go to now."""
        return sum(1 for s in self._open if not s.ws.closed)

    def connection_numbers(self) -> list[int]:
        """The numbers (as in `deliveries`) of the connections envelopes may go to now."""
        return [s.n for s in self._open if not s.ws.closed]
