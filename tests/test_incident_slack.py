"""Incidents on Slack end to end, what is Slack's own: the real App, the real slack-sdk,
tests/fakes/slack.py. The order of Slack's calls, invites by mention, a missing scope, the
connector's port against the fake and the published schemas. What every platform with
incident channels does (channel, status pinned and edited, fallbacks, numbered names, rate
limits) is one scenario file, tests/test_incident_channels.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator  # type: ignore[import-untyped]
from slack_sdk.errors import SlackApiError

from chatopsd.app import App
from chatopsd.connectors.slack.client import SlackConnector
from chatopsd.connectors.slack.config import SlackSection
from chatopsd.core.capabilities import (
    CHANNEL_INVITES,
    INCIDENT_CHANNELS,
    MESSAGE_PINS,
    ChannelRefused,
)
from chatopsd.core.messages import Destination, Reply, Sent
from tests.conftest import FakeClock, make_config
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, BOT_USER, FakeSlack
from tests.fixtures.slack import (
    PING,
    fake,  # noqa: F401 (fixtures)
    say,
    started,
)
from tests.spec_files import vendored_spec

CHANNEL = "inc-20261123-payments-failing"
DECLARE = '!incident declare --sev 2 "Payments failing"'


@pytest.fixture
async def app(tmp_path: Path, fake: FakeSlack, clock: FakeClock) -> AsyncIterator[App]:
    config = make_config(
        tmp_path,
        slack={
            "app_token": APP_TOKEN,
            "bot_token": BOT_TOKEN,
            "api_url": fake.api_url,
            "ping_interval_seconds": PING,
        },
        console={"enabled": False},
        incidents={"routing": {"SEV-2": ["slack:CANN"]}},
    )
    running = await started(config, clock)
    yield running
    await running.stop()


async def declare(fake: FakeSlack) -> str:
    return await say(fake, DECLARE, expect="declared (SEV-2)")


def methods(fake: FakeSlack) -> list[str]:
    return [m for m, _, _ in fake.calls if m not in ("users.info", "auth.test")]


def status_post(fake: FakeSlack, channel: str) -> dict[str, Any]:
    return next(p for p in fake.posts() if p["channel"] == channel and "State" in str(p["text"]))


def status_ts(fake: FakeSlack, channel: str) -> str:
    """The ts of the status message, which must be the one pinned."""
    ts = fake.ts_of(status_post(fake, channel))
    assert fake.pins[channel] == [ts]
    return ts


# -- the happy path --------------------------------------------------------------------------


async def test_connector_offers_channel_admin(app: App) -> None:
    for capability in (INCIDENT_CHANNELS, CHANNEL_INVITES, MESSAGE_PINS):
        admin: object = app.capabilities.get("slack", capability)
        assert admin is app.outbox.connectors["slack"]


async def test_declare_calls_slack_in_the_order_a_person_would_see(
    app: App, fake: FakeSlack
) -> None:
    # what every platform does is in tests/test_incident_channels.py; this is Slack's order
    reply = await declare(fake)
    assert reply.startswith(f"INC-2026-0001 declared (SEV-2). Incident channel: #{CHANNEL}.")
    [channel_id] = [cid for cid, c in fake.channels.items() if c["name"] == CHANNEL]
    status_ts(fake, channel_id)  # pinned
    # the order a person would see: channel, topic, invite, status, pin
    flow = [
        m
        for m in methods(fake)
        if m.startswith(("conversations.", "pins.")) or m == "chat.postMessage"
    ]
    start = flow.index("conversations.create")
    assert flow[start : start + 3] == [
        "conversations.create",
        "conversations.setTopic",
        "conversations.invite",
    ]
    assert flow.index("pins.add") > flow.index("chat.postMessage", start)
    [pin] = fake.posts("pins.add")
    assert pin["channel"] == channel_id


async def test_commander_is_invited_and_a_plain_name_is_refused_clearly(
    app: App, fake: FakeSlack
) -> None:
    await declare(fake)
    [channel_id] = fake.channels
    reply = await say(
        fake, "!incident commander <@U2>", channel=channel_id, expect="Incident Commander"
    )
    assert "Could not invite" not in reply
    assert fake.channels[channel_id]["members"] == [BOT_USER, "U1", "U2"]
    reply = await say(fake, "!incident scribe bob", channel=channel_id, expect="Scribe")
    assert "Could not invite them to the incident channel: not Slack users: bob" in reply


# -- refusals and fallbacks ------------------------------------------------------------------


async def test_missing_scope_names_the_scope_to_add(app: App, fake: FakeSlack) -> None:
    fake.refuse_create = "missing_scope"
    reply = await declare(fake)
    assert "Incident thread" in reply
    assert "lacks the channels:manage scope" in reply and "reinstall" in reply


# -- the port itself, straight against the fake -----------------------------------------------


@pytest.fixture
async def connector(fake: FakeSlack, clock: FakeClock) -> AsyncIterator[SlackConnector]:
    made = SlackConnector(
        SlackSection(app_token=APP_TOKEN, bot_token=BOT_TOKEN, api_url=fake.api_url), clock=clock
    )
    yield made
    await made.close()


async def test_port_errors_are_channel_refused(connector: SlackConnector, fake: FakeSlack) -> None:
    channel = await connector.create_channel("inc-x", "")
    assert fake.channels[channel]["topic"] == ""
    assert "conversations.setTopic" not in methods(fake)
    with pytest.raises(ChannelRefused, match=r"the name is taken \(name_taken\)"):
        await connector.create_channel("inc-x", "again")
    with pytest.raises(ChannelRefused, match=r"no such Slack user \(user_not_found\)"):
        await connector.invite(channel, ["U404"])
    with pytest.raises(ChannelRefused, match="channel does not exist"):
        await connector.invite("CNOPE", ["U1"])
    fake.refuse_create = "not_allowed"
    with pytest.raises(ChannelRefused, match=r"Slack does not allow it here \(not_allowed\)"):
        await connector.create_channel("inc-y", "")
    fake.fail("conversations.create", 200, "invalid_auth")
    with pytest.raises(ChannelRefused, match=r"refused the bot token \(invalid_auth\)"):
        await connector.create_channel("inc-z", "")


async def test_port_repeats_are_harmless(connector: SlackConnector, fake: FakeSlack) -> None:
    channel = await connector.create_channel("inc-x", "topic " + "x" * 300)
    assert len(fake.channels[channel]["topic"]) == 250  # cut to Slack's limit, not refused
    await connector.invite(channel, ["U1", "U1"])
    await connector.invite(channel, ["U1"])  # already_in_channel is not a failure
    await connector.invite(channel, [])  # nobody: no call
    assert fake.channels[channel]["members"] == [BOT_USER, "U1"]
    assert len(fake.posts("conversations.invite")) == 2
    sent = await connector.send(Destination("slack", channel), Reply(title="status", text="ok"))
    assert sent is not None
    await connector.pin(sent)
    await connector.pin(sent)  # already_pinned is not a failure
    assert fake.pins[channel] == [sent.message_id]
    with pytest.raises(ChannelRefused, match="message to pin is gone"):
        await connector.pin(Sent(Destination("slack", channel), "1.2", {"channel": channel}))
    with pytest.raises(ChannelRefused, match="cannot be pinned"):
        await connector.pin(Sent(Destination("slack", channel), "", {"ephemeral": "1"}))


async def test_port_gives_up_clearly_when_slack_keeps_failing(
    connector: SlackConnector, fake: FakeSlack
) -> None:
    for _ in range(3):  # the first try and the client's two retries
        fake.fail("pins.add", 500, "internal_error")
    sent = Sent(Destination("slack", "C1"), "1.2", {"channel": "C1"})
    with pytest.raises(ChannelRefused, match=r"Slack is failing \(HTTP 500\) after retries"):
        await connector.pin(sent)
    assert len(fake.posts("pins.add")) == 3


# -- the fake answers in Slack's published shapes -------------------------------------------

SPEC = vendored_spec("slack", "web-api-openapi-v2.json")


def _validator(method: str, status: str) -> Any:
    spec = json.loads(SPEC.read_text())
    schema = spec["paths"][f"/{method}"]["post"]["responses"][status]["schema"]
    # the spec's refs are "#/definitions/...": give the schema the spec's definitions
    return Draft4Validator({**schema, "definitions": spec["definitions"]})


@pytest.mark.skipif(not SPEC.exists(), reason="the shared Slack spec is not here")
async def test_fake_answers_match_the_published_schemas(
    connector: SlackConnector, fake: FakeSlack
) -> None:
    web = connector.web()
    answers: list[tuple[str, str, dict[str, Any]]] = []

    async def call(method: str, **args: Any) -> None:
        try:
            response = await web.api_call(method, params=args)
            answers.append((method, "200", dict(response.data)))  # type: ignore[arg-type]
        except SlackApiError as exc:
            answers.append((method, "default", dict(exc.response.data)))

    await call("conversations.create", name="inc-shape")
    [channel] = fake.channels
    await call("conversations.create", name="inc-shape")  # name_taken
    await call("conversations.setTopic", channel=channel, topic="t")
    await call("conversations.invite", channel=channel, users="U0CAROL")
    await call("conversations.invite", channel=channel, users="U0CAROL,U0NOBODY")  # per user
    fake.refuse_create = "missing_scope"
    await call("conversations.create", name="inc-other")
    sent = await connector.send(Destination("slack", channel), Reply(text="x"))
    assert sent is not None
    await call("pins.add", channel=channel, timestamp=sent.message_id)
    await call("pins.add", channel=channel, timestamp=sent.message_id)  # already_pinned
    assert [s for _, s, _ in answers].count("default") == 4
    for method, status, body in answers:
        errors = [e.message for e in _validator(method, status).iter_errors(body)]
        assert errors == [], (method, status, body)


async def test_mutating_channel_list_still_allows_the_incidents_own_channel(
    tmp_path: Path, fake: FakeSlack, clock: FakeClock
) -> None:
    """auth.mutating_channels cannot name channels made later for incidents: they are allowed."""
    config = make_config(
        tmp_path,
        slack={"app_token": APP_TOKEN, "bot_token": BOT_TOKEN, "api_url": fake.api_url},
        console={"enabled": False},
        auth={"mutating_channels": ["slack:C1"]},
    )
    running = await started(config, clock)
    try:
        await declare(fake)  # in C1, which is listed
        [channel_id] = fake.channels
        await say(fake, "!incident update checking the database", channel=channel_id)
        assert len(fake.posts("chat.update")) == 1  # the pinned status was edited
        assert not fake.posts("chat.postEphemeral")  # and nothing was refused
        await fake.event(fake.message("!incident update from elsewhere", channel="C9"))
        await fake.wait_for(lambda: len(fake.posts("chat.postEphemeral")) == 1)
        refused = fake.posts("chat.postEphemeral")[0]
        assert refused["channel"] == "C9"
        assert "is not allowed in this channel" in str(refused["text"])
        assert "auth.mutating_channels" in str(refused["text"])
    finally:
        await running.stop()


async def test_a_hostile_title_is_inert_in_the_topic(
    connector: SlackConnector, fake: FakeSlack
) -> None:
    title = "INC-1 [SEV-1] <!here> \x1b[2J<https://127.0.0.1|click>\nsecond line\u202e"
    channel = await connector.create_channel("inc-hostile", title)
    topic = fake.channels[channel]["topic"]
    assert topic == "INC-1 [SEV-1] &lt;!here&gt; [2J&lt;https://127.0.0.1|click&gt; second line"
