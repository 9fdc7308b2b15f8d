"""Reply -> Slack Block Kit, with a plain-text fallback. Pure functions.

Reply.text is plain text that may contain what users typed, so everything we put in a
mrkdwn field is escaped: `&`, `<` and `>` become entities, which is exactly what keeps
`<!here>`, `<!channel>`, `<!everyone>` and `<@U123>` from ever becoming a real mention.
A bare "@here" is not a mention in an API-posted message, but some clients still render it
loudly, so a zero-width joiner is put after the "@" of the broadcast words.
"""

from __future__ import annotations

import re
from typing import Any

from chatopsd.core.limits import fit
from chatopsd.core.messages import Reply

BUTTON_PREFIX = "chatopsd:"  # action_id prefix: our buttons, and only ours, become commands
_SECTION_MAX = 3000  # Slack's limit on a section's text
_FIELD_MAX = 2000  # Slack's limit on one section field
_FALLBACK_MAX = 39_000  # chat.postMessage truncates `text` at 40,000 characters
_BLOCKS_MAX = 50  # blocks in one message
_BROADCAST = re.compile(r"@(here|channel|everyone)\b", re.IGNORECASE)

Block = dict[str, Any]


def escape(text: str) -> str:
    """Make user text inert in mrkdwn: no links, no mentions, no broadcasts."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@\u2060\\1", text)


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _section(mrkdwn: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def render(reply: Reply) -> tuple[str, list[Block]]:
    """The reply as (fallback text, blocks). The fallback is shown in notifications and by
    clients that cannot draw blocks, so it is escaped too. A reply over Slack's limits (50
    blocks, about 40,000 characters of text) is shortened with a note (core/limits)."""
    fallback, blocks = _render(reply)
    if _over(fallback, blocks) > 0:
        fallback, blocks = _render(fit(reply, lambda r: _over(*_render(r))))
    # Safety nets only: after fit() both already hold.
    return fallback[:_FALLBACK_MAX], blocks[:_BLOCKS_MAX]


def _over(fallback: str, blocks: list[Block]) -> int:
    return max(len(fallback) - _FALLBACK_MAX, (len(blocks) - _BLOCKS_MAX) * _SECTION_MAX)


def _render(reply: Reply) -> tuple[str, list[Block]]:
    blocks: list[Block] = []
    if reply.title:
        blocks.append(_section(f"*{escape(reply.title)[: _SECTION_MAX - 2]}*"))
    if reply.text:
        blocks.extend(_section(part) for part in _chunks(escape(reply.text), _SECTION_MAX))
    if reply.fields:
        # One section holds at most 10 fields.
        for start in range(0, len(reply.fields), 10):
            fields = [
                {"type": "mrkdwn", "text": f"*{escape(label)}*\n{escape(value)}"[:_FIELD_MAX]}
                for label, value in reply.fields[start : start + 10]
            ]
            blocks.append({"type": "section", "fields": fields})
    if reply.code:
        # Inside ``` only the entities matter; backticks in the code would end the block early.
        body = escape(reply.code).replace("```", "`\u200b``")
        blocks.extend(_section(f"```{part}```") for part in _chunks(body, _SECTION_MAX - 6))
    if reply.buttons:
        elements: list[Block] = []
        for i, button in enumerate(reply.buttons[:25]):
            element: Block = {
                "type": "button",
                "action_id": f"{BUTTON_PREFIX}{i}",
                "text": {"type": "plain_text", "text": button.label[:75], "emoji": True},
                "value": button.command[:2000],
            }
            if button.style:
                element["style"] = button.style
            elements.append(element)
        blocks.append({"type": "actions", "elements": elements})
    return escape(reply.plain()), blocks
