"""Reply -> Teams message activity: user text inert (no mention, HTML, link or markup), cards
with Action.Execute buttons, and the size kept under Teams' limit."""

from __future__ import annotations

import json
import re

import pytest

from chatopsd.connectors.teams import render
from chatopsd.connectors.teams.render import MESSAGE_MAX, card_text, escape, message_size
from chatopsd.core.messages import Button, Reply

HOSTILE = [
    "<at>Everyone</at>",
    "<at id='0'>Bob</at>",
    "<b>bold</b><img src=x onerror=alert(1)>",
    "[click](https://evil.example)",
    "**strong** _em_ ~~strike~~ `code`",
    "# heading",
    "- list item",
    "1. numbered",
    "> quote",
    "&lt;at&gt;Bob&lt;/at&gt;",
]


def _unescaped(out: str) -> str:
    """What is left once every backslash escape is taken out."""
    return re.sub(r"\\.", "", out)


@pytest.mark.parametrize("text", HOSTILE)
def test_message_text_is_inert(text: str) -> None:
    out = escape(text)
    assert "<" not in out and ">" not in out  # no tag of any kind, no mention
    bare = _unescaped(out)
    assert not set(bare) & set("*_~`[]#|")
    assert not re.match(r"\s*([-+]|\d+[.)])", bare)
    # An entity the user typed stays text: "&lt;" shows as "&lt;", not as "<".
    if "&lt;" in text:
        assert "&amp;lt;" in out


@pytest.mark.parametrize("text", HOSTILE)
def test_card_text_is_inert(text: str) -> None:
    out = card_text(text)
    assert "<at" not in out.lower()
    bare = _unescaped(out)
    assert not set(bare) & set("*_[]`")
    assert not re.match(r"\s*([-+>]|\d+[.)])", bare)


def test_no_entities_means_no_mentions() -> None:
    for reply in (
        Reply(text="<at>Bob</at>"),
        Reply(text="x", buttons=(Button("<at>B</at>", "ic"),)),
    ):
        assert "entities" not in render.render(reply)


def test_markdown_message() -> None:
    activity = render.render(
        Reply(title="SEV-2 *db*", text="line 1\nline 2", fields=(("IC", "Ada"),), code="a```b<c>")
    )
    assert activity["type"] == "message" and activity["textFormat"] == "markdown"
    text = activity["text"]
    assert text.startswith("**SEV-2 \\*db\\***")
    assert "line 1  \nline 2" in text and "**IC**: Ada" in text
    assert "````\na```b&lt;c&gt;\n````" in text  # a fence longer than the code's backticks


def test_buttons_make_an_adaptive_card() -> None:
    buttons = tuple(Button(f"B{i}", f"ic ack {i}", "danger" if i == 0 else None) for i in range(8))
    activity = render.render(Reply(title="Paged", text="Ada is on call", buttons=buttons))
    (attachment,) = activity["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.5"
    assert [a["title"] for a in card["actions"]] == [f"B{i}" for i in range(6)]
    assert card["actions"][0]["style"] == "destructive"
    (action_set,) = [b for b in card["body"] if b["type"] == "ActionSet"]
    assert [a["data"][render.BUTTON_KEY] for a in action_set["actions"]] == ["ic ack 6", "ic ack 7"]
    for action in card["actions"]:
        assert action["verb"] == render.VERB
        assert action["fallback"]["type"] == "Action.Submit"
        assert action["fallback"]["data"] == action["data"]
    assert activity["summary"].startswith("Paged")


@pytest.mark.parametrize("with_buttons", [False, True])
def test_size_is_kept_under_the_limit(with_buttons: bool) -> None:
    buttons = (Button("Ack", "ic ack"),) if with_buttons else ()
    reply = Reply(title="log", text="é" * 30_000, code="ü" * 100_000, buttons=buttons)
    activity = render.render(reply)
    assert message_size(activity) <= MESSAGE_MAX
    dumped = json.dumps(activity, ensure_ascii=False)
    assert "more characters)" in dumped
    assert message_size(activity) > MESSAGE_MAX * 0.9  # shortened only as much as needed


def test_a_small_reply_is_not_touched() -> None:
    activity = render.render(Reply(text="ok"))
    assert activity["text"] == "ok"


def test_invoke_answers() -> None:
    assert render.invoke_message("x" * 5000)["value"].endswith("…")
    card = render.card(Reply(text="done"))
    assert render.invoke_card(card) == {
        "statusCode": 200,
        "type": "application/vnd.microsoft.card.adaptive",
        "value": card,
    }
