"""A protocol-level fake Mattermost: REST /api/v4 and the websocket, on 127.0.0.1, port 0.

Shapes follow shared/specs/mattermost (introduction.yaml for the websocket): the client sends
an `authentication_challenge` (seq 1), gets `{"status":"OK","seq_reply":1}` and a `hello` whose
data carries the `connection_id`; events carry a per-connection `seq`, and `posted` events carry
`data.post` as a JSON string. A client reconnecting with a known `connection_id` and
`sequence_number` gets the events it missed replayed (resume); after `forget_connections()` it
gets a new connection id and must catch up over REST.

Channel administration (channels.yaml, posts.yaml): `POST /channels` (201 Channel; 400
`store.sql_channel.save_channel.exists.app_error` for a name in `taken_names` or already made;
403 while `refuse_channels`), `POST /channels/{id}/members` (201 ChannelMember; 403 while
`refuse_invites`), `POST /posts/{id}/pin` (200 StatusOK; 403 while `refuse_pins`), and
`GET /users/username/{name}`. Users (`GET /users/{id}`, `GET /users/email/{email}`) carry the
address in `emails` and `email_verified` true for the ids in `verified` (`user_failures`: ids
whose lookup answers 500). `admin_failures`
answers the next admin calls (create, member, pin) with the given (status, headers);
`pin_failures` the next pins. Created channels show
in `GET /users/me/channels`, the bot a member. `POST /channels/direct` (201 Channel of type
"D"; 400 unless two user ids including the caller's, 404 for an unknown user) and
`PUT /channels/{id}/patch` (the header kept true; recorded in `channel_patches`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

TOKEN = "mm-test-token"
BOT: dict[str, Any] = {"id": "botuserid0000000000000000a", "username": "chatopsd", "is_bot": True}
ALICE: dict[str, Any] = {"id": "aliceid00000000000000000aa", "username": "alice", "is_bot": False}
BOB: dict[str, Any] = {"id": "bobid0000000000000000000aa", "username": "bob", "is_bot": False}
TEAM = {"id": "team0000000000000000000000", "name": "ops", "display_name": "Ops"}
CHANNEL = "chan0000000000000000000000"


@dataclass
class Conn:
    id: str
    seq: int = 0
    buffer: list[dict[str, Any]] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    request: web.Request | None = None


class FakeMattermost:
    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.posts: dict[str, dict[str, Any]] = {}
        self.conns: dict[str, Conn] = {}
        self.current: Conn | None = None
        self.requests: list[tuple[str, str]] = []
        self.ws_connects: list[dict[str, str]] = []
        self.post_failures: list[tuple[int, dict[str, str]]] = []  # (status, headers) to answer
        self.since_failures = 0  # answer this many GET .../posts?since= with HTTP 500
        self.post_times: list[float] = []  # loop time of every POST /posts
        self.mute_pings = False
        self.bot_posted = asyncio.Event()  # set on every post we receive from the bot
        self.channels: dict[str, dict[str, Any]] = {}  # created through POST /channels
        self.members: dict[str, list[str]] = {}  # channel id -> user ids, in order added
        self.pinned: list[str] = []  # post ids
        self.taken_names: set[str] = set()  # names some other channel already has
        self.refuse_channels = False
        self.refuse_invites = False
        self.refuse_pins = False
        self.admin_failures: list[tuple[int, dict[str, str]]] = []  # for channel admin calls
        self.pin_failures: list[tuple[int, dict[str, str]]] = []  # for pins only, first
        self.users = {u["username"]: u for u in (BOT, ALICE, BOB)}
        self.broadcast = False  # every event to every connection (several instances)
        self.emails: dict[str, str] = {ALICE["id"]: "alice@example.com"}  # user id -> email
        # users whose address Mattermost verified (User.email_verified); others are unverified
        self.verified: set[str] = {ALICE["id"]}
        self.user_failures: set[str] = set()  # user ids whose GET /users/{id} answers 500
        self.channel_patches: list[tuple[str, dict[str, Any]]] = []  # PUT /channels/{id}/patch
        self._ids = itertools.count(1)
        self._last_ms = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/api/v4/users/me", self._me)
        app.router.add_get("/api/v4/users/me/teams", self._teams)
        app.router.add_get("/api/v4/users/me/channels", self._channels)
        app.router.add_post("/api/v4/posts", self._create)
        app.router.add_put("/api/v4/posts/{id}/patch", self._patch)
        app.router.add_get("/api/v4/channels/{id}/posts", self._since)
        app.router.add_get("/api/v4/websocket", self._ws)
        app.router.add_post("/api/v4/channels", self._create_channel)
        app.router.add_post("/api/v4/channels/direct", self._direct)
        app.router.add_put("/api/v4/channels/{id}/patch", self._patch_channel)
        app.router.add_post("/api/v4/channels/{id}/members", self._add_member)
        app.router.add_post("/api/v4/posts/{id}/pin", self._pin)
        app.router.add_get("/api/v4/users/username/{name}", self._user_by_name)
        app.router.add_get("/api/v4/users/email/{email}", self._user_by_email)
        app.router.add_get("/api/v4/users/{id}", self._user_by_id)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self.drop()  # like a dying server process: the kernel closes its sockets
        if self.runner is not None:
            await self.runner.cleanup()

    # -- test controls -----------------------------------------------------------------

    def _now_ms(self) -> int:
        self._last_ms = max(self._last_ms + 1, int(time.time() * 1000))
        return self._last_ms

    async def user_post(
        self,
        message: str,
        *,
        user: dict[str, Any] = ALICE,
        root_id: str = "",
        props: dict[str, Any] | None = None,
        channel: str = CHANNEL,
    ) -> dict[str, Any]:
        post = self._store(user["id"], channel, message, root_id, props or {})
        await self.event(
            "posted",
            {
                "channel_type": "O",
                "team_id": TEAM["id"],
                "sender_name": "@" + user["username"],
                "post": json.dumps(post),
            },
            channel,
        )
        return post

    async def reaction(self, post_id: str, emoji: str, user: dict[str, Any] = ALICE) -> None:
        reaction = {
            "user_id": user["id"],
            "post_id": post_id,
            "emoji_name": emoji,
            "create_at": self._now_ms(),
        }
        await self.event("reaction_added", {"reaction": json.dumps(reaction)}, CHANNEL)

    async def event(self, name: str, data: dict[str, Any], channel: str = "") -> None:
        """Queue an event on the current connection; sent now if its socket is open.
        With `broadcast` (several chatopsd instances), on every connection, as the real
        server does for every session of the bot user."""
        if self.broadcast:
            for conn in list(self.conns.values()):
                try:
                    await self._event_on(conn, name, data, channel)
                except ConnectionResetError:
                    conn.ws = None  # that instance is gone; the others still get it
            return
        if self.current is not None:
            await self._event_on(self.current, name, data, channel)

    async def _event_on(self, conn: Conn, name: str, data: dict[str, Any], channel: str) -> None:
        conn.seq += 1
        frame = {
            "event": name,
            "data": data,
            "seq": conn.seq,
            "broadcast": {
                "omit_users": None,
                "user_id": "",
                "channel_id": channel,
                "team_id": TEAM["id"],
            },
        }
        conn.buffer.append(frame)
        if conn.ws is not None and not conn.ws.closed:
            await conn.ws.send_str(json.dumps(frame))

    def skip_seq(self) -> None:
        if self.current is not None:
            self.current.seq += 1

    async def send_raw(self, text: str) -> None:
        assert self.current is not None and self.current.ws is not None
        await self.current.ws.send_str(text)

    def drop(self) -> None:
        """Cut the TCP connection without a close frame (an abrupt network loss)."""
        for conn in self.conns.values():
            if conn.request is not None and conn.request.transport is not None:
                conn.request.transport.abort()
            conn.ws = None

    def forget_connections(self) -> None:
        """The server restarted: no connection can be resumed."""
        self.conns.clear()
        self.current = None

    def bot_posts(self) -> list[dict[str, Any]]:
        return [p for p in self.posts.values() if p["user_id"] == BOT["id"]]

    # -- REST --------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if request.path != "/api/v4/websocket" and (
            request.headers.get("Authorization") != f"Bearer {TOKEN}"
        ):
            return web.json_response(
                {
                    "id": "api.context.session_expired.app_error",
                    "message": "Invalid or expired session, please login again.",
                    "status_code": 401,
                },
                status=401,
            )
        return await handler(request)  # type: ignore[no-any-return]

    def _store(
        self, user: str, channel: str, message: str, root_id: str, props: dict[str, Any]
    ) -> dict[str, Any]:
        now = self._now_ms()
        post: dict[str, Any] = {
            "id": f"post{next(self._ids):022d}",
            "create_at": now,
            "update_at": now,
            "edit_at": 0,
            "delete_at": 0,
            "user_id": user,
            "channel_id": channel,
            "root_id": root_id,
            "message": message,
            "type": "",
            "props": props,
            "hashtags": "",
            "pending_post_id": "",
        }
        self.posts[post["id"]] = post
        return post

    async def _user_by_id(self, request: web.Request) -> web.Response:
        """users.yaml GetUser: the email is there unless privacy settings hide it."""
        uid = request.match_info["id"]
        if uid in self.user_failures:
            return _app_error("app.user.get.app_error", "database unavailable", 500)
        user = next((u for u in self.users.values() if u["id"] == uid), None)
        if user is None:
            return _app_error("app.user.missing_account.const", "user not found", 404)
        return web.json_response(self._user_json(user))

    def _user_json(self, user: dict[str, Any]) -> dict[str, Any]:
        uid = user["id"]
        return {**user, "email": self.emails.get(uid, ""), "email_verified": uid in self.verified}

    async def _user_by_email(self, request: web.Request) -> web.Response:
        """users.yaml GetUserByEmail: 404 when no user has the address."""
        email = request.match_info["email"].lower()
        for uid, known in self.emails.items():
            user = next((u for u in self.users.values() if u["id"] == uid), None)
            if user is not None and known.lower() == email:
                return web.json_response(self._user_json(user))
        return _app_error("app.user.missing_account.const", "user not found", 404)

    async def _me(self, request: web.Request) -> web.Response:
        return web.json_response({**BOT, "email": "", "roles": "system_user"})

    async def _teams(self, request: web.Request) -> web.Response:
        return web.json_response([TEAM])

    async def _channels(self, request: web.Request) -> web.Response:
        last = max((p["create_at"] for p in self.posts.values()), default=0)
        mine = [c for c in self.channels.values() if BOT["id"] in self.members[c["id"]]]
        return web.json_response(
            [
                {
                    "id": CHANNEL,
                    "team_id": TEAM["id"],
                    "type": "O",
                    "name": "incidents",
                    "display_name": "Incidents",
                    "last_post_at": last,
                },
                *mine,
            ]
        )

    # -- channel administration ----------------------------------------------------------

    def _admin_failure(self) -> web.Response | None:
        if not self.admin_failures:
            return None
        status, headers = self.admin_failures.pop(0)
        return _app_error("api.try_later", "try later", status, headers)

    async def _patch_channel(self, request: web.Request) -> web.Response:
        """channels.yaml PatchChannel: name, display_name, purpose, header (each optional);
        200 with the whole channel; 404 for an unknown channel."""
        channel = self.channels.get(request.match_info["id"])
        if channel is None:
            return _app_error("app.channel.get.existing.app_error", "channel not found", 404)
        body = await request.json()
        allowed = {"name", "display_name", "purpose", "header", "group_constrained"}
        if not isinstance(body, dict) or not set(body) <= allowed:
            return _app_error("api.context.invalid_body_param.app_error", "bad patch", 400)
        self.channel_patches.append((channel["id"], body))
        channel.update({k: v for k, v in body.items() if isinstance(v, str)})
        channel["update_at"] = self._now_ms()
        return web.json_response(channel)

    async def _direct(self, request: web.Request) -> web.Response:
        """channels.yaml CreateDirectChannel: a body of exactly two user ids, one of them the
        caller; 201 with the direct channel ("D", named "<id>__<id>"), the same one each time."""
        body = await request.json()
        known = {u["id"] for u in self.users.values()}
        if (
            not isinstance(body, list)
            or len(body) != 2
            or not all(isinstance(u, str) for u in body)
            or BOT["id"] not in body
        ):
            return _app_error("api.context.invalid_body_param.app_error", "bad user ids", 400)
        if not set(body) <= known:
            return _app_error("app.user.missing_account.const", "user not found", 404)
        name = "__".join(sorted(body))
        found = next((c for c in self.channels.values() if c["name"] == name), None)
        if found is None:
            now = self._now_ms()
            found = {
                "id": f"dmchan{next(self._ids):020d}",
                "create_at": now,
                "update_at": now,
                "delete_at": 0,
                "team_id": "",
                "type": "D",
                "display_name": "",
                "name": name,
                "header": "",
                "purpose": "",
                "last_post_at": 0,
                "total_msg_count": 0,
                "extra_update_at": 0,
                "creator_id": BOT["id"],
            }
            self.channels[found["id"]] = found
            self.members[found["id"]] = sorted(body)
        return web.json_response(found, status=201)

    async def _create_channel(self, request: web.Request) -> web.Response:
        if (failed := self._admin_failure()) is not None:
            return failed
        body = await request.json()
        if self.refuse_channels:
            return _app_error(
                "api.context.permissions.app_error",
                "You do not have the appropriate permissions.",
                403,
            )
        missing = [k for k in ("name", "display_name", "type", "team_id") if not body.get(k)]
        if missing or body["team_id"] != TEAM["id"] or body["type"] not in ("O", "P"):
            return _app_error("model.channel.is_valid.app_error", f"invalid: {missing}", 400)
        names = self.taken_names | {c["name"] for c in self.channels.values()}
        if body["name"] in names:
            return _app_error(
                "store.sql_channel.save_channel.exists.app_error",
                "A channel with that name already exists on the same team.",
                400,
            )
        now = self._now_ms()
        channel = {
            "id": f"newchan{next(self._ids):019d}",
            "create_at": now,
            "update_at": now,
            "delete_at": 0,
            "team_id": body["team_id"],
            "type": body["type"],
            "display_name": body["display_name"],
            "name": body["name"],
            "header": body.get("header", ""),
            "purpose": body.get("purpose", ""),
            "last_post_at": 0,
            "total_msg_count": 0,
            "extra_update_at": 0,
            "creator_id": BOT["id"],
        }
        self.channels[channel["id"]] = channel
        self.members[channel["id"]] = [BOT["id"]]  # the creator is a member
        return web.json_response(channel, status=201)

    async def _add_member(self, request: web.Request) -> web.Response:
        if (failed := self._admin_failure()) is not None:
            return failed
        cid = request.match_info["id"]
        user = (await request.json()).get("user_id", "")
        if self.refuse_invites:
            return _app_error(
                "api.context.permissions.app_error",
                "You do not have the appropriate permissions.",
                403,
            )
        if cid not in self.members:
            return _app_error("app.channel.get.existing.app_error", "channel not found", 404)
        if user not in {u["id"] for u in self.users.values()}:
            return _app_error("app.user.missing_account.const", "user not found", 404)
        if user not in self.members[cid]:
            self.members[cid].append(user)
        member = {
            "channel_id": cid,
            "user_id": user,
            "roles": "channel_user",
            "last_viewed_at": 0,
            "msg_count": 0,
            "mention_count": 0,
            "notify_props": {},
            "last_update_at": self._now_ms(),
        }
        return web.json_response(member, status=201)

    async def _pin(self, request: web.Request) -> web.Response:
        if self.pin_failures:
            status, headers = self.pin_failures.pop(0)
            return _app_error("api.try_later", "try later", status, headers)
        if (failed := self._admin_failure()) is not None:
            return failed
        pid = request.match_info["id"]
        if self.refuse_pins:
            return _app_error(
                "api.context.permissions.app_error",
                "You do not have the appropriate permissions.",
                403,
            )
        if pid not in self.posts:
            return _app_error("app.post.get.app_error", "post not found", 404)
        self.posts[pid]["is_pinned"] = True
        if pid not in self.pinned:
            self.pinned.append(pid)
        return web.json_response({"status": "OK"})

    async def _user_by_name(self, request: web.Request) -> web.Response:
        user = self.users.get(request.match_info["name"])
        if user is None:
            return _app_error("app.user.missing_account.const", "user not found", 404)
        return web.json_response(user)

    async def _create(self, request: web.Request) -> web.Response:
        self.post_times.append(asyncio.get_running_loop().time())
        if self.post_failures:
            status, headers = self.post_failures.pop(0)
            return web.json_response(
                {"message": "try later", "status_code": status}, status=status, headers=headers
            )
        body = await request.json()
        post = self._store(
            BOT["id"],
            body["channel_id"],
            body["message"],
            body.get("root_id", ""),
            body.get("props", {}),
        )
        self.bot_posted.set()
        # Our own posts come back over the websocket too; the client must ignore them.
        await self.event(
            "posted",
            {
                "channel_type": "O",
                "team_id": TEAM["id"],
                "sender_name": "@chatopsd",
                "post": json.dumps(post),
            },
            post["channel_id"],
        )
        return web.json_response(post, status=201)

    async def _patch(self, request: web.Request) -> web.Response:
        post = self.posts.get(request.match_info["id"])
        if post is None:
            return web.json_response({"message": "not found", "status_code": 404}, status=404)
        post.update(message=(await request.json())["message"], edit_at=self._now_ms())
        return web.json_response(post)

    async def _since(self, request: web.Request) -> web.Response:
        if self.since_failures:
            self.since_failures -= 1
            return web.json_response({"message": "db down", "status_code": 500}, status=500)
        since = int(request.query.get("since", "0"))
        found = sorted(
            (
                p
                for p in self.posts.values()
                if p["channel_id"] == request.match_info["id"] and p["update_at"] >= since
            ),
            key=lambda p: p["create_at"],
            reverse=True,
        )
        return web.json_response(
            {
                "order": [p["id"] for p in found],
                "posts": {p["id"]: p for p in found},
                "next_post_id": "",
                "prev_post_id": "",
            }
        )

    # -- websocket ---------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        self.ws_connects.append(dict(request.query))
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        first = await ws.receive()
        try:
            msg = json.loads(first.data)
            ok = msg["action"] == "authentication_challenge" and msg["data"]["token"] == TOKEN
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            await ws.send_json(
                {
                    "status": "FAIL",
                    "seq_reply": 1,
                    "error": {"id": "api.web_socket_router.not_authenticated"},
                }
            )
            await ws.close()
            return ws
        await ws.send_json({"status": "OK", "seq_reply": 1})
        wanted = request.query.get("connection_id", "")
        conn = self.conns.get(wanted)
        resumed = conn is not None
        if conn is None:
            conn = Conn(id=uuid.uuid4().hex)
            self.conns[conn.id] = conn
        self.current, conn.ws, conn.request = conn, ws, request
        await ws.send_json(
            {
                "event": "hello",
                "seq": 0 if not resumed else conn.seq,
                "data": {"server_version": "9.11.0", "connection_id": conn.id},
                "broadcast": {
                    "omit_users": None,
                    "user_id": BOT["id"],
                    "channel_id": "",
                    "team_id": "",
                },
            }
        )
        if resumed:
            start = int(request.query.get("sequence_number", "0"))
            for frame in conn.buffer:
                if frame["seq"] >= start:
                    await ws.send_str(json.dumps(frame))
        async for m in ws:
            if m.type == WSMsgType.PING and not self.mute_pings:
                await ws.pong(m.data)
        return ws


def _app_error(
    error_id: str, message: str, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    """Mattermost's AppError body (definitions.yaml)."""
    return web.json_response(
        {
            "id": error_id,
            "message": message,
            "detailed_error": "",
            "request_id": uuid.uuid4().hex,
            "status_code": status,
        },
        status=status,
        headers=headers,
    )
