"""Socket Mode envelope payloads -> neutral `Inbound` events. Pure functions.

The actor comes back with its Slack user id only (and the name the payload carried, if any);
the connector fills in display name and email from users.info afterwards.
"""

from __future__ import annotations

from typing import Any

from chatopsd.connectors.slack.render import BUTTON_PREFIX
from chatopsd.core.addressing import Addressed, Identity, address
from chatopsd.core.messages import Actor, Inbound

PLATFORM = "slack"
# Message subtypes that are still a person typing something; the others (joins, edits,
# deletions, bot_message, ...) are not commands.
_PLAIN_SUBTYPES = {None, "", "thread_broadcast", "file_share", "me_message"}


class MalformedPayload(ValueError):
    """The envelope's payload does not have the shape Slack documents."""


def identity(user_id: str, bot_id: str = "", allow_bots: bool = False) -> Identity:
    """Who we are on Slack (from auth.test): a message mentions us as <@U123> (also labelled,
    <@U123|name>)."""
    mentions = (f"<@{user_id}>",) if user_id else ()
    return Identity(user_id, mentions, allow_bots, bot_id)


def translate(kind: str, payload: Any, me: Identity, prefix: str) -> Inbound | None:
    """One envelope payload as an Inbound, or None when it is nothing for us.

    Raises MalformedPayload when a field we rely on is missing or of the wrong type."""
    if not isinstance(payload, dict):
        raise MalformedPayload(f"{kind} payload is {type(payload).__name__}, not an object")
    if kind == "events_api":
        return _event(payload, me, prefix)
    if kind == "slash_commands":
        return _slash(payload)
    if kind == "interactive":
        return _interactive(payload)
    return None


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedPayload(f"{where}.{key} is missing or not a string")
    return value


def _opt(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def _event(payload: dict[str, Any], me: Identity, prefix: str) -> Inbound | None:
    event_id = _str(payload, "event_id", "payload")
    event = payload.get("event")
    if not isinstance(event, dict):
        raise MalformedPayload("payload.event is missing or not an object")
    etype = event.get("type")
    if etype == "message":
        return _message(event, event_id, me, prefix)
    if etype == "app_mention":
        return _mention(event, event_id, me, prefix)
    if etype == "reaction_added":
        item = event.get("item")
        if not isinstance(item, dict):
            raise MalformedPayload("event.item is missing or not an object")
        if item.get("type") != "message":
            return None
        user = _str(event, "user", "event")
        if user == me.user_id:
            return None
        return Inbound(
            platform=PLATFORM,
            channel=_str(item, "channel", "event.item"),
            actor=Actor(id=user),
            text=_str(event, "reaction", "event"),
            kind="reaction",
            event_id=event_id,
            message_id=_str(item, "ts", "event.item"),
        )
    return None


def _is_ignored_sender(event: dict[str, Any], me: Identity) -> bool:
    user, bot_id = event.get("user"), event.get("bot_id")
    if user == me.user_id or (bot_id and bot_id == me.bot_id):
        return True  # our own message: answering it could loop forever
    return bool(bot_id) and not me.allow_bots


def _message(event: dict[str, Any], event_id: str, me: Identity, prefix: str) -> Inbound | None:
    subtype = event.get("subtype")
    if subtype not in _PLAIN_SUBTYPES and not (subtype == "bot_message" and me.allow_bots):
        return None
    if _is_ignored_sender(event, me):
        return None
    text = event.get("text")
    if not isinstance(text, str):
        return None  # e.g. a file share without a comment
    user = _opt(event, "user") or _opt(event, "bot_id")
    if user is None:
        raise MalformedPayload("event.user is missing")
    _str(event, "channel", "event")  # malformed is malformed, addressed to us or not
    direct = event.get("channel_type") == "im"
    found = address(
        text,
        prefix=prefix,
        mentions=me.mentions,
        direct=direct,
        bot_thread=bool(me.user_id) and event.get("parent_user_id") == me.user_id,
    )
    if found is None:
        return None  # chatter: not ours, and not worth a task
    if found.how == "mention" and not direct:
        return None  # Slack sends an app_mention for the same text: answer that one
    return _inbound(event, event_id, user, text, found, is_bot=bool(event.get("bot_id")))


def _mention(event: dict[str, Any], event_id: str, me: Identity, prefix: str) -> Inbound | None:
    if _is_ignored_sender(event, me):
        return None
    text = _str(event, "text", "event")
    found = address(text, prefix=prefix, mentions=me.mentions, kind="mention")
    if found is None or found.how == "prefix":
        return None  # "!ic @chatopsd": the message event carries it already; answer once
    return _inbound(event, event_id, _str(event, "user", "event"), text, found)


def _inbound(
    event: dict[str, Any],
    event_id: str,
    user: str,
    text: str,
    found: Addressed,
    *,
    is_bot: bool = False,
) -> Inbound:
    """The prefix form keeps its text (the bus strips the prefix); the others carry the
    command text the addressing found."""
    kind, text = found.inbound(text)
    return Inbound(
        platform=PLATFORM,
        channel=_str(event, "channel", "event"),
        actor=Actor(id=user, is_bot=is_bot),
        text=text,
        kind=kind,
        event_id=event_id,
        thread=_opt(event, "thread_ts"),
        message_id=_opt(event, "ts")
        if event.get("type") == "app_mention"
        else _str(event, "ts", "event"),
    )


def _slash(payload: dict[str, Any]) -> Inbound:
    command = _str(payload, "command", "payload").lstrip("/")
    rest = payload.get("text")
    text = f"{command} {rest}".strip() if isinstance(rest, str) else command
    # trigger_id is unique per invocation and kept on redelivery; envelope ids are not ours.
    return Inbound(
        platform=PLATFORM,
        channel=_str(payload, "channel_id", "payload"),
        actor=Actor(id=_str(payload, "user_id", "payload"), name=_opt(payload, "user_name") or ""),
        text=text,
        kind="slash",
        event_id=f"slash:{_str(payload, 'trigger_id', 'payload')}",
    )


def _interactive(payload: dict[str, Any]) -> Inbound | None:
    if payload.get("type") != "block_actions":
        return None
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise MalformedPayload("payload.actions is missing or empty")
    action = actions[0]
    if not str(action.get("action_id", "")).startswith(BUTTON_PREFIX):
        return None  # somebody else's button
    user = payload.get("user")
    if not isinstance(user, dict):
        raise MalformedPayload("payload.user is missing or not an object")
    channel = payload.get("channel") or {}
    container = payload.get("container") or {}
    message = payload.get("message") or {}
    if not isinstance(channel, dict) or not isinstance(container, dict):
        raise MalformedPayload("payload.channel/container is not an object")
    channel_id = _opt(channel, "id") or _opt(container, "channel_id")
    if channel_id is None:
        raise MalformedPayload("payload.channel.id is missing")
    message = message if isinstance(message, dict) else {}
    return Inbound(
        platform=PLATFORM,
        channel=channel_id,
        actor=Actor(id=_str(user, "id", "payload.user"), name=_opt(user, "name") or ""),
        text=_str(action, "value", "payload.actions[0]"),
        kind="button",
        event_id=f"button:{_str(payload, 'trigger_id', 'payload')}",
        thread=_opt(message, "thread_ts"),
        message_id=_opt(container, "message_ts") or _opt(message, "ts"),
    )
