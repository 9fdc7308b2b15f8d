"""One GET of a JSON document for the status sources, with every failure as a clear message."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import aiohttp

from chatopsd import redact


class SourceError(Exception):
    """A source could not be read; the message is shown in chat as it is."""


Params = Mapping[str, str] | Sequence[tuple[str, str]]


async def get_json(
    session: aiohttp.ClientSession,
    url: str,
    timeout: float,
    params: Params | None = None,
    *,
    json_errors: Collection[int] = (),
) -> Any:
    """GET `url` and decode its JSON body. Raises SourceError with a reason a person can act on.

    Statuses in `json_errors` are decoded too when their body is JSON (Prometheus explains a
    failed query in a 400/422/503 body)."""
    shown = display(url)
    # what the server may quote back of the URL it was asked for (a key in its path or query)
    quoted = redact.url_secrets(url)
    try:
        async with session.get(
            url, params=params, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            body = await resp.read()
            status = resp.status
    except TimeoutError:
        raise SourceError(f"no answer from {shown} in {timeout:g} s") from None
    except aiohttp.ClientConnectorError as exc:
        raise SourceError(f"cannot connect to {shown}: {exc.os_error.strerror or exc}") from None
    except aiohttp.ClientError as exc:
        # aiohttp's message may carry the full URL, query string and all
        raise SourceError(redact.text(f"{shown}: {type(exc).__name__}: {exc}", quoted)) from None
    if status != 200:
        if status in json_errors:
            try:
                return json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError):
                pass
        snippet = error_snippet(body, quoted)
        raise SourceError(f"HTTP {status} from {shown}" + (f": {snippet}" if snippet else ""))
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{shown} did not answer JSON: {exc}") from None


def error_snippet(body: bytes, secrets: Sequence[str] = (), limit: int = 200) -> str:
    """The start of an error body, fit to show: `secrets` (our own credentials, which some
    servers and proxies quote back) and URL credentials masked BEFORE it is cut, so a token
    that straddles the cut cannot leave half of itself behind."""
    text = redact.text(body[: limit * 20].decode("utf-8", "replace"), secrets)
    return " ".join(text.split())[:limit]


def display(url: str) -> str:
    """The URL as shown in chat and logs: no user:password@, no query values (credentials)."""
    return redact.url(url)


def join(base: str, path: str) -> str:
    return base.rstrip("/") + path
