"""The whole inbound chain over loopback: the fake Teams channel signs a token and POSTs an
activity to the fake Relay, the listener hands it to the pipeline, which checks it (HTTP status
policy, Bot Framework token) and admits/submits it. The JWT refusal matrix: every forged or
misdirected token is answered 401/403 and nothing is admitted or handled."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from chatopsd.connectors.teams import events, render
from chatopsd.connectors.teams.auth import BotFrameworkAuth
from chatopsd.connectors.teams.inbound import WORKING, InboundPipeline
from chatopsd.connectors.teams.relay import RelayListener
from chatopsd.core.messages import Reply
from chatopsd.core.ports import SystemClock
from tests.fakes import teams_bot, teams_relay
from tests.fakes.teams_bot import FakeBotService
from tests.fakes.teams_relay import FakeRelay
from tests.teams_helpers import APP_ID, section

Json = dict[str, Any]


class Clock:
    """Real wall time (tokens are signed with it); a monotonic clock the test moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


class Rig:
    def __init__(self, relay: FakeRelay, bot: FakeBotService, **cfg: Any) -> None:
        self.relay, self.bot = relay, bot
        self.cfg = section(relay.listen_url, **bot.section(**cfg))
        self.clock = Clock()
        self.auth = BotFrameworkAuth(self.cfg, clock=self.clock)
        self.admitted: list[events.Translated] = []
        self.submitted: list[events.Translated] = []
        self.late: list[tuple[events.Translated, Json | None]] = []
        self.worked = asyncio.Event()
        self.late_done = asyncio.Event()
        self.admit_result: bool | Exception = True
        self.answer: Callable[[events.Translated], Any] | None = None
        self.pipeline = InboundPipeline(
            self.cfg,
            auth=self.auth,
            translate=functools.partial(events.translate, app_id=APP_ID, prefix="!"),
            admit=self._admit,
            submit=self._submit,
            late=self._late,
        )
        self.listener = RelayListener(self.cfg, self.pipeline.handle, clock=SystemClock())

    async def _admit(self, translated: events.Translated) -> bool:
        self.admitted.append(translated)
        if isinstance(self.admit_result, Exception):
            raise self.admit_result
        return self.admit_result

    async def _submit(self, translated: events.Translated) -> Json | None:
        self.submitted.append(translated)
        try:
            if self.answer is not None:
                result = self.answer(translated)
                return await result if asyncio.iscoroutine(result) else result
            return None
        finally:
            self.worked.set()

    async def _late(self, translated: events.Translated, answer: Json | None) -> None:
        self.late.append((translated, answer))
        self.late_done.set()

    async def post(
        self, activity: Json | None = None, **kw: Any
    ) -> tuple[int, dict[str, str], bytes]:
        return await self.bot.post_activity(
            self.relay.endpoint, activity if activity is not None else self.bot.activity(), **kw
        )


@pytest.fixture
async def make_rig(relay: FakeRelay, bot: FakeBotService) -> AsyncIterator[Callable[..., Any]]:
    rigs: list[tuple[Rig, asyncio.Task[None]]] = []

    async def make(**cfg: Any) -> Rig:
        rig = Rig(relay, bot, **cfg)
        rigs.append((rig, asyncio.create_task(rig.listener.run())))
        await relay.wait_listeners(len(rigs))
        return rig

    yield make
    for rig, task in rigs:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await rig.listener.close()
        await rig.pipeline.close()
        await rig.auth.close()


@pytest.fixture
async def rig(make_rig: Callable[..., Any]) -> Rig:
    return await make_rig()  # type: ignore[no-any-return]


# -- a valid activity, end to end ----------------------------------------------------------


async def test_a_mention_is_acknowledged_then_handled(rig: Rig) -> None:
    status, headers, body = await rig.post()
    assert status == 200 and body == b""
    assert headers["Via"] == f"1.1 {teams_relay.NAMESPACE}"  # the daemon answered, not Relay
    await asyncio.wait_for(rig.worked.wait(), 10)
    (translated,) = rig.submitted
    assert rig.admitted == [translated]
    (event,) = translated.events
    assert (event.platform, event.text, event.kind) == ("teams", "ic", "mention")
    assert event.channel == teams_bot.CHANNEL and event.actor.id == teams_bot.USER_AAD
    assert translated.reference is not None
    assert translated.reference.service_url == rig.bot.service_url


