"""Status page publication end to end on the console: the real App and bus, the real aiohttp
client, tests/fakes/statuspage.py validating every request against Statuspage's spec.

Time is the injected FakeClock: the queue's rate limit, Retry-After waits and backoff are read
from it, so a test moves time on and drains the queue; nothing sleeps on wall time."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound, Reply
from tests.conftest import FakeClock, make_config
from tests.fakes.statuspage import API_KEY, PAGE_ID, FakeStatuspage

INC = "INC-2026-0001"
DECLARE = '!incident declare --sev 1 "Payments failing" --service payments'


@pytest.fixture
async def page() -> AsyncIterator[FakeStatuspage]:
    server = FakeStatuspage()
    await server.start()
    yield server
    await server.close()
    assert server.violations == []


# alice may speak to customers (the status page role); bob, like any guest, may not
ROLES = {"statuspage": ["console:alice"]}


def config(tmp_path: Path, page: FakeStatuspage, **statuspage: Any) -> Any:
    return make_config(
        tmp_path,
        console={"format": "jsonl"},
        ratelimit={"burst": 100},
        roles=ROLES,
        statuspage={
            "api_url": page.url,
            "api_key": API_KEY,
            "page_id": PAGE_ID,
            "components": {"payments": "cmp_pay", "api": "cmp_api"},
            "auto_publish": ["SEV-1"],
            "timeout_seconds": 0.5,
            **statuspage,
        },
    )


async def start(cfg: Any, clock: FakeClock, out: io.StringIO | None = None) -> App:
    app = App(cfg, clock=clock, io=Io(stdin=io.StringIO(""), stdout=out or io.StringIO()))
    await app.start()
    return app


@pytest.fixture
async def app(tmp_path: Path, page: FakeStatuspage, clock: FakeClock) -> AsyncIterator[App]:
    running = await start(config(tmp_path, page), clock)
    yield running
    await running.stop()


_n = iter(range(1, 10_000))


def ev(text: str, *, actor: str = "alice") -> Inbound:
    n = next(_n)
    return Inbound(
        "console", "ops", Actor(actor, actor), text, event_id=f"sp{n}", message_id=f"m{n}"
    )


async def say(app: App, text: str) -> Reply:
    replies = await app.bus.handle(ev(text))
    assert replies, text
    return replies[0]


async def tick(app: App, clock: FakeClock, seconds: float = 1.0) -> None:
    """Let `seconds` pass and send whatever the queue has due."""
    clock.advance(seconds)
    await app.public.drain()


async def audit_rows(app: App) -> list[tuple[str, str]]:
    rows = await app.db.fetchall(
        "SELECT command, outcome || coalesce(': ' || nullif(cause, ''), '') "  # outcome: cause
        "FROM audit WHERE kind = 'publish' ORDER BY id"
    )
    return [(r[0], r[1]) for r in rows]


async def said(app: App) -> list[str]:
    """What the incident's home was told (the console prints jsonl replies)."""
    await app.outbox.flush(5)
    stdout = app.outbox.connectors["console"].stdout  # type: ignore[attr-defined]
    return [line for line in stdout.getvalue().splitlines() if "status page" in line.lower()]


async def status_field(app: App) -> str:
    reply = await say(app, f"!incident status {INC}")
    return dict(reply.fields).get("Status page", "")


# -- the lifecycle ---------------------------------------------------------------------------


