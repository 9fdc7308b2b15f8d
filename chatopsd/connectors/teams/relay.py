"""An Azure Relay Hybrid Connections listener: HTTP requests to the Relay endpoint arrive over
an outbound websocket, and are answered on it. No library exists for this in Python; the
protocol is the one of relay-hybrid-connections-protocol.md (tests/specs/teams/), and the
behaviour follows Microsoft's .NET and Node listeners where the document is silent.

The control channel: `wss://{namespace}/$hc/{path}?sb-hc-action=listen&sb-hc-id=…` with the SAS
token in the `ServiceBusAuthorization` header. The service sends JSON text frames on it:
  request   an HTTP request: headers as JSON, then the body as one binary message (aiohttp joins
            the fragments). When the request is over 64 kB the message carries only a rendezvous
            `address`: the listener opens a websocket there and reads the full request from it.
  accept    a websocket sender (we take none): rejected with a handshake to the address plus
            `sb-hc-statusCode=403`, which the service answers with HTTP 410 by design.
Answers go back as a `response` text frame plus one binary body, under one lock so two
answers never interleave; an answer over 64 kB goes through a rendezvous socket opened with the
request's address. A rendezvous socket stays open and serves later requests from the same
sender until the service closes it (or it is idle too long).

Keeping the channel alive: Relay is reported to drop a listener that sends a websocket PING, so
none is ever sent (aiohttp's heartbeat is off); an unsolicited PONG goes out every
`keepalive_seconds` instead (what the reference listeners do) and any frame from the service
(it sends PONGs about every 210 s) proves the channel alive: nothing for `dead_after_seconds`
means a half-open connection, and the listener reconnects. The SAS token is renewed at 75 % of
its lifetime with a `renewToken` message, and the connection is recycled once a day (a .NET
listener bug report: listeners silently stopped after 24 h).

Reconnects use core/retry's backoff (full jitter, capped at 30 s); 401/403/404 at the handshake
are a configuration problem no retry fixes: RelayRefused (a FatalConnectorError) says which key.
Nothing here ever logs a token or a rendezvous address (it carries one).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import math
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from chatopsd.connectors.teams.config import TeamsSection, is_loopback
from chatopsd.core.errors import FatalConnectorError
from chatopsd.core.ports import Clock
from chatopsd.core.retry import Backoff

log = logging.getLogger("chatopsd.teams.relay")

# Bodies on the control channel: "at most 64 kB". 64,000 keeps under either reading of kB.
CONTROL_BODY_MAX = 64_000
RENEW_AT = 0.75  # of the token's lifetime
RECYCLE_SECONDS = 24 * 3600.0
RESPONSE_DEADLINE = 50.0  # the service gives up on a request after 60 s
RENDEZVOUS_IDLE_SECONDS = 120.0
RENDEZVOUS_MAX = 64  # open rendezvous sockets; more requests for one wait for the URL to expire
# Headers a listener must not set in a response (RFC 7230's, handled by the service).
_HOP_HEADERS = frozenset(
    {"connection", "content-length", "host", "te", "trailer", "transfer-encoding", "upgrade"}
)
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
}


class RelayRefused(FatalConnectorError):
    """The relay refused the listener's handshake for a reason no retry fixes (401/403/404)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class RelayProtocolError(ConnectionError):
    """The service sent something the protocol does not allow (the connection is replaced)."""


# -- SAS tokens --------------------------------------------------------------------------


def resource_uri(namespace: str, path: str) -> str:
    """The token's audience: `http://{namespace}/{path}`, scheme http, without `$hc/`."""
    return f"http://{namespace}/{path}"


def sas_token(namespace: str, path: str, key_name: str, key: str, expiry: int) -> str:
    """A Shared Access Signature for the Hybrid Connection, valid until `expiry` (Unix time).

    The HMAC-SHA256 key is the key string's UTF-8 bytes exactly as the portal shows it (the
    base64 is not decoded); the signed text is the URL-encoded resource, a newline, and the
    expiry (the formula of Microsoft's Python helper for Relay)."""
    resource = quote(resource_uri(namespace, path), safe="")
    signed = f"{resource}\n{expiry}".encode()
    digest = hmac.new(key.encode("utf-8"), signed, hashlib.sha256).digest()
    signature = quote(base64.b64encode(digest).decode("ascii"), safe="")
    return f"SharedAccessSignature sr={resource}&sig={signature}&se={expiry}&skn={key_name}"


