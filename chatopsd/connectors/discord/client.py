"""Discord over the gateway, with discord.py: messages, mentions, slash commands, buttons.

discord.py speaks the gateway protocol (heartbeats, RESUME, op 7, op 9) and REST rate limits;
`gateway.py` owns the reconnect policy and the zombie watchdog. One `run()` is one
logged-in client; it ends only on a close retrying cannot fix, and the fatal ones (bad token
4004, privileged intent 4014) become `FatalConnectorError` saying what to fix.

Caches are off: no message cache, no member cache, no chunking, so memory does not grow with
the size of the servers we are in. Outbound messages are raw JSON through discord.py's HTTP
client (its rate-limit buckets and 429 handling), rendered by `render.py`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import yarl
from discord.http import Route

from chatopsd.connectors.base import Session
from chatopsd.connectors.discord import commands as discord_commands
from chatopsd.connectors.discord import events
from chatopsd.connectors.discord.config import DiscordSection
from chatopsd.connectors.discord.gateway import GatewayClient, watch_acks
from chatopsd.connectors.discord.render import render
from chatopsd.core.errors import FatalConnectorError, TransientSendError
from chatopsd.core.limits import one_line
from chatopsd.core.messages import Actor, Destination, Inbound, Kind, Reply, Sent
from chatopsd.core.ports import Clock, SystemClock

log = logging.getLogger("chatopsd.discord")

PORTAL = "https://discord.com/developers/applications"
BAD_TOKEN = (
    "Discord rejected the bot token (close 4004 / 401). In the developer portal "
    f"({PORTAL}) open your application > Bot > Reset Token, and put the new token in "
    "discord.token (or CHATOPSD_DISCORD_TOKEN / the discord_token credential)."
)
MISSING_INTENT = (
    "Discord refused the privileged Message Content intent (close 4014). In the developer "
    f"portal ({PORTAL}) open your application > Bot > Privileged Gateway Intents, turn on "
    "MESSAGE CONTENT INTENT, save, and restart chatopsd."
)
INTERACTION_TTL = 15 * 60.0  # Discord's interaction tokens expire after 15 minutes
ALREADY_ACKNOWLEDGED = 40060  # JSON error code: another session answered the callback first
SEND_RATELIMIT_CAP = 30.0  # longer 429 waits go back to the outbox instead of blocking it


def configure_endpoints(api_url: str, gateway_url: str) -> None:
    """Point discord.py at the REST base and the gateway: the ONE place they are set.

    They are module-level in discord.py (class attributes), so every client in the process
    shares them; there is one Discord connector per process."""
    discord.http.Route.BASE = api_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def intents() -> discord.Intents:
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_messages = True
    wanted.message_content = True
    wanted.guild_reactions = True
    wanted.dm_messages = True  # a DM is addressed to us: no prefix needed (core/addressing)
    return wanted


@dataclass
class _Pending:
    """An interaction we deferred: its replies go out as follow-ups through its token."""

    token: str
    application_id: int
    expires: float
    # A slash command's deferred "thinking…" response, which its first answer replaces
    thinking: bool = False


class _Client(GatewayClient):
    def __init__(self, owner: DiscordConnector, session: Session) -> None:
        # We never join voice: skip discord.py's warnings about missing voice libraries.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(
            intents=intents(),
            max_messages=None,
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
            heartbeat_timeout=owner.config.heartbeat_timeout,
            guild_ready_timeout=owner.config.guild_ready_timeout,
            max_ratelimit_timeout=SEND_RATELIMIT_CAP,
            enable_debug_events=False,
        )
        self.owner = owner
        self.session = session

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py sleeps a fixed 5 s before every re-IDENTIFY; the delay is configurable.
        if not initial:
            await asyncio.sleep(self.owner.config.identify_delay)

    async def on_ready(self) -> None:
        self.session.ready()
        await self.owner.register_commands(self)

    async def on_resumed(self) -> None:
        self.session.ready()

    async def on_disconnect(self) -> None:
        self.session.lost("gateway connection lost; resuming")

    async def on_message(self, message: discord.Message) -> None:
        self.owner.on_message(self, message)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        self.owner.on_reaction(self, payload)

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        await self.owner.on_interaction(interaction)


class DiscordConnector:
    platform = "discord"

    def __init__(
        self, config: DiscordSection, *, clock: Clock | None = None, prefix: str = "!"
    ) -> None:
        self.config = config
        self.prefix = prefix
        self.clock = clock or SystemClock()
        self._client: _Client | None = None
        self._pending: dict[str, _Pending] = {}
        self._registered: set[int | None] = set()  # once per process, not per reconnect

    # -- connection ------------------------------------------------------------------------

    async def run(self, session: Session) -> None:
        configure_endpoints(self.config.api_url, self.config.gateway_url)
        client = _Client(self, session)
        self._client = client
        watchdog = asyncio.get_running_loop().create_task(
            watch_acks(client), name="discord:heartbeat-ack-watchdog"
        )
        try:
            await client.start(self.config.token.get_secret_value(), reconnect=True)
        except discord.LoginFailure:
            raise FatalConnectorError(BAD_TOKEN) from None
        except discord.PrivilegedIntentsRequired:
            raise FatalConnectorError(MISSING_INTENT) from None
        except discord.ConnectionClosed as exc:
            if exc.code == 4004:
                raise FatalConnectorError(BAD_TOKEN) from None
            if exc.code == 4014:
                raise FatalConnectorError(MISSING_INTENT) from None
            if exc.code in (4010, 4011, 4012, 4013):  # shard, sharding, API version, intents
                raise FatalConnectorError(
                    f"Discord closed the gateway with code {exc.code} ({exc.reason or 'no reason'})"
                    "; retrying cannot fix this: check discord.api_url and discord.gateway_url"
                ) from None
            raise
        finally:
            watchdog.cancel()
            self._client = None
            if not client.is_closed():
                await client.close()

    async def close(self) -> None:
        client = self._client
        if client is not None and not client.is_closed():
            await client.close()

    async def register_commands(self, client: discord.Client) -> None:
        app_id = client.application_id
        if app_id is None:
            return
        scopes: list[int | None] = list(self.config.guild_ids) or [None]
        for guild_id in scopes:
            if guild_id in self._registered:
                continue
            try:
                await discord_commands.sync(client.http, app_id, guild_id)
            except discord.Forbidden:
                log.error(
                    "cannot register slash commands in guild %s: re-invite the bot with the "
                    "applications.commands scope (developer portal > OAuth2 > URL Generator)",
                    guild_id,
                )
                continue
            except Exception as exc:  # never fatal: the prefix commands work without them
                log.warning("registering slash commands failed (guild %s): %s", guild_id, exc)
                continue  # tried again on the next READY
            self._registered.add(guild_id)

    # -- inbound ---------------------------------------------------------------------------

    def _ignored(self, client: discord.Client, user: discord.abc.User | None) -> bool:
        if user is None:
            return False
        if client.user is not None and user.id == client.user.id:
            return True
        return user.bot and not self.config.allow_bots

    def on_message(self, client: discord.Client, message: discord.Message) -> None:
        me = events.identity(
            str(client.user.id) if client.user is not None else "", self.config.allow_bots
        )
        inbound = events.message_event(_fields(message), me, self.prefix)
        if inbound is not None:
            self._session_of(client).emit(inbound)

    def on_reaction(self, client: discord.Client, payload: discord.RawReactionActionEvent) -> None:
        if client.user is not None and payload.user_id == client.user.id:
            return
        # in a server the event carries the member; in a DM only the user id, so the user
        # comes from discord.py's cache, or stays unknown (its reaction then never counts)
        member = payload.member or client.get_user(payload.user_id)
        if member is not None and member.bot and not self.config.allow_bots:
            return
        emoji = payload.emoji.name or str(payload.emoji.id)
        unknown = Actor(id=str(payload.user_id), resolved=False)
        self._session_of(client).emit(
            Inbound(
                platform=self.platform,
                channel=str(payload.channel_id),
                actor=_actor(member) if member is not None else unknown,
                text=emoji,
                kind="reaction",
                event_id=f"reaction:{payload.message_id}:{payload.user_id}:{emoji}",
                message_id=str(payload.message_id),
            )
        )

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        client = interaction.client
        if self._ignored(client, interaction.user):
            return
        data: dict[str, Any] = dict(interaction.data or {})
        kind: Kind
        if interaction.type is discord.InteractionType.application_command:
            options = data.get("options", ())
            args = next((str(o.get("value", "")) for o in options if o.get("name") == "args"), "")
            text, kind = f"{data.get('name', '')} {args}".strip(), "slash"
        elif interaction.type is discord.InteractionType.component and data.get("custom_id"):
            text, kind = str(data["custom_id"]), "button"
        else:
            return
        key = str(interaction.id)
        try:
            # Within Discord's 3 s: "thinking..." for a command; nothing visible for a click.
            await interaction.response.defer(thinking=kind == "slash")
        except discord.HTTPException as exc:
            if exc.code != ALREADY_ACKNOWLEDGED:
                log.warning("could not defer interaction %s: %s; replying in channel", key, exc)
            else:
                # Another instance of this bot deferred it first (every session gets every
                # interaction). Its token carries follow-ups from any of us, and whichever
                # instance claims the command must answer through it, or the "thinking..."
                # the other one started would never end.
                self._remember(interaction, kind == "slash")
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("could not defer interaction %s: %s; replying in channel", key, exc)
        else:
            self._remember(interaction, kind == "slash")
        self._emit(
            client,
            kind,
            channel=str(interaction.channel_id),
            actor=interaction.user,
            text=text,
            event_id=key,
            message_id=key,
        )

    def _remember(self, interaction: discord.Interaction[Any], thinking: bool) -> None:
        """An acknowledged interaction: its replies go out as follow-ups through its token."""
        self._prune_pending()
        self._pending[str(interaction.id)] = _Pending(
            interaction.token,
            interaction.application_id,
            self.clock.monotonic() + INTERACTION_TTL,
            thinking,
        )

    def _emit(
        self,
        client: discord.Client,
        kind: Kind,
        *,
        channel: str,
        actor: discord.abc.User,
        text: str,
        event_id: str,
        message_id: str,
    ) -> None:
        self._session_of(client).emit(
            Inbound(
                platform=self.platform,
                channel=channel,
                actor=_actor(actor),
                text=text,
                kind=kind,
                event_id=event_id,
                message_id=message_id,
            )
        )

    @staticmethod
    def _session_of(client: discord.Client) -> Session:
        assert isinstance(client, _Client)
        return client.session

    def _prune_pending(self) -> None:
        now = self.clock.monotonic()
        for key in [k for k, p in self._pending.items() if p.expires < now]:
            del self._pending[key]

    # -- outbound --------------------------------------------------------------------------

    async def send(self, destination: Destination, reply: Reply) -> Sent | None:
        payload = render(reply)
        pending = self._pending.get(destination.reply_to or "")
        if pending is not None and pending.expires > self.clock.monotonic():
            if pending.thinking and reply.key and reply.key.endswith("#0") and not reply.ephemeral:
                # The first answer of a command claimed among several instances replaces the
                # "thinking…" response (PATCH @original): done twice, by a dead instance and
                # the one that took the command over, it is still one message.
                route = Route(
                    "PATCH",
                    "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
                    webhook_id=pending.application_id,
                    webhook_token=pending.token,
                )
                data = await self._request(route, payload)
                return Sent(
                    destination, str(data["id"]), {"interaction": destination.reply_to or ""}
                )
            if reply.ephemeral:
                payload["flags"] = 64
            route = Route(
                "POST",
                "/webhooks/{webhook_id}/{webhook_token}",
                webhook_id=pending.application_id,
                webhook_token=pending.token,
            )
            data = await self._request(route, payload, params={"wait": "true"})
            return Sent(destination, str(data["id"]), {"interaction": destination.reply_to or ""})
        if destination.reply_to:
            payload["message_reference"] = {
                "message_id": destination.reply_to,
                "fail_if_not_exists": False,
            }
        if reply.key:
            # Discord drops a second message with the same nonce from us for a few minutes
            # and returns the first: a survivor re-sending a dead instance's answer is a no-op.
            payload["nonce"] = hashlib.sha256(reply.key.encode()).hexdigest()[:25]
            payload["enforce_nonce"] = True
        route = Route("POST", "/channels/{channel_id}/messages", channel_id=destination.channel)
        data = await self._request(route, payload)
        return Sent(destination, str(data["id"]))

    async def edit(self, sent: Sent, reply: Reply) -> None:
        payload = render(reply)
        pending = self._pending.get(sent.extra.get("interaction", ""))
        if pending is not None and pending.expires > self.clock.monotonic():
            route = Route(
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                webhook_id=pending.application_id,
                webhook_token=pending.token,
                message_id=sent.message_id,
            )
        else:
            route = Route(
                "PATCH",
                "/channels/{channel_id}/messages/{message_id}",
                channel_id=sent.destination.channel,
                message_id=sent.message_id,
            )
        await self._request(route, payload)

    async def set_topic(self, channel: str, text: str) -> None:
        """ChannelTopics: Modify Channel (PATCH /channels/{id}) with the topic."""
        route = Route("PATCH", "/channels/{channel_id}", channel_id=channel)
        # Discord refuses a topic over 1,024 characters (a topic notifies nobody: as typed)
        await self._request(route, {"topic": one_line(text, 1024)})

    async def dm_channel(self, user_id: str) -> str:
        """DirectMessages: the DM channel with this user (POST /users/@me/channels)."""
        data = await self._request(Route("POST", "/users/@me/channels"), {"recipient_id": user_id})
        return str(data["id"])

    async def _request(
        self, route: Route, payload: dict[str, Any], params: dict[str, str] | None = None
    ) -> Any:
        client = self._client
        if client is None or client.is_closed():
            raise TransientSendError("discord is not connected")
        try:
            if params:
                return await client.http.request(route, json=payload, params=params)
            return await client.http.request(route, json=payload)
        except discord.RateLimited as exc:
            raise TransientSendError("rate limited", retry_after=exc.retry_after) from None
        except discord.DiscordServerError as exc:
            raise TransientSendError(f"discord server error {exc.status}") from None
        except discord.HTTPException as exc:
            if exc.status == 429:  # a 429 without Via: Cloudflare's ban, minutes not seconds
                raise TransientSendError("blocked by Cloudflare (429)", retry_after=60.0) from None
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TransientSendError(f"{type(exc).__name__}: {exc}") from None


def _fields(message: discord.Message) -> events.MessageFields:
    """The fields events.py reads, from discord.py's parsed message."""
    ref = message.reference.resolved if message.reference is not None else None
    channel = message.channel
    return events.MessageFields(
        id=str(message.id),
        channel_id=str(channel.id),
        author_id=str(message.author.id),
        author_name=message.author.name,
        content=message.content,
        author_bot=message.author.bot,
        webhook=message.webhook_id is not None,
        direct=message.guild is None,
        replied_to=str(ref.author.id) if isinstance(ref, discord.Message) else None,
        thread_owner=str(channel.owner_id) if isinstance(channel, discord.Thread) else None,
    )


def _actor(user: discord.abc.User) -> Actor:
    return Actor(id=str(user.id), name=user.name, is_bot=user.bot)
