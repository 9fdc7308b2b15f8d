"""Slack over Socket Mode: an outbound websocket, no public endpoint.

slack-sdk's aiohttp `SocketModeClient` keeps the socket: it follows `disconnect` /
`refresh_requested` by itself and pings every `ping_interval`, so a dropped or half-open
socket is replaced within a couple of intervals. This connector adds what the SDK does not:
  * every envelope is acked before anything else happens (Slack redelivers after 3 s);
  * payloads are translated to `Inbound` (events.py) and actors resolved (users.py);
    redeliveries keep their event id, and the bus's Dedupe drops them;
  * auth.test and apps.connections.open run here first, so a bad token is a
    FatalConnectorError instead of an endless retry inside the SDK;
  * when the SDK cannot get a socket back for `reconnect_grace` seconds, `run` raises, so
    the supervisor's backoff (not the SDK's fixed interval) paces a long outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from chatopsd.connectors.base import Session
from chatopsd.connectors.slack import admin as slack_admin
from chatopsd.connectors.slack import users as slack_users
from chatopsd.connectors.slack.config import SlackSection
from chatopsd.connectors.slack.events import (
    PLATFORM,
    MalformedPayload,
    identity,
    translate,
)
from chatopsd.connectors.slack.render import escape, render
from chatopsd.connectors.slack.users import UserCache
from chatopsd.core.addressing import Identity
from chatopsd.core.errors import FatalConnectorError, RateLimitedSend, TransientSendError
from chatopsd.core.identity import Profile, ProfileUnavailable
from chatopsd.core.limits import rendered_line
from chatopsd.core.messages import Actor, Destination, Inbound, Reply, Sent
from chatopsd.core.ports import Clock
from chatopsd.core.retry import server_wait

log = logging.getLogger("chatopsd.slack")

# Errors no retry can fix: the token is wrong, revoked or of the wrong kind.
_FATAL = {
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "not_allowed_token_type",
    "invalid_token",
}
_TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable"}
_NETWORK = (aiohttp.ClientError, OSError, TimeoutError)


class SlackSendError(Exception):
    """Slack refused a post for a reason retrying will not fix (not_in_channel, ...)."""

    def __init__(self, message: str, error: str = "") -> None:
        super().__init__(message)
        self.error = error


# A slash command works in channels the bot is not in; its answer then goes to the command's
# response_url (valid 30 minutes) instead of chat.postMessage.
_NOT_A_MEMBER = {"not_in_channel", "channel_not_found"}
_RESPONSE_URL_TTL = 25 * 60.0
TOPIC_LIMIT = 250  # characters, conversations.setTopic
# The block id that carries Reply.key on our answers (core/capabilities.PostedAnswers).
ANSWER_BLOCK = "chatopsd-answer:"
# How long an envelope may wait for its claim before it is left unacknowledged (Slack
# redelivers after 3 s without an ack).
ACK_WAIT = 2.5


class SlackConnector:
    platform = PLATFORM

    def __init__(
        self,
        config: SlackSection,
        *,
        clock: Clock,
        prefix: str = "!",
        reconnect_grace: float | None = None,
        connect_timeout: float = 10.0,
        http_timeout: int = 10,
    ) -> None:
        self._app_token = config.app_token.get_secret_value()
        self._bot_token = config.bot_token.get_secret_value()
        api_url = config.api_url
        self.api_url = api_url if api_url.endswith("/") else api_url + "/"
        self.clock, self.prefix, self.allow_bots = clock, prefix, config.allow_bots
        self.ping_interval = config.ping_interval_seconds
        self.reconnect_grace = reconnect_grace or max(5 * self.ping_interval, 5.0)
        self.connect_timeout, self.http_timeout = connect_timeout, http_timeout
        self._web: AsyncWebClient | None = None
        self._posts: AsyncWebClient | None = None
        self._http: aiohttp.ClientSession | None = None
        self._users: UserCache | None = None
        self._socket: SocketModeClient | None = None
        self._session: Session | None = None
        self.me = identity("", allow_bots=self.allow_bots)
        self.acked = 0
        self.malformed = 0
        self._response_urls: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._envelopes: set[asyncio.Task[None]] = set()  # being claimed and acked
        self._acks: deque[tuple[AsyncBaseSocketModeClient, str, str, dict[str, Any]]] = deque()
        self._acker: asyncio.Task[None] | None = None
        self._acks_sent: asyncio.Future[None] | None = None  # done when the queued are sent
        self._unsettled = 0  # envelopes handed to the bus whose claim is not settled yet

    # -- connection ------------------------------------------------------------------------

    def web(self) -> AsyncWebClient:
        """The Web API client for calls made outside the outbox (channel admin, user lookups,
        topics, history), built on first use (inside the running loop). Its retry handlers
        are the one layer that retries those calls."""
        if self._web is None:
            self._web = AsyncWebClient(
                token=self._bot_token,
                base_url=self.api_url,
                timeout=self.http_timeout,
                session=self._pool(),
                retry_handlers=[
                    AsyncConnectionErrorRetryHandler(max_retry_count=1),
                    # waits for Retry-After (plus up to 1 s of jitter) before the retry
                    AsyncRateLimitErrorRetryHandler(max_retry_count=2),
                    AsyncServerErrorRetryHandler(max_retry_count=2),
                ],
            )
            self._users = UserCache(self._web, self.clock)
        return self._web

    def _poster(self) -> AsyncWebClient:
        """The Web API client for what the outbox delivers (posts, edits): no retry handlers.
        The outbox is the one layer that retries a reply (Retry-After honoured, pages
        first); a retry here would run inside each of its attempts."""
        if self._posts is None:
            self._posts = AsyncWebClient(
                token=self._bot_token,
                base_url=self.api_url,
                timeout=self.http_timeout,
                session=self._pool(),
                retry_handlers=[],
            )
        return self._posts

    def _pool(self) -> aiohttp.ClientSession:
        """The HTTP connections both Web API clients share, kept alive between calls.
        Without it slack-sdk opens a session, and a new TCP (and TLS) connection, for every
        call: in a burst of answers that set-up, not Slack, is what the replies wait for.
        (With a session given, slack-sdk applies the session's timeout, not its own.)"""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.http_timeout)
            )
        return self._http

    async def run(self, session: Session) -> None:
        web = self.web()
        self.me = await self._identify(web)
        url = await self._open(web)
        # The SDK client starts tasks in its constructor: build it here, inside the loop.
        client = _DirectSocket(
            self._on_envelope,
            app_token=self._app_token,
            web_client=web,
            ping_interval=self.ping_interval,
        )
        client.message_listeners.append(self._on_message)
        client.wss_uri = url
        self._socket, self._session = client, session
        try:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await client.connect()  # type: ignore[no-untyped-call]
            except TimeoutError:
                raise ConnectionError(
                    f"websocket not open after {self.connect_timeout:.0f} s"
                ) from None
            session.ready()
            await self._watch(client)
        finally:
            self._socket = None
            await _close_quietly(client)

    async def _identify(self, web: AsyncWebClient) -> Identity:
        try:
            me = await web.auth_test()
        except SlackApiError as exc:
            raise _connect_error(exc, "slack.bot_token", "auth.test") from None
        return identity(
            user_id=str(me.get("user_id") or ""),
            bot_id=str(me.get("bot_id") or ""),
            allow_bots=self.allow_bots,
        )

    async def _open(self, web: AsyncWebClient) -> str:
        try:
            response = await web.apps_connections_open(app_token=self._app_token)
        except SlackApiError as exc:
            raise _connect_error(exc, "slack.app_token", "apps.connections.open") from None
        url = response.get("url")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ConnectionError("apps.connections.open returned no websocket URL")
        return url

    async def _watch(self, client: SocketModeClient) -> None:
        """Return (raise) only when the SDK has had no working socket for reconnect_grace s.

        Short gaps (refresh, a dropped socket) are the SDK's to mend; it reconnects in
        milliseconds. Loop time, not the injected clock: this is about real sockets."""
        loop = asyncio.get_running_loop()
        down_since: float | None = None
        while True:
            await asyncio.sleep(self.ping_interval / 2)
            if await client.is_connected():
                if down_since is not None and self._session is not None:
                    self._session.ready()  # the SDK mended it
                down_since = None
                continue
            now = loop.time()
            if down_since is None and self._session is not None:
                self._session.lost("Socket Mode connection lost; the SDK is reconnecting")
            down_since = down_since if down_since is not None else now
            if now - down_since >= self.reconnect_grace:
                raise ConnectionError(
                    f"Socket Mode connection down for {now - down_since:.0f} s; reconnecting"
                )

    # -- inbound ---------------------------------------------------------------------------

    def _on_envelope(
        self, client: AsyncBaseSocketModeClient, message: dict[str, Any], raw: str
    ) -> None:
        """An envelope straight from the socket's receive loop (see _DirectSocket). When its
        author is in the user cache (the usual case) it goes to the bus right here, with no
        task of its own: in a burst every extra turn of the loop before the claim is a turn
        behind every other envelope's work. Otherwise a task looks the author up first."""
        event = self._envelope(client, message, raw)
        if event is None:
            return
        known = self._users.cached(event.actor) if self._users is not None else event.actor
        if known is None:
            task = asyncio.get_running_loop().create_task(
                self._claim_then_ack(client, message, event)
            )
            self._envelopes.add(task)
            task.add_done_callback(self._envelopes.discard)
            return
        assert self._session is not None  # else _envelope acked it
        self._session.admit_soon(replace(event, actor=known), self._acker_for(client, message))

    async def _on_message(
        self, client: AsyncBaseSocketModeClient, message: dict[str, Any], raw: str | None
    ) -> None:
        """slack-sdk's listener: what _DirectSocket did not take (hello, malformed frames)."""
        if message.get("type") == "hello":
            return
        event = self._envelope(client, message, raw)
        if event is not None:
            await self._claim_then_ack(client, message, event)

    def _envelope(
        self, client: AsyncBaseSocketModeClient, message: dict[str, Any], raw: str | None
    ) -> Inbound | None:
        """The event in an envelope, or None when there is nothing to claim: malformed or
        not for us (acked: a redelivery would be no better), or shutting down (left
        unacked, so Slack redelivers it to the next run)."""
        kind = message.get("type")
        envelope_id = message.get("envelope_id")
        if not isinstance(envelope_id, str) or not envelope_id:
            self.malformed += 1
            log.warning("malformed Socket Mode message ignored (no envelope_id): %.200r", raw)
            return None
        if self._session is not None and not self._session.accepting():
            log.info("shutting down; left envelope %s for redelivery", envelope_id)
            return None
        try:
            event = translate(str(kind), message.get("payload"), self.me, self.prefix)
        except MalformedPayload as exc:
            self.malformed += 1
            log.warning("malformed %s envelope %s ignored: %s", kind, envelope_id, exc)
            event = None  # acknowledged below: a redelivery would be just as malformed
        if event is None or self._session is None:
            self._queue_ack(client, envelope_id, str(kind), message)
            return None
        if event.kind == "slash":
            self._remember_response_url(event, message.get("payload"))
        if isinstance(message.get("retry_attempt"), int) and message["retry_attempt"] > 0:
            log.info("redelivered event %s (attempt %d)", event.event_id, message["retry_attempt"])
        return event

    async def _claim_then_ack(
        self, client: AsyncBaseSocketModeClient, message: dict[str, Any], event: Inbound
    ) -> None:
        assert self._session is not None
        self._session.admit_soon(await self._resolve(event), self._acker_for(client, message))

    def _acker_for(
        self, client: AsyncBaseSocketModeClient, message: dict[str, Any]
    ) -> Callable[[bool], asyncio.Future[None] | None]:
        """What the bus calls the moment the envelope's claim is settled. Acknowledge only
        once the event is claimed (recorded in the state store), so a kill between the two
        loses nothing: unacknowledged, Slack delivers it again, to another connection. Slack
        counts 3 s; a claim is milliseconds. Past ACK_WAIT it stays unacknowledged and the
        redelivery meets the claim. The ack is queued at once, so the acks of claims
        committed together leave together; the commands go on once the burst is acked
        (`_release`; the bus waits at most a second for that)."""
        envelope_id, kind = str(message["envelope_id"]), str(message.get("type"))
        self._unsettled += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ACK_WAIT
        settled = False

        def claimed(recorded: bool) -> asyncio.Future[None] | None:
            nonlocal settled
            if settled:
                return None
            settled = True
            self._unsettled -= 1
            if not recorded:
                log.warning("envelope %s not claimed; left for redelivery", envelope_id)
            elif loop.time() > deadline:
                log.warning("envelope %s not claimed in time; left for redelivery", envelope_id)
            else:
                return self._queue_ack(client, envelope_id, kind, message)
            if self._acker is None or self._acker.done():
                self._release()
            return None

        return claimed

    def _queue_ack(
        self,
        client: AsyncBaseSocketModeClient,
        envelope_id: str,
        kind: str,
        message: dict[str, Any],
    ) -> asyncio.Future[None]:
        """Queue an ack; one task sends whatever is queued, in order (a websocket send
        rarely waits, so a whole commit's acks go out in one turn of the loop). Returns a
        future done once it and the rest of the burst were sent (or could not be)."""
        self._acks.append((client, envelope_id, kind, message))
        if self._acks_sent is None:
            self._acks_sent = asyncio.get_running_loop().create_future()
        if self._acker is None or self._acker.done():
            self._acker = asyncio.get_running_loop().create_task(self._send_acks())
        return self._acks_sent

    async def _send_acks(self) -> None:
        try:
            while self._acks:
                batch, self._acks = self._acks, deque()
                for item in batch:
                    await self._ack(*item)
        finally:
            self._release()

    def _release(self) -> None:
        """Let the claimed commands go on once the burst is acked: no ack left to send and
        no envelope still waiting for its claim (those claims commit sooner for it)."""
        if self._unsettled or self._acks or self._acks_sent is None:
            return
        sent, self._acks_sent = self._acks_sent, None
        if not sent.done():
            sent.set_result(None)

    async def _ack(
        self,
        client: AsyncBaseSocketModeClient,
        envelope_id: str,
        kind: str,
        message: dict[str, Any],
    ) -> None:
        try:
            await client.send_socket_mode_response(_ack(envelope_id, kind, message))
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            # Claimed but not acked: Slack redelivers it and the claim drops the redelivery.
            log.warning("could not ack envelope %s (%s); Slack will redeliver it", envelope_id, exc)
            return
        self.acked += 1

    async def user_profile(self, user_id: str) -> Profile | None:
        """UserProfiles: a user from the users.info cache (ProfileUnavailable if Slack could
        not be asked)."""
        self.web()
        assert self._users is not None
        found = await self._users.resolve(Actor(user_id))
        if not found.resolved:
            raise ProfileUnavailable(f"users.info failed for {user_id}")
        return Profile(found.id, found.name, found.email, found.email is not None, found.is_bot)

    async def user_by_email(self, email: str) -> Profile | None:
        """UserProfiles: the member with this address (users.lookupByEmail), None if none."""
        try:
            async with asyncio.timeout(self.http_timeout):
                response = await self.web().users_lookupByEmail(email=email)
        except SlackApiError as exc:
            if exc.response.get("error") == "users_not_found":
                return None
            raise ProfileUnavailable(f"users.lookupByEmail: {exc.response.get('error')}") from None
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            raise ProfileUnavailable(f"users.lookupByEmail: {type(exc).__name__}") from None
        user = response.get("user")
        if not isinstance(user, dict):
            raise ProfileUnavailable("users.lookupByEmail: no user object in the answer")
        return slack_users.profile(user)

    async def _resolve(self, event: Inbound) -> Inbound:
        if self._users is None:
            return event
        return replace(event, actor=await self._users.resolve(event.actor))

    # -- outbound --------------------------------------------------------------------------

    async def send(self, destination: Destination, reply: Reply) -> Sent | None:
        text, blocks = render(reply)
        if reply.key and blocks:
            # Slack stores a block's id with the message: how a survivor finds this answer
            blocks[0] = {**blocks[0], "block_id": ANSWER_BLOCK + reply.key}
        args: dict[str, Any] = {"channel": destination.channel, "text": text, "blocks": blocks}
        thread = reply.thread or destination.thread
        if thread:
            args["thread_ts"] = thread
        web = self._poster()
        if reply.ephemeral and destination.actor:
            response = await _call(
                web.chat_postEphemeral, "chat.postEphemeral", args, user=destination.actor
            )
            extra = {"channel": destination.channel, "ephemeral": "1"}
            return Sent(destination, str(response.get("message_ts") or ""), extra)
        try:
            response = await _call(web.chat_postMessage, "chat.postMessage", args)
        except SlackSendError as exc:
            url = self._response_url(destination) if exc.error in _NOT_A_MEMBER else None
            if url is None:
                raise
            await self._respond(url, text, blocks, reply.ephemeral)
            return Sent(destination, "", {"channel": destination.channel, "ephemeral": "1"})
        channel = str(response.get("channel") or destination.channel)
        return Sent(destination, str(response.get("ts") or ""), {"channel": channel})

    async def answer_posted(self, destination: Destination, key: str, since: float) -> bool:
        """PostedAnswers: a message since `since` whose first block carries the key, in the
        thread the answer went to (conversations.replies) or the channel (.history)."""
        args: dict[str, Any] = {"channel": destination.channel, "oldest": f"{since:.6f}"}
        if destination.thread:
            method, name = self.web().conversations_replies, "conversations.replies"
            args["ts"] = destination.thread
        else:
            method, name = self.web().conversations_history, "conversations.history"
        found = await _call(method, name, {**args, "limit": 200})
        wanted = ANSWER_BLOCK + key
        return any(
            isinstance(block, dict) and block.get("block_id") == wanted
            for message in found.get("messages") or []
            if isinstance(message, dict)
            for block in message.get("blocks") or []
        )

    def _remember_response_url(self, event: Inbound, payload: Any) -> None:
        url = payload.get("response_url") if isinstance(payload, dict) else None
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return
        key = (event.channel, event.actor.id)
        self._response_urls[key] = (url, asyncio.get_running_loop().time() + _RESPONSE_URL_TTL)
        self._response_urls.move_to_end(key)
        while len(self._response_urls) > 1000:
            self._response_urls.popitem(last=False)

    def _response_url(self, destination: Destination) -> str | None:
        found = self._response_urls.get((destination.channel, destination.actor or ""))
        if found is None or found[1] < asyncio.get_running_loop().time():
            return None
        return found[0]

    async def _respond(self, url: str, text: str, blocks: list[Any], ephemeral: bool) -> None:
        # no retry handlers: the outbox retries the reply (see _poster)
        hook = AsyncWebhookClient(url, timeout=self.http_timeout, retry_handlers=[])
        try:
            response = await hook.send(
                text=text,
                blocks=blocks,
                response_type="ephemeral" if ephemeral else "in_channel",
                replace_original=False,
            )
        except _NETWORK as exc:
            raise TransientSendError(f"response_url: {type(exc).__name__}: {exc}") from None
        if response.status_code == 429:
            wait = server_wait(_flat(response.headers), now=time.time())
            raise RateLimitedSend("response_url: rate limited", retry_after=wait)
        if response.status_code >= 500:
            raise TransientSendError(f"response_url: HTTP {response.status_code}")
        if response.status_code != 200:
            raise SlackSendError(f"response_url failed: HTTP {response.status_code}")

    async def edit(self, sent: Sent, reply: Reply) -> None:
        if sent.extra.get("ephemeral"):
            log.info("ephemeral message %s cannot be edited; left as is", sent.message_id)
            return
        text, blocks = render(reply)
        channel = sent.extra.get("channel") or sent.destination.channel
        args: dict[str, Any] = {
            "channel": channel,
            "ts": sent.message_id,
            "text": text,
            "blocks": blocks,
        }
        await _call(self._poster().chat_update, "chat.update", args)

    # -- incident channels, invites, pins (optional capabilities) --------------------------

    async def create_channel(self, name: str, topic: str) -> str:
        return await slack_admin.create_channel(self.web(), name, topic)

    async def invite(self, channel: str, user_ids: Sequence[str]) -> None:
        await slack_admin.invite(self.web(), channel, user_ids, self.me.user_id)

    async def pin(self, sent: Sent) -> None:
        await slack_admin.pin(self.web(), sent)

    async def dm_channel(self, user_id: str) -> str:
        """DirectMessages: the bot's IM channel with this user (conversations.open)."""
        found = await _call(self.web().conversations_open, "conversations.open", {"users": user_id})
        return str(found["channel"]["id"])

    async def set_topic(self, channel: str, text: str) -> None:
        """ChannelTopics: conversations.setTopic (Slack refuses a topic over 250 characters:
        cut, on one line, escaped)."""
        args = {"channel": channel, "topic": rendered_line(text, TOPIC_LIMIT, escape)}
        await _call(self.web().conversations_setTopic, "conversations.setTopic", args)

    async def set_usergroup(self, group_id: str, user_ids: Sequence[str]) -> None:
        """UserGroups: usergroups.users.update (the whole member list at once)."""
        args = {"usergroup": group_id, "users": ",".join(user_ids)}
        await _call(self.web().usergroups_users_update, "usergroups.users.update", args)

    async def close(self) -> None:
        if self._socket is not None:
            await _close_quietly(self._socket)
            self._socket = None
        # Envelopes not yet claimed or acked stay unacked: Slack delivers them again.
        for task in [*self._envelopes, *([self._acker] if self._acker else [])]:
            task.cancel()
        self._acks.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None
            self._web = self._posts = None  # their session is closed: built anew if used


