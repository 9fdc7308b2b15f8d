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

Incident channels, invites and pins (optional capabilities, core/capabilities) are in admin.py.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import OrderedDict
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from chatopsd.connectors.base import Session
from chatopsd.connectors.mattermost import events
from chatopsd.connectors.mattermost.admin import (
    USER_ID,
    ChannelCalls,
    MattermostHTTPError,
)
from chatopsd.connectors.mattermost.config import MattermostSection
from chatopsd.connectors.mattermost.render import inline, render
from chatopsd.core.addressing import Identity
from chatopsd.core.errors import FatalConnectorError, RateLimitedSend, TransientSendError
from chatopsd.core.identity import Profile, ProfileUnavailable
from chatopsd.core.limits import rendered_line
from chatopsd.core.messages import Destination, Inbound, Reply, Sent
from chatopsd.core.ports import Clock, KeyValue
from chatopsd.core.retry import server_wait

log = logging.getLogger("chatopsd.mattermost")

# The post property that carries Reply.key (custom props are stored and returned as given).
ANSWER_PROP = "chatopsd_answer"

Json = dict[str, Any]


class MattermostConnector(ChannelCalls):
    platform = "mattermost"

    def __init__(
        self,
        config: MattermostSection,
        *,
        clock: Clock,
        kv: KeyValue,
        prefix: str = "!",
        timeout: float = 15.0,
    ) -> None:
        self.cfg = cfg = config
        self.clock = clock
        self.kv = kv
        self.prefix = prefix
        self.heartbeat = cfg.heartbeat_seconds
        self.timeout = timeout
        self.base = cfg.url.rstrip("/")
        self._http: aiohttp.ClientSession | None = None
        self.me: Json = {}
        self._key = f"mattermost:{urlsplit(self.base).netloc}"
        self._cursors: dict[str, int] = {}  # channel id -> last seen post create_at (ms)
        self._team_ids: set[str] = set()
        self._home_team: str | None = None  # where incident channels are created
        self.admin_attempts = 3  # tries of a channel admin call answered with HTTP 429
        self.admin_max_wait = 10.0  # longest Retry-After honoured between those tries
        self._resume: tuple[str, int] | None = None  # (connection_id, last seq) to resume
        self.resyncs = 0  # how many times missed posts were fetched (for tests and health)
        # Set while a catch-up is owed: a failed fetch is retried after the next connect even
        # if that connection resumes (a resume does not bring back what REST failed to fetch).
        self._resync_owed = False
        self._bot_roots: OrderedDict[str, None] = OrderedDict()
        # user id -> (monotonic time, profile or None for no such user): see user_profile
        self._users: OrderedDict[str, tuple[float, Profile | None]] = OrderedDict()
        self._tls: ssl.SSLContext | None = None  # built at the first connection: see _ssl

    # -- plumbing --------------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext | bool:
        # One context for the connector's life: the REST session and every websocket
        # (re)connect share it, instead of each loading the CA store again (about a MiB each).
        if not self.cfg.verify_tls:
            return False
        if self._tls is None:
            ca_file = str(self.cfg.ca_file) if self.cfg.ca_file else None
            self._tls = ssl.create_default_context(cafile=ca_file)
        return self._tls

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.cfg.token.get_secret_value()}"},
                connector=aiohttp.TCPConnector(ssl=self._ssl()),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._http

    async def _api(self, method: str, path: str, **kw: Any) -> Any:
        """One REST call; raises TransientSendError for 429/5xx/network, MattermostHTTPError
        for another 4xx."""
        try:
            async with self._session().request(method, f"{self.base}/api/v4{path}", **kw) as r:
                if r.status == 429:
                    raise RateLimitedSend(
                        f"mattermost rate limited {method} {path}",
                        retry_after=server_wait(r.headers, now=self.clock.now().timestamp()),
                    )
                if r.status >= 500:
                    raise TransientSendError(f"mattermost {method} {path}: HTTP {r.status}")
                if r.status == 401:
                    raise FatalConnectorError(
                        "mattermost refused the token (HTTP 401): check mattermost.token "
                        "(a bot or personal access token)"
                    )
                if r.status >= 400:
                    error_id, message = await _error(r)
                    raise MattermostHTTPError(
                        f"mattermost {method} {path}: HTTP {r.status}: {message}",
                        r.status,
                        error_id,
                        message,
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
                try:
                    frame = events.frame(msg.data)
                except events.MalformedFrame as exc:
                    log.warning("mattermost: malformed websocket frame ignored: %s", exc)
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
                    new_id = str(events.data(frame).get("connection_id", ""))
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
            except MattermostHTTPError as exc:  # e.g. 403: the bot left the channel
                log.warning("mattermost: could not fetch missed posts of %s: %s", cid, exc)
                continue
            try:
                posts = [page["posts"][i] for i in page["order"]]
                posts.sort(key=lambda p: events.millis(p, "create_at"))
            except (KeyError, TypeError, ValueError, AttributeError):
                log.warning("mattermost: malformed post list for channel %s; skipped", cid)
                continue
            for post in posts:
                if post.get("delete_at") or events.millis(post, "create_at") < since:
                    continue  # deleted, or an old post edited since
                try:
                    self._on_post(session, post, None)
                except events.MalformedFrame as exc:
                    log.warning("mattermost: malformed post in %s skipped: %s", cid, exc)
        self._resync_owed = False

    # -- inbound ---------------------------------------------------------------------------

    def _on_event(self, session: Session, event: str, frame: Json) -> None:
        """One websocket event; a malformed one is logged and skipped, the socket stays."""
        try:
            if event == "posted":
                data = events.data(frame)
                if self._watched(str(data.get("team_id", ""))):
                    self._on_post(session, events.json_field(data, "post"), data)
            elif event == "reaction_added":
                inbound = events.reaction_event(frame, self._identity())
                if inbound is not None:
                    # who reacted decides whether it counts (a bot never votes): look them
                    # up first, without holding up the socket
                    task = asyncio.get_running_loop().create_task(
                        self._emit_reaction(session, inbound), name=f"mm-reactor:{inbound.event_id}"
                    )
                    _background.add(task)
                    task.add_done_callback(_background.discard)
        except events.MalformedFrame as exc:
            what = "post" if event == "posted" else "reaction"
            log.warning("mattermost: %s event without a valid %s; skipped (%s)", event, what, exc)

    def _identity(self) -> Identity:
        return events.identity(
            user_id=str(self.me.get("id", "")),
            username=str(self.me.get("username", "")),
            allow_bots=self.cfg.allow_bots,
        )

    def _on_post(self, session: Session, post: Json, data: Json | None) -> None:
        """Raises MalformedFrame for a post without the documented shape."""
        cid, created = events.text(post, "channel_id"), events.millis(post, "create_at")
        if cid and created > self._cursors.get(cid, 0):
            self._cursors[cid] = created
            task = asyncio.get_running_loop().create_task(
                self._put_kv(f"last_post_at:{cid}", str(created)), name=f"mm-cursor:{cid}"
            )
            _background.add(task)
            task.add_done_callback(_background.discard)
        if post.get("user_id") == self.me.get("id") and not post.get("root_id"):
            self._remember_root(str(post.get("id", "")))
        inbound = events.post_event(post, data, self._identity(), self.prefix, self._bot_roots)
        if inbound is not None:
            session.emit(inbound)

    def _remember_root(self, post_id: str) -> None:
        """A thread we started: replies in it need no prefix. Bounded, oldest forgotten."""
        if post_id:
            self._bot_roots[post_id] = None
            while len(self._bot_roots) > BOT_ROOTS_KEPT:
                self._bot_roots.popitem(last=False)

    # -- outbound --------------------------------------------------------------------------

    async def send(self, destination: Destination, reply: Reply) -> Sent | None:
        body: Json = {"channel_id": destination.channel, "message": render(reply, self.prefix)}
        # A command posted at the top level is answered in a thread under it (reply_to).
        root = reply.thread or destination.thread or destination.reply_to
        if root:
            body["root_id"] = root
        if reply.key:
            body["props"] = {ANSWER_PROP: reply.key}
        post = await self._api("POST", "/posts", json=body)
        if not root:
            self._remember_root(str(post["id"]))
        return Sent(destination, str(post["id"]))

    async def answer_posted(self, destination: Destination, key: str, since: float) -> bool:
        """PostedAnswers: a post of ours in the channel since `since` carrying the key."""
        page = await self._api(
            "GET", f"/channels/{destination.channel}/posts", params={"since": int(since * 1000)}
        )
        posts = page.get("posts") if isinstance(page, dict) else None
        return any(
            isinstance(p, dict)
            and isinstance(p.get("props"), dict)
            and p["props"].get(ANSWER_PROP) == key
            for p in (posts or {}).values()
        )

    async def edit(self, sent: Sent, reply: Reply) -> None:
        await self._api(
            "PUT", f"/posts/{sent.message_id}/patch", json={"message": render(reply, self.prefix)}
        )

    async def _emit_reaction(self, session: Session, inbound: Inbound) -> None:
        """The reaction with its reactor looked up (name, is_bot); a reactor we could not look
        up is marked unresolved, so the bus does not count the reaction."""
        actor = inbound.actor
        try:
            found = await self.user_profile(actor.id)
        except ProfileUnavailable as exc:
            log.warning("mattermost: could not look up reactor %s: %s", actor.id, exc)
            found = None
        if found is None:
            actor = replace(actor, resolved=False)
        else:
            actor = replace(actor, name=found.name or actor.name, is_bot=found.is_bot)
        session.emit(replace(inbound, actor=actor))

    async def user_profile(self, user_id: str) -> Profile | None:
        """UserProfiles: GET /users/{id}, cached for an hour (failures are not cached). The
        address counts as verified only when the user object says `email_verified: true`."""
        if not USER_ID.fullmatch(user_id):
            return None
        now = self.clock.monotonic()
        hit = self._users.get(user_id)
        if hit is not None and now - hit[0] < USER_TTL:
            return hit[1]
        try:
            found = _profile(await self._api("GET", f"/users/{user_id}"))
        except MattermostHTTPError as exc:
            if exc.status != 404:
                raise ProfileUnavailable(str(exc)) from None
            found = None
        except (TransientSendError, FatalConnectorError) as exc:
            raise ProfileUnavailable(str(exc)) from None
        self._users[user_id] = (now, found)
        self._users.move_to_end(user_id)
        while len(self._users) > USERS_KEPT:
            self._users.popitem(last=False)
        return found

    async def user_by_email(self, email: str) -> Profile | None:
        """UserProfiles: GET /users/email/{email}; None when no user has it."""
        try:
            found = await self._api("GET", f"/users/email/{quote(email, safe='@')}")
        except MattermostHTTPError as exc:
            # 403: the server's privacy settings hide addresses from the bot, so no address
            # here can count as verified (user_profile sees none either): nobody has it
            if exc.status in (403, 404):
                return None
            raise ProfileUnavailable(str(exc)) from None
        except (TransientSendError, FatalConnectorError) as exc:
            raise ProfileUnavailable(str(exc)) from None
        return _profile(found)

    async def set_topic(self, channel: str, text: str) -> None:
        """ChannelTopics: the channel header (PUT /channels/{id}/patch)."""
        # Mattermost refuses a header over 1,024 characters
        header = rendered_line(text, 1024, inline)
        await self._api("PUT", f"/channels/{channel}/patch", json={"header": header})

    async def dm_channel(self, user_id: str) -> str:
        """DirectMessages: the direct channel between the bot and this user."""
        me = str(self.me.get("id") or "") or str((await self._api("GET", "/users/me"))["id"])
        found = await self._api("POST", "/channels/direct", json=[me, user_id])
        return str(found["id"])

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


_background: set[asyncio.Task[None]] = set()
USER_TTL = 3600.0  # seconds a looked-up user is trusted before asking again
USERS_KEPT = 5000  # looked-up users remembered, oldest forgotten
_DURABLE = frozenset({"posted", "reaction_added"})
BOT_ROOTS_KEPT = 10_000  # threads we started that we still recognise


def _profile(user: object) -> Profile:
    """users.yaml User as the identity service sees it."""
    if not isinstance(user, dict) or not isinstance(user.get("id"), str):
        raise ProfileUnavailable("the user object has no id")
    email = user.get("email")
    return Profile(
        user["id"],
        str(user.get("username") or ""),
        str(email).lower() if isinstance(email, str) and email else None,
        user.get("email_verified") is True,
        user.get("is_bot") is True,
    )


async def _error(r: aiohttp.ClientResponse) -> tuple[str, str]:
    """(id, message) of a Mattermost AppError body; empty strings if it is not one."""
    try:
        body = await r.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("id", ""))[:200], str(body.get("message", ""))[:200]


def _tls_message(base: str, exc: Exception) -> str:
    return (
        f"mattermost: TLS certificate of {urlsplit(base).netloc} not trusted "
        f"({getattr(exc, 'certificate_error', exc)}); set mattermost.ca_file to the CA that "
        "signed it"
    )
