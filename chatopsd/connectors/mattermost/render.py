"""Reply -> Mattermost markdown, with user text escaped.

Reply.text is plain text that may hold user input: markdown specials are backslash-escaped and
every `@` that could start a mention gets a zero-width space after it, so no text we echo can
ping @channel/@all/@here or a person (an email's @ is left alone, so a copied address works).
Buttons become command hints: Mattermost's interactive buttons need an HTTP callback URL, and
chatopsd opens no port.
"""

from __future__ import annotations

import re

from chatopsd.core.limits import fit
from chatopsd.core.messages import Reply

_SPECIAL = re.compile(r"([\\`*_~\[\]()#>|<!{}+\-.:])")
_ZWSP = "\u200b"
# An @ that can start a mention (not the @ inside ada@example.com, which stays intact).
_MENTION_AT = re.compile(r"(?<![^\W_])@")  # after a letter or digit: an email
POST_MAX = 16_383  # Mattermost's default MaxPostSize


def escape(text: str) -> str:
    escaped = _SPECIAL.sub(r"\\\1", text)
    return _MENTION_AT.sub("@" + _ZWSP, escaped)


def inline(text: str) -> str:
    """User text for a one-line markdown field (a channel header): links, images, HTML and
    mentions made inert, everything else left as typed, so "[SEV-2]" still reads "[SEV-2]"."""
    text = text.replace("\\", "\\\\").replace("<", "\\<").replace("](", "]\\(")
    return _MENTION_AT.sub("@" + _ZWSP, text)


def _code(text: str) -> str:
    # A fence longer than any backtick run inside, so user text cannot close the block.
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{_MENTION_AT.sub('@' + _ZWSP, text)}\n{fence}"


def render(reply: Reply, prefix: str = "!") -> str:
    """The post's message; a reply over Mattermost's post limit is shortened with a note
    (core/limits), never refused."""
    text = _render(reply, prefix)
    if len(text) <= POST_MAX:
        return text
    return _render(fit(reply, lambda r: len(_render(r, prefix)) - POST_MAX), prefix)


def _render(reply: Reply, prefix: str) -> str:
    parts: list[str] = []
    if reply.title:
        parts.append(f"**{escape(reply.title)}**")
    if reply.text:
        parts.append(escape(reply.text))
    if reply.fields:
        parts.append("\n".join(f"- **{escape(k)}**: {escape(v)}" for k, v in reply.fields))
    if reply.code:
        parts.append(_code(reply.code))
    if reply.buttons:
        hints = (
            f"{escape(b.label)}: `{prefix}{b.command.replace('`', '')}`" for b in reply.buttons
        )
        parts.append(" · ".join(hints))
    return "\n\n".join(parts)