async def test_sev1_is_auto_published_and_follows_the_lifecycle(
    app: App, page: FakeStatuspage, clock: FakeClock
) -> None:
    reply = await say(app, DECLARE)
    assert reply.text.startswith(f"{INC} declared (SEV-1)")
    await app.public.drain()
    [created] = page.calls("POST")
    incident = created["incident"]
    # published automatically, so under the configured public name, not the internal title
    assert incident["name"] == "Service disruption: payments"
    assert incident["status"] == "investigating"
    assert incident["impact_override"] == "critical"
    assert incident["components"] == {"cmp_pay": "major_outage"}
    assert incident["component_ids"] == ["cmp_pay"]
    assert "body" not in incident  # nothing was typed for the public
    assert page.components["cmp_pay"] == "major_outage"
    assert await status_field(app) == "investigating https://stspg.io/fake1"

    # --public: exactly the typed text, once; the internal part stays inside
    await say(app, f'!incident update {INC} rolled back v2 --public "We found the cause, fixing"')
    await tick(app, clock)
    [public] = page.calls("PATCH")
    assert public["incident"] == {
        "status": "investigating",
        "body": "We found the cause, fixing",
        "deliver_notifications": True,
    }
    timeline = await app.incidents.store.timeline(INC)
    assert timeline[-1].text == "rolled back v2"

    # an internal update sends nothing
    await say(app, f"!incident update {INC} internal: db failover at 12:03")
    await tick(app, clock, 5)
    assert len(page.calls("PATCH")) == 1

    # public text only: the timeline shows it as such
    await say(app, f'!incident update {INC} --public "Payments recovering in EU"')
    await tick(app, clock)
    assert page.calls("PATCH")[-1]["incident"]["body"] == "Payments recovering in EU"
    assert (await app.incidents.store.timeline(INC))[
        -1
    ].text == "(public) Payments recovering in EU"

    await say(app, f"!incident ack {INC}")
    await tick(app, clock)
    assert page.calls("PATCH")[-1]["incident"] == {
        "status": "identified",
        "deliver_notifications": True,
    }
    await say(app, f"!incident monitor {INC}")
    await tick(app, clock)
    assert page.calls("PATCH")[-1]["incident"]["status"] == "monitoring"
    assert await status_field(app) == "monitoring https://stspg.io/fake1"

    await say(app, f"!incident resolve {INC} rolled back the bad deploy")
    await tick(app, clock)
    resolved = page.calls("PATCH")[-1]["incident"]
    assert resolved == {
        "status": "resolved",
        "components": {"cmp_pay": "operational"},
        "deliver_notifications": True,
    }
    assert "rolled back the bad deploy" not in str(page.requests)  # the resolution is internal
    assert page.incidents["spinc1"]["status"] == "resolved"
    assert page.components["cmp_pay"] == "operational"
    assert len(page.incidents) == 1

    # every publication is in the audit trail with its outcome
    assert (
        await audit_rows(app) == [("statuspage create", "ok")] + [("statuspage update", "ok")] * 5
    )
    assert any("published (investigating)" in line for line in await said(app))


async def test_the_rate_limit_spaces_calls_one_second_apart(
    app: App, page: FakeStatuspage, clock: FakeClock
) -> None:
    await say(app, DECLARE)
    await app.public.drain()
    await say(app, f'!incident update {INC} --public "one"')
    await say(app, f'!incident update {INC} --public "two"')
    await app.public.drain()
    assert page.hits == 1  # the second call waits for the key's next second
    await tick(app, clock, 0.5)
    assert page.hits == 1
    await tick(app, clock, 0.5)
    assert page.hits == 2
    await tick(app, clock, 1)
    assert [c["incident"]["body"] for c in page.calls("PATCH")] == ["one", "two"]


async def test_manual_publish_with_components_and_message(
    app: App, page: FakeStatuspage, clock: FakeClock
) -> None:
    await say(app, '!incident declare --sev 2 "Slow checkout"')
    await app.public.drain()
    assert page.hits == 0  # SEV-2 is not auto-published
    bad = await say(app, f"!incident publish {INC} --components payments,nope")
    assert "unknown status page component nope" in bad.text
    reply = await say(
        app, f'!incident publish {INC} --components payments,api "Checkout is slow for some"'
    )
    assert reply.text == f"{INC} queued for the status page (investigating)."
    await app.public.drain()
    [created] = page.calls("POST")
    assert created["incident"]["body"] == "Checkout is slow for some"
    assert created["incident"]["components"] == {
        "cmp_pay": "partial_outage",
        "cmp_api": "partial_outage",
    }
    again = await say(app, f"!incident publish {INC}")
    assert again.text.startswith(f"{INC} is already published")


