"""A fake Azure Relay Hybrid Connection on 127.0.0.1 (port 0): the listener side and the HTTP
sender side, as tests/specs/teams/relay-hybrid-connections-protocol.md describes them.

Listener side, `GET /$hc/{path}?sb-hc-action=listen` (websocket upgrade): the SAS token (header
`ServiceBusAuthorization`, or query `sb-hc-token`) is checked by recomputing the HMAC with the
key string's UTF-8 bytes over the URL-encoded `http://{namespace}/{path}` (a trailing `/` also
accepted, as the .NET SDK sends it) and the expiry; 401 for a missing, malformed, unknown-key,
badly signed or expired token, 403 for a token of another entity, 404 for another path.
Every frame the listener sends is recorded (`frames`), so a test can assert no PING was ever
sent; like the real service is reported to do, a PING closes the channel (code 1011). The fake
sends unsolicited PONGs every `pong_every` seconds, and closes the channel with 1008 when the
token's expiry passes without a valid `renewToken`.

Sender side, `{method} /{path}/…`: RFC 7230 headers and `sb-hc-*` query parameters stripped,
`Via` added, `Authorization` passed as is (an anonymous Hybrid Connection; with
`requires_client_authorization` it is evaluated and stripped, as the service does, so the call
fails 401 the way a misconfigured one does). No listener: 502. A request up to 64 kB goes over
the control channel (`request` text frame, then the body as a binary message); a larger one (or
any, with `force_rendezvous`) sends only the rendezvous address, and the full request goes over
the rendezvous socket the listener opens. Later requests from the same sender connection go
over that rendezvous socket while it lasts. The response must come within `timeout` (else 504)
and is checked: a numeric statusCode, neither 502 nor 504, a body over 64 kB never on the
control channel; a violation is recorded in `violations` and the sender gets 502.

Rendezvous addresses carry a signed token with lower-case percent escapes: the fake compares the
raw query it receives with the one it issued, so a listener that re-quotes the address (which
upper-cases escapes) is refused with 403, like an expired or altered URL.

Test controls: `refuse_next` (statuses for the next listen handshakes), `drop()` (abort every
listener's TCP connection), `half_open()` (the fake stays connected but sends and routes
nothing), `stall()` (requests delivered, answers lost: the sender gets 504),
`close_listeners(code)` (the service closes the channels), `connect_sender()` (a websocket
sender: the listener must reject it; rejections are recorded in `rejections`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from aiohttp import WSCloseCode, WSMsgType, web

NAMESPACE = "contoso.servicebus.windows.net"
PATH = "chatopsd"
KEY_NAME = "chatopsd-listen"
# Test data only (the known-answer vector's key): base64 text, used as is, never decoded.
KEY = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMDAwMDA="
CONTROL_MAX = 64 * 1024
WAIT_LIMIT = 20.0
# RFC 7230's headers, stripped from relayed requests (Via is kept and annotated).
_RFC7230 = frozenset(
    {"connection", "content-length", "host", "te", "trailer", "transfer-encoding", "upgrade"}
)
_RELAY_AUTH = frozenset({"servicebusauthorization"})


def check_sas(
    token: str | None, *, namespace: str, path: str, key_name: str, key: str, now: float
) -> tuple[int, str] | None:
    """(status, why) when the token does not confer access to the entity, else None."""
    if not token or not token.startswith("SharedAccessSignature "):
        return 401, "missing or malformed token"
    fields = dict(part.split("=", 1) for part in token[22:].split("&") if "=" in part)
    sr, sig, se, skn = (fields.get(k) for k in ("sr", "sig", "se", "skn"))
    if not (sr and sig and se and skn) or not se.isdigit():
        return 401, "malformed token"
    if skn != key_name:
        return 401, "unknown key name"
    expected = base64.b64encode(
        hmac.new(key.encode("utf-8"), f"{sr}\n{se}".encode(), hashlib.sha256).digest()
    ).decode()
    if not hmac.compare_digest(unquote(sig), expected):
        return 401, "bad signature"
    if int(se) <= now:
        return 401, "expired"
    if unquote(sr).lower().rstrip("/") != f"http://{namespace}/{path}".lower():
        return 403, "token for another entity"
    return None


@dataclass
class Frame:
    kind: str  # "text", "binary", "ping", "pong", "close"
    data: Any


@dataclass
class Listener:
    id: str
    ws: web.WebSocketResponse
    request: web.Request
    expiry: int
    frames: list[Frame] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pongs_sent: int = 0
    closed_with: int | None = None


@dataclass
class Pending:
    """A sender's request waiting for its response."""

    id: str
    sender: object  # the sender's connection (its transport), for rendezvous reuse
    head: dict[str, Any]
    body: bytes
    raw_query: str  # the rendezvous address's query as issued
    future: asyncio.Future[tuple[int, dict[str, str], bytes]]
    delivered: bool = False


