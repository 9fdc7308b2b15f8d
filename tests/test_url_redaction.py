"""Secrets in URLs never reach chat, logs, doctor or health:
userinfo and query values of every URL shown, Discord webhook/interaction tokens and Slack
response URLs, as well as the configured tokens. One module does it: chatopsd/redact.py."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from chatopsd import doctor, logs, redact
from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound
from tests.conftest import FakeClock, make_config

SECRET = "PLANTEDQUERYSECRET42"
PASSWORD = "PLANTEDPASSWORD42"
INTERACTION = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDpQTEFOVEVEVE9LRU4"


def test_url_loses_userinfo_query_values_and_path_tokens() -> None:
    assert (
        redact.url(f"https://mon:{PASSWORD}@example.org:8443/a/b?api_key={SECRET}&verbose=1#x")
        == "https://example.org:8443/a/b?api_key=[redacted]&verbose=[redacted]#x"
    )
    assert (
        redact.url("http://127.0.0.1:9093/api/v2/alerts") == "http://127.0.0.1:9093/api/v2/alerts"
    )
    hook = f"https://discord.com/api/v10/webhooks/1234567890/{INTERACTION}/messages/@original"
    assert redact.url(hook) == (
        "https://discord.com/api/v10/webhooks/1234567890/[redacted]/messages/@original"
    )
    slack = "https://hooks.slack.com/commands/T0001/1234/PLANTEDRESPONSEURLSECRET"
    assert "PLANTEDRESPONSEURLSECRET" not in redact.url(slack)


def test_text_redacts_urls_inside_sentences_and_configured_secrets() -> None:
    line = (
        f"HTTP 500 from http://u:{PASSWORD}@h/s?token={SECRET}: upstream said "
        f"'see http://h/s?token={SECRET}'; bot token xoxb-test-planted-token"
    )
    out = redact.text(line, ["xoxb-test-planted-token"])
    assert SECRET not in out and PASSWORD not in out and "xoxb-PLANTED" not in out
    assert out.startswith("HTTP 500 from http://h/s?token=[redacted]")
    # a route logged without its scheme still loses the interaction token
    route = f"POST /interactions/998877/{INTERACTION}/callback"
    assert INTERACTION not in redact.text(route)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_discord_rate_limit_warning_does_not_log_the_interaction_token(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.setup("info", "plain", ["configured-bot-token-123"])
    url = f"https://discord.com/api/v10/webhooks/1234567890/{INTERACTION}"
    # discord.http's own format string for a 429 (discord.py 2.x, http.py)
    fmt = "We are being rate limited. %s %s responded with 429. Retrying in %.2f seconds."
    logging.getLogger("discord.http").warning(fmt, "POST", url, 1.5)
    logs.setup("info", "json", [])
    logging.getLogger("discord.http").warning(fmt, "PATCH", url + "/messages/@original", 0.5)
    err = capsys.readouterr().err
    assert "responded with 429" in err and "webhooks/1234567890/[redacted]" in err
    assert INTERACTION not in err


# -- chat and doctor, end to end ----------------------------------------------------------------


@pytest.fixture
async def leaky_monitor() -> AsyncIterator[str]:
    """A monitoring endpoint that fails with 500 and echoes the URL it was asked for."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=500, text=f"internal error at {request.url}")

    app = web.Application()
    app.router.add_get("/status", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://monitor:{PASSWORD}@127.0.0.1:{port}/status?api_key={SECRET}"
    await runner.cleanup()


async def test_status_in_chat_shows_no_url_secret(
    tmp_path: Path, clock: FakeClock, leaky_monitor: str
) -> None:
    config = make_config(
        tmp_path,
        console={"format": "jsonl"},
        status={
            "sources": [{"kind": "http", "name": "mon", "url": leaky_monitor, "field": "state"}]
        },
    )
    out = io.StringIO()
    app = App(config, clock=clock, io=Io(stdin=io.StringIO(""), stdout=out))
    await app.start()
    try:
        replies = await app.bus.handle(
            Inbound("console", "ops", Actor("eve", "eve"), "!status", event_id="s1")
        )
        await app.outbox.flush(5)
    finally:
        await app.stop()
    shown = "\n".join(r.plain() for r in replies) + out.getvalue()
    assert "HTTP 500" in shown and "127.0.0.1" in shown  # the failure is still explained
    assert SECRET not in shown and PASSWORD not in shown


async def test_doctor_shows_no_url_secret(tmp_path: Path, leaky_monitor: str) -> None:
    path = tmp_path / "chatopsd.toml"
    path.write_text(
        f'[chatopsd]\nstate_db = "{tmp_path / "state.db"}"\n'
        f'[[status.sources]]\nkind = "http"\nname = "mon"\n'
        f'url = "{leaky_monitor}"\nfield = "state"\n'
    )
    out = io.StringIO()
    await asyncio.to_thread(doctor.main, path, out, {})
    text = out.getvalue()
    assert "status" in text and "127.0.0.1" in text
    assert SECRET not in text and PASSWORD not in text


# -- tokens in a source's path or bare query, and echoed back in an error body -----------------

PATH_TOKEN = "k7Hq2vX9pLm4sT8w"  # 16 characters: a key that lives in the URL's path
BARE = "abc123ef"  # a short bare query string that is the key itself


def test_a_path_token_and_a_short_bare_query_are_not_shown() -> None:
    shown = redact.url(f"https://status.example.com/v1/{PATH_TOKEN}/status?{BARE}")
    assert shown == "https://status.example.com/v1/[redacted]/status?[redacted]"
    uuid = "https://hc-ping.com/5a1f2c3e-1111-2222-3333-444455556666"
    assert redact.url(uuid) == "https://hc-ping.com/[redacted]"
    # routes, ids and flags stay readable
    for kept in (
        "http://127.0.0.1:9093/api/v2/alerts",
        "https://example.org/alertmanager-production/api/v1/query?json",
        "https://acme.pagerduty.com/incidents/Q1ABCDEF2GHIJK",
    ):
        assert redact.url(kept) == kept
    assert redact.url_secrets(f"http://u:pw-123456@h/v1/{PATH_TOKEN}/s?{BARE}&env=prod") == [
        "pw-123456",
        PATH_TOKEN,
        BARE,
        "prod",
    ]
    # for redacting everywhere: words and numbers are not taken for secrets
    assert redact.url_secrets(
        f"http://h/v1/{PATH_TOKEN}?{BARE}&env=prod&n=1", every_value=False
    ) == [
        PATH_TOKEN,
        BARE,
    ]


@pytest.fixture
async def echoing_monitor() -> AsyncIterator[str]:
    """A monitoring endpoint keyed by its path and a bare query, that fails with 500 and
    quotes the key back in plain words (not as a URL)."""

    async def handler(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        return web.Response(status=500, text=f"key {key} ({request.query_string}) has expired")

    app = web.Application()
    app.router.add_get("/v1/{key}/status", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/v1/{PATH_TOKEN}/status?{BARE}"
    await runner.cleanup()


async def test_status_source_tokens_in_the_path_or_echoed_are_not_shown(
    tmp_path: Path, clock: FakeClock, echoing_monitor: str
) -> None:
    config = make_config(
        tmp_path,
        console={"format": "jsonl"},
        status={
            "sources": [{"kind": "http", "name": "mon", "url": echoing_monitor, "field": "state"}]
        },
    )
    out = io.StringIO()
    app = App(config, clock=clock, io=Io(stdin=io.StringIO(""), stdout=out))
    await app.start()
    try:
        replies = await app.bus.handle(
            Inbound("console", "ops", Actor("eve", "eve"), "!status", event_id="s1")
        )
        await app.outbox.flush(5)
        audit = str(await app.db.fetchall("SELECT * FROM audit"))
    finally:
        await app.stop()
    shown = "\n".join(r.plain() for r in replies) + out.getvalue()
    assert "HTTP 500" in shown and "127.0.0.1" in shown and "has expired" in shown
    assert "/v1/[redacted]/status?[redacted]" in shown
    for where in (shown, audit):
        assert PATH_TOKEN not in where and BARE not in where


async def test_doctor_shows_no_path_token(tmp_path: Path, echoing_monitor: str) -> None:
    path = tmp_path / "chatopsd.toml"
    path.write_text(
        f'[chatopsd]\nstate_db = "{tmp_path / "state.db"}"\n'
        f'[[status.sources]]\nkind = "http"\nname = "mon"\n'
        f'url = "{echoing_monitor}"\nfield = "state"\n'
    )
    out = io.StringIO()
    await asyncio.to_thread(doctor.main, path, out, {})
    text = out.getvalue()
    assert "HTTP 500" in text and "127.0.0.1" in text
    assert PATH_TOKEN not in text and BARE not in text