async def test_manual_publish_never_shows_the_internal_title_unless_typed(
    app: App, page: FakeStatuspage, clock: FakeClock
) -> None:
    await say(app, '!incident declare --sev 2 "db-7 primary lost: bad migration" --service api')
    await say(app, f"!incident publish {INC}")
    await app.public.drain()
    [created] = page.calls("POST")
    assert created["incident"]["name"] == "Service disruption: api"
    assert "db-7" not in str(created)
    await say(app, '!incident declare --sev 2 "Internal name" --service api')
    await say(app, '!incident publish INC-2026-0002 --title "Checkout errors"')
    await tick(app, clock)  # one call per second
    assert [c["incident"]["name"] for c in page.calls("POST")] == [
        "Service disruption: api",
        "Checkout errors",
    ]


async def test_unpublish_stops_further_updates(
    app: App, page: FakeStatuspage, clock: FakeClock
) -> None:
    await say(app, DECLARE)
    await app.public.drain()
    reply = await say(app, f"!incident unpublish {INC}")
    assert reply.text.startswith(f"{INC}: no further status page updates.")
    await say(app, f'!incident update {INC} --public "should not go out"')
    await say(app, f"!incident resolve {INC} fixed")
    await tick(app, clock, 10)
    assert page.calls("PATCH") == [] and page.hits == 1
    assert await status_field(app) == "unpublished (investigating)"
    assert any("was not sent" in line for line in await said(app))


# -- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["429", "420"])
async def test_slow_down_waits_for_retry_after(
    app: App, page: FakeStatuspage, clock: FakeClock, code: str
) -> None:
    page.fault, page.retry_after = code, "7"
    await say(app, DECLARE)
    await app.public.drain()
    assert page.hits == 1 and page.calls("POST") == []
    assert "queued; last attempt failed: HTTP " + code in await status_field(app)
    told = await said(app)
    assert any(f"could not publish it (HTTP {code} (rate limited)" in t for t in told)
    assert any("retried in 7 s" in t for t in told)
    await tick(app, clock, 6)
    assert page.hits == 1  # not before Retry-After
    await tick(app, clock, 1)
    assert page.hits == 2 and len(page.calls("POST")) == 1
    rows = await audit_rows(app)
    assert rows[0][0] == "statuspage create" and rows[0][1].startswith(f"failed: HTTP {code}")
    assert rows[1] == ("statuspage create", "ok")
    assert await status_field(app) == "investigating https://stspg.io/fake1"


async def test_slow_down_without_retry_after_backs_off(
    app: App, page: FakeStatuspage, clock: FakeClock
) -> None:
    page.fault, page.fault_times = "429-bare", 2
    await say(app, DECLARE)
    await app.public.drain()
    await tick(app, clock, 2)  # first backoff: 2 s
    assert page.hits == 2
    await tick(app, clock, 3)
    assert page.hits == 2  # second backoff: 4 s
    await tick(app, clock, 1)
    assert page.hits == 3 and len(page.calls("POST")) == 1


async def test_a_500_is_said_audited_and_retried_in_order(
    app: App, page: FakeStatuspage, clock: FakeClock
) -> None:
    await say(app, DECLARE)
    await app.public.drain()
    page.fault = "500"
    await say(app, f'!incident update {INC} --public "first"')
    await say(app, f'!incident update {INC} --public "second"')
    await tick(app, clock)
    assert page.calls("PATCH") == []
    assert any(
        "could not send the update (HTTP 500 (error)" in t and "stays queued" in t
        for t in await said(app)
    )
    await tick(app, clock, 2)
    # the failed one goes first: order per incident holds
    await tick(app, clock, 1)
    assert [c["incident"]["body"] for c in page.calls("PATCH")] == ["first", "second"]
    outcomes = [o for c, o in await audit_rows(app) if c == "statuspage update"]
    assert outcomes[0].startswith("failed: HTTP 500") and outcomes[1:] == ["ok", "ok"]
    assert any("update sent after all" in t for t in await said(app))


