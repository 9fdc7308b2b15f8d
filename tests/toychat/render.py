"""Reply -> Toy Chat's markup (plain lines, `*bold*`). Pure. User text is escaped so nothing
we echo mentions anyone, and a reply over Toy Chat's limit is shortened with a note."""

from __future__ import annotations

from chatopsd.core.limits import fit
from chatopsd.core.messages import Reply

POST_MAX = 4_000
_ZWSP = "\u200b"


def escape(text: str) -> str:
    return text.replace("*", "\\*").replace("@", "@" + _ZWSP)


def render(reply: Reply, prefix: str = "!") -> str:
    text = _render(reply, prefix)
    if len(text) <= POST_MAX:
        return text
    return _render(fit(reply, lambda r: len(_render(r, prefix)) - POST_MAX), prefix)


def _render(reply: Reply, prefix: str) -> str:
    parts = [f"*{escape(reply.title)}*"] if reply.title else []
    if reply.text:
        parts.append(escape(reply.text))
    parts += [f"{escape(label)}: {escape(value)}" for label, value in reply.fields]
    if reply.code:
        parts.append(escape(reply.code))
    parts += [f"[{escape(b.label)}: {prefix}{escape(b.command)}]" for b in reply.buttons]
    return "\n".join(parts)
