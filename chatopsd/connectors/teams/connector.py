"""The Teams connector: the relay listener run under the daemon's supervision, each relayed
request through the inbound pipeline to the bus, and replies through the Bot Connector.

Inbound, per request (inbound.py has the HTTP status policy): after authentication the
activity's conversation reference is stored and each of its events is admitted to the bus,
which records its claim in the shared store before the relay is answered 200: with several
instances, one killed after answering leaves a claim a survivor takes over, and a redelivery
is recognised whichever instance it reaches. A message is then handled after the answer. A
card button (`adaptiveCard/action` invoke) needs its answer in the HTTP response: the command
is awaited up to `invoke_deadline_seconds`; its first reply's first line is the answer (the
full replies are posted in the thread as for any command). A slower command is answered
"Working on it…" and, once done, the card is replaced (PUT) with its outcome, its buttons gone.

Outbound: Teams posts into a conversation the bot has heard from, so every activity's
reference (serviceUrl, tenant, team, channel, conversation) is kept in the store all
instances share (`Wiring.shared`), keyed by the chatopsd channel id. A reply to a command goes
into its thread; a post to a channel without a thread (a status change, an incident
announcement) starts a new thread by creating a conversation there; a direct message to a
person creates (or reuses) the bot's 1:1 chat with them. These survive a restart, because
the references are in the database, not in memory. Teams has no ephemeral messages: an
ephemeral reply goes to the person's 1:1 chat, or where the command was when there is none.
Incident channels are made through Graph (admin.py) in the team the bot heard from last.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from chatopsd.connectors.base import Session
from chatopsd.connectors.teams import events, render
from chatopsd.connectors.teams.admin import GraphChannels
from chatopsd.connectors.teams.auth import BotFrameworkAuth, TokenProvider
from chatopsd.connectors.teams.client import ConnectorClient, ConnectorError
from chatopsd.connectors.teams.config import TeamsSection
from chatopsd.connectors.teams.inbound import InboundPipeline
from chatopsd.connectors.teams.relay import RelayListener
from chatopsd.core.capabilities import ChannelRefused
from chatopsd.core.errors import TransientSendError
from chatopsd.core.limits import one_line
from chatopsd.core.messages import Destination, Reply, Sent
from chatopsd.core.ports import Clock, KeyValue

log = logging.getLogger("chatopsd.teams")

Json = dict[str, Any]
THREAD = ";messageid="
BOT_ROOTS_KEPT = 10_000  # threads we started that we still recognise
REFS_CACHED = 10_000  # conversation references kept in memory besides the store
DONE = "Done."
ANSWER_MAX = 300  # characters of a card button's answer


@dataclass(frozen=True, slots=True)
class Reference:
    """Where a chatopsd channel id lives in Teams: what posting there needs."""

    service_url: str
    tenant_id: str
    conversation_id: str  # without ;messageid=
    conversation_type: str  # "channel", "personal", "groupChat" or ""
    teams_channel_id: str  # the 19:…@thread.tacv2 of a team channel, else ""
    bot_id: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "service_url": self.service_url,
                "tenant_id": self.tenant_id,
                "conversation_id": self.conversation_id,
                "conversation_type": self.conversation_type,
                "teams_channel_id": self.teams_channel_id,
                "bot_id": self.bot_id,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Reference | None:
        try:
            raw = json.loads(text)
            return cls(**{k: str(raw[k]) for k in cls.__slots__})
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def channel(self) -> bool:
        return self.conversation_type == "channel" or bool(self.teams_channel_id)


class NoConversation(ConnectorError):
    """Nothing known about where a channel id is: the bot never heard from it."""


class References:
    """Conversation references in the shared key/value store, with a bounded memory cache (a
    write only when something changed)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._cache: OrderedDict[str, str] = OrderedDict()

    async def _put(self, key: str, value: str) -> None:
        if self._cache.get(key) == value:
            return
        await self.kv.put(key, value)
        self._remember(key, value)

    async def _get(self, key: str) -> str | None:
        if key in self._cache:
            return self._cache[key]
        value = await self.kv.get(key)
        if value is not None:
            self._remember(key, value)
        return value

    def _remember(self, key: str, value: str) -> None:
        self._cache[key] = value
        self._cache.move_to_end(key)
        while len(self._cache) > REFS_CACHED:
            self._cache.popitem(last=False)

    async def record(self, ref: events.ConversationRef) -> None:
        """Keep what an authenticated activity says about its conversation and sender."""
        found = Reference(
            service_url=ref.service_url,
            tenant_id=ref.tenant_id,
            conversation_id=ref.channel,
            conversation_type=ref.conversation_type,
            teams_channel_id=ref.teams_channel_id,
            bot_id=ref.bot_id,
        )
        await self.put(found)
        await self._put("teams:service_url", ref.service_url)
        if ref.team_group_id:  # the team incident channels are made in: the latest seen
            await self._put("teams:team_group", ref.team_group_id)
        if ref.user is not None and ref.conversation_type == "personal":
            for who in {ref.user.id, ref.user.aad_object_id} - {""}:
                await self._put(f"teams:dm:{who}", ref.channel)

    async def put(self, ref: Reference) -> None:
        await self._put(f"teams:conv:{ref.conversation_id}", ref.to_json())

    async def get(self, channel: str) -> Reference | None:
        text = await self._get(f"teams:conv:{channel.split(THREAD, 1)[0]}")
        return None if text is None else Reference.from_json(text)

    async def dm(self, user: str) -> str | None:
        return await self._get(f"teams:dm:{user}")

    async def remember_dm(self, user: str, conversation_id: str) -> None:
        await self._put(f"teams:dm:{user}", conversation_id)

    async def service_url(self) -> str | None:
        return await self._get("teams:service_url")

    async def team_group(self) -> str | None:
        return await self._get("teams:team_group")