class FakeRelay:
    def __init__(
        self,
        *,
        namespace: str = NAMESPACE,
        path: str = PATH,
        key_name: str = KEY_NAME,
        key: str = KEY,
        pong_every: float = 210.0,
        timeout: float = 5.0,
        requires_client_authorization: bool = False,
    ) -> None:
        self.namespace, self.path, self.key_name, self.key = namespace, path, key_name, key
        self.pong_every = pong_every
        self.timeout = timeout
        self.requires_client_authorization = requires_client_authorization
        self.force_rendezvous = False
        self.refuse_next: list[int] = []
        self.listeners: list[Listener] = []  # live control channels
        self.all_listeners: list[Listener] = []  # every one ever connected
        self.handshakes: list[dict[str, Any]] = []  # listen upgrades: headers and query
        self.refused: list[tuple[int, str]] = []
        self.renewals: list[str] = []
        self.rejections: list[tuple[str, str]] = []  # (statusCode, statusDescription)
        self.rendezvous_queries: list[str] = []  # raw queries of rendezvous upgrades
        self.rendezvous_frames: list[Frame] = []
        self.violations: list[str] = []
        self.via_rendezvous: list[str] = []  # request ids delivered over a rendezvous socket
        self.silent = False
        self.stalled = False
        self.connected = asyncio.Condition()
        self._pending: dict[str, Pending] = {}
        self._sender_sockets: dict[object, tuple[web.WebSocketResponse, asyncio.Lock]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    # -- addresses -----------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def listen_url(self) -> str:
        return f"ws://{self.base}/$hc/{self.path}"

    @property
    def endpoint(self) -> str:
        return f"http://{self.base}/{self.path}/api/messages"

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_get("/$hc/{path:.*}", self._hc)
        app.router.add_route("*", "/{tail:.*}", self._send)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for listener in list(self.listeners):
            await listener.ws.close()
        for ws, _lock in list(self._sender_sockets.values()):
            await ws.close()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()
        await self._runner.cleanup()

    async def wait_listeners(self, count: int, *, total: int | None = None) -> None:
        """Until `count` listeners are connected (and, with `total`, that many ever were)."""
        await self.wait_for(
            lambda: (
                len(self.listeners) >= count and (total is None or len(self.all_listeners) >= total)
            )
        )

    async def wait_for(self, predicate: Any, timeout: float = WAIT_LIMIT) -> None:
        """Until `predicate()` is true; woken by every frame and connection change. The limit
        only turns a broken listener into a failed test instead of a hung one."""
        async with asyncio.timeout(timeout), self.connected:
            await self.connected.wait_for(predicate)

    def pings(self) -> int:
        return sum(1 for lst in self.all_listeners for f in lst.frames if f.kind == "ping")

    def pongs_from_listeners(self) -> int:
        return sum(1 for lst in self.all_listeners for f in lst.frames if f.kind == "pong")

    def drop(self) -> None:
        """Every listener's TCP connection aborted (a network outage, a dead relay node)."""
        for listener in self.listeners:
            transport = listener.request.transport
            if transport is not None:
                transport.abort()

    async def close_listeners(self, code: int) -> None:
        """The service ends every control channel with `code` (1008 token, 1011 error)."""
        for listener in list(self.listeners):
            listener.closed_with = code
            await listener.ws.close(code=code, message=b"closed by the test")

    def stall(self) -> None:
        """Requests still go to the listener, but its answers are lost inside the relay: the
        sender gets the relay's own 504 after `timeout`."""
        self.stalled = True

    def half_open(self) -> None:
        """Connected, but nothing arrives any more: no PONGs, no requests."""
        self.silent = True

    # -- listener side -------------------------------------------------------------------

    async def _hc(self, request: web.Request) -> web.StreamResponse:
        action = request.query.get("sb-hc-action")
        if action == "listen":
            return await self._listen(request)
        if action == "request":
            return await self._rendezvous(request)
        if action == "accept":
            return self._accept_answer(request)
        return web.Response(status=400, text="Unrecognized action")

    async def _listen(self, request: web.Request) -> web.StreamResponse:
        self.handshakes.append({"headers": dict(request.headers), "query": dict(request.query)})
        if request.match_info["path"] != self.path:
            return self._refuse(404, "The Hybrid Connection path is invalid")
        if self.refuse_next:
            return self._refuse(self.refuse_next.pop(0), "refused by the test")
        token = request.headers.get("ServiceBusAuthorization") or request.query.get("sb-hc-token")
        problem = check_sas(
            token,
            namespace=self.namespace,
            path=self.path,
            key_name=self.key_name,
            key=self.key,
            now=time.time(),
        )
        if problem is not None:
            return self._refuse(*problem)
        assert token is not None
        ws = web.WebSocketResponse(autoping=False, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        listener = Listener(
            id=request.query.get("sb-hc-id", ""),
            ws=ws,
            request=request,
            expiry=_expiry(token),
        )
        await self._changed(
            lambda: (self.listeners.append(listener), self.all_listeners.append(listener))
        )
        pong = self._spawn(self._pong_loop(listener))
        expiry = self._spawn(self._expiry_watch(listener))
        try:
            await self._control_loop(listener)
        finally:
            pong.cancel()
            expiry.cancel()
            await self._changed(lambda: self.listeners.remove(listener))
        return ws

    def _refuse(self, status: int, why: str) -> web.Response:
        self.refused.append((status, why))
        return web.Response(status=status, text=why)

    async def _control_loop(self, listener: Listener) -> None:
        body_of: Pending | None = None
        async for msg in listener.ws:
            if msg.type is WSMsgType.PING:
                await self._record(listener, Frame("ping", msg.data))
                # What the real service is reported to do with a listener's PING.
                listener.closed_with = 1011
                await listener.ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"ping")
                return
            if msg.type is WSMsgType.PONG:
                await self._record(listener, Frame("pong", msg.data))
                continue
            if msg.type is WSMsgType.TEXT:
                await self._record(listener, Frame("text", msg.data))
                body_of = await self._on_listener_text(listener, msg.data, on_control=True)
            elif msg.type is WSMsgType.BINARY:
                await self._record(listener, Frame("binary", len(msg.data)))
                if body_of is None:
                    self.violations.append("binary frame without a response")
                    continue
                if len(msg.data) > CONTROL_MAX:
                    self._violate(body_of, f"{len(msg.data)}-byte body on the control channel")
                else:
                    self._complete(body_of, msg.data)
                body_of = None

    async def _on_listener_text(
        self, listener: Listener | None, text: str, *, on_control: bool
    ) -> Pending | None:
        """A `response` or `renewToken`; the pending request whose body follows, if any."""
        try:
            message = json.loads(text)
        except ValueError:
            self.violations.append(f"listener sent non-JSON text: {text[:80]!r}")
            return None
        if "renewToken" in message and listener is not None:
            token = message["renewToken"].get("token")
            problem = check_sas(
                token,
                namespace=self.namespace,
                path=self.path,
                key_name=self.key_name,
                key=self.key,
                now=time.time(),
            )
            self.renewals.append(token or "")
            if problem is not None:
                listener.closed_with = 1008
                await listener.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"bad token")
                return None
            listener.expiry = _expiry(token)
            return None
        response = message.get("response")
        if not isinstance(response, dict):
            self.violations.append(f"unknown listener message {sorted(message)}")
            return None
        pending = self._pending.get(str(response.get("requestId")))
        if pending is None:
            self.violations.append(f"response to an unknown request {response.get('requestId')}")
            return None
        status = response.get("statusCode")
        if not isinstance(status, int) or isinstance(status, bool):
            self._violate(pending, f"statusCode {status!r} is not a number")
            return None
        if status in (502, 504) or not 100 <= status <= 599:
            self._violate(pending, f"statusCode {status} is not allowed from a listener")
            return None
        headers = response.get("responseHeaders") or {}
        bad = [h for h in headers if h.lower() in _RFC7230]
        if bad:
            self._violate(pending, f"RFC 7230 headers in a response: {bad}")
            return None
        pending.head = {"status": status, "headers": headers}
        if response.get("body") is True:
            return pending
        self._complete(pending, b"")
        return None

    def _violate(self, pending: Pending, why: str) -> None:
        self.violations.append(why)
        if not pending.future.done():
            pending.future.set_result((502, {"X-Fake-Violation": why[:100]}, b""))

    def _complete(self, pending: Pending, body: bytes) -> None:
        if self.stalled:
            return
        if not pending.future.done():
            pending.future.set_result((pending.head["status"], pending.head["headers"], body))

    async def _pong_loop(self, listener: Listener) -> None:
        while True:
            await asyncio.sleep(self.pong_every)
            if self.silent:
                continue
            async with listener.lock:
                await listener.ws.pong(b"")
            listener.pongs_sent += 1

    async def _expiry_watch(self, listener: Listener) -> None:
        while True:
            await asyncio.sleep(max(0.0, listener.expiry - time.time()) + 0.01)
            if listener.expiry <= time.time():
                listener.closed_with = 1008
                await listener.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"expired")
                return

    # -- rendezvous ------------------------------------------------------------------------

    def _address(self, rid: str) -> tuple[str, str]:
        # Lower-case escapes, as the service's own tokens have: re-quoting would change them.
        token = f"SharedAccessSignature%20sr%3d{secrets.token_hex(4)}%26sig%3d{rid}%2b%2f%3d"
        query = f"sb-hc-action=request&sb-hc-id={rid}&sb-hc-token={token}"
        return f"ws://{self.base}/$hc/{self.path}?{query}", query

    async def _rendezvous(self, request: web.Request) -> web.StreamResponse:
        raw = request.rel_url.raw_query_string
        self.rendezvous_queries.append(raw)
        pending = self._pending.get(request.query.get("sb-hc-id", ""))
        if pending is None or raw != pending.raw_query:
            return web.Response(status=403, text="The URL has expired or is not valid")
        ws = web.WebSocketResponse(autoping=False, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        lock = asyncio.Lock()
        self._sender_sockets[pending.sender] = (ws, lock)
        try:
            if not pending.delivered:
                await self._deliver(ws, lock, pending)
                self.via_rendezvous.append(pending.id)
            body_of: Pending | None = None
            async for msg in ws:
                if msg.type is WSMsgType.PING:
                    self.rendezvous_frames.append(Frame("ping", msg.data))
                    await ws.pong(msg.data)
                elif msg.type is WSMsgType.TEXT:
                    self.rendezvous_frames.append(Frame("text", msg.data))
                    body_of = await self._on_listener_text(None, msg.data, on_control=False)
                elif msg.type is WSMsgType.BINARY and body_of is not None:
                    self.rendezvous_frames.append(Frame("binary", len(msg.data)))
                    self._complete(body_of, msg.data)
                    body_of = None
        finally:
            if self._sender_sockets.get(pending.sender, (None,))[0] is ws:
                del self._sender_sockets[pending.sender]
        return ws

    async def _deliver(
        self, ws: web.WebSocketResponse, lock: asyncio.Lock, pending: Pending
    ) -> None:
        async with lock:
            await ws.send_str(json.dumps({"request": pending.head}))
            if pending.body:
                await ws.send_bytes(pending.body)
        pending.delivered = True

    # -- websocket senders ---------------------------------------------------------------

    async def connect_sender(self) -> str:
        """A websocket sender arrives: the listener is sent `accept`; returns the id."""
        rid = f"accept-{next(self._ids)}"
        address = f"ws://{self.base}/$hc/{self.path}?sb-hc-action=accept&sb-hc-id={rid}"
        listener = self.listeners[0]
        accept = {"address": address, "id": rid, "connectHeaders": {"Sec-WebSocket-Protocol": "x"}}
        async with listener.lock:
            await listener.ws.send_str(json.dumps({"accept": accept}))
        return rid

    def _accept_answer(self, request: web.Request) -> web.Response:
        code = request.query.get("sb-hc-statusCode")
        if code is None:
            self.violations.append("the listener accepted a websocket sender")
            return web.Response(status=403, text="not expected in this fake")
        self.rejections.append((code, request.query.get("sb-hc-statusDescription", "")))
        # "this handshake intentionally fails with an HTTP error code 410"
        self._wake()
        return web.Response(status=410, text="Gone")

    # -- sender side -----------------------------------------------------------------------

    async def _send(self, request: web.Request) -> web.StreamResponse:
        if request.path.split("/")[1:2] != [self.path]:
            return web.Response(status=404, text="The Hybrid Connection path is invalid")
        raw = await request.read()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in _RFC7230 and k.lower() not in _RELAY_AUTH
        }
        if self.requires_client_authorization:
            # Relay evaluates and strips Authorization: the bot's JWT is no Relay token.
            return web.Response(status=401, text="MissingToken: Relay token is required")
        via = f"1.1 {self.namespace}"
        headers["Via"] = f"{headers['Via']}, {via}" if "Via" in headers else via
        live = [] if self.silent else list(self.listeners)
        if not live:
            return web.Response(status=502, text="Bad Gateway: no listener")
        query = [(k, v) for k, v in parse_qsl(request.query_string) if not k.startswith("sb-hc-")]
        target = request.path + (f"?{urlencode(query)}" if query else "")
        rid = f"req-{next(self._ids)}-{secrets.token_hex(3)}"
        address, raw_query = self._address(rid)
        head: dict[str, Any] = {
            "address": address,
            "id": rid,
            "requestTarget": target,
            "method": request.method,
            "requestHeaders": headers,
            "body": bool(raw),
        }
        sender = request.transport
        loop = asyncio.get_running_loop()
        pending = Pending(rid, sender, head, raw, raw_query, loop.create_future())
        self._pending[rid] = pending
        try:
            bound = self._sender_sockets.get(sender)
            size = len(raw) + len(json.dumps(headers))
            if bound is not None:
                await self._deliver(*bound, pending)
                self.via_rendezvous.append(rid)
            elif size > CONTROL_MAX or self.force_rendezvous:
                listener = secrets.choice(live)
                async with listener.lock:
                    await listener.ws.send_str(json.dumps({"request": {"address": address}}))
            else:
                listener = secrets.choice(live)
                async with listener.lock:
                    await listener.ws.send_str(json.dumps({"request": head}))
                    if raw:
                        await listener.ws.send_bytes(raw)
                pending.delivered = True
            try:
                status, out_headers, body = await asyncio.wait_for(pending.future, self.timeout)
            except TimeoutError:
                return web.Response(status=504, text="Gateway Timeout")
        finally:
            del self._pending[rid]
        out = dict(out_headers)
        out["Via"] = via
        return web.Response(status=status, headers=out, body=body)

    # -- plumbing --------------------------------------------------------------------------

    async def _record(self, listener: Listener, frame: Frame) -> None:
        listener.frames.append(frame)
        self._wake()

    def _wake(self) -> None:
        async def notify() -> None:
            async with self.connected:
                self.connected.notify_all()

        self._spawn(notify())

    async def _changed(self, change: Any) -> None:
        async with self.connected:
            change()
            self.connected.notify_all()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _expiry(token: str) -> int:
    for part in token.split("&"):
        if part.startswith("se="):
            return int(part[3:])
    return 0


def sas(namespace: str, path: str, key_name: str, key: str, expiry: int) -> str:
    """The same formula as the daemon's, written out independently for the fake's tests."""
    sr = quote(f"http://{namespace}/{path}", safe="")
    digest = hmac.new(key.encode(), f"{sr}\n{expiry}".encode(), hashlib.sha256).digest()
    sig = quote(base64.b64encode(digest).decode(), safe="")
    return f"SharedAccessSignature sr={sr}&sig={sig}&se={expiry}&skn={key_name}"


async def post(
    url: str, body: bytes, headers: dict[str, str], session: Any
) -> tuple[int, dict[str, str], bytes]:
    """A sender's POST through the relay: (status, headers, body)."""
    async with session.post(url, data=body, headers=headers) as r:
        return r.status, dict(r.headers), await r.read()
