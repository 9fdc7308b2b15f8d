"""Slack rendering and payload translation: pure functions, table-driven."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatopsd.connectors.slack.events import MalformedPayload, identity, translate
from chatopsd.connectors.slack.render import escape, render
from chatopsd.core.messages import Button, Reply

ME = identity("UBOT", bot_id="BBOT")


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("a & b", "a &amp; b"),
        ("<!here>", "&lt;!here&gt;"),
        ("<!channel|channel>", "&lt;!channel|channel&gt;"),
        ("<!everyone>", "&lt;!everyone&gt;"),
        ("<@U123>", "&lt;@U123&gt;"),
        ("<https://evil.example|click>", "&lt;https://evil.example|click&gt;"),
        ("&lt;", "&amp;lt;"),
        ("@here now", "@\u2060here now"),
        ("hi @Channel", "hi @\u2060Channel"),
        ("mail me@hereford.example", "mail me@hereford.example"),
        ("*bold* _it_", "*bold* _it_"),
    ],
)
def test_escape(raw: str, want: str) -> None:
    assert escape(raw) == want


@given(st.text())
def test_escaped_text_has_no_markup_or_broadcast(text: str) -> None:
    out = escape(text)
    assert "<" not in out and ">" not in out
    assert not re.search(r"@(here|channel|everyone)\b", out, re.IGNORECASE)


def test_render_blocks_and_fallback() -> None:
    reply = Reply(
        title="On call <!here>",
        text="x > y",
        fields=(("Jane <@U1>", "+1 555"),),
        code="a ``` b <c>",
        buttons=(Button("Page ICs", "ic page", "danger"), Button("Help", "help")),
    )
    text, blocks = render(reply)
    assert "<!here>" not in text and "<!here>" not in json.dumps(blocks)
    assert blocks[0]["text"]["text"] == "*On call &lt;!here&gt;*"
    assert blocks[1]["text"]["text"] == "x &gt; y"
    assert blocks[2]["fields"][0]["text"] == "*Jane &lt;@U1&gt;*\n+1 555"
    code = blocks[3]["text"]["text"]
    assert code.startswith("```") and code.endswith("```") and code.count("```") == 2
    actions = blocks[4]
    assert [e["value"] for e in actions["elements"]] == ["ic page", "help"]
    assert len({e["action_id"] for e in actions["elements"]}) == 2
    assert "style" not in actions["elements"][1]


def test_render_respects_slack_limits() -> None:
    reply = Reply(text="x" * 7000, fields=tuple((f"k{i}", "v") for i in range(23)))
    _text, blocks = render(reply)
    sections = [b for b in blocks if "text" in b]
    assert [len(b["text"]["text"]) for b in sections] == [3000, 3000, 1000]
    assert [len(b["fields"]) for b in blocks if "fields" in b] == [10, 10, 3]


def _env(event: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": "Ev1", "type": "event_callback", "event": event}


def _msg(**kw: Any) -> dict[str, Any]:
    event = {"type": "message", "channel": "C1", "user": "U1", "text": "!ic", "ts": "1.1"}
    event.update(kw)
    return event


@pytest.mark.parametrize(
    ("event", "want"),
    [
        (_msg(), ("message", "!ic", "U1")),
        (_msg(thread_ts="0.9"), ("message", "!ic", "U1")),
        (_msg(channel_type="im", text="ic"), ("mention", "ic", "U1")),
        (_msg(user="UBOT"), None),
        (_msg(bot_id="B2"), None),
        (_msg(subtype="channel_join"), None),
        (_msg(subtype="message_changed"), None),
        (_msg(subtype="thread_broadcast"), ("message", "!ic", "U1")),
        (
            {
                "type": "app_mention",
                "channel": "C1",
                "user": "U1",
                "text": "<@UBOT> ic page",
                "ts": "1.2",
            },
            ("mention", "ic page", "U1"),
        ),
        (
            {
                "type": "app_mention",
                "channel": "C1",
                "user": "U1",
                "text": "hey <@UBOT|bot> ic",
                "ts": "1.2",
            },
            ("mention", "ic", "U1"),
        ),
        (
            {
                "type": "app_mention",
                "channel": "C1",
                "user": "U1",
                "text": "!ic <@UBOT>",
                "ts": "1.2",
            },
            None,
        ),
        (
            {
                "type": "reaction_added",
                "user": "U1",
                "reaction": "+1",
                "item": {"type": "message", "channel": "C1", "ts": "1.3"},
            },
            ("reaction", "+1", "U1"),
        ),
        (
            {
                "type": "reaction_added",
                "user": "U1",
                "reaction": "+1",
                "item": {"type": "file", "file": "F1"},
            },
            None,
        ),
        ({"type": "team_join", "user": {}}, None),
    ],
)
def test_translate_events(event: dict[str, Any], want: tuple[str, str, str] | None) -> None:
    got = translate("events_api", _env(event), ME, "!")
    if want is None:
        assert got is None
        return
    assert got is not None
    assert (got.kind, got.text, got.actor.id) == want
    assert got.event_id == "Ev1"
    assert got.platform == "slack"


def test_thread_and_message_ids_kept() -> None:
    got = translate("events_api", _env(_msg(thread_ts="0.9")), ME, "!")
    assert got is not None and got.thread == "0.9" and got.message_id == "1.1"


@pytest.mark.parametrize(
    ("kind", "payload", "why"),
    [
        ("events_api", "text", "not an object"),
        ("events_api", {"event": {}}, "event_id"),
        ("events_api", {"event_id": "Ev1"}, "payload.event"),
        ("events_api", _env({"type": "message", "user": "U1", "text": "x"}), "channel"),
        ("events_api", _env({"type": "reaction_added", "user": "U1"}), "event.item"),
        ("slash_commands", {"command": "/ic"}, "channel_id"),
        ("interactive", {"type": "block_actions", "actions": []}, "actions"),
        (
            "interactive",
            {"type": "block_actions", "actions": [{"action_id": "chatopsd:0"}]},
            "payload.user",
        ),
    ],
)
def test_translate_rejects_malformed(kind: str, payload: Any, why: str) -> None:
    with pytest.raises(MalformedPayload, match=re.escape(why)):
        translate(kind, payload, ME, "!")


def test_translate_slash_and_button() -> None:
    slash = translate(
        "slash_commands",
        {
            "command": "/ic",
            "text": "page jane",
            "channel_id": "C1",
            "user_id": "U1",
            "user_name": "jane",
            "trigger_id": "t1",
        },
        ME,
        "!",
    )
    assert slash is not None
    assert (slash.kind, slash.text, slash.event_id) == ("slash", "ic page jane", "slash:t1")
    button = translate(
        "interactive",
        {
            "type": "block_actions",
            "trigger_id": "t2",
            "user": {"id": "U1"},
            "channel": {"id": "C1"},
            "container": {"message_ts": "5.5"},
            "actions": [{"action_id": "chatopsd:1", "value": "ic page"}],
        },
        ME,
        "!",
    )
    assert button is not None
    assert (button.kind, button.text, button.message_id) == ("button", "ic page", "5.5")
    assert translate("interactive", {"type": "view_submission"}, ME, "!") is None


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("<@UBOT> ic page", "ic page"),
        ("<@UBOT>: ic", "ic"),
        ("hey <@UBOT|chatopsd> who is on call", "who is on call"),
        ("ic page <@UBOT>", "ic page"),
        ("<@UBOT> <@UBOT> help", "help"),
    ],
)
def test_mention_token_is_stripped(text: str, want: str) -> None:
    event = {"type": "app_mention", "channel": "C1", "user": "U1", "text": text, "ts": "1.2"}
    got = translate("events_api", _env(event), ME, "!")
    assert got is not None and got.text == want
