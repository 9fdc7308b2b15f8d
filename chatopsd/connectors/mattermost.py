"""Mattermost over its websocket, with REST for posting and for catching up on missed posts.

Client choice: aiohttp directly, async end to end (one ClientSession for REST and websocket).
Not mattermostdriver 7.3.2: its websocket fails over TLS on Python 3.10+ (it builds an
`ssl.Purpose.CLIENT_AUTH` context; the fix was never released), its REST calls are blocking
`requests` that would stall the event loop, and it reconnects without backoff. The maintained
fork mattermostautodriver works, but has no resume and no backoff either, so it would add a
dependency while we still wrote the connection life cycle ourselves.

Connection life: `GET /users/me` checks the token (401 -> FatalConnectorError), then the
websocket is opened with `connection_id` and `sequence_number` of the previous connection so
the server can resume it. aiohttp's websocket heartbeat pings every `heartbeat` seconds and
closes a socket whose pong does not come back within half of that (half-open detection). When
`hello` carries a new connection_id, or an event's `seq` skips, events were lost: the posts of
every watched channel since the last seen post time are fetched over REST and go through the
same path; the post id is the event id, so the bus's dedupe drops any already handled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from chatopsd.config import MattermostSection
from chatopsd.connectors.base import Session
from chatopsd.connectors.mattermost_render import render
from chatopsd.core.errors import FatalConnectorError, TransientSendError
from chatopsd.core.messages import Actor, Destination, Inbound, Reply, Sent
from chatopsd.store.kv import SqliteKeyValue

log = logging.getLogger("chatopsd.mattermost")

Json = dict[str, Any]


class MattermostConnector:
    platform = "mattermost"

    def __init__(
        self,
        cfg: MattermostSection,
        kv: SqliteKeyValue,
        *,
        prefix: str = "!",
        heartbeat: float = 20.0,
        timeout: float = 15.0,
    ) -> None:
        self.cfg = cfg
        self.kv = kv
        self.prefix = prefix
        self.heartbeat = heartbeat
        self.timeout = timeout
        self.base = cfg.url.rstrip("/")
        self._http: aiohttp.ClientSession | None = None
        self.me: Json = {}
        self._key = f"mattermost:{urlsplit(self.base).netloc}"
        self._cursors: dict[str, int] = {}  # channel id -> last seen post create_at (ms)
        self._team_ids: set[str] = set()
        self._resume: tuple[str, int] | None = None  # (connection_id, last seq) to resume
        self.resyncs = 0  # how many times missed posts were fetched (for tests and health)
        # Set while a catch-up is owed: a failed fetch is retried after the next connect even
        # if that connection resumes (a resume does not bring back what REST failed to fetch).
        self._resync_owed = False

    # -- plumbing --------------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.cfg.verify_tls:
            return False
        ctx = ssl.create_default_context(cafile=str(self.cfg.ca_file) if self.cfg.ca_file else None)
        return ctx

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.cfg.token.get_secret_value()}"},
                connector=aiohttp.TCPConnector(ssl=self._ssl()),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._http

    async def _api(self, method: str, path: str, **kw: Any) -> Any:
        """One REST call; raises TransientSendError for 429/5xx/network, RuntimeError for 4xx."""
        try:
            async with self._session().request(method, f"{self.base}/api/v4{path}", **kw) as r:
                if r.status == 429:
                    raise TransientSendError(
                        f"mattermost rate limited {method} {path}", retry_after=_retry_after(r)
                    )
                if r.status >= 500:
                    raise TransientSendError(f"mattermost {method} {path}: HTTP {r.status}")
                if r.status == 401:
                    raise FatalConnectorError(
                        "mattermost refused the token (HTTP 401): check mattermost.token "
                        "(a bot or personal access token)"
                    )
                if r.status >= 400:
                    raise RuntimeError(
                        f"mattermost {method} {path}: HTTP {r.status}: {await _msg(r)}"
                    )
                return await r.json(content_type=None)
        except aiohttp.ClientConnectorCertificateError as exc:
            raise FatalConnectorError(_tls_message(self.base, exc)) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientSendError(f"mattermost {method} {path}: {type(exc).__name__}") from exc

    async def _get_kv(self, name: str) -> str | None:
        return await self.kv.get(f"{self._key}:{name}")

    async def _put_kv(self, name: str, value: str) -> None:
        await self.kv.put(f"{self._key}:{name}", value)

    # -- connection ------------------------------------------------------------------------

    async def run(self, session: Session) -> None:
        try:
            self.me = await self._api("GET", "/users/me")
            await self._load_channels()
        except TransientSendError as exc:
            raise ConnectionError(str(exc)) from None
        if self._resume is None:  # first run in this process: resume what we had before
            self._resume = (
                await self._get_kv("connection_id") or "",
                int(await self._get_kv("seq") or "-1"),
            )
        conn_id, seq = self._resume
        params = {"connection_id": conn_id, "sequence_number": str(seq + 1)} if conn_id else {}
        ws_url = self.base.replace("http", "ws", 1) + "/api/v4/websocket"
        try:
            ws = await self._session().ws_connect(
                ws_url, params=params, heartbeat=self.heartbeat, ssl=self._ssl()
            )
        except aiohttp.ClientConnectorCertificateError as exc:
            raise FatalConnectorError(_tls_message(self.base, exc)) from None
        async with ws:
            await ws.send_json(
                {
                    "seq": 1,
                    "action": "authentication_challenge",
                    "data": {"token": self.cfg.token.get_secret_value()},
                }
            )
            expected: int | None = None
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame = _frame(msg.data)
                if frame is None:
                    continue
                if frame.get("seq_reply") == 1 and frame.get("status") != "OK":
                    raise FatalConnectorError(
                        "mattermost refused the websocket authentication: check mattermost.token"
                    )
                event = frame.get("event")
                if not isinstance(event, str):
                    continue
                fseq = frame.get("seq")
                if event == "hello":
                    new_id = str(_data(frame).get("connection_id", ""))
                    resumed = bool(conn_id) and new_id == conn_id
                    expected = seq + 1 if resumed else (fseq if isinstance(fseq, int) else 0) + 1
                    conn_id, seq = new_id, expected - 1
                    self._resume = (conn_id, seq)
                    await self._put_kv("connection_id", conn_id)
                    await self._put_kv("seq", str(seq))
                    session.ready()
                    if not resumed or self._resync_owed:
                        await self._resync(session, f"new connection {new_id[:8]}")
                    continue
                if isinstance(fseq, int):
                    if expected is not None and fseq != expected:
                        await self._resync(session, f"seq gap: expected {expected}, got {fseq}")
                    expected, seq = fseq + 1, fseq
                    self._resume = (conn_id, seq)
                    if event in _DURABLE:
                        # Only events we act on are worth a write; a seq left behind in the
                        # store just makes the server replay a few events after a restart.
                        await self._put_kv("seq", str(seq))
                self._on_event(session, event, frame)
            reason = ws.exception() or f"closed with code {ws.close_code}"
        raise ConnectionError(f"websocket lost: {reason}")

    async def _load_channels(self) -> None:
        if self.cfg.teams and not self._team_ids:
            teams = await self._api("GET", "/users/me/teams")
            wanted = set(self.cfg.teams)
            self._team_ids = {t["id"] for t in teams if t["id"] in wanted or t["name"] in wanted}
            if not self._team_ids:
                log.warning("mattermost: the bot is in none of mattermost.teams; only DMs watched")
        channels = await self._api("GET", "/users/me/channels")
        for ch in channels:
            cid = ch["id"]
            if not self._watched(ch.get("team_id", "")):
                continue
            if cid not in self._cursors:
                stored = await self._get_kv(f"last_post_at:{cid}")
                # First time we see a channel: its latest post is already history.
                self._cursors[cid] = int(stored) if stored else int(ch.get("last_post_at", 0))

    def _watched(self, team_id: str) -> bool:
        return not self.cfg.teams or not team_id or team_id in self._team_ids

    async def _resync(self, session: Session, why: str) -> None:
        self.resyncs += 1
        self._resync_owed = True
        log.info("mattermost: fetching missed posts (%s)", why)
        for cid, since in list(self._cursors.items()):
            try:
                page = await self._api("GET", f"/channels/{cid}/posts", params={"since": since})
            except TransientSendError as exc:
                # Reconnect and try again: going on would let live posts move the cursor past
                # the ones we failed to fetch.
                raise ConnectionError(f"could not fetch missed posts: {exc}") from None
            except RuntimeError as exc:
                log.warning("mattermost: could not fetch missed posts of %s: %s", cid, exc)
                continue
            try:
                posts = [page["posts"][i] for i in page["order"]]
                posts.sort(key=lambda p: int(p.get("create_at", 0)))
            except (KeyError, TypeError, ValueError, AttributeError):
                log.warning("mattermost: malformed post list for channel %s; skipped", cid)
                continue
            for post in posts:
                if post.get("delete_at") or int(post.get("create_at", 0)) < since:
                    continue  # deleted, or an old post edited since
                self._on_post(session, post, None)
        self._resync_owed = False

    # -- inbound ---------------------------------------------------------------------------

    def _on_event(self, session: Session, event: str, frame: Json) -> None:
        data = _data(frame)
        if event == "posted":
            post = _json_field(data, "post")
            if post is None:
                log.warning("mattermost: posted event without a valid post; ignored")
                return
            if not self._watched(str(data.get("team_id", ""))):
                return
            self._on_post(session, post, data)
        elif event == "reaction_added":
            reaction = _json_field(data, "reaction")
            if reaction is None:
                log.warning("mattermost: reaction_added without a valid reaction; ignored")
                return
            user = str(reaction.get("user_id", ""))
            if user == self.me.get("id"):
                return
            channel = str(frame.get("broadcast", {}).get("channel_id", ""))
            post_id = str(reaction.get("post_id", ""))
            emoji = str(reaction.get("emoji_name", ""))
            session.emit(
                Inbound(
                    platform=self.platform,
                    channel=channel,
                    actor=Actor(id=user),
                    text=emoji,
                    kind="reaction",
                    event_id=f"reaction:{post_id}:{user}:{emoji}:{reaction.get('create_at', '')}",
                    message_id=post_id,
                )
            )

    def _on_post(self, session: Session, post: Json, data: Json | None) -> None:
        cid, pid = str(post.get("channel_id", "")), str(post.get("id", ""))
        created = int(post.get("create_at", 0))
        if cid and created > self._cursors.get(cid, 0):
            self._cursors[cid] = created
            task = asyncio.get_running_loop().create_task(
                self._put_kv(f"last_post_at:{cid}", str(created)), name=f"mm-cursor:{cid}"
            )
            _background.add(task)
            task.add_done_callback(_background.discard)
        props = post.get("props") or {}
        user = str(post.get("user_id", ""))
        if user == self.me.get("id") or post.get("type"):
            return  # our own post, or a system message (joins, header changes)
        is_bot = str(props.get("from_bot", "")).lower() == "true" or bool(props.get("from_webhook"))
        if is_bot and not self.cfg.allow_bots:
            return
        text, kind = str(post.get("message", "")), "message"
        name = str((data or {}).get("sender_name", "")).lstrip("@")
        mention = f"@{self.me.get('username', '')}"
        if text.lower().startswith(mention.lower()) and len(mention) > 1:
            text, kind = text[len(mention) :].lstrip(" :,\t"), "mention"
        elif mention.lower() in text.lower() and len(mention) > 1:
            at = text.lower().index(mention.lower())
            text, kind = (text[:at] + text[at + len(mention) :]).strip(), "mention"
        session.emit(
            Inbound(
                platform=self.platform,
                channel=cid,
                actor=Actor(id=user, name=name, is_bot=is_bot),
                text=text,
                kind=kind,  # type: ignore[arg-type]
                event_id=pid,
                thread=str(post.get("root_id") or pid),
                message_id=pid,
            )
        )

    # -- outbound --------------------------------------------------------------------------

    async def send(self, destination: Destination, reply: Reply) -> Sent | None:
        body: Json = {"channel_id": destination.channel, "message": render(reply, self.prefix)}
        root = reply.thread or destination.thread
        if root:
            body["root_id"] = root
        post = await self._api("POST", "/posts", json=body)
        return Sent(destination, str(post["id"]))

    async def edit(self, sent: Sent, reply: Reply) -> None:
        await self._api(
            "PUT", f"/posts/{sent.message_id}/patch", json={"message": render(reply, self.prefix)}
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


_background: set[asyncio.Task[None]] = set()
_DURABLE = frozenset({"posted", "reaction_added"})


def _frame(raw: str) -> Json | None:
    try:
        frame = json.loads(raw)
    except ValueError:
        log.warning("mattermost: malformed websocket frame ignored (%d bytes)", len(raw))
        return None
    if not isinstance(frame, dict):
        log.warning("mattermost: websocket frame is not an object; ignored")
        return None
    return frame


def _data(frame: Json) -> Json:
    data = frame.get("data")
    return data if isinstance(data, dict) else {}


def _json_field(data: Json, name: str) -> Json | None:
    """Mattermost sends data.post / data.reaction as a JSON string inside the JSON frame."""
    raw = data.get(name)
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _retry_after(r: aiohttp.ClientResponse) -> float | None:
    for header in ("Retry-After", "X-RateLimit-Reset"):
        value = r.headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            continue
        return max(0.0, seconds)
    return None


async def _msg(r: aiohttp.ClientResponse) -> str:
    try:
        body = await r.json(content_type=None)
        return str(body.get("message", ""))[:200] if isinstance(body, dict) else ""
    except (ValueError, aiohttp.ClientError):
        return ""


def _tls_message(base: str, exc: Exception) -> str:
    return (
        f"mattermost: TLS certificate of {urlsplit(base).netloc} not trusted "
        f"({getattr(exc, 'certificate_error', exc)}); set mattermost.ca_file to the CA that "
        "signed it"
    )