@pytest.mark.parametrize("fault", ["badjson", "hang"])
async def test_a_lost_answer_does_not_create_a_second_page_incident(
    app: App, page: FakeStatuspage, clock: FakeClock, fault: str
) -> None:
    page.fault = fault
    await say(app, DECLARE)
    await app.public.drain()
    assert (await audit_rows(app))[0][1].startswith("failed:")
    await tick(app, clock, 2)
    # badjson: created but the answer was lost, so the retry finds it by our metadata;
    # hang: nothing was created, so the retry creates it. Either way exactly one.
    assert len(page.incidents) == 1
    assert await status_field(app) == "investigating https://stspg.io/fake1"
    await say(app, f"!incident resolve {INC} fixed")
    await tick(app, clock)
    assert page.incidents["spinc1"]["status"] == "resolved"


async def test_the_queue_survives_a_restart(
    tmp_path: Path, page: FakeStatuspage, clock: FakeClock
) -> None:
    cfg = config(tmp_path, page)
    app = await start(cfg, clock)
    page.fault = "500"
    await say(app, DECLARE)
    await app.public.drain()
    assert page.calls("POST") == []
    await app.stop()

    clock.advance(2)
    app = await start(cfg, clock)
    try:
        await app.public.drain()
        assert len(page.calls("POST")) == 1
        assert await status_field(app) == "investigating https://stspg.io/fake1"
    finally:
        await app.stop()


@pytest.fixture
async def no_page_app(tmp_path: Path, clock: FakeClock) -> AsyncIterator[App]:
    """No [statuspage] section; alice holds the status page role all the same."""
    running = await start(make_config(tmp_path, console={"format": "jsonl"}, roles=ROLES), clock)
    yield running
    await running.stop()


async def test_publish_without_a_status_page_says_so(no_page_app: App) -> None:
    await no_page_app.bus.handle(ev('!incident declare "Anything"'))
    [reply] = await no_page_app.bus.handle(ev(f"!incident publish {INC}"))
    assert reply.text.startswith("the status page is not configured")


async def test_escalation_publishes_or_raises_the_impact(
    app: App, page: FakeStatuspage, clock: FakeClock
) -> None:
    await say(app, '!incident declare --sev 3 "Slow API" --service payments')
    await say(app, '!incident declare --sev 2 "Checkout errors" --service payments')
    await app.public.drain()
    assert page.hits == 0
    # INC-1 escalated to SEV-1: in auto_publish, so it is published now
    await say(app, f"!incident escalate {INC} SEV-1")
    await app.public.drain()
    [created] = page.calls("POST")
    assert created["incident"]["impact_override"] == "critical"
    # INC-2 published by hand, then escalated: the page's impact and components follow
    await say(app, "!incident publish INC-2026-0002")
    await tick(app, clock)
    await say(app, "!incident escalate INC-2026-0002")
    await tick(app, clock)
    assert page.calls("PATCH")[-1]["incident"] == {
        "status": "investigating",
        "impact_override": "critical",
        "components": {"cmp_pay": "major_outage"},
        "deliver_notifications": False,
    }


def test_statuspage_and_tickets_keys_come_from_credentials_or_environment(
    tmp_path: Path,
) -> None:
    from chatopsd import config as config_mod

    (tmp_path / "tickets_token").write_text("tk-from-credential\n")
    path = tmp_path / "c.toml"
    path.write_text(
        "[statuspage]\npage_id = 'p1'\n[tickets]\nkind = 'github'\nproject = 'acme/infra'\n"
    )
    cfg = config_mod.load(
        path,
        env={"CHATOPSD_STATUSPAGE_API_KEY": "sp-from-env", "CREDENTIALS_DIRECTORY": str(tmp_path)},
    )
    assert cfg.statuspage is not None and cfg.tickets is not None
    assert cfg.statuspage.api_key.get_secret_value() == "sp-from-env"
    assert cfg.tickets.token.get_secret_value() == "tk-from-credential"
    assert {"sp-from-env", "tk-from-credential"} <= set(config_mod.secrets_of(cfg))
    assert "sp-from-env" not in repr(cfg)
    path.write_text("[tickets]\nkind = 'jira'\nproject = 'OPS'\ntoken = 'x'\n")
    with pytest.raises(config_mod.ConfigError, match="tickets: Value error, url"):
        config_mod.load(path, env={})