async def test_a_100kb_activity_through_rendezvous(rig: Rig) -> None:
    text = "<at>chatopsd</at> ic " + "x" * 100_000
    status, _headers, _body = await rig.post(rig.bot.activity(text=text))
    assert status == 200
    await asyncio.wait_for(rig.worked.wait(), 10)
    assert len(rig.submitted[0].events[0].text) == 100_003
    assert rig.relay.via_rendezvous and rig.listener.health.rendezvous == 1


# -- the HTTP status policy -----------------------------------------------------------------


async def test_wrong_path_method_size_type_and_json(rig: Rig) -> None:
    ok = rig.bot.activity()
    base = rig.relay.endpoint
    cases: list[tuple[dict[str, Any], int]] = [
        ({"method": "GET"}, 405),
        ({"content_type": "text/plain"}, 415),
    ]
    for kw, expected in cases:
        status, headers, _ = await rig.bot.post_activity(base, ok, **kw)
        assert status == expected, kw
        if expected == 405:
            assert headers["Allow"] == "POST"
    status, *_ = await rig.bot.post_activity(base.replace("/api/messages", "/api/other"), ok)
    assert status == 404
    status, *_ = await rig.bot.post_activity(
        base, {"type": "message", "text": "x" * 300_000}, validate=False
    )
    assert status == 413
    async with aiohttp.ClientSession() as http:
        for raw in (b"{not json", b"[1, 2]", b'"text"'):
            async with http.post(base, data=raw, headers={"Content-Type": "application/json"}) as r:
                assert r.status == 400, raw
    assert rig.admitted == [] and rig.submitted == []
    assert rig.bot.jwks_hits == 0  # none of that cost a key fetch


async def test_authenticated_but_odd_activities_get_200(rig: Rig) -> None:
    lenient = [
        rig.bot.activity(
            entities=[
                *rig.bot.activity()["entities"],
                {"type": "ProductInfo", "id": 5},
                {"type": "x", "y": [1]},
                "not an object",
            ]
        ),
        rig.bot.activity(channelData=None),  # the tenant still in conversation.tenantId
        rig.bot.activity(conversation=None, recipient=None),  # seen in real traffic
    ]
    for activity in lenient:
        status, *_ = await rig.post(activity, validate=False)
        assert status == 200
    assert len(rig.admitted) == 3
    assert rig.admitted[0].events[0].text == "ic" and rig.admitted[1].events[0].text == "ic"
    assert rig.admitted[2].events == ()  # nowhere to answer: no event, no error
    # No type at all: still no 5xx (the Bot Service backs off after those); nothing admitted.
    untyped = {k: v for k, v in rig.bot.activity().items() if k != "type"}
    status, *_ = await rig.post(untyped, validate=False)
    assert status == 200 and len(rig.admitted) == 3
    assert rig.pipeline.counts["malformed"] == 1


async def test_failures_after_authentication_are_still_200(rig: Rig) -> None:
    rig.admit_result = RuntimeError("database is locked")
    status, *_ = await rig.post()
    assert status == 200 and rig.submitted == []
    rig.admit_result = False  # a redelivery, or another instance took it
    status, *_ = await rig.post()
    assert status == 200 and rig.submitted == []
    rig.admit_result = True

    def broken(_t: events.Translated) -> None:
        raise RuntimeError("handler bug")

    rig.answer = broken
    status, *_ = await rig.post()
    assert status == 200
    await asyncio.wait_for(rig.worked.wait(), 10)
    assert rig.pipeline.counts["admit_failed"] == 1
    assert rig.pipeline.counts["not_admitted"] == 1


async def test_a_crash_after_authentication_is_still_200(rig: Rig) -> None:
    def crash(_activity: object) -> events.Translated:
        raise RuntimeError("a bug in translation")

    rig.pipeline.translate = crash  # a collaborator that fails, as a bug would
    status, headers, _ = await rig.post()
    assert status == 200 and "Via" in headers
    assert rig.pipeline.counts["failed"] == 1 and rig.admitted == []


# -- invokes --------------------------------------------------------------------------------


def invoke(bot: FakeBotService, command: str = "ic ack") -> Json:
    activity = bot.activity(
        type="invoke",
        name="adaptiveCard/action",
        text=None,
        entities=None,
        textFormat=None,
        replyToId="1700000000042",
        value={
            "action": {
                "type": "Action.Execute",
                "verb": render.VERB,
                "data": {render.BUTTON_KEY: command},
            },
            "trigger": "manual",
        },
    )
    return activity