class TeamsConnector:
    platform = "teams"

    def __init__(
        self,
        cfg: TeamsSection,
        *,
        clock: Clock,
        kv: KeyValue,
        prefix: str = "!",
        client: ConnectorClient | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.prefix = prefix
        self.refs = References(kv)
        self.tokens = TokenProvider(cfg, cfg.bot_scope, clock=clock)
        self.client = client or ConnectorClient(
            self.tokens, service_url_hosts=cfg.service_url_hosts, clock=clock
        )
        self.auth = BotFrameworkAuth(cfg, clock=clock)
        self.graph_tokens = TokenProvider(cfg, cfg.graph_scope, clock=clock)
        self.graph = GraphChannels(self.graph_tokens, cfg.graph_url, clock=clock)
        self._bot_roots: OrderedDict[str, None] = OrderedDict()
        self.translate = functools.partial(
            events.translate,
            app_id=cfg.app_id,
            prefix=prefix,
            allow_bots=cfg.allow_bots,
            team_ids=tuple(cfg.team_ids),
            bot_roots=self._bot_roots,
        )
        self.pipeline = InboundPipeline(
            cfg,
            auth=self.auth,
            translate=self.translate,
            admit=self._admit,
            submit=self._submit,
            late=self._late,
        )
        self.listener = RelayListener(cfg, self.pipeline.handle, clock=clock)
        self._session: Session | None = None
        self._work: dict[str, list[asyncio.Task[list[Reply]]]] = {}

    # -- life --------------------------------------------------------------------------------

    async def run(self, session: Session) -> None:
        """Listen on the relay until cancelled; the listener reconnects by itself (with
        backoff), so this returns only by RelayRefused: a key, path or namespace no retry
        fixes (a FatalConnectorError, which the supervisor reports)."""
        self._session = session
        await self.listener.run(on_ready=session.ready, on_lost=session.lost)

    async def close(self) -> None:
        await self.listener.close()
        await self.pipeline.close()
        await self.auth.close()
        await self.client.close()
        await self.tokens.close()
        await self.graph.close()
        await self.graph_tokens.close()

    # -- inbound -----------------------------------------------------------------------------

    async def _admit(self, translated: events.Translated) -> bool:
        """Record the reference and claim every event before the relay is answered."""
        if translated.reference is not None:
            await self.refs.record(translated.reference)
        session = self._session
        if session is None or not translated.events:
            return True
        work: list[asyncio.Task[list[Reply]]] = []
        admitted = True
        for event in translated.events:
            admitted = await session.admit(event, work) and admitted
        if translated.invoke is not None and admitted:  # _submit takes it (only if admitted)
            self._work[translated.envelope.id] = work
        return admitted

    async def _submit(self, translated: events.Translated) -> Json | None:
        """A message: already being handled (admitted). An invoke: its answer body."""
        if translated.invoke is None:
            return None
        work = self._work.pop(translated.envelope.id, [])
        if not translated.events:
            return None  # not one of our buttons: nothing to say
        replies: list[Reply] = []
        for done in await asyncio.gather(*work):
            replies.extend(done)
        return render.invoke_message(answer_text(replies))

    async def _late(self, translated: events.Translated, answer: Json | None) -> None:
        """A slow button's outcome, after "Working on it…": the card is replaced with it."""
        ref = translated.reference
        if answer is None or ref is None or not translated.reply_to_id:
            return
        text = str(answer.get("value", DONE))
        card = render.card(Reply(text=text))
        await self.client.update(
            ref.service_url, ref.conversation_id, translated.reply_to_id, render.card_activity(card)
        )

    # -- outbound ----------------------------------------------------------------------------

    async def _reference(self, channel: str) -> Reference:
        ref = await self.refs.get(channel)
        if ref is None:
            raise NoConversation(
                f"teams: no conversation {channel[:80]} known (the bot must be installed there "
                "and have received an activity from it)",
                404,
            )
        return ref

    async def send(self, destination: Destination, reply: Reply) -> Sent | None:
        if reply.ephemeral and destination.actor:
            # No ephemeral messages in Teams: the person's 1:1 chat, when there is one.
            dm = await self.refs.dm(destination.actor)
            if dm is not None:
                private = Destination(self.platform, dm, actor=destination.actor)
                return await self.send(private, replace(reply, ephemeral=False))
        ref = await self._reference(destination.channel)
        activity = render.render(reply, self.prefix)
        thread = reply.thread or destination.thread or destination.reply_to
        if ref.channel and thread:
            conversation = f"{ref.conversation_id}{THREAD}{thread}"
            sent_id = await self.client.send(ref.service_url, conversation, activity)
        elif ref.channel:
            created = await self.client.create_conversation(
                ref.service_url,
                tenant_id=ref.tenant_id,
                bot_id=ref.bot_id,
                channel=ref.teams_channel_id or ref.conversation_id,
                activity=activity,
            )
            conversation, sent_id = created.conversation_id, created.activity_id
            if sent_id:
                self._remember_root(sent_id)
        else:
            conversation = ref.conversation_id
            sent_id = await self.client.send(ref.service_url, conversation, activity)
        if not sent_id:
            raise TransientSendError("teams: the Connector posted without an activity id")
        return Sent(destination, sent_id, {"conversation": conversation})

    async def edit(self, sent: Sent, reply: Reply) -> None:
        ref = await self._reference(sent.destination.channel)
        conversation = sent.extra.get("conversation") or ref.conversation_id
        activity = render.render(reply, self.prefix)
        await self.client.update(ref.service_url, conversation, sent.message_id, activity)

    async def dm_channel(self, user_id: str) -> str:
        """DirectMessages: the bot's 1:1 chat with the person (a 29:… id or an Entra object
        id, which Teams takes as a member id too), created once and then kept."""
        known = await self.refs.dm(user_id)
        if known is not None:
            return known
        service_url = self.cfg.service_url or await self.refs.service_url()
        if service_url is None:
            raise NoConversation("teams: no serviceUrl known yet for a direct message", 404)
        bot_id = f"28:{self.cfg.app_id}"
        created = await self.client.create_conversation(
            service_url, tenant_id=self.cfg.tenant_id, bot_id=bot_id, member=user_id
        )
        ref = Reference(
            service_url=created.service_url or service_url,
            tenant_id=self.cfg.tenant_id,
            conversation_id=created.conversation_id,
            conversation_type="personal",
            teams_channel_id="",
            bot_id=bot_id,
        )
        await self.refs.put(ref)
        await self.refs.remember_dm(user_id, created.conversation_id)
        return created.conversation_id

    async def create_channel(self, name: str, topic: str) -> str:
        """IncidentChannels: a standard channel through Graph in the team the bot heard from
        last (it needs the app's Channel.Create.Group permission there); ChannelRefused when
        no team is known yet or Graph refuses, and the incident gets a thread instead. The
        bot is installed in the team, so it may post there: the new channel's reference is
        kept like one it heard from."""
        team = await self.refs.team_group()
        service_url = self.cfg.service_url or await self.refs.service_url()
        if team is None or service_url is None:
            raise ChannelRefused(
                "no Teams team known yet to create the channel in (the bot hears of a team "
                "when it is installed there or receives a message from it)"
            )
        channel = await self.graph.create_channel(team, name, topic)
        await self.refs.put(
            Reference(
                service_url=service_url,
                tenant_id=self.cfg.tenant_id,
                conversation_id=channel,
                conversation_type="channel",
                teams_channel_id=channel,
                bot_id=f"28:{self.cfg.app_id}",
            )
        )
        return channel

    def _remember_root(self, activity_id: str) -> None:
        """A thread we started: replies in it need no prefix. Bounded, oldest forgotten."""
        self._bot_roots[activity_id] = None
        while len(self._bot_roots) > BOT_ROOTS_KEPT:
            self._bot_roots.popitem(last=False)


def answer_text(replies: list[Reply]) -> str:
    """What a card button's invoke answer says: the first line of the first reply."""
    for reply in replies:
        text = reply.plain().strip()
        if text:
            return one_line(text.splitlines()[0], ANSWER_MAX)
    return DONE
