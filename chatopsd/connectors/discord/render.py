"""Reply -> Discord message payload (pure): escaped markdown, embeds, buttons, no pings.

Reply.text is plain text; everything user-supplied is escaped so it renders literally and
`allowed_mentions` with an empty `parse` list makes sure nothing in it can ping anyone even if
escaping missed a form.
"""

from __future__ import annotations

from typing import Any

from discord.utils import escape_markdown, escape_mentions

from chatopsd.core.limits import fit
from chatopsd.core.messages import Button, Reply

CONTENT_MAX = 2000
EMBED_TITLE_MAX = 256
EMBED_DESCRIPTION_MAX = 4096
EMBED_TOTAL_MAX = 6000
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FIELDS_MAX = 25
CUSTOM_ID_MAX = 100
LABEL_MAX = 80
_ZWSP = "\u200b"
_STYLES = {"primary": 1, "danger": 4}
_SECONDARY = 2

# Nobody is pinged by anything we post, not even the author of the message we answer.
NO_MENTIONS: dict[str, Any] = {"parse": [], "replied_user": False}


def escape(text: str) -> str:
    """Plain text -> Discord markdown that shows the same characters and mentions nobody."""
    return escape_mentions(escape_markdown(text))


def code_block(code: str) -> str:
    # A ``` inside the code would end the block early; a zero-width space breaks it up.
    return "```\n" + code.replace("```", f"`{_ZWSP}`{_ZWSP}`") + "\n```"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _body(reply: Reply) -> str:
    body = escape(reply.text) if reply.text else ""
    if reply.code:
        body = f"{body}\n{code_block(reply.code)}" if body else code_block(reply.code)
    return body


def excess(reply: Reply) -> int:
    """Characters over Discord's limits (content 2,000; embed description 4,096 and 6,000
    for the whole embed)."""
    body = _body(reply)
    if not (reply.title or reply.fields):
        return len(body) - CONTENT_MAX
    title = min(len(escape(reply.title or "")), EMBED_TITLE_MAX)
    fields = sum(
        min(len(escape(k)), FIELD_NAME_MAX) + min(len(escape(v)), FIELD_VALUE_MAX)
        for k, v in reply.fields[:FIELDS_MAX]
    )
    return max(len(body) - EMBED_DESCRIPTION_MAX, title + len(body) + fields - EMBED_TOTAL_MAX)


def render(reply: Reply) -> dict[str, Any]:
    """The JSON body for POST /channels/{id}/messages (or an interaction follow-up); a reply
    over Discord's limits is shortened with a note (core/limits), never refused."""
    reply = fit(reply, excess)
    payload: dict[str, Any] = {"allowed_mentions": dict(NO_MENTIONS)}
    body = _body(reply)
    if reply.title or reply.fields:
        embed: dict[str, Any] = {}
        if reply.title:
            embed["title"] = _cut(escape(reply.title), EMBED_TITLE_MAX)
        if body:
            embed["description"] = _cut(body, EMBED_DESCRIPTION_MAX)
        embed["fields"] = [
            {
                "name": _cut(escape(label), FIELD_NAME_MAX) or _ZWSP,
                "value": _cut(escape(value), FIELD_VALUE_MAX) or _ZWSP,
                "inline": False,
            }
            for label, value in reply.fields[:FIELDS_MAX]
        ]
        payload["embeds"] = [embed]
    else:
        payload["content"] = _cut(body, CONTENT_MAX) or _ZWSP
    if reply.buttons:
        payload["components"] = components(reply.buttons)
    return payload


def components(buttons: tuple[Button, ...]) -> list[dict[str, Any]]:
    """Buttons as action rows (5 per row, 5 rows); a click sends back the command text."""
    rows: list[dict[str, Any]] = []
    for start in range(0, min(len(buttons), 25), 5):
        rows.append(
            {
                "type": 1,
                "components": [
                    {
                        "type": 2,
                        "style": _STYLES.get(b.style or "", _SECONDARY),
                        "label": _cut(b.label, LABEL_MAX),
                        "custom_id": b.command[:CUSTOM_ID_MAX],
                    }
                    for b in buttons[start : start + 5]
                ],
            }
        )
    return rows