async def test_an_invoke_is_answered_with_its_result(rig: Rig) -> None:
    rig.answer = lambda t: render.invoke_message(f"done: {t.events[0].text}")
    status, headers, body = await rig.post(invoke(rig.bot))
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {
        "statusCode": 200,
        "type": "application/vnd.microsoft.activity.message",
        "value": "done: ic ack",
    }
    (event,) = rig.submitted[0].events
    assert event.kind == "button" and event.message_id == "1700000000042"


async def test_a_slow_invoke_gets_working_on_it_then_late(make_rig: Callable[..., Any]) -> None:
    rig = await make_rig(invoke_deadline_seconds=0.3)
    release = asyncio.Event()

    async def slow(_t: events.Translated) -> Json:
        await release.wait()  # released by the test once the HTTP answer is in
        return render.invoke_message("paged")

    rig.answer = slow
    status, _headers, body = await rig.post(invoke(rig.bot))
    assert status == 200
    assert json.loads(body)["value"] == WORKING
    assert rig.late == []
    release.set()
    await asyncio.wait_for(rig.late_done.wait(), 10)
    ((translated, answer),) = rig.late
    assert answer == render.invoke_message("paged") and translated.reply_to_id == "1700000000042"


async def test_a_large_invoke_answer_goes_back_through_rendezvous(rig: Rig) -> None:
    card = render.card(Reply(text="y" * 70_000))
    rig.answer = lambda _t: render.invoke_card(card)
    status, _headers, body = await rig.post(invoke(rig.bot))
    assert status == 200 and json.loads(body)["value"] == card
    assert rig.listener.health.rendezvous == 1


