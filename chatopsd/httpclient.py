"""THE outbound HTTP transport: every call chatopsd makes to an outside HTTP API goes here.

PagerDuty, Statuspage, GitHub, Jira, the status sources and `doctor` use one `HttpTransport`.
What it gives them, once for all:
  * one error type, `HttpError`: the HTTP status (None when no answer came), the server's
    `Retry-After` in seconds, and a short text fit for chat and logs, with every configured
    secret, every credential of the request (its Authorization header, its URL's password,
    query values and path tokens) and every echo of them removed (`redact`);
  * retries by the one policy (`core.retry.RetryPolicy`, full jitter, the server's wait when it
    gives one) under a deadline measured on the injected clock, waits slept through the
    injected `sleep`: a test drives both, and nothing waits on the wall clock behind its back;
  * one connection pool (an aiohttp session) opened on first use: aiohttp is imported only then,
    so a console-only daemon never loads it.

Each client maps `HttpError` to its own domain's words (PagerDuty's 429, Statuspage's 420, a
GitHub or Jira refusal): the transport says what happened on the wire, the client what it means.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from chatopsd import redact as redaction
from chatopsd.core.ports import Clock
from chatopsd.core.retry import Deadline, RetryPolicy, server_wait

if TYPE_CHECKING:
    import ssl

    import aiohttp

Params = Mapping[str, str] | Sequence[tuple[str, str]]
# What went wrong, as the clients branch on it.
Kind = Literal["timeout", "unreachable", "status", "malformed"]

# Statuses worth repeating: the server did not act (429) or failed on its side (5xx).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A retry must have at least this long before the deadline, or it would only time out and
# hide the real cause behind "no answer".
MIN_TRY = 0.2
SNIPPET = 200  # characters of an error body shown


class HttpError(Exception):
    """One outbound HTTP call that failed; `str(error)` is `text`.

    `kind`: timeout, unreachable, status or malformed. `status`: the HTTP status, None when
    no answer came. `retry_after`: seconds the server asked us to wait. `text`: what
    happened, short and redacted. `detail`: the start of the error body (redacted, part of
    `text`), why a body is not JSON, or why the server could not be reached.
    `maybe_done`: the request may have taken effect although we have no usable answer (a
    write that timed out, a dropped connection, a 2xx answer we could not read).
    `body`: the error body decoded as JSON (None if it is not JSON), for the client's own
    mapping; it is the server's raw text, so whatever of it is shown goes through
    `HttpTransport.redact` first. `gave_up`: why retries stopped early ("" if they did not)."""

    def __init__(
        self,
        text: str,
        *,
        kind: Kind,
        status: int | None = None,
        retry_after: float | None = None,
        detail: str = "",
        maybe_done: bool = False,
        body: Any = None,
        gave_up: str = "",
        timeout: float | None = None,
    ) -> None:
        super().__init__(text)
        self.text = text
        self.kind: Kind = kind
        self.status = status
        self.retry_after = retry_after
        self.detail = detail
        self.maybe_done = maybe_done
        self.body = body
        self.gave_up = gave_up
        self.timeout = timeout  # the attempt's limit, for a timeout
        self.attempts = 1  # how many were sent


@dataclass(frozen=True, slots=True)
class Response:
    """A successful answer: its status, headers and body (bytes)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    method: str
    shown: str  # the URL as logs and chat may show it
    attempts: int = 1  # how many were sent

    def json(self) -> Any:
        """The body as JSON; a body that is not JSON is an HttpError (`malformed`), marked
        `maybe_done` for a write (the server answered 2xx: it may have acted)."""
        try:
            return jsonlib.loads(self.body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise HttpError(
                f"{self.shown} did not answer JSON: {exc}",
                kind="malformed",
                status=self.status,
                detail=str(exc),
                maybe_done=self.method != "GET",
            ) from None


def display(url: str) -> str:
    """The URL as shown in chat and logs: no user:password@, no query values (credentials)."""
    return redaction.url(url)


def seconds(value: float) -> str:
    """A duration as people read it: "5", "0.5", "1.2" (never "0.9999998")."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def join(base: str, path: str) -> str:
    return base.rstrip("/") + path


def error_snippet(body: bytes, secrets: Iterable[str] = (), limit: int = SNIPPET) -> str:
    """The start of an error body, fit to show: `secrets` (our own credentials, which some
    servers and proxies quote back) and URL credentials masked BEFORE it is cut, so a token
    that straddles the cut cannot leave half of itself behind."""
    text = redaction.text(body[: limit * 20].decode("utf-8", "replace"), secrets)
    return " ".join(text.split())[:limit]


def header_secrets(headers: Mapping[str, str]) -> list[str]:
    """The credentials in request headers: the credential part of an Authorization value
    ("Bearer X", "Token token=X", "OAuth X", "Basic X"), so any echo of it is masked while the
    scheme stays readable ("OAuth [redacted]")."""
    found: list[str] = []
    for name, value in headers.items():
        if name.lower() not in ("authorization", "x-api-key", "private-token"):
            continue
        credential = value.rpartition(" ")[2]
        if "=" in credential.rstrip("="):  # "token=X", not base64 padding ("dXNlcjpY==")
            credential = credential.partition("=")[2]
        if credential:
            found.append(credential)
    return found


class HttpTransport:
    """The shared outbound HTTP transport (see the module's docstring)."""

    def __init__(
        self,
        clock: Clock,
        *,
        secrets: Iterable[str] = (),
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        user_agent: str = "chatopsd",
        timeout: float = 10.0,
    ) -> None:
        self.clock = clock
        self.timeout = timeout  # seconds per attempt when a call does not say
        self._secrets = tuple(secrets)
        self._sleep = sleep
        self.user_agent = user_agent
        self.requests = 0  # attempts sent, for benchmarks and tests
        self._session: aiohttp.ClientSession | None = None

    def redact(self, text: str, secrets: Iterable[str] = ()) -> str:
        """`text` without any configured secret, `secrets`, URL credentials or path tokens."""
        return redaction.text(text, (*self._secrets, *secrets))

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop; aiohttp loads only then.
        if self._session is None or self._session.closed:
            import aiohttp

            self._session = aiohttp.ClientSession(raise_for_status=False)
        return self._session

    def session(self) -> aiohttp.ClientSession:
        """The pool itself, for a client that takes an aiohttp session and speaks a protocol
        of its own over it (the Teams relay's websocket handshake, in `doctor`)."""
        return self._http()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get_json(
        self,
        url: str,
        *,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        json_errors: Collection[int] = (),
        secrets: Iterable[str] = (),
        ssl: ssl.SSLContext | bool | None = None,
    ) -> Any:
        """GET `url` once and decode its JSON body. Statuses in `json_errors` are decoded too
        when their body is JSON (Prometheus explains a failed query in a 400/422/503 body)."""
        try:
            answer = await self.request(
                "GET",
                url,
                params=params,
                headers=headers,
                timeout=timeout,
                secrets=secrets,
                ssl=ssl,
            )
        except HttpError as exc:
            if exc.status in json_errors and exc.body is not None:
                return exc.body
            raise
        return answer.json()

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Params | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        deadline: float | Deadline | None = None,
        retry: RetryPolicy | None = None,
        secrets: Iterable[str] = (),
        ssl: ssl.SSLContext | bool | None = None,
    ) -> Response:
        """One call: a 2xx answer, or HttpError.

        `timeout` bounds each attempt (the transport's own when None); `deadline` (seconds
        on the injected clock, or a `Deadline` shared by several calls, e.g. the pages of one
        listing) bounds all of them and the waits between. With a `retry` policy, timeouts,
        unreachable servers, 429 and 5xx are tried again (after the server's wait when it
        gives one, else the policy's backoff), as long as the next try can start before the
        deadline; without one, the call is tried once (the caller's own queue decides when to
        try again)."""
        sent = {"User-Agent": self.user_agent, **(headers or {})}
        hidden = (*secrets, *header_secrets(sent), *redaction.url_secrets(url))
        budget = (
            deadline
            if isinstance(deadline, Deadline)
            else Deadline(float("inf") if deadline is None else deadline, self.clock.monotonic)
        )
        attempts = retry.attempts if retry is not None else 1
        attempt = 1
        while True:
            left = budget.left()
            if left <= 0:
                raise HttpError(
                    f"no answer from {display(url)} before the deadline",
                    kind="timeout",
                    maybe_done=attempt > 1 and method != "GET",
                    timeout=0.0,
                )
            limit = min(self.timeout if timeout is None else timeout, left)
            try:
                answer = await self._once(method, url, params, json, sent, limit, hidden, ssl)
                return replace(answer, attempts=attempt)
            except HttpError as exc:
                exc.attempts = attempt
                if exc.kind == "timeout":
                    budget.spend(limit)  # that long went by, whatever the clock says
                if retry is None or not _worth_repeating(exc) or attempt >= attempts:
                    raise
                wait = retry.wait(attempt, exc.retry_after)
                if not budget.allows(wait + MIN_TRY):
                    exc.gave_up = f"retry in {wait:.0f} s would pass the deadline"
                    raise
            await self._sleep(wait)
            budget.spend(wait)
            attempt += 1

    async def _once(
        self,
        method: str,
        url: str,
        params: Params | None,
        json: Any,
        headers: Mapping[str, str],
        timeout: float,
        hidden: Sequence[str],
        ssl: ssl.SSLContext | bool | None,
    ) -> Response:
        import aiohttp

        shown = display(url)
        maybe = method != "GET"  # a write without a clear answer may have happened
        extra: dict[str, Any] = {} if ssl is None else {"ssl": ssl}
        self.requests += 1
        try:
            async with self._http().request(
                method,
                url,
                params=params,
                json=json,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(total=timeout),
                **extra,
            ) as resp:
                body = await resp.read()
                status = resp.status
                answer_headers = {k: v for k, v in resp.headers.items()}
        except TimeoutError:
            raise HttpError(
                f"no answer from {shown} in {seconds(timeout)} s",
                kind="timeout",
                maybe_done=maybe,
                timeout=timeout,
            ) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            why = self.redact(f"TLS certificate not trusted ({exc.certificate_error})", hidden)
            raise HttpError(f"{shown}: {why}", kind="unreachable", detail=why) from None
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or str(exc.os_error) or type(exc).__name__
            why = self.redact(f"cannot connect: {reason}", hidden)
            text = self.redact(f"cannot connect to {shown}: {reason}", hidden)
            raise HttpError(text, kind="unreachable", detail=why) from None
        except aiohttp.ClientError as exc:
            # aiohttp's message may carry the full URL, query string and all
            why = self.redact(f"{type(exc).__name__}: {exc}", hidden)
            raise HttpError(
                f"{shown}: {why}", kind="unreachable", detail=why, maybe_done=maybe
            ) from None
        if 200 <= status < 300:
            return Response(status, answer_headers, body, method, shown)
        detail = error_snippet(body, (*self._secrets, *hidden))
        raise HttpError(
            f"HTTP {status} from {shown}" + (f": {detail}" if detail else ""),
            kind="status",
            status=status,
            retry_after=server_wait(answer_headers, now=self.clock.now().timestamp()),
            detail=detail,
            body=_decoded(body),
        )


def _worth_repeating(exc: HttpError) -> bool:
    if exc.kind in ("timeout", "unreachable"):
        return True
    return exc.kind == "status" and exc.status in RETRY_STATUSES


def _decoded(body: bytes) -> Any:
    try:
        return jsonlib.loads(body) if body else None
    except (UnicodeDecodeError, ValueError):
        return None
