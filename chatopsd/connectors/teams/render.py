"""Reply -> a Bot Framework message activity for Teams: markdown text, or an Adaptive Card 1.5
when the reply has buttons. Pure functions.

User text is made inert. In message text (Teams markdown, which also renders some HTML) `&`,
`<` and `>` become entities, so no `<at>` tag, HTML or link can be formed (a Teams mention also
needs an entry in the activity's `entities`, and we send none), and markdown specials are
backslash-escaped. In a card, TextBlocks take a markdown subset and no HTML: the specials are
backslash-escaped, `<at` and `{{` (Adaptive Card date functions) are broken with a zero-width
space.

Buttons are `Action.Execute` with our verb and the command in `data` (an `adaptiveCard/action`
invoke comes back, answered within seconds), each with an `Action.Submit` fallback for clients
without Universal Actions (a message activity whose `value` carries the same key).

Size: Teams refuses a bot message over about 100 KB counted as UTF-16 and recommends 80 KB; the
activity is kept under `MESSAGE_MAX` UTF-16 bytes, shortened with a note by core/limits.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from chatopsd.core.limits import fit, one_line
from chatopsd.core.messages import Button, Reply

VERB = "chatopsd"  # Action.Execute verb of our buttons: only ours become commands
BUTTON_KEY = "chatopsd_command"  # the key in a button's data that holds its command
CARD = "application/vnd.microsoft.card.adaptive"
MESSAGE = "application/vnd.microsoft.activity.message"
MESSAGE_MAX = 80_000  # UTF-16 bytes of the activity's JSON
ACTIONS_MAX = 6  # card actions Teams shows in one row
INVOKE_TEXT_MAX = 1_000
_ZWSP = "\u200b"
_MD_SPECIAL = re.compile(r"([\\`*_~\[\]#|])")
_LINE_START = re.compile(r"^(\s*)([-+>]|\d+[.)])", re.MULTILINE)
_CARD_SPECIAL = re.compile(r"([\\*_\[\]`])")

Json = dict[str, Any]


def escape(text: str) -> str:
    """User text for Teams message markdown: no HTML, no mention tag, no markup."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _LINE_START.sub(lambda m: f"{m.group(1)}\\{m.group(2)}", text)
    return text.replace("\n", "  \n")  # a markdown hard break: Teams folds a bare newline


def card_text(text: str) -> str:
    """User text for an Adaptive Card TextBlock (a markdown subset, no HTML)."""
    text = _CARD_SPECIAL.sub(r"\\\1", text)
    text = _LINE_START.sub(lambda m: f"{m.group(1)}\\{m.group(2)}", text)
    text = re.sub(r"<(?=at)", "<" + _ZWSP, text, flags=re.IGNORECASE)
    return text.replace("{{", "{" + _ZWSP + "{")


def _code_block(code: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    inert = code.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"{fence}\n{inert}\n{fence}"


def message_size(activity: Json) -> int:
    """The activity's size as Teams counts it: UTF-16 bytes of its JSON."""
    return len(json.dumps(activity, ensure_ascii=False).encode("utf-16-le"))


def render(reply: Reply, prefix: str = "!") -> Json:
    """The message activity for `reply`, within Teams' size limit (shortened with a note)."""
    activity = _render(reply, prefix)
    if message_size(activity) <= MESSAGE_MAX:
        return activity
    shorter = fit(reply, lambda r: _excess(_render(r, prefix)))
    return _render(shorter, prefix)


def _excess(activity: Json) -> int:
    # characters over the limit: two UTF-16 bytes per character, at least
    return math.ceil((message_size(activity) - MESSAGE_MAX) / 2)


def _render(reply: Reply, prefix: str) -> Json:
    if reply.buttons:
        return card_activity(card(reply), summary=reply.plain())
    return {"type": "message", "textFormat": "markdown", "text": markdown(reply, prefix)}


def markdown(reply: Reply, prefix: str = "!") -> str:
    parts: list[str] = []
    if reply.title:
        parts.append(f"**{escape(reply.title)}**")
    if reply.text:
        parts.append(escape(reply.text))
    if reply.fields:
        parts.append("  \n".join(f"**{escape(k)}**: {escape(v)}" for k, v in reply.fields))
    if reply.code:
        parts.append(_code_block(reply.code))
    if reply.buttons:  # text-only rendering of buttons (cards are the normal way)
        parts.append(
            " · ".join(
                f"{escape(b.label)}: `{prefix}{b.command.replace('`', '')}`" for b in reply.buttons
            )
        )
    return "\n\n".join(parts)


def card(reply: Reply) -> Json:
    """An Adaptive Card 1.5 for the reply."""
    body: list[Json] = []
    if reply.title:
        body.append(
            {
                "type": "TextBlock",
                "text": card_text(reply.title),
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            }
        )
    if reply.text:
        body.append({"type": "TextBlock", "text": card_text(reply.text), "wrap": True})
    if reply.fields:
        facts = [{"title": card_text(k), "value": card_text(v)} for k, v in reply.fields]
        body.append({"type": "FactSet", "facts": facts})
    if reply.code:
        body.append(
            {
                "type": "TextBlock",
                "text": card_text(reply.code),
                "fontType": "Monospace",
                "wrap": True,
            }
        )
    actions = [action(b) for b in reply.buttons]
    # More than one row of buttons: the rest in ActionSets below the text.
    for start in range(ACTIONS_MAX, len(actions), ACTIONS_MAX):
        body.append({"type": "ActionSet", "actions": actions[start : start + ACTIONS_MAX]})
    content: Json = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "body": body,
        "msteams": {"width": "Full"},
    }
    if actions:
        content["actions"] = actions[:ACTIONS_MAX]
    return content


def action(button: Button) -> Json:
    """A button: Action.Execute (an invoke), falling back to Action.Submit (a message)."""
    title = one_line(button.label, 80)
    data = {BUTTON_KEY: button.command}
    execute: Json = {
        "type": "Action.Execute",
        "title": title,
        "verb": VERB,
        "data": data,
        "fallback": {"type": "Action.Submit", "title": title, "data": data},
    }
    if button.style == "primary":
        execute["style"] = "positive"
    elif button.style == "danger":
        execute["style"] = "destructive"
    return execute


def card_activity(content: Json, *, summary: str = "") -> Json:
    activity: Json = {
        "type": "message",
        "attachments": [{"contentType": CARD, "content": content}],
    }
    if summary:
        activity["summary"] = one_line(summary, 200)
    return activity


def typing() -> Json:
    return {"type": "typing"}


def invoke_message(text: str) -> Json:
    """The answer to an `adaptiveCard/action` invoke that shows a short message."""
    return {"statusCode": 200, "type": MESSAGE, "value": one_line(text, INVOKE_TEXT_MAX)}


def invoke_card(content: Json) -> Json:
    """The answer to an `adaptiveCard/action` invoke that replaces the card."""
    return {"statusCode": 200, "type": CARD, "value": content}