# -- the JWT refusal matrix -------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_key(bot: FakeBotService) -> str:
    """The classic key-confusion forgery: HS256 keyed with the RSA public key's PEM."""
    pem = (
        teams_bot.keys()["a"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    now = int(time.time())
    header = _b64(json.dumps({"alg": "HS256", "kid": "key-a", "typ": "JWT"}).encode())
    claims = {
        "iss": teams_bot.ISSUER,
        "aud": APP_ID,
        "serviceurl": bot.service_url,
        "nbf": now,
        "exp": now + 600,
    }
    payload = _b64(json.dumps(claims).encode())
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def alg_none(bot: FakeBotService) -> str:
    now = int(time.time())
    claims = {
        "iss": teams_bot.ISSUER,
        "aud": APP_ID,
        "serviceurl": bot.service_url,
        "exp": now + 600,
    }
    return jwt.encode(claims, None, algorithm="none", headers={"kid": "key-a"})


def now() -> int:
    return int(time.time())


# (name, how to post, expected status)
MATRIX: list[tuple[str, Callable[[FakeBotService], dict[str, Any]], int]] = [
    ("no header", lambda b: {"token": None}, 401),
    ("Basic", lambda b: {"authorization": "Basic dXNlcjpwYXNz"}, 401),
    ("not a JWT", lambda b: {"token": "abc.def"}, 401),
    ("alg none", lambda b: {"token": alg_none(b)}, 401),
    ("HS256 with the public key", lambda b: {"token": hs256_with_public_key(b)}, 401),
    ("bad signature", lambda b: {"token": b.channel_token()[:-6] + "AAAAAA"}, 401),
    ("wrong issuer", lambda b: {"token": b.channel_token(iss="https://sts.windows.net/x/")}, 401),
    ("wrong audience", lambda b: {"token": b.channel_token(aud="someone-else")}, 401),
    (
        "expired 6 min ago",
        lambda b: {"token": b.channel_token(exp=now() - 360, nbf=now() - 4000)},
        401,
    ),
    ("nbf 6 min ahead", lambda b: {"token": b.channel_token(nbf=now() + 360)}, 401),
    ("no expiry", lambda b: {"token": b.channel_token(exp=None)}, 401),
    ("unpublished key", lambda b: {"token": b.channel_token(key="c")}, 401),
    ("key not endorsed for msteams", lambda b: {"token": b.channel_token(key="b")}, 403),
    (
        "serviceurl mismatch",
        lambda b: {"token": b.channel_token(serviceurl="https://smba.trafficmanager.net/emea/x/")},
        403,
    ),
    ("no serviceurl claim", lambda b: {"token": b.channel_token(serviceurl=None)}, 403),
]


@pytest.mark.parametrize(("name", "how", "status"), MATRIX, ids=[m[0] for m in MATRIX])
async def test_refused_tokens(
    rig: Rig, name: str, how: Callable[[FakeBotService], dict[str, Any]], status: int
) -> None:
    got, headers, _ = await rig.post(**how(rig.bot))
    assert got == status
    assert "Via" in headers  # refused by the daemon, not by Relay
    assert rig.admitted == [] and rig.submitted == []


@pytest.mark.parametrize(
    ("name", "change", "key"),
    [
        ("another tenant", {"tenant": "99999999-0000-4000-8000-000000000000"}, "a"),
        (
            "tenants that disagree",
            {"conversation_tenant": "99999999-0000-4000-8000-000000000000"},
            "a",
        ),
        ("no tenant at all", {"tenant": None, "conversation_tenant": None}, "a"),
        ("webchat, endorsed, not allowed", {"channelId": "webchat"}, "b"),
        ("webchat with an msteams key", {"channelId": "webchat"}, "a"),
    ],
)
async def test_refused_activities(rig: Rig, name: str, change: dict[str, Any], key: str) -> None:
    activity = rig.bot.activity()
    if "tenant" in change:
        activity["channelData"]["tenant"] = {"id": change["tenant"]} if change["tenant"] else {}
        if change.get("tenant") is not None:
            activity["conversation"]["tenantId"] = change["tenant"]
    if "conversation_tenant" in change:
        if change["conversation_tenant"] is None:
            activity["conversation"].pop("tenantId")
        else:
            activity["conversation"]["tenantId"] = change["conversation_tenant"]
    if "channelId" in change:
        activity["channelId"] = change["channelId"]
    got, _headers, _ = await rig.post(activity, token=rig.bot.channel_token(key=key))
    assert got == 403
    assert rig.admitted == [] and rig.submitted == []


async def test_leeway_accepts_four_minutes_either_way(rig: Rig) -> None:
    for claims in ({"exp": now() - 240, "nbf": now() - 4000}, {"nbf": now() + 240}):
        status, *_ = await rig.post(token=rig.bot.channel_token(**claims))
        assert status == 200, claims
    assert len(rig.admitted) == 2


async def test_junk_never_fetches_keys(rig: Rig) -> None:
    for how in (
        {"token": alg_none(rig.bot)},
        {"token": rig.bot.channel_token(iss="https://evil.example")},
        {"authorization": "Basic x"},
        {"token": "a.b.c"},
    ):
        status, *_ = await rig.post(**how)
        assert status == 401
    assert rig.bot.openid_hits == 0 and rig.bot.jwks_hits == 0


async def test_unknown_kid_refresh_is_rate_limited(rig: Rig) -> None:
    status, *_ = await rig.post()  # first request: keys fetched once
    assert status == 200 and rig.bot.jwks_hits == 1
    rig.clock.offset += 301  # the first fetch is more than 5 minutes old
    for kid in ("key-c", "key-forged-1", "key-forged-2", "key-forged-3"):
        token = rig.bot.channel_token(key="c", header={"kid": kid})
        status, *_ = await rig.post(token=token)
        assert status == 401
    # One refresh for the first unknown kid; the others within 5 minutes fetch nothing.
    assert rig.bot.jwks_hits == 2
    rig.bot.publish("c")  # Microsoft rotates a new key in
    status, *_ = await rig.post(token=rig.bot.channel_token(key="c"))
    assert status == 401 and rig.bot.jwks_hits == 2  # still inside the 5 minutes
    rig.clock.offset += 301
    status, *_ = await rig.post(token=rig.bot.channel_token(key="c"))
    assert status == 200 and rig.bot.jwks_hits == 3
    assert rig.auth.fetches == 3


async def test_keys_are_fetched_concurrently_only_once(rig: Rig) -> None:
    results = await asyncio.gather(*(rig.post() for _ in range(8)))
    assert [r[0] for r in results] == [200] * 8
    assert rig.bot.jwks_hits == 1 and rig.bot.openid_hits == 1


async def test_requires_client_authorization_eats_the_token(
    bot: FakeBotService,
) -> None:
    # The misconfiguration the operator guide warns about: Relay strips the bot's token.
    fake = FakeRelay(requires_client_authorization=True)
    await fake.start()
    try:
        status, headers, _ = await bot.post_activity(fake.endpoint, bot.activity())
        assert status == 401 and "Via" not in headers  # Relay's answer, not the daemon's
    finally:
        await fake.close()