# -- requests and responses --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayRequest:
    """One relayed HTTP request. `headers` are the sender's, less what Relay strips (RFC 7230
    headers but `Via`, its own authorization); `target` the request target with its query."""

    id: str
    method: str
    target: str
    headers: CIMultiDictProxy[str]
    body: bytes = b""
    address: str = ""  # the rendezvous address for answering a large response
    via_rendezvous: bool = False


@dataclass(slots=True)
class RelayResponse:
    """The answer to a relayed request. `after` runs once the answer has been written (or
    writing it failed): work acknowledged first, done after."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    after: Callable[[], object] | None = None


Handler = Callable[[RelayRequest], Awaitable[RelayResponse]]


def parse_request(message: Mapping[str, Any], *, via_rendezvous: bool) -> RelayRequest:
    """The `request` object of a control or rendezvous message (without its body)."""
    rid, method, target = message.get("id"), message.get("method"), message.get("requestTarget")
    if not isinstance(rid, str) or not isinstance(method, str) or not isinstance(target, str):
        raise RelayProtocolError("request without id, method or requestTarget")
    raw_headers = message.get("requestHeaders")
    headers: CIMultiDict[str] = CIMultiDict()
    if isinstance(raw_headers, dict):
        for name, value in raw_headers.items():
            if isinstance(name, str) and isinstance(value, str):
                headers.add(name, value)
    address = message.get("address")
    return RelayRequest(
        id=rid,
        method=method.upper(),
        target=target,
        headers=CIMultiDictProxy(headers),
        address=address if isinstance(address, str) else "",
        via_rendezvous=via_rendezvous,
    )


def response_head(request_id: str, response: RelayResponse) -> str:
    """The `response` text frame. statusCode is a number (the document's example shows a
    string; the .NET listener sends an int); 502 and 504 are not allowed from a listener."""
    status = response.status
    if status in (502, 504) or not 100 <= status <= 599:
        raise ValueError(f"a listener may not answer HTTP {status}")
    headers = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_HEADERS}
    head: dict[str, Any] = {
        "requestId": request_id,
        "statusCode": status,
        "statusDescription": _REASONS.get(status, ""),
        "responseHeaders": headers,
        "body": bool(response.body),
    }
    return json.dumps({"response": head}, separators=(",", ":"))


# -- sockets -----------------------------------------------------------------------------


class _Socket:
    """A websocket we write to from several tasks: every write under one lock, so a response's
    text frame and its body are never split by another write."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, name: str) -> None:
        self.ws = ws
        self.name = name
        self.lock = asyncio.Lock()

    async def send_response(self, request_id: str, response: RelayResponse) -> None:
        head = response_head(request_id, response)
        async with self.lock:
            await self.ws.send_str(head)
            if response.body:
                await self.ws.send_bytes(response.body)

    async def send_text(self, text: str) -> None:
        async with self.lock:
            await self.ws.send_str(text)

    async def pong(self, data: bytes = b"") -> None:
        async with self.lock:
            await self.ws.pong(data)


@dataclass
class RelayHealth:
    """What the doctor and the connector's health report show."""

    listening: bool = False
    connects: int = 0
    reason: str = ""  # why the last connection ended, or why the last attempt failed
    requests: int = 0
    rendezvous: int = 0  # rendezvous sockets opened
    renewals: int = 0
    retries: list[float] = field(default_factory=list)  # backoff delays, last 20


