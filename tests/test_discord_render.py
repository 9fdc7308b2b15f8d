"""Reply -> Discord payload: escaping, embeds, code blocks, buttons, limits."""

from __future__ import annotations

from chatopsd.connectors.discord.render import NO_MENTIONS, escape, render
from chatopsd.core.messages import Button, Reply


def test_plain_text_is_escaped_and_pings_nobody() -> None:
    payload = render(Reply(text="@everyone *hi* <@123456789012345678> @here `x`"))
    content = payload["content"]
    assert "@everyone" not in content and "@here" not in content
    assert "<@123456789012345678>" not in content
    assert r"\*hi\*" in content and r"\`x\`" in content
    assert payload["allowed_mentions"] == NO_MENTIONS == {"parse": [], "replied_user": False}
    assert "embeds" not in payload


def test_title_and_fields_become_an_embed() -> None:
    payload = render(Reply(title="IC on call", text="a_b", fields=(("Jane *", "+1 555"),)))
    (embed,) = payload["embeds"]
    assert embed["title"] == "IC on call"
    assert embed["description"] == r"a\_b"
    assert embed["fields"] == [{"name": r"Jane \*", "value": "+1 555", "inline": False}]
    assert "content" not in payload


def test_code_block_cannot_be_closed_early() -> None:
    payload = render(Reply(code="a\n```\n@everyone"))
    content = payload["content"]
    assert content.startswith("```\n") and content.endswith("\n```")
    assert content.count("```") == 2


def test_buttons_are_components_with_the_command() -> None:
    buttons = tuple(Button(f"b{i}", f"ic page {i}", "danger" if i == 0 else None) for i in range(7))
    rows = render(Reply(text="x", buttons=buttons))["components"]
    assert [len(r["components"]) for r in rows] == [5, 2]
    first = rows[0]["components"][0]
    assert first == {"type": 2, "style": 4, "label": "b0", "custom_id": "ic page 0"}
    assert rows[1]["components"][0]["style"] == 2


def test_limits() -> None:
    content = render(Reply(text="x" * 5000))["content"]
    assert len(content) == 2000 and content.endswith("… (3,025 more characters)")
    embed = render(Reply(title="t" * 300, fields=tuple(("k", "v" * 2000) for _ in range(30))))
    (e,) = embed["embeds"]
    assert len(e["title"]) == 256 and 0 < len(e["fields"]) <= 25
    assert len(e["fields"][0]["value"]) == 1024
    # Discord refuses an embed over 6,000 characters in all: the fields that do not fit are
    # left out, and the reply says so.
    total = len(e["title"]) + len(e["description"])
    total += sum(len(f["name"]) + len(f["value"]) for f in e["fields"])
    assert total <= 6000
    assert e["description"] == f"({30 - len(e['fields'])} more fields not shown)"
    long_embed = render(Reply(title="t", text="y" * 9000))["embeds"][0]["description"]
    assert len(long_embed) == 4096 and long_embed.endswith("more characters)")
    assert render(Reply())["content"]  # Discord refuses an empty message


def test_escape_is_idempotent_on_plain_words() -> None:
    assert escape("hello world") == "hello world"
