"""The outbound HTTP transport against a local aiohttp server: retries by the one policy
(429 with and without Retry-After, 5xx), timeouts, malformed JSON, redaction of every echo of
a secret, and the deadline measured on the injected clock (waits slept through an injected
sleep that moves the clock: no wall-clock waits)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from chatopsd.core.retry import Backoff, RetryPolicy
from chatopsd.httpclient import HttpError, HttpTransport
from tests.conftest import FakeClock

SECRET = "cfg-test-secret-0123456789"  # a configured secret (not one of this request's)
TOKEN = "req-test-token-abcdef0123"  # this request's credential
POLICY = RetryPolicy(attempts=4, backoff=Backoff(base=0.5, cap=4.0))

Answer = Callable[[web.Request], web.StreamResponse]


@dataclass
class Server:
    """Answers /x with the scripted answers in turn (the last one repeats); counts requests."""

    answers: list[Answer] = field(default_factory=list)
    seen: list[web.Request] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        answer = self.answers[min(len(self.seen), len(self.answers)) - 1]
        if answer is hang:
            await self.release.wait()  # until the test ends
            return web.Response(status=504)
        return answer(request)


def hang(request: web.Request) -> web.StreamResponse:  # a marker: Server.handle waits
    raise AssertionError("handled by Server.handle")


def status(code: int, headers: dict[str, str] | None = None, body: str = "") -> Answer:
    return lambda request: web.Response(status=code, headers=headers or {}, text=body)


def ok(data: Any) -> Answer:
    return lambda request: web.json_response(data)


def echo_credentials(request: web.Request) -> web.StreamResponse:
    """A 400 quoting what it was sent, as some proxies and APIs do."""
    quoted = {"auth": request.headers.get("Authorization"), "query": request.query_string}
    return web.Response(status=400, text=f"bad request {json.dumps(quoted)} key={SECRET}")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    found = Server()
    app = web.Application()
    app.router.add_route("*", "/x", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    found.url = f"http://127.0.0.1:{port}/x"
    yield found
    found.release.set()
    await runner.cleanup()


@dataclass
class Rig:
    clock: FakeClock
    http: HttpTransport
    slept: list[float]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = FakeClock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)  # the waits move the injected clock, never the wall's

    http = HttpTransport(clock, secrets=(SECRET,), sleep=sleep)
    yield Rig(clock, http, slept)
    await http.close()


async def test_a_429_waits_what_retry_after_says_then_succeeds(server: Server, rig: Rig) -> None:
    server.answers = [status(429, {"Retry-After": "3"}), ok({"fine": True})]
    answer = await rig.http.request("GET", server.url, retry=POLICY, deadline=30)
    assert answer.json() == {"fine": True}
    assert (answer.attempts, rig.slept) == (2, [3.0])


async def test_a_429_without_retry_after_backs_off_by_the_policy(server: Server, rig: Rig) -> None:
    server.answers = [status(429), status(429), ok([])]
    answer = await rig.http.request("GET", server.url, retry=POLICY, deadline=30)
    assert answer.json() == [] and len(server.seen) == 3
    # full jitter: each wait within the policy's ceiling for its attempt
    assert len(rig.slept) == 2
    assert 0 <= rig.slept[0] <= 1.0 and 0 <= rig.slept[1] <= 2.0


async def test_5xx_is_retried_until_the_attempts_are_used_up(server: Server, rig: Rig) -> None:
    server.answers = [status(503, body="down for maintenance")]
    with pytest.raises(HttpError) as caught:
        await rig.http.request("GET", server.url, retry=POLICY, deadline=60)
    error = caught.value
    assert (error.kind, error.status, error.attempts) == ("status", 503, 4)
    assert len(server.seen) == 4 and len(rig.slept) == 3
    assert str(error) == f"HTTP 503 from {server.url}: down for maintenance"


async def test_without_a_policy_a_call_is_tried_once(server: Server, rig: Rig) -> None:
    server.answers = [status(503, {"Retry-After": "7"})]
    with pytest.raises(HttpError) as caught:
        await rig.http.request("POST", server.url, json={})
    assert (caught.value.status, caught.value.retry_after) == (503, 7.0)
    assert len(server.seen) == 1 and rig.slept == []


async def test_a_client_error_is_not_retried(server: Server, rig: Rig) -> None:
    server.answers = [status(404, body='{"error": "no such thing"}')]
    with pytest.raises(HttpError) as caught:
        await rig.http.request("GET", server.url, retry=POLICY, deadline=60)
    assert caught.value.status == 404 and caught.value.body == {"error": "no such thing"}
    assert len(server.seen) == 1


async def test_a_timeout_is_an_error_that_says_how_long_it_waited(server: Server, rig: Rig) -> None:
    server.answers = [hang]
    with pytest.raises(HttpError) as caught:
        await rig.http.request("POST", server.url, json={"a": 1}, timeout=0.2)
    error = caught.value
    assert (error.kind, error.status, error.maybe_done) == ("timeout", None, True)
    assert str(error) == f"no answer from {server.url} in 0.2 s"


async def test_a_timeout_that_used_the_whole_deadline_is_not_retried(
    server: Server, rig: Rig
) -> None:
    # The injected clock does not move while the request hangs; the attempt was given all
    # the time left, so that time is spent whatever the clock says.
    server.answers = [hang]
    at_once = RetryPolicy(attempts=4, backoff=Backoff(base=0.0, cap=0.0))  # no wait between
    with pytest.raises(HttpError) as caught:
        await rig.http.request("GET", server.url, timeout=5.0, deadline=0.3, retry=at_once)
    assert caught.value.kind == "timeout" and len(server.seen) == 1 and rig.slept == []


async def test_a_timeout_with_time_left_is_retried(server: Server, rig: Rig) -> None:
    server.answers = [hang, ok({"late": "but here"})]
    answer = await rig.http.request("GET", server.url, timeout=0.2, deadline=30, retry=POLICY)
    assert answer.json() == {"late": "but here"} and answer.attempts == 2


async def test_malformed_json_is_an_error_and_a_write_may_have_happened(
    server: Server, rig: Rig
) -> None:
    server.answers = [lambda request: web.Response(status=201, text="<html>created</html>")]
    answer = await rig.http.request("POST", server.url, json={})
    with pytest.raises(HttpError) as caught:
        answer.json()
    assert (caught.value.kind, caught.value.status, caught.value.maybe_done) == (
        "malformed",
        201,
        True,
    )
    assert "did not answer JSON" in str(caught.value)


async def test_a_secret_echoed_in_an_error_body_never_reaches_the_error_text(
    server: Server, rig: Rig
) -> None:
    server.answers = [echo_credentials]
    with pytest.raises(HttpError) as caught:
        await rig.http.request(
            "GET",
            server.url + "?api_key=qk-test-query-secret-99",
            headers={"Authorization": f"Token token={TOKEN}"},
        )
    error = caught.value
    everything = " ".join((str(error), error.text, error.detail))
    assert error.status == 400 and "bad request" in error.detail
    for secret in (TOKEN, SECRET, "qk-test-query-secret-99"):
        assert secret not in everything
    assert "[redacted]" in error.detail
    assert "api_key=[redacted]" in error.text  # the URL shown without its query value


async def test_the_deadline_is_measured_on_the_injected_clock(server: Server, rig: Rig) -> None:
    # Each wait moves the injected clock by 0.4 s; a retry needs its wait plus 0.2 s before
    # the 1 s deadline: after the first wait (at 0.4 s) one more fits, after the second not.
    server.answers = [status(503, {"Retry-After": "0.4"})]
    started = rig.clock.monotonic()
    with pytest.raises(HttpError) as caught:
        await rig.http.request("GET", server.url, retry=POLICY, deadline=1.0)
    assert rig.slept == [0.4] and len(server.seen) == 2
    assert rig.clock.monotonic() - started == pytest.approx(0.4)
    assert caught.value.gave_up == "retry in 0 s would pass the deadline"


async def test_time_the_injected_clock_says_passed_during_a_call_counts(
    server: Server, rig: Rig
) -> None:
    def slow_failure(request: web.Request) -> web.StreamResponse:
        rig.clock.advance(0.9)  # the attempt took 0.9 s by the injected clock
        return web.Response(status=503)

    server.answers = [slow_failure]
    with pytest.raises(HttpError) as caught:
        await rig.http.request("GET", server.url, retry=POLICY, deadline=1.0)
    assert len(server.seen) == 1 and rig.slept == []
    assert caught.value.gave_up.endswith("would pass the deadline")


async def test_a_server_wait_past_the_deadline_gives_up_at_once(server: Server, rig: Rig) -> None:
    server.answers = [status(429, {"Retry-After": "30"})]
    with pytest.raises(HttpError) as caught:
        await rig.http.request("GET", server.url, retry=POLICY, deadline=10)
    assert caught.value.retry_after == 30.0 and rig.slept == [] and len(server.seen) == 1
    assert caught.value.gave_up == "retry in 30 s would pass the deadline"


async def test_an_unreachable_server_is_named_and_retried(rig: Rig) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with pytest.raises(HttpError) as caught:
        await rig.http.request("GET", f"http://127.0.0.1:{dead}/x", retry=POLICY, deadline=60)
    assert caught.value.kind == "unreachable" and caught.value.attempts == 4
    assert str(caught.value).startswith(f"cannot connect to http://127.0.0.1:{dead}/x: ")


async def test_the_session_opens_on_first_use_and_reopens_after_close(
    server: Server, rig: Rig
) -> None:
    server.answers = [ok({})]
    await rig.http.request("GET", server.url)
    await rig.http.close()
    await rig.http.request("GET", server.url)  # a closed transport opens a new session
    assert len(server.seen) == 2


def test_importing_the_transport_loads_no_aiohttp() -> None:
    # A console-only daemon builds the transport but never calls it: aiohttp must not load.
    code = (
        "import sys; from chatopsd.httpclient import HttpTransport; "
        "from chatopsd.core.ports import SystemClock; HttpTransport(SystemClock()); "
        "print('aiohttp' in sys.modules)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "False"
