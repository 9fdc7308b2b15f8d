"""Discord messages -> neutral `Inbound` events. Pure functions.

discord.py parses the gateway payloads; the connector copies the few fields we read into a
`MessageFields` (`from_message`), and recorded MESSAGE_CREATE payloads give the same fields
(`from_payload`), so the translation is tested without a client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatopsd.core.addressing import Identity, address
from chatopsd.core.messages import Actor, Inbound

PLATFORM = "discord"


class MalformedPayload(ValueError):
    """A payload without the shape Discord documents."""


def identity(user_id: str, allow_bots: bool = False) -> Identity:
    """Who we are on Discord (the logged-in bot user): mentioned as <@id>, or <@!id> (the
    nickname form older clients still send)."""
    mentions = (f"<@{user_id}>", f"<@!{user_id}>") if user_id else ()
    return Identity(user_id, mentions, allow_bots)


@dataclass(frozen=True, slots=True)
class MessageFields:
    """What we read of a Discord message."""

    id: str
    channel_id: str
    author_id: str
    author_name: str
    content: str
    author_bot: bool = False
    webhook: bool = False
    direct: bool = False  # a DM (no guild)
    replied_to: str | None = None  # author of the message this one replies to
    thread_owner: str | None = None  # who started the thread it was posted in

    @classmethod
    def from_payload(cls, d: Any) -> MessageFields:
        """From a MESSAGE_CREATE payload (the gateway's `d`)."""
        if not isinstance(d, dict):
            raise MalformedPayload("message is not an object")
        author = d.get("author")
        if not isinstance(author, dict):
            raise MalformedPayload("message.author is missing or not an object")
        ref = d.get("referenced_message")
        replied = ref.get("author") if isinstance(ref, dict) else None
        replied_id = replied.get("id") if isinstance(replied, dict) else None
        return cls(
            id=_snowflake(d, "id"),
            channel_id=_snowflake(d, "channel_id"),
            author_id=_snowflake(author, "id"),
            author_name=str(author.get("username") or ""),
            content=_content(d),
            author_bot=author.get("bot") is True,
            webhook=d.get("webhook_id") is not None,
            direct=d.get("guild_id") is None,
            replied_to=str(replied_id) if replied_id is not None else None,
        )


def _snowflake(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).isdigit():
        raise MalformedPayload(f"{key} is missing or not a snowflake")
    return str(value)


def _content(d: dict[str, Any]) -> str:
    value = d.get("content", "")
    if not isinstance(value, str):
        raise MalformedPayload("content is not a string")
    return value


def message_event(m: MessageFields, me: Identity, prefix: str) -> Inbound | None:
    """A message as an Inbound, or None when it is not for us."""
    if m.author_id == me.user_id:
        return None  # our own message: answering it could loop forever
    if (m.author_bot or m.webhook) and not me.allow_bots:
        return None
    found = address(
        m.content,
        prefix=prefix,
        mentions=me.mentions,
        direct=m.direct,
        bot_thread=bool(me.user_id) and me.user_id in (m.replied_to, m.thread_owner),
    )
    if found is None:
        return None  # chatter: not ours, and not worth a task
    kind, text = found.inbound(m.content)
    return Inbound(
        platform=PLATFORM,
        channel=m.channel_id,
        actor=Actor(id=m.author_id, name=m.author_name, is_bot=m.author_bot),
        text=text,
        kind=kind,
        event_id=m.id,
        message_id=m.id,
    )
