"""The Azure Relay listener against the fake Relay: SAS tokens, the control channel, keep-alive
without PINGs, rendezvous in both directions, token renewal, reconnects, refusals."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from chatopsd.connectors.teams.relay import (
    RelayListener,
    RelayRefused,
    RelayRequest,
    RelayResponse,
    response_head,
    sas_token,
)
from chatopsd.core.ports import SystemClock
from chatopsd.core.retry import Backoff
from tests.fakes import teams_relay
from tests.fakes.teams_relay import FakeRelay, check_sas
from tests.teams_helpers import section

# TEAMS.md §9 check 1: computed with the formula of Microsoft's Python helper for Relay.
VECTOR = (
    "SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%2Fchatopsd"
    "&sig=lrASAO1akbAhkRk1%2B8W2a8mFI0CyAkGU8JOS%2BWaLPWQ%3D&se=1700000000&skn=chatopsd-listen"
)


def test_sas_token_known_answer() -> None:
    token = sas_token(
        "contoso.servicebus.windows.net", "chatopsd", "chatopsd-listen", teams_relay.KEY, 1700000000
    )
    assert token == VECTOR


def test_the_fake_accepts_the_vector_and_refuses_what_is_wrong() -> None:
    def check(token: str, now: float = 1_699_999_000) -> tuple[int, str] | None:
        return check_sas(
            token,
            namespace=teams_relay.NAMESPACE,
            path=teams_relay.PATH,
            key_name=teams_relay.KEY_NAME,
            key=teams_relay.KEY,
            now=now,
        )

    assert check(VECTOR) is None
    # Signed with the base64-decoded key (the classic mistake): refused.
    import base64

    decoded = base64.b64decode(teams_relay.KEY).decode("latin-1")
    wrong_key = teams_relay.sas(
        teams_relay.NAMESPACE, teams_relay.PATH, teams_relay.KEY_NAME, decoded, 1700000000
    )
    assert check(wrong_key) == (401, "bad signature")
    assert check(VECTOR, now=1_700_000_001) == (401, "expired")
    assert check(VECTOR.replace("skn=chatopsd-listen", "skn=other")) == (401, "unknown key name")
    other_path = sas_token(
        teams_relay.NAMESPACE, "other", teams_relay.KEY_NAME, teams_relay.KEY, 1700000000
    )
    assert check(other_path) == (403, "token for another entity")


def test_response_head_is_numeric_and_refuses_gateway_codes() -> None:
    head = json.loads(response_head("r1", RelayResponse(200, {"Content-Length": "3"}, b"abc")))
    assert head == {
        "response": {
            "requestId": "r1",
            "statusCode": 200,
            "statusDescription": "OK",
            "responseHeaders": {},
            "body": True,
        }
    }
    for status in (502, 504):
        with pytest.raises(ValueError):
            response_head("r1", RelayResponse(status))


class Echo:
    """A request handler that records what it got and answers with a body of `size` bytes."""

    def __init__(self, size: int = 2) -> None:
        self.requests: list[RelayRequest] = []
        self.size = size
        self.got = asyncio.Event()

    async def __call__(self, request: RelayRequest) -> RelayResponse:
        self.requests.append(request)
        self.got.set()
        return RelayResponse(200, {"Content-Type": "application/json"}, b"x" * self.size)


@pytest.fixture
async def relay() -> AsyncIterator[FakeRelay]:
    fake = FakeRelay(pong_every=0.05)
    await fake.start()
    yield fake
    await fake.close()
    assert fake.violations == []


class Harness:
    def __init__(
        self, relay: FakeRelay, handler: Echo, recycle_seconds: float = 86400.0, **cfg: Any
    ) -> None:
        self.delays: list[float] = []
        self.ready = 0
        self.lost: list[str] = []
        self.listener = RelayListener(
            section(relay.listen_url, **cfg),
            handler,
            clock=SystemClock(),
            sleep=self._sleep,
            rng=random.Random(7),
            backoff=Backoff(base=1.0, cap=30.0, stable_after=60.0),
            recycle_seconds=recycle_seconds,
        )
        self.task: asyncio.Task[None] | None = None
        self._readied = asyncio.Condition()

    async def wait_ready(self, count: int = 1) -> None:
        """Until the listener has called on_ready `count` times (its side of the handshake)."""
        async with asyncio.timeout(teams_relay.WAIT_LIMIT), self._readied:
            await self._readied.wait_for(lambda: self.ready >= count)

    async def _sleep(self, seconds: float) -> None:
        self.delays.append(seconds)  # recorded, not waited: the backoff is what is checked
        await asyncio.sleep(0)

    def _on_ready(self) -> None:
        self.ready += 1

        async def notify() -> None:
            async with self._readied:
                self._readied.notify_all()

        self._notify = asyncio.ensure_future(notify())

    def start(self) -> None:
        self.task = asyncio.create_task(self.listener.run(self._on_ready, self.lost.append))

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task
        await self.listener.close()


@pytest.fixture
async def harness(relay: FakeRelay) -> AsyncIterator[Any]:
    made: list[Harness] = []

    def make(handler: Echo | None = None, **kw: Any) -> Harness:
        h = Harness(relay, handler or Echo(), **kw)
        made.append(h)
        h.start()
        return h

    yield make
    for h in made:
        await h.stop()


async def test_handshake_header_action_and_id(relay: FakeRelay, harness: Any) -> None:
    h = harness()
    await relay.wait_listeners(1)
    await h.wait_ready()
    shake = relay.handshakes[0]
    assert shake["headers"]["ServiceBusAuthorization"].startswith("SharedAccessSignature sr=")
    assert shake["query"]["sb-hc-action"] == "listen"
    assert len(shake["query"]["sb-hc-id"]) == 36
    assert "sb-hc-token" not in shake["query"]  # the token travels in the header only
    assert h.ready == 1 and h.listener.listening.is_set()


async def test_keepalive_pongs_and_never_a_ping(relay: FakeRelay, harness: Any) -> None:
    harness(keepalive_seconds=0.05, dead_after_seconds=30)
    await relay.wait_listeners(1)
    listener = relay.listeners[0]
    # Three keep-alive periods of the listener, and three of the service's PONGs answered by
    # nothing: the fake closes the channel on any PING, which would make a second listener.
    await relay.wait_for(lambda: relay.pongs_from_listeners() >= 3 and listener.pongs_sent >= 3)
    assert relay.pings() == 0
    assert len(relay.all_listeners) == 1 and listener.closed_with is None
    kinds = {f.kind for f in listener.frames}
    assert kinds == {"pong"}


async def test_small_request_over_the_control_channel(relay: FakeRelay, harness: Any) -> None:
    echo = Echo()
    harness(echo)
    await relay.wait_listeners(1)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            relay.endpoint + "?x=1&sb-hc-token=dropped",
            data=b'{"type":"message"}',
            headers={"Authorization": "Bearer abc.def.ghi", "Content-Type": "application/json"},
        ) as r,
    ):
        assert r.status == 200
        assert r.headers["Via"] == f"1.1 {teams_relay.NAMESPACE}"
        assert await r.read() == b"xx"
    request = echo.requests[0]
    assert request.method == "POST" and request.target == "/chatopsd/api/messages?x=1"
    assert request.headers["authorization"] == "Bearer abc.def.ghi"  # reached us intact
    assert request.body == b'{"type":"message"}' and not request.via_rendezvous
    assert relay.via_rendezvous == []


async def test_large_request_through_rendezvous_and_the_socket_serves_the_next(
    relay: FakeRelay, harness: Any
) -> None:
    echo = Echo()
    h = harness(echo)
    await relay.wait_listeners(1)
    big = json.dumps({"type": "message", "text": "a" * 100_000}).encode()
    async with aiohttp.ClientSession() as http:
        for body in (big, b'{"type":"message","text":"second"}'):
            async with http.post(
                relay.endpoint, data=body, headers={"Content-Type": "application/json"}
            ) as r:
                assert r.status == 200 and await r.read() == b"xx"
    assert [len(r.body) for r in echo.requests] == [len(big), 34]
    assert all(r.via_rendezvous for r in echo.requests)
    # One rendezvous socket, opened for the large request, carried the second one too.
    assert len(relay.via_rendezvous) == 2 and h.listener.health.rendezvous == 1
    # The signed address went to the fake exactly as issued (lower-case escapes kept).
    assert relay.rendezvous_queries and "%3d" in relay.rendezvous_queries[0]


async def test_a_requoted_rendezvous_address_is_refused_by_the_fake(relay: FakeRelay) -> None:
    # What the listener's `encoded=True` prevents: yarl re-quoting upper-cases the escapes.
    address, _query = relay._address("req-x")
    relay._pending["req-x"] = teams_relay.Pending(
        "req-x", None, {}, b"", _query, asyncio.get_running_loop().create_future()
    )
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(URL(address))
        assert refused.value.status == 403
        ws = await http.ws_connect(URL(address, encoded=True))
        await ws.close()
    relay._pending.clear()


async def test_large_response_goes_back_through_rendezvous(relay: FakeRelay, harness: Any) -> None:
    h = harness(Echo(size=70_000))
    await relay.wait_listeners(1)
    async with aiohttp.ClientSession() as http, http.post(relay.endpoint, data=b"{}") as r:
        assert r.status == 200
        assert len(await r.read()) == 70_000
    assert h.listener.health.rendezvous == 1
    assert [f.data for f in relay.rendezvous_frames if f.kind == "binary"] == [70_000]
    # Nothing over 64 kB was written on the control channel.
    assert all(f.kind != "binary" for f in relay.listeners[0].frames)


async def test_concurrent_answers_never_interleave(relay: FakeRelay, harness: Any) -> None:
    class Slow(Echo):
        async def __call__(self, request: RelayRequest) -> RelayResponse:
            await asyncio.sleep(0)
            return RelayResponse(200, {}, request.body * 20)

    harness(Slow())
    await relay.wait_listeners(1)
    async with aiohttp.ClientSession() as http:

        async def one(i: int) -> bytes:
            async with http.post(relay.endpoint, data=f"{i:04d}".encode()) as r:
                assert r.status == 200
                return await r.read()

        bodies = await asyncio.gather(*(one(i) for i in range(30)))
    assert bodies == [f"{i:04d}".encode() * 20 for i in range(30)]


async def test_token_renewed_before_expiry(relay: FakeRelay, harness: Any) -> None:
    h = harness(sas_ttl_seconds=2)
    await relay.wait_listeners(1)
    first = relay.listeners[0]
    await relay.wait_for(lambda: len(relay.renewals) >= 1)
    renewed = relay.renewals[0]
    assert teams_relay._expiry(renewed) > teams_relay._expiry(
        relay.handshakes[0]["headers"]["ServiceBusAuthorization"]
    )
    assert first.closed_with is None and first in relay.listeners
    assert h.listener.health.renewals >= 1


async def test_without_renewal_the_fake_closes_with_1008() -> None:
    # The fake's side of the renewal check: an expired token ends the channel.
    fake = FakeRelay()
    await fake.start()
    try:
        token = teams_relay.sas(
            fake.namespace, fake.path, fake.key_name, fake.key, int(time.time()) + 1
        )
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                URL(f"{fake.listen_url}?sb-hc-action=listen", encoded=True),
                headers={"ServiceBusAuthorization": token},
                autoping=False,
            )
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008
    finally:
        await fake.close()


async def test_half_open_channel_is_replaced(relay: FakeRelay, harness: Any) -> None:
    h = harness(keepalive_seconds=0.05, dead_after_seconds=0.4)
    await relay.wait_listeners(1)
    relay.half_open()
    await relay.wait_listeners(1, total=2)
    relay.silent = False
    assert h.lost[0] == "no frame from the relay for 0.4 s (half-open connection)"
    assert len(h.delays) >= 1 and all(0 <= d <= 30 for d in h.delays)
    assert relay.pings() == 0


async def test_dropped_channel_reconnects_with_capped_jittered_backoff(
    relay: FakeRelay, harness: Any
) -> None:
    h = harness()
    await relay.wait_listeners(1)
    for n in range(2, 8):
        relay.drop()
        await relay.wait_listeners(1, total=n)
        await h.wait_ready(n)
    # Each drop came soon after connecting (not stable): the ceiling grows, capped at 30 s.
    ceilings = [min(30.0, 2.0**k) for k in range(1, 7)]
    assert len(h.delays) == 6
    assert all(0 <= d <= c for d, c in zip(h.delays, ceilings, strict=True))
    assert h.delays != sorted(h.delays) or len(set(h.delays)) > 1  # jittered, not fixed
    assert h.ready == 7


@pytest.mark.parametrize(
    ("code", "meaning"), [(1011, "service error"), (1008, "the token expired")]
)
async def test_a_service_close_is_followed_by_a_reconnect(
    relay: FakeRelay, harness: Any, code: int, meaning: str
) -> None:
    h = harness()
    await relay.wait_listeners(1)
    await h.wait_ready()
    await relay.close_listeners(code)
    await relay.wait_listeners(1, total=2)
    await h.wait_ready(2)
    assert h.lost == [f"the relay closed the control channel (code {code}: {meaning})"]
    assert len(h.delays) == 1 and 0 <= h.delays[0] <= 2.0


@pytest.mark.parametrize(
    ("status", "words"),
    [(401, "teams_relay_key"), (403, "Listen right"), (404, "teams.relay_path")],
)
async def test_handshake_refusal_is_fatal_and_says_why(
    relay: FakeRelay, status: int, words: str
) -> None:
    relay.refuse_next = [status]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    listener = RelayListener(section(relay.listen_url), Echo(), clock=SystemClock(), sleep=sleep)
    with pytest.raises(RelayRefused) as refused:
        await asyncio.wait_for(listener.run(), teams_relay.WAIT_LIMIT)
    await listener.close()
    assert refused.value.status == status and words in str(refused.value)
    assert slept == [] and len(relay.handshakes) == 1  # no retry, no hot loop
    assert teams_relay.KEY not in str(refused.value)


async def test_a_wrong_key_is_refused_as_401(relay: FakeRelay) -> None:
    listener = RelayListener(
        section(relay.listen_url, relay_key="d3Jvbmcta2V5"), Echo(), clock=SystemClock()
    )
    with pytest.raises(RelayRefused) as refused:
        await listener.listen_once()
    await listener.close()
    assert refused.value.status == 401 and relay.refused == [(401, "bad signature")]


async def test_server_error_at_handshake_is_retried(relay: FakeRelay, harness: Any) -> None:
    relay.refuse_next = [500, 500]
    h = harness()
    await relay.wait_listeners(1)
    assert len(h.delays) == 2
    assert h.lost == ["relay handshake failed: HTTP 500"] * 2


async def test_websocket_senders_are_rejected(relay: FakeRelay, harness: Any) -> None:
    harness()
    await relay.wait_listeners(1)
    await relay.connect_sender()
    await relay.wait_for(lambda: len(relay.rejections) == 1)
    code, description = relay.rejections[0]
    assert code == "403" and "HTTP requests only" in description


async def test_no_listener_is_a_502_from_the_relay(relay: FakeRelay) -> None:
    async with aiohttp.ClientSession() as http, http.post(relay.endpoint, data=b"{}") as r:
        assert r.status == 502 and "Via" not in r.headers


def test_rendezvous_addresses_must_stay_in_the_relay_domain() -> None:
    real = RelayListener(section(), Echo(), clock=SystemClock())
    assert real._trusted_address("wss://g7-prod-am3-001-sb.servicebus.windows.net:443/$hc/x?a=1")
    assert real._trusted_address(f"wss://{teams_relay.NAMESPACE}/$hc/chatopsd?sb-hc-id=1")
    for address in (
        "wss://evil.example/$hc/chatopsd",
        "wss://servicebus.windows.net.evil.example/$hc/x",
        "ws://g7.servicebus.windows.net/$hc/x",  # not encrypted
        "https://g7.servicebus.windows.net/$hc/x",
    ):
        assert not real._trusted_address(address), address
    test = RelayListener(section("ws://127.0.0.1:9/$hc/chatopsd"), Echo(), clock=SystemClock())
    assert test._trusted_address("ws://127.0.0.1:9/$hc/chatopsd?sb-hc-action=request")
    assert not test._trusted_address("ws://127.0.0.2:9/$hc/chatopsd?sb-hc-action=request")


async def test_the_connection_is_recycled_without_a_wait(relay: FakeRelay, harness: Any) -> None:
    h = harness(recycle_seconds=0.3)
    await relay.wait_listeners(1, total=2)
    await h.wait_ready(2)
    assert h.lost[0] == "recycled after a day" and h.delays[0] == 0.0
    assert relay.all_listeners[0].closed_with is None  # closed by us, cleanly


async def test_a_stalled_relay_answers_504_and_the_listener_stays() -> None:
    fake = FakeRelay(timeout=0.5)
    await fake.start()
    try:
        echo = Echo()
        h = Harness(fake, echo)
        h.start()
        await fake.wait_listeners(1)
        fake.stall()
        async with aiohttp.ClientSession() as http, http.post(fake.endpoint, data=b"{}") as r:
            assert r.status == 504 and "Via" not in r.headers
        assert len(echo.requests) == 1  # it reached the listener, which answered
        assert len(fake.all_listeners) == 1 and h.lost == []
        await h.stop()
    finally:
        await fake.close()