async def test_a_lost_answer_to_an_update_does_not_post_it_twice(
    app: App, page: FakeStatuspage, clock: FakeClock
) -> None:
    await say(app, DECLARE)
    await app.public.drain()
    page.fault = "badjson"  # the update is made, its answer is lost
    await say(app, f'!incident update {INC} --public "Fix deployed"')
    await tick(app, clock)
    assert (await audit_rows(app))[-1][1].startswith("failed: Statuspage answered PATCH")
    await tick(app, clock, 2)
    bodies = [u["body"] for u in page.incidents["spinc1"]["incident_updates"]]
    assert bodies.count("Fix deployed") == 1
    assert (await audit_rows(app))[-1] == ("statuspage update", "ok")
    assert await status_field(app) == "investigating https://stspg.io/fake1"


async def test_a_daemon_stopped_mid_create_does_not_create_twice(
    tmp_path: Path, page: FakeStatuspage, clock: FakeClock
) -> None:
    cfg = config(tmp_path, page, timeout_seconds=30)
    app = await start(cfg, clock)
    page.fault = "hang-after"  # Statuspage creates it, the answer never comes
    await say(app, DECLARE)
    await asyncio.wait_for(page.created.wait(), 5)  # sent by the background worker
    assert len(page.incidents) == 1
    await app.stop()  # the daemon goes away while waiting for the answer

    app = await start(cfg, clock)
    try:
        await app.public.drain()
        assert len(page.incidents) == 1  # found again by our metadata, not created twice
        assert await status_field(app) == "investigating https://stspg.io/fake1"
        await say(app, f"!incident resolve {INC} fixed")
        await tick(app, clock)
        assert page.incidents["spinc1"]["status"] == "resolved"
    finally:
        await app.stop()


async def test_public_text_without_a_status_page_is_said_not_sent(no_page_app: App) -> None:
    app = no_page_app
    await app.bus.handle(ev('!incident declare "Anything"'))
    [reply] = await app.bus.handle(ev(f'!incident update {INC} checking --public "Hello"'))
    assert reply.text == f"{INC} updated; the pinned status shows it."
    await app.outbox.flush(5)
    out = app.outbox.connectors["console"].stdout.getvalue()  # type: ignore[attr-defined]
    assert "No status page is configured ([statuspage]), so the --public text was not sent" in out


async def test_a_bad_key_is_said_without_the_key(
    tmp_path: Path, page: FakeStatuspage, clock: FakeClock
) -> None:
    out = io.StringIO()
    app = await start(config(tmp_path, page, api_key="sp-wrong-key-1234"), clock, out)
    try:
        await say(app, DECLARE)
        await app.public.drain()
        [(command, outcome)] = await audit_rows(app)
        assert command == "statuspage create"
        assert outcome.startswith("failed: HTTP 401 (error) from Statuspage POST")
        await app.outbox.flush(5)
        assert "could not publish it (HTTP 401" in out.getvalue()
        everything = out.getvalue() + str(await app.db.fetchall("SELECT * FROM audit"))
        assert "sp-wrong-key-1234" not in everything
    finally:
        await app.stop()


# -- only text marked public, only from people allowed to publish ------------------------------


async def test_internal_text_never_rides_along_with_public_text(
    app: App, page: FakeStatuspage, clock: FakeClock
) -> None:
    await say(app, DECLARE)
    await app.public.drain()
    # the leak: internal words typed after the quoted public text are refused, not published
    refused = await say(
        app,
        f'!incident update {INC} --public "We are investigating" internal: leaked ACME key',
    )
    assert refused.text.startswith("nothing may follow the --public text")
    assert refused.ephemeral
    # unquoted public text is refused too: nothing guesses where it ends
    unquoted = await say(app, f"!incident update {INC} --public We are on it ACME key")
    assert unquoted.text.startswith("nothing may follow the --public text")
    # a quoted internal note that merely contains --public stays internal
    await say(
        app, f'!incident update {INC} "ACME --public key leaked in logs" --public "We are on it"'
    )
    await say(app, f"!incident update {INC} 'rotate the ACME key, --public \"later\"'")
    await tick(app, clock, 5)
    assert [c["incident"].get("body") for c in page.calls("PATCH")] == ["We are on it"]
    assert "ACME" not in str(page.requests)
    timeline = [e.text for e in await app.incidents.store.timeline(INC)]
    assert timeline[-2:] == [
        "ACME --public key leaked in logs",
        'rotate the ACME key, --public "later"',
    ]
    assert not any("We are investigating" in t for t in timeline)  # the refused update