class _DirectSocket(SocketModeClient):
    """slack-sdk's aiohttp client, less three scheduling steps per envelope.

    The SDK puts every frame it reads on a queue; a second task takes it off, parses it and
    starts a third task to run the listeners. In a burst each of those steps waits behind
    every other envelope's work on the loop, and the ack waits for all of them. Here an
    envelope (a frame with an envelope_id) is parsed as it is read and handed to the
    connector at once; the rest (hello, disconnect, anything malformed) takes the SDK's
    own path, so its reconnect handling is unchanged."""

    def __init__(
        self,
        on_envelope: Callable[[AsyncBaseSocketModeClient, dict[str, Any], str], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._on_envelope = on_envelope

    async def enqueue_message(self, message: str) -> None:
        parsed: Any = None
        if message.startswith("{"):
            with contextlib.suppress(ValueError):
                parsed = json.loads(message)
        if (
            isinstance(parsed, dict)
            and isinstance(parsed.get("envelope_id"), str)
            and parsed["envelope_id"]
            and parsed.get("type") != "disconnect"
        ):
            self._on_envelope(self, parsed, message)
            return
        await super().enqueue_message(message)


def _ack(envelope_id: str, kind: str, message: dict[str, Any]) -> dict[str, Any]:
    ack: dict[str, Any] = {"envelope_id": envelope_id}
    payload = message.get("payload")
    if kind == "slash_commands" and isinstance(payload, dict):
        # The immediate answer only the asker sees; the full answer is posted after.
        said = f"{payload.get('command', '')} {payload.get('text', '')}".strip()
        ack["payload"] = {"response_type": "ephemeral", "text": f"Working on `{escape(said)}`…"}
    return ack


async def _call(method: Any, name: str, args: dict[str, Any], **more: Any) -> Any:
    """One Web API call; failures become TransientSendError (outbox retries) or not."""
    try:
        return await method(**args, **more)
    except SlackApiError as exc:
        error = str(exc.response.get("error") or "")
        status = exc.response.status_code
        if status == 429 or error == "ratelimited":
            raise RateLimitedSend(f"{name}: rate limited", retry_after=_retry_after(exc)) from None
        if status >= 500 or error in _TRANSIENT:
            raise TransientSendError(f"{name}: HTTP {status} {error}".rstrip()) from None
        raise SlackSendError(f"{name} failed: {error or f'HTTP {status}'}", error) from None
    except _NETWORK as exc:
        raise TransientSendError(f"{name}: {type(exc).__name__}: {exc}") from None


def _retry_after(exc: SlackApiError) -> float | None:
    return server_wait(_flat(exc.response.headers or {}), now=time.time())


def _flat(headers: Any) -> dict[str, str]:
    # slack-sdk may hand a header's values as a list
    return {k: v[0] if isinstance(v, list) and v else str(v) for k, v in headers.items()}


def _connect_error(exc: SlackApiError, key: str, method: str) -> Exception:
    error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
    if error in _FATAL:
        return FatalConnectorError(
            f"Slack refused {key} at {method} ({error}): check the token in the config, "
            f"CHATOPSD_{key.replace('.', '_').upper()} or the systemd credential"
        )
    return ConnectionError(f"{method} failed: {error}")


async def _close_quietly(client: SocketModeClient) -> None:
    try:
        await client.close()  # type: ignore[no-untyped-call]
    except Exception as exc:  # a broken socket may fail to close; it is gone either way
        log.debug("closing the Socket Mode client: %s", exc)
