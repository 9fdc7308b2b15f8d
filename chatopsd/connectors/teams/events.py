"""Bot Framework activities from Teams -> neutral `Inbound` events and conversation references.
Pure functions.

Lenient by design: real Teams traffic has arrived without `conversation` or `recipient`, with
entity types nobody documented, with `channelData` absent; SDKs with strict models answered
those with HTTP 500 and Teams then held back delivery for hours. So only what is used is read
(type, id, serviceUrl, channelId, from, recipient, conversation, text, entities, value, name,
replyToId, channelData.tenant/team/channel/eventType, membersAdded/Removed, reactionsAdded,
action), a field of the wrong type reads as absent, and only an activity that is not an object
or has no `type` is `MalformedActivity`.

What comes out (`Translated`):
  * `events`: the Inbounds for the bus. A message mentioning the bot has the mention removed by
    core/addressing (the bot's `<at>…</at>` tokens, found through the `mention` entities, are
    the mention syntax); other people's mentions read `@Name`. A card button (`Action.Execute`
    invoke `adaptiveCard/action` with our verb, or an `Action.Submit` message carrying our key)
    is a "button" event with the button's command. Each added reaction is a "reaction" event.
  * `reference`: where to post later (serviceUrl, tenant, team, channel, conversation), from
    every activity: the serviceUrl may move, and proactive posts need the latest.
  * `installed`: True when the bot was added to the conversation or team, False when removed.
Channel messages are threads in Teams: `19:…@thread.tacv2;messageid=<root>`; the root post of a
thread is the top level (thread None, like Mattermost), a reply carries its root as thread.
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Container, Mapping
from dataclasses import dataclass
from typing import Any

from chatopsd.connectors.teams.render import BUTTON_KEY, VERB
from chatopsd.core.addressing import address
from chatopsd.core.messages import Actor, Inbound, Kind

PLATFORM = "teams"
Json = Mapping[str, Any]
_AT = re.compile(r"<at>([^<]{0,256})</at>", re.IGNORECASE)
_THREAD = ";messageid="
COMMAND_MAX = 2000  # a button's command text


class MalformedActivity(ValueError):
    """The body is not a Bot Framework activity at all (not an object, or no type)."""


def _obj(parent: Json, key: str) -> Json:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _str(parent: Json, key: str) -> str:
    value = parent.get(key)
    return value if isinstance(value, str) else ""


def _list(parent: Json, key: str) -> list[Any]:
    value = parent.get(key)
    return value if isinstance(value, list) else []


@dataclass(frozen=True, slots=True)
class Envelope:
    """The fields authentication needs, read before anything else."""

    type: str
    id: str
    service_url: str
    channel_id: str
    tenant_id: str


def envelope(activity: object) -> Envelope:
    """Read leniently (an absent field is ""); MalformedActivity only for a non-object."""
    if not isinstance(activity, dict):
        raise MalformedActivity(f"the body is {type(activity).__name__}, not an activity object")
    kind = _str(activity, "type")
    conversation, data = _obj(activity, "conversation"), _obj(activity, "channelData")
    return Envelope(
        type=kind,
        id=_str(activity, "id"),
        service_url=_str(activity, "serviceUrl"),
        channel_id=_str(activity, "channelId"),
        # Teams puts the tenant in both places; either will do, and they must not disagree
        # (checked by the caller through `tenants`).
        tenant_id=_str(_obj(data, "tenant"), "id") or _str(conversation, "tenantId"),
    )


def tenants(activity: Json) -> set[str]:
    """Every tenant id the activity names (two that differ are refused)."""
    found = {
        _str(_obj(_obj(activity, "channelData"), "tenant"), "id"),
        _str(_obj(activity, "conversation"), "tenantId"),
    }
    return {t for t in found if t}


@dataclass(frozen=True, slots=True)
class Account:
    id: str  # the Teams id (29:… for people, 28:… for bots): what the Connector takes
    aad_object_id: str  # the Entra object id: stable, and what operators can look up
    name: str
    is_bot: bool


@dataclass(frozen=True, slots=True)
class ConversationRef:
    """Enough to post into a conversation later (proactive messages)."""

    service_url: str
    tenant_id: str
    conversation_id: str  # as Teams gave it, ;messageid= included
    conversation_type: str  # "personal", "channel", "groupChat", or "" when not said
    team_id: str
    teams_channel_id: str  # channelData.channel.id (19:…@thread.tacv2)
    bot_id: str
    user: Account | None  # the person, in a personal chat
    # The team's Microsoft 365 group id (channelData.team.aadGroupId): what Graph names a
    # team by, for creating channels in it.
    team_group_id: str = ""

    @property
    def channel(self) -> str:
        """The conversation without its thread: the chatopsd channel id."""
        return self.conversation_id.split(_THREAD, 1)[0]


@dataclass(frozen=True, slots=True)
class Translated:
    envelope: Envelope
    events: tuple[Inbound, ...] = ()
    reference: ConversationRef | None = None
    installed: bool | None = None
    sender: Account | None = None
    invoke: str | None = None  # the invoke's name, for an invoke
    reply_to_id: str = ""  # the message a button or reaction was on


def _account(obj: Json) -> Account | None:
    aid = _str(obj, "id")
    if not aid:
        return None
    return Account(
        id=aid,
        aad_object_id=_str(obj, "aadObjectId"),
        name=_str(obj, "name"),
        is_bot=_str(obj, "role") == "bot" or aid.startswith("28:"),
    )


def _actor(account: Account) -> Actor:
    # The Entra object id when Teams gives it: the same person in every chat and app, and
    # what an operator finds in the Entra admin centre for auth.identities.
    return Actor(id=account.aad_object_id or account.id, name=account.name, is_bot=account.is_bot)


def translate(
    activity: object,
    *,
    app_id: str,
    prefix: str,
    allow_bots: bool = False,
    team_ids: Collection[str] = (),
    bot_roots: Container[str] = (),
) -> Translated:
    """One activity as events for the bus and a reference to keep. Raises MalformedActivity
    only for a body that is no activity; anything else unexpected just yields fewer events."""
    env = envelope(activity)
    assert isinstance(activity, dict)
    if not env.type:
        raise MalformedActivity("the activity has no type")
    conversation, data = _obj(activity, "conversation"), _obj(activity, "channelData")
    recipient = _account(_obj(activity, "recipient"))
    bot_id = recipient.id if recipient is not None else f"28:{app_id}"
    sender = _account(_obj(activity, "from"))
    team = _obj(data, "team")
    conversation_id = _str(conversation, "id")
    reference = None
    if conversation_id and env.service_url:
        ctype = _str(conversation, "conversationType")
        reference = ConversationRef(
            service_url=env.service_url,
            tenant_id=env.tenant_id,
            conversation_id=conversation_id,
            conversation_type=ctype,
            team_id=_str(team, "id"),
            teams_channel_id=_str(_obj(data, "channel"), "id"),
            bot_id=bot_id,
            user=sender if ctype == "personal" else None,
            team_group_id=_str(team, "aadGroupId"),
        )
    base = Translated(env, reference=reference, sender=sender)
    if team_ids and team and not ({_str(team, "id"), _str(team, "name")} & set(team_ids)):
        return Translated(env, sender=sender)  # a team this daemon does not serve
    if env.type == "conversationUpdate":
        return _membership(activity, base, bot_id)
    if env.type == "installationUpdate":
        action = _str(activity, "action")
        installed = True if action.startswith("add") else False if action else None
        return Translated(env, reference=reference, sender=sender, installed=installed)
    if sender is None or sender.id == bot_id or (sender.is_bot and not allow_bots):
        return base  # nobody, ourselves (answering could loop), or another bot
    if conversation_id and reference is not None:
        channel = reference.channel
    else:
        return base  # nowhere to answer
    root = conversation_id.split(_THREAD, 1)[1] if _THREAD in conversation_id else ""
    thread = root if root and root != env.id else None
    common = _Where(channel, _actor(sender), thread)
    if env.type == "invoke":
        return _invoke(activity, base, env, common)
    if env.type == "messageReaction":
        reply_to = _str(activity, "replyToId")
        who = _actor(sender).id
        events = tuple(
            common.event(
                kind[:64], "reaction", f"reaction:{reply_to}:{who}:{kind[:64]}:{env.id}", reply_to
            )
            for reaction in _list(activity, "reactionsAdded")
            if isinstance(reaction, dict) and (kind := _str(reaction, "type"))
        )
        return _with(base, events=events, reply_to_id=reply_to)
    if env.type != "message":
        return base
    command = _button_command(_obj(activity, "value"))
    if command is not None:  # Action.Submit on one of our cards
        reply_to = _str(activity, "replyToId")
        event = common.event(command, "button", env.id, reply_to)
        return _with(base, events=(event,), reply_to_id=reply_to)
    text = _str(activity, "text").replace("\u00a0", " ").replace("&nbsp;", " ")
    mine = _bot_mentions(activity, bot_id, app_id)
    if not mine and recipient is not None and recipient.name:
        mine = {f"<at>{recipient.name}</at>"}  # the mention entity missing: the tag still says
    text = _AT.sub(lambda m: m.group(0) if m.group(0) in mine else f"@{m.group(1)}", text)
    found = address(
        text,
        prefix=prefix,
        mentions=tuple(mine),
        direct=reference.conversation_type == "personal",
        bot_thread=thread is not None and thread in bot_roots,
    )
    if found is None:
        return base
    kind, body = found.inbound(text)
    event = common.event(html.unescape(body).strip(), kind, env.id, env.id)
    return _with(base, events=(event,))


@dataclass(frozen=True, slots=True)
class _Where:
    """Where an event happened and who did it: what every Inbound of an activity shares."""

    channel: str
    actor: Actor
    thread: str | None

    def event(self, text: str, kind: Kind, event_id: str, message_id: str) -> Inbound:
        return Inbound(
            platform=PLATFORM,
            channel=self.channel,
            actor=self.actor,
            text=text,
            kind=kind,
            event_id=event_id,
            thread=self.thread,
            message_id=message_id or None,
        )


def _with(base: Translated, **changes: Any) -> Translated:
    return Translated(
        envelope=base.envelope,
        events=changes.get("events", base.events),
        reference=base.reference,
        installed=base.installed,
        sender=base.sender,
        invoke=changes.get("invoke", base.invoke),
        reply_to_id=changes.get("reply_to_id", base.reply_to_id),
    )


def _bot_mentions(activity: Json, bot_id: str, app_id: str) -> set[str]:
    """The literal `<at>…</at>` tokens that mention the bot, from the mention entities."""
    tokens: set[str] = set()
    for entity in _list(activity, "entities"):
        if not isinstance(entity, dict) or _str(entity, "type") != "mention":
            continue
        mentioned = _obj(entity, "mentioned")
        mid = _str(mentioned, "id")
        if mid != bot_id and mid != f"28:{app_id}":
            continue
        token = _str(entity, "text") or f"<at>{_str(mentioned, 'name')}</at>"
        if _AT.fullmatch(token):
            tokens.add(token)
    return tokens


def _button_command(value: Json) -> str | None:
    command = value.get(BUTTON_KEY)
    if isinstance(command, str) and command.strip() and len(command) <= COMMAND_MAX:
        return command.strip()
    return None


def _invoke(activity: Json, base: Translated, env: Envelope, common: _Where) -> Translated:
    name = _str(activity, "name")
    reply_to = _str(activity, "replyToId")
    invoked = _with(base, invoke=name or "(unnamed)", reply_to_id=reply_to)
    if name != "adaptiveCard/action":
        return invoked
    action = _obj(_obj(activity, "value"), "action")
    if _str(action, "type") != "Action.Execute" or _str(action, "verb") != VERB:
        return invoked  # somebody else's card
    command = _button_command(_obj(action, "data"))
    if command is None:
        return invoked
    event = common.event(command, "button", env.id, reply_to)
    return _with(invoked, events=(event,))


def _membership(activity: Json, base: Translated, bot_id: str) -> Translated:
    """conversationUpdate: the bot added (installed in a team or chat) or removed."""

    def names_bot(key: str) -> bool:
        return any(isinstance(m, dict) and _str(m, "id") == bot_id for m in _list(activity, key))

    installed: bool | None = None
    if names_bot("membersAdded"):
        installed = True
    elif names_bot("membersRemoved") or _str(_obj(activity, "channelData"), "eventType") in (
        "teamDeleted",
    ):
        installed = False
    return Translated(
        base.envelope, reference=base.reference, installed=installed, sender=base.sender
    )