async def test_status_page_commands_need_the_status_page_role(
    app: App, page: FakeStatuspage, clock: FakeClock
) -> None:
    await say(app, '!incident declare --sev 2 "Checkout errors" --service payments')
    for command in (
        f"!incident publish {INC} We are looking into it",
        f'!incident update {INC} --public "All fine now"',
        f"!incident identified {INC}",
        f"!incident monitor {INC}",
        f"!incident unpublish {INC}",
    ):
        [refused] = await app.bus.handle(ev(command, actor="bob"))
        name = command.split(f" {INC}")[0]
        if "--public" in command:
            name += " --public"
        assert refused.text == (
            f"{name} needs the role 'statuspage'\n"
            "ask an admin to add you under [roles] in the config"
        ), command
    # an internal update needs no role
    [noted] = await app.bus.handle(ev(f"!incident update {INC} checking the pool", actor="bob"))
    assert noted.text == f"{INC} updated; the pinned status shows it."
    await tick(app, clock, 5)
    assert page.hits == 0
    denied = await app.db.fetchall(
        "SELECT command FROM audit WHERE actor = 'bob' AND outcome = 'denied' ORDER BY id"
    )
    assert [r[0] for r in denied] == [
        "incident publish",
        "incident update",
        "incident identified",
        "incident monitor",
        "incident unpublish",
    ]
    # alice holds the role: published, then updated
    await say(app, f"!incident publish {INC}")
    await say(app, f'!incident update {INC} --public "Fixed"')
    await tick(app, clock)
    await tick(app, clock)
    assert [m for m, _, _ in page.requests] == ["POST", "PATCH"]


async def test_the_roles_are_configurable_per_command_and_for_public_text(
    tmp_path: Path, page: FakeStatuspage, clock: FakeClock
) -> None:
    cfg = make_config(
        tmp_path,
        console={"format": "jsonl"},
        ratelimit={"burst": 100},
        roles={"comms": ["console:bob"], "statuspage": ["console:alice"]},
        auth={"command_roles": {"incident publish": "comms", "incident update --public": "comms"}},
        statuspage={"api_url": page.url, "api_key": API_KEY, "page_id": PAGE_ID},
    )
    app = await start(cfg, clock)
    try:
        await say(app, '!incident declare --sev 2 "Checkout errors"')
        [refused] = await app.bus.handle(ev(f"!incident publish {INC}"))  # alice
        assert refused.text.startswith("!incident publish needs the role 'comms'")
        [refused] = await app.bus.handle(ev(f'!incident update {INC} --public "x"'))
        assert refused.text.startswith("!incident update --public needs the role 'comms'")
        [ok] = await app.bus.handle(ev(f"!incident publish {INC}", actor="bob"))
        assert ok.text == f"{INC} queued for the status page (investigating)."
        [ok] = await app.bus.handle(ev(f'!incident update {INC} --public "Fixed"', actor="bob"))
        assert ok.text == f"{INC} updated; the pinned status shows it."
        await tick(app, clock)
        await tick(app, clock)
        assert [c["incident"].get("body") for c in page.calls("PATCH")] == ["Fixed"]
    finally:
        await app.stop()


