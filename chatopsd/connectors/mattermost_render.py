"""Reply -> Mattermost markdown, with user text escaped.

Reply.text is plain text that may hold user input: markdown specials are backslash-escaped and
every `@` gets a zero-width space after it, so no text we echo can ping @channel/@all/@here or
a person. Buttons become command hints: Mattermost's interactive buttons need an HTTP callback
URL, and chatopsd opens no port.
"""

from __future__ import annotations

import re

from chatopsd.core.messages import Reply

_SPECIAL = re.compile(r"([\\`*_~\[\]()#>|<!{}+\-.:])")
_ZWSP = "\u200b"


def escape(text: str) -> str:
    escaped = _SPECIAL.sub(r"\\\1", text)
    return escaped.replace("@", "@" + _ZWSP)


def _code(text: str) -> str:
    # A fence longer than any backtick run inside, so user text cannot close the block.
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text.replace('@', '@' + _ZWSP)}\n{fence}"


def render(reply: Reply, prefix: str = "!") -> str:
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