class RelayListener:
    """Listens on one Hybrid Connection and hands every relayed request to `handler`.

    `run()` listens forever (reconnecting with backoff); `listen_once()` is one connection.
    The handler must answer quickly and must not raise (a raise is answered 400 and logged)."""

    def __init__(
        self,
        cfg: TeamsSection,
        handler: Handler,
        *,
        clock: Clock,
        http: aiohttp.ClientSession | None = None,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
        recycle_seconds: float = RECYCLE_SECONDS,
        response_deadline: float = RESPONSE_DEADLINE,
        rendezvous_idle_seconds: float = RENDEZVOUS_IDLE_SECONDS,
    ) -> None:
        self.cfg = cfg
        self.handler = handler
        self.clock = clock
        self._http = http
        self._own_http = http is None
        self.backoff = backoff or Backoff(base=1.0, cap=30.0, stable_after=60.0)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.recycle_seconds = recycle_seconds
        self.response_deadline = response_deadline
        self.rendezvous_idle_seconds = rendezvous_idle_seconds
        self.health = RelayHealth()
        self.listening = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rendezvous: set[_Socket] = set()
        self._inflight = 0  # requests of the control channel not yet answered
        # Bodies up to max_body_bytes are read (larger ones answered 413 by the handler);
        # a message beyond 4x that closes its socket instead of filling memory.
        self._max_msg = max(cfg.max_body_bytes * 4, 1 << 20)

    # -- public ----------------------------------------------------------------------------

    def token(self) -> str:
        expiry = math.ceil(self.clock.now().timestamp() + self.cfg.sas_ttl_seconds)
        return sas_token(
            self.cfg.relay_namespace,
            self.cfg.relay_path,
            self.cfg.relay_key_name,
            self.cfg.relay_key.get_secret_value(),
            expiry,
        )

    async def run(
        self,
        on_ready: Callable[[], object] = lambda: None,
        on_lost: Callable[[str], object] = lambda reason: None,
    ) -> None:
        """Listen until cancelled: a lost connection is replaced after a backoff (none after a
        daily recycle; the attempt count resets once a connection was stable). RelayRefused
        (401/403/404 at the handshake) ends it."""
        attempt = 0
        while True:
            started = self.clock.monotonic()
            connects = self.health.connects
            try:
                recycled = await self.listen_once(on_ready)
                reason = "recycled after a day" if recycled else "closed"
            except RelayRefused as exc:
                self.health.reason = str(exc)
                raise
            except (ConnectionError, OSError, TimeoutError, aiohttp.ClientError) as exc:
                recycled = False
                reason = _describe(exc)
            self.health.reason = reason
            on_lost(reason)
            connected = self.health.connects > connects
            stable = connected and self.clock.monotonic() - started >= self.backoff.stable_after
            attempt = 0 if stable else attempt + 1
            delay = 0.0 if recycled else self.backoff.delay(attempt, self._rng)
            self.health.retries = [*self.health.retries[-19:], delay]
            level = logging.INFO if recycled else logging.WARNING
            log.log(level, "teams relay: %s; listening again in %.1f s", reason, delay)
            await self._sleep(delay)

    async def handshake(self) -> None:
        """Open the control channel and close it at once, serving nothing (`chatopsd doctor`:
        the key, path and namespace are right). RelayRefused, or ConnectionError and friends."""
        ws = await self._connect()
        await ws.close()

    async def listen_once(self, on_ready: Callable[[], object] = lambda: None) -> bool:
        """One control channel, served until it is lost (raises ConnectionError and friends)
        or recycled (returns True)."""
        ws = await self._connect()
        channel = _Socket(ws, "control")
        self.health.connects += 1
        self.health.reason = ""
        self.listening.set()
        background = [
            self._spawn(self._keepalive(channel), "teams-relay-keepalive"),
            self._spawn(self._renew(channel), "teams-relay-renew"),
        ]
        log.info("teams relay: listening on %s", self.cfg.relay_path)
        try:
            on_ready()
            return await self._pump(channel)
        finally:
            self.listening.clear()
            for task in background:
                task.cancel()
            await ws.close()

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        url = URL(
            f"{self.cfg.listen_url}?sb-hc-action=listen&sb-hc-id={uuid.uuid4()}", encoded=True
        )
        try:
            ws = await self._session().ws_connect(
                url,
                headers={"ServiceBusAuthorization": self.token()},
                heartbeat=None,  # never a PING: Relay is reported to drop the channel for one
                autoping=False,  # PINGs and PONGs reach the loop: any frame proves liveness
                max_msg_size=self._max_msg,
            )
        except aiohttp.WSServerHandshakeError as exc:
            refused = self._refusal(exc.status)
            if refused is not None:
                raise refused from None
            raise ConnectionError(f"relay handshake failed: HTTP {exc.status}") from None
        return ws

    async def close(self) -> None:
        """Stop every task and socket (the daemon is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sock in list(self._rendezvous):
            await sock.ws.close()
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None

    # -- control channel -------------------------------------------------------------------

    async def _pump(self, channel: _Socket) -> bool:
        loop = asyncio.get_running_loop()
        opened = last_frame = loop.time()
        pending: RelayRequest | None = None  # a request whose body is the next binary message
        while True:
            now = loop.time()
            recycle_in = opened + self.recycle_seconds - now
            if recycle_in <= 0 and self._inflight == 0 and pending is None:
                return True
            silent_for = self.cfg.dead_after_seconds - (now - last_frame)
            wait = min(silent_for, max(recycle_in, 1.0))
            try:
                msg = await channel.ws.receive(timeout=max(wait, 0.0))
            except TimeoutError:
                if loop.time() - last_frame >= self.cfg.dead_after_seconds:
                    raise ConnectionError(
                        f"no frame from the relay for {self.cfg.dead_after_seconds:g} s "
                        "(half-open connection)"
                    ) from None
                continue
            last_frame = loop.time()
            if msg.type is aiohttp.WSMsgType.TEXT:
                if pending is not None:
                    raise RelayProtocolError("a request's body did not follow it")
                pending = self._on_control_text(channel, msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                if pending is None:
                    log.warning("teams relay: binary frame without a request; ignored")
                    continue
                self._dispatch(_with_body(pending, msg.data), channel)
                pending = None
            elif msg.type is aiohttp.WSMsgType.PING:
                await channel.pong(msg.data)  # answer it: autoping is off
            elif msg.type is aiohttp.WSMsgType.PONG:
                pass  # the service's keep-alive: liveness already noted
            else:
                raise ConnectionError(_closed(channel.ws, msg))

    def _on_control_text(self, channel: _Socket, text: str) -> RelayRequest | None:
        """Handle one control message; a request whose body follows is returned."""
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            raise RelayProtocolError("control message is not JSON") from None
        if not isinstance(message, dict):
            raise RelayProtocolError("control message is not an object")
        if isinstance(message.get("request"), dict):
            body = message["request"]
            self.health.requests += 1
            if "method" not in body:
                # Too large for the control channel: only the rendezvous address came.
                address = body.get("address")
                if isinstance(address, str):
                    self._spawn(self._rendezvous_serve(address), "teams-relay-rendezvous")
                return None
            request = parse_request(body, via_rendezvous=False)
            if body.get("body") is True:
                return request
            self._dispatch(request, channel)
            return None
        if isinstance(message.get("accept"), dict):
            address = message["accept"].get("address")
            if isinstance(address, str):
                self._spawn(self._reject(address), "teams-relay-reject")
            return None
        log.info("teams relay: unknown control message %s ignored", sorted(message)[:3])
        return None

    async def _keepalive(self, channel: _Socket) -> None:
        while True:
            await asyncio.sleep(self.cfg.keepalive_seconds)
            await channel.pong()

    async def _renew(self, channel: _Socket) -> None:
        while True:
            await asyncio.sleep(self.cfg.sas_ttl_seconds * RENEW_AT)
            renew = {"renewToken": {"token": self.token()}}
            await channel.send_text(json.dumps(renew, separators=(",", ":")))
            self.health.renewals += 1

    # -- requests --------------------------------------------------------------------------

    def _dispatch(self, request: RelayRequest, sock: _Socket) -> None:
        if sock.name == "control":
            self._inflight += 1
        self._spawn(self._serve(request, sock), f"teams-relay-request:{request.id[:36]}")

    async def _serve(self, request: RelayRequest, sock: _Socket) -> None:
        response: RelayResponse
        try:
            try:
                response = await asyncio.wait_for(self.handler(request), self.response_deadline)
            except TimeoutError:
                log.error("teams relay: request not answered in %g s", self.response_deadline)
                response = RelayResponse(200)
            except Exception:
                log.exception("teams relay: the request handler failed")
                response = RelayResponse(400)
            try:
                await self._respond(request, sock, response)
            except (ConnectionError, OSError, aiohttp.ClientError, RuntimeError) as exc:
                log.warning("teams relay: could not answer a request: %s", _describe(exc))
        finally:
            if sock.name == "control":
                self._inflight -= 1
        if response.after is not None:
            try:
                response.after()
            except Exception:
                log.exception("teams relay: work after the answer failed")

    async def _respond(self, request: RelayRequest, sock: _Socket, response: RelayResponse) -> None:
        if sock.name != "control" or len(response.body) <= CONTROL_BODY_MAX:
            await sock.send_response(request.id, response)
            return
        # Too large for the control channel: upgrade this request to a rendezvous socket.
        if not request.address:
            raise RelayProtocolError("a large response, and the request gave no address")
        rendezvous = await self._open_rendezvous(request.address)
        await rendezvous.send_response(request.id, response)
        self._spawn(self._rendezvous_loop(rendezvous), "teams-relay-rendezvous")

    # -- rendezvous ------------------------------------------------------------------------

    async def _open_rendezvous(self, address: str) -> _Socket:
        if not self._trusted_address(address):
            raise RelayProtocolError("rendezvous address outside the relay's domain refused")
        if len(self._rendezvous) >= RENDEZVOUS_MAX:
            raise RelayProtocolError(f"{RENDEZVOUS_MAX} rendezvous sockets open already")
        try:
            # The address is signed by the service: used as is, never re-quoted.
            ws = await self._session().ws_connect(
                URL(address, encoded=True),
                heartbeat=None,
                autoping=True,
                max_msg_size=self._max_msg,
            )
        except aiohttp.WSServerHandshakeError as exc:
            # Never str(exc): it holds the address, and the address holds a token.
            raise ConnectionError(f"rendezvous handshake failed: HTTP {exc.status}") from None
        sock = _Socket(ws, "rendezvous")
        self._rendezvous.add(sock)
        self.health.rendezvous += 1
        return sock

    async def _rendezvous_serve(self, address: str) -> None:
        try:
            sock = await self._open_rendezvous(address)
        except (ConnectionError, OSError, aiohttp.ClientError) as exc:
            log.warning("teams relay: rendezvous failed: %s", _describe(exc))
            return
        await self._rendezvous_loop(sock)

    async def _rendezvous_loop(self, sock: _Socket) -> None:
        """Serve requests on a rendezvous socket until the service closes it or it idles."""
        pending: RelayRequest | None = None
        try:
            while True:
                try:
                    msg = await sock.ws.receive(timeout=self.rendezvous_idle_seconds)
                except TimeoutError:
                    return
                if msg.type is aiohttp.WSMsgType.TEXT:
                    message = json.loads(msg.data)
                    body = message.get("request") if isinstance(message, dict) else None
                    if not isinstance(body, dict):
                        log.info("teams relay: unexpected rendezvous message ignored")
                        continue
                    request = parse_request(body, via_rendezvous=True)
                    self.health.requests += 1
                    if body.get("body") is True:
                        pending = request
                    else:
                        self._dispatch(request, sock)
                elif msg.type is aiohttp.WSMsgType.BINARY and pending is not None:
                    self._dispatch(_with_body(pending, msg.data), sock)
                    pending = None
                elif msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.ERROR,
                ):
                    return
        except (ValueError, RecursionError, RelayProtocolError) as exc:
            log.warning("teams relay: malformed rendezvous message: %s", _describe(exc))
        finally:
            self._rendezvous.discard(sock)
            await sock.ws.close()

    async def _reject(self, address: str) -> None:
        """Refuse a websocket sender: this bot takes HTTP requests only."""
        if not self._trusted_address(address):
            return
        reason = quote("chatopsd accepts HTTP requests only", safe="")
        url = URL(f"{address}&sb-hc-statusCode=403&sb-hc-statusDescription={reason}", encoded=True)
        try:
            ws = await self._session().ws_connect(url, heartbeat=None, autoping=True)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status != 410:  # 410 Gone is the service's "rejected as asked"
                log.info("teams relay: rejecting a websocket sender got HTTP %s", exc.status)
            return
        except (OSError, aiohttp.ClientError) as exc:
            log.info("teams relay: rejecting a websocket sender failed: %s", _describe(exc))
            return
        await ws.close()  # the service accepted the rejection as a connection: close it

    def _trusted_address(self, address: str) -> bool:
        """A rendezvous address must point into the relay's own domain (other hosts of
        servicebus.windows.net serve them), over wss (ws:// only for a loopback test relay)."""
        parts, ours = urlsplit(address), urlsplit(self.cfg.listen_url)
        host, home = (parts.hostname or "").lower(), (ours.hostname or "").lower()
        if parts.scheme != "wss" and not (parts.scheme == "ws" and self.cfg.allow_insecure_relay):
            return False
        if host == home:
            return True
        if is_loopback(home):
            return False
        parent = home.split(".", 1)[1] if "." in home else ""
        return parent.count(".") >= 1 and host.endswith("." + parent)

    # -- plumbing --------------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            # trust_env: HTTPS_PROXY is honoured for the websocket upgrades too.
            self._http = aiohttp.ClientSession(
                trust_env=True, timeout=aiohttp.ClientTimeout(total=None, sock_connect=20)
            )
            self._own_http = True
        return self._http

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.warning("teams relay: task %s ended: %s", task.get_name(), _describe(exc))

    def _refusal(self, status: int) -> RelayRefused | None:
        cfg = self.cfg
        if status == 401:
            return RelayRefused(
                "the relay refused the SAS token (HTTP 401): check teams.relay_key_name and "
                "the credential teams_relay_key (the key string as the portal shows it), and "
                "that this host's clock is right",
                status,
            )
        if status == 403:
            return RelayRefused(
                f"the SAS policy {cfg.relay_key_name} may not listen on {cfg.relay_path} "
                "(HTTP 403): give it the Listen right on that Hybrid Connection",
                status,
            )
        if status == 404:
            return RelayRefused(
                f"no Hybrid Connection {cfg.relay_path} in {cfg.relay_namespace} (HTTP 404): "
                "check teams.relay_namespace and teams.relay_path",
                status,
            )
        return None


def _with_body(request: RelayRequest, data: bytes | str) -> RelayRequest:
    body = data.encode() if isinstance(data, str) else bytes(data)
    return RelayRequest(
        id=request.id,
        method=request.method,
        target=request.target,
        headers=request.headers,
        body=body,
        address=request.address,
        via_rendezvous=request.via_rendezvous,
    )


def _closed(ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage) -> str:
    if msg.type is aiohttp.WSMsgType.ERROR:
        return f"relay connection failed: {_describe(msg.data)}"
    code = ws.close_code if ws.close_code is not None else msg.data
    meaning = {
        1001: "the Hybrid Connection was deleted or disabled",
        1008: "the token expired",
        1011: "service error",
    }.get(code if isinstance(code, int) else 0, "")
    extra = f": {meaning}" if meaning else ""
    return f"the relay closed the control channel (code {code}{extra})"


def _describe(exc: object) -> str:
    """A cause for the log without the exception's text where that may hold a URL."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"handshake HTTP {exc.status}"
    if type(exc) in (ConnectionError, RelayProtocolError) and str(exc):
        return str(exc)  # our own words
    if isinstance(exc, aiohttp.ClientError):
        return type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__} ({exc.strerror})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