@pytest.mark.parametrize(
    ("template", "service", "name"),
    [
        (None, "payments", "Service disruption: payments"),
        # a service the page has no component for is not named: it may be internal
        (None, "acme-key-vault", "Service disruption"),
        ("{sev}: degraded {service}", "api", "SEV-1: degraded api"),
        ("{title}", "payments", "db-7 disk full, ACME creds rotated"),  # opted in
    ],
)
async def test_auto_publish_shows_the_public_title_not_the_internal_one(
    tmp_path: Path,
    page: FakeStatuspage,
    clock: FakeClock,
    template: str | None,
    service: str,
    name: str,
) -> None:
    more = {} if template is None else {"public_title": template}
    app = await start(config(tmp_path, page, **more), clock)
    try:
        await say(
            app,
            f'!incident declare --sev 1 "db-7 disk full, ACME creds rotated" --service {service}',
        )
        await app.public.drain()
        [created] = page.calls("POST")
        assert created["incident"]["name"] == name
        if template != "{title}":
            assert "ACME" not in str(page.requests)
    finally:
        await app.stop()


def test_an_unknown_title_placeholder_is_refused(tmp_path: Path) -> None:
    from chatopsd import config as config_mod

    path = tmp_path / "c.toml"
    path.write_text(
        "[statuspage]\napi_key = 'k'\npage_id = 'p1'\npublic_title = 'Down: {incident}'\n"
    )
    with pytest.raises(config_mod.ConfigError, match=r"public_title.*\{incident\}"):
        config_mod.load(path, env={})


async def test_a_key_statuspage_quotes_back_reaches_neither_chat_nor_the_audit_trail(
    tmp_path: Path, page: FakeStatuspage, clock: FakeClock
) -> None:
    out = io.StringIO()
    app = await start(config(tmp_path, page), clock, out)
    try:
        page.fault = "echo-auth"  # a 400 whose body quotes our Authorization header
        await say(app, DECLARE)
        await app.public.drain()
        [(command, outcome)] = await audit_rows(app)
        assert command == "statuspage create"
        assert outcome.startswith("failed: HTTP 400 (error) from Statuspage POST")
        assert "'Authorization': 'OAuth [redacted]'" in outcome
        field = await status_field(app)
        assert "last attempt failed: HTTP 400" in field
        await app.outbox.flush(5)
        assert "could not publish it (HTTP 400" in out.getvalue()
        everything = out.getvalue() + field + str(await app.db.fetchall("SELECT * FROM audit"))
        assert API_KEY not in everything
    finally:
        await app.stop()


async def test_publish_takes_a_quoted_message_whole_and_nothing_after_it(
    app: App, page: FakeStatuspage, clock: FakeClock
) -> None:
    await say(app, '!incident declare --sev 2 "Slow checkout" --service payments')
    refused = await say(
        app, f'!incident publish {INC} "Checkout is slow" internal: ACME key in the logs'
    )
    assert refused.text.startswith("nothing may follow the quoted message")
    await app.public.drain()
    assert page.hits == 0
    await say(app, f'!incident publish {INC} "Checkout is slow" --components payments')
    await app.public.drain()
    [created] = page.calls("POST")
    assert created["incident"]["body"] == "Checkout is slow"
    assert "ACME" not in str(page.requests)


async def test_calls_queued_by_an_earlier_version_are_sent_as_they_were_meant(
    app: App, page: FakeStatuspage, clock: FakeClock
) -> None:
    """Before the provider port, the queue stored Statuspage's request body itself: a row left
    queued across the upgrade still reaches the page unchanged, through the port."""
    await say(app, '!incident declare --sev 2 "Payments failing" --service payments')
    create = {
        "name": "Service disruption: payments",
        "status": "investigating",
        "impact_override": "major",
        "deliver_notifications": True,
        "metadata": {"chatopsd": {"incident_id": INC}},
        "component_ids": ["cmp_pay"],
        "components": {"cmp_pay": "partial_outage"},
        "body": "Checkout is slow",
    }
    update = {"status": "identified", "deliver_notifications": True, "body": "Found it"}
    store = app.public.store
    await store.start(INC, ["cmp_pay"], create, ("console:alice", "alice"), clock.now())
    await store.queue_update(INC, "identified", update, ("console:alice", "alice"), clock.now())
    await tick(app, clock)
    await tick(app, clock)
    assert page.calls("POST") == [{"incident": create}]
    assert page.calls("PATCH") == [{"incident": update}]
