"""Long replies fit every platform's documented limits: cut with a note, never refused.

Discord: content 2,000, embed description 4,096, 6,000 per embed. Slack: section text 3,000,
50 blocks, text about 40,000. Mattermost: a post's message 16,383 (MaxPostSize). Teams: an
activity of about 100 KB counted in UTF-16, 80 KB recommended.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatopsd.connectors.discord import render as discord_render
from chatopsd.connectors.mattermost import render as mattermost_render
from chatopsd.connectors.slack import render as slack_render
from chatopsd.connectors.teams import render as teams_render
from chatopsd.core.limits import cut, fit, one_line
from chatopsd.core.messages import Button, Reply

BIG = "ada@example.com <@here> & *x* " * 4_000  # ~120,000 characters, all of them escaped


def _note(text: str) -> int:
    found = re.search(r"… \\?\(([\d,]+) more characters\\?\)", text)  # escaped or not
    assert found is not None, text[-80:]
    return int(found.group(1).replace(",", ""))


def test_cut() -> None:
    assert cut("short", 10) == "short"
    assert cut("abcdefghij", 4) == "abcd… (6 more characters)"
    assert cut("abc", 0) == "… (3 more characters)"


def test_fit_leaves_a_fitting_reply_alone() -> None:
    reply = Reply(text="hello", code="ok")
    assert fit(reply, lambda r: len(r.plain()) - 100) is reply


def test_fit_cuts_code_before_text() -> None:
    reply = Reply(text="t" * 50, code="c" * 500)
    got = fit(reply, lambda r: len(r.plain()) - 200)
    assert got.text == "t" * 50 and got.code is not None and _note(got.code) > 300
    assert len(got.plain()) == 200


def test_discord_content_and_embed() -> None:
    content = discord_render.render(Reply(text=BIG))["content"]
    assert len(content) <= discord_render.CONTENT_MAX and _note(content) > 100_000
    (embed,) = discord_render.render(Reply(title="Status", text=BIG))["embeds"]
    assert len(embed["description"]) <= discord_render.EMBED_DESCRIPTION_MAX
    assert _note(embed["description"]) > 100_000


def test_slack_blocks_sections_and_text() -> None:
    text, blocks = slack_render.render(Reply(title="Log", text=BIG, code=BIG))
    assert len(blocks) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if "text" in b)
    assert len(text) <= 40_000
    assert "more characters)" in blocks[-1]["text"]["text"]  # the code block says what it left


def test_mattermost_post() -> None:
    out = mattermost_render.render(Reply(text=BIG))
    assert len(out) <= mattermost_render.POST_MAX and _note(out) > 100_000
    assert not re.search(r"(?<!\\)(\\\\)*\\…", out)  # no escape cut in half


def test_teams_message_and_card() -> None:
    message = teams_render.render(Reply(text=BIG))
    assert teams_render.message_size(message) <= teams_render.MESSAGE_MAX
    assert _note(message["text"]) > 50_000
    with_buttons = Reply(title="Log", text=BIG, code=BIG, buttons=(Button("Ack", "ic ack"),))
    card = teams_render.render(with_buttons)
    assert teams_render.message_size(card) <= teams_render.MESSAGE_MAX
    assert card["attachments"][0]["content"]["actions"]  # the button survives the cut


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(max_size=30_000),
    code=st.none() | st.text(max_size=30_000),
    title=st.none() | st.text(max_size=300),
)
def test_every_platform_fits_any_reply(text: str, code: str | None, title: str | None) -> None:
    reply = Reply(text=text, code=code, title=title)
    payload = discord_render.render(reply)
    if "content" in payload:
        assert len(payload["content"]) <= 2000
    else:
        assert len(payload["embeds"][0].get("description", "")) <= 4096
    fallback, blocks = slack_render.render(reply)
    assert len(fallback) <= 40_000 and len(blocks) <= 50
    assert len(mattermost_render.render(reply)) <= 16_383
    assert teams_render.message_size(teams_render.render(reply)) <= teams_render.MESSAGE_MAX


@pytest.mark.parametrize(
    ("raw", "kept", "neutral"),
    [
        ("mail ada@example.com", "ada@example\\.com", None),
        ("ada.lovelace@example.org", "ada\\.lovelace@example\\.org", None),
        ("@here now", None, "@\u200bhere"),
        ("(@channel)", None, "@\u200bchannel"),
        ("_@all", None, "@\u200ball"),
        ("hi @alice", None, "@\u200balice"),
    ],
)
def test_mattermost_keeps_emails_and_neutralises_mentions(
    raw: str, kept: str | None, neutral: str | None
) -> None:
    out = mattermost_render.escape(raw)
    if kept is not None:
        assert kept in out and "\u200b" not in out
    if neutral is not None:
        assert neutral in out


@pytest.mark.parametrize(
    ("raw", "limit", "want"),
    [
        ("a\nb\tc", 20, "a b c"),
        ("\x1b[31mred\x1b[0m", 20, "[31mred[0m"),
        ("left\u202eright\u200b!", 20, "leftright!"),
        ("  many   spaces  ", 20, "many spaces"),
        ("abcdefghij", 5, "abcd…"),
    ],
)
def test_one_line(raw: str, limit: int, want: str) -> None:
    assert one_line(raw, limit) == want
