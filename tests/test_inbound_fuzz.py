"""Fuzzing each connector's inbound translation: any field of a well-formed payload replaced by
any JSON value (or removed) gives an Inbound, nothing, or the translation's own "malformed"
error, which the connector logs and skips. Nothing else escapes, so the connection stays up.
The live side of it (frames through the real websocket) is in test_mattermost.py."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chatopsd.connectors.discord import events as discord_events
from chatopsd.connectors.mattermost import events as mattermost_events
from chatopsd.connectors.slack import events as slack_events
from chatopsd.core.messages import Inbound

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["", "abc", "!ic", "<@UBOT> ic", "@chatopsd ic", "1", "D", "im"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
MISSING = object()


def _mutated(base: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """`base` with a few of its fields (at any depth) replaced by junk or removed."""
    out = json.loads(json.dumps(base))
    for _ in range(data.draw(st.integers(1, 3))):
        target = out
        path = data.draw(st.sampled_from(_paths(out)))
        for key in path[:-1]:
            target = target[key]
        value = data.draw(st.sampled_from([MISSING]) | JSON)
        if value is MISSING:
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value
    return out


def _paths(obj: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for key, value in obj.items():
        paths.append((*prefix, key))
        if isinstance(value, dict):
            paths.extend(_paths(value, (*prefix, key)))
    return paths or [(*prefix, "x")]


def _check(result: Inbound | None) -> None:
    if result is not None:
        assert isinstance(result.text, str) and isinstance(result.channel, str)
        assert isinstance(result.actor.id, str) and isinstance(result.event_id, str)


SLACK_ME = slack_events.identity(user_id="UBOT", bot_id="BBOT")
SLACK_BASES = [
    (
        "events_api",
        {
            "event_id": "Ev1",
            "event": {
                "type": "message",
                "channel": "C1",
                "user": "U1",
                "text": "hey <@UBOT> ic",
                "ts": "1.1",
                "thread_ts": "1.0",
                "parent_user_id": "UBOT",
                "channel_type": "im",
            },
        },
    ),
    (
        "events_api",
        {
            "event_id": "Ev2",
            "event": {"type": "app_mention", "channel": "C1", "user": "U1", "text": "<@UBOT> ic"},
        },
    ),
    (
        "events_api",
        {
            "event_id": "Ev3",
            "event": {
                "type": "reaction_added",
                "user": "U1",
                "reaction": "+1",
                "item": {"type": "message", "channel": "C1", "ts": "1.1"},
            },
        },
    ),
    (
        "slash_commands",
        {"command": "/ic", "text": "page", "channel_id": "C1", "user_id": "U1", "trigger_id": "t"},
    ),
    (
        "interactive",
        {
            "type": "block_actions",
            "trigger_id": "t2",
            "user": {"id": "U1", "name": "ada"},
            "channel": {"id": "C1"},
            "container": {"message_ts": "1.1"},
            "message": {"ts": "1.1", "thread_ts": "1.0"},
            "actions": [{"action_id": "chatopsd:0", "value": "ic page"}],
        },
    ),
]


@settings(max_examples=400, deadline=None)
@given(base=st.sampled_from(SLACK_BASES), data=st.data())
def test_slack_translation_never_raises_anything_else(
    base: tuple[str, dict[str, Any]], data: st.DataObject
) -> None:
    kind, payload = base
    with contextlib.suppress(slack_events.MalformedPayload):
        _check(slack_events.translate(kind, _mutated(payload, data), SLACK_ME, "!"))


DISCORD_ME = discord_events.identity(user_id="777")
DISCORD_BASE = {
    "id": "1001",
    "channel_id": "2002",
    "guild_id": "3003",
    "author": {"id": "42", "username": "alice", "bot": False},
    "content": "hey <@777> ic",
    "webhook_id": None,
    "referenced_message": {"author": {"id": "777"}},
}


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_discord_translation_never_raises_anything_else(data: st.DataObject) -> None:
    try:
        fields = discord_events.MessageFields.from_payload(_mutated(DISCORD_BASE, data))
    except discord_events.MalformedPayload:
        return
    _check(discord_events.message_event(fields, DISCORD_ME, "!"))


MM_ME = mattermost_events.identity(user_id="botid", username="chatopsd")
MM_POST = {
    "id": "p1",
    "channel_id": "ch1",
    "user_id": "alice",
    "message": "hey @chatopsd ic",
    "root_id": "r1",
    "create_at": 1700000000000,
    "type": "",
    "props": {"from_bot": "false"},
}
MM_DATA = {"channel_type": "O", "sender_name": "@alice", "team_id": "t1"}
MM_REACTION_FRAME = {
    "event": "reaction_added",
    "data": {
        "reaction": json.dumps(
            {"user_id": "alice", "post_id": "p1", "emoji_name": "+1", "create_at": 1}
        )
    },
    "broadcast": {"channel_id": "ch1"},
    "seq": 3,
}


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mattermost_post_translation_never_raises_anything_else(data: st.DataObject) -> None:
    post, event = _mutated(MM_POST, data), _mutated(MM_DATA, data)
    try:
        mattermost_events.millis(post, "create_at")
        _check(mattermost_events.post_event(post, event, MM_ME, "!", {"r1"}))
    except mattermost_events.MalformedFrame:
        pass


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mattermost_frames_never_raise_anything_else(data: st.DataObject) -> None:
    frame = _mutated(MM_REACTION_FRAME, data)
    try:
        parsed = mattermost_events.frame(json.dumps(frame))
        _check(mattermost_events.reaction_event(parsed, MM_ME))
    except mattermost_events.MalformedFrame:
        pass


def test_mattermost_frames_from_the_issue() -> None:
    deep = "[" * 3000 + "]" * 3000
    for raw in (
        '{"event": "posted", "data": {"post": "{\\"create_at\\": \\"abc\\"}"}}',
        '{"event": "reaction_added", "broadcast": [], "data": {"reaction": '
        '"{\\"user_id\\": \\"alice\\", \\"post_id\\": \\"p\\"}"}}',
        '{"event": "posted", "data": {"post": "{\\"props\\": \\"x\\"}"}}',
        '{"event": "posted", "data": {"post": {"props": ' + deep + "}}}",
        deep,
    ):
        try:
            frame = mattermost_events.frame(raw)
            data = mattermost_events.data(frame)
            if frame.get("event") == "posted":
                post = mattermost_events.json_field(data, "post")
                mattermost_events.millis(post, "create_at")
                mattermost_events.post_event(post, data, MM_ME, "!")
            else:
                mattermost_events.reaction_event(frame, MM_ME)
        except mattermost_events.MalformedFrame:
            continue
        raise AssertionError(f"accepted {raw[:60]}")
