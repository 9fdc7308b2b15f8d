"""What `chatopsd doctor`'s probes share: the result line, and a read-only JSON GET whose
failures read as what to fix. Used by doctor.py and by each platform package's probe
(connectors/<platform>/probe.py), which doctor finds through the platform registry.

Tokens are never printed: lines name the key and the credential file, not the value.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp

TIMEOUT = 10.0


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.name}: {self.detail}"


def token_hint(section: str, key: str) -> str:
    return (
        f"set {section}.{key} (credential {section}_{key}, "
        f"env CHATOPSD_{section.upper()}_{key.upper()}, or the config file)"
    )


class HttpError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.body = status, body


async def get_json(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    ssl_ctx: ssl.SSLContext | bool = True,
) -> Any:
    async with http.get(url, headers=headers, params=params, ssl=ssl_ctx) as resp:
        try:
            body = await resp.json(content_type=None)
        except ValueError:
            body = None
        if resp.status >= 400:
            raise HttpError(resp.status, body)
        if body is None:
            raise ValueError("the answer is not JSON")
        return body


def why(exc: BaseException) -> str:
    """A failure as the operator needs it: no token, no traceback."""
    if isinstance(exc, TimeoutError):
        return "no answer in time (timeout)"
    if isinstance(exc, HttpError):
        return {
            401: "HTTP 401: the token is not accepted",
            403: "HTTP 403: the token lacks permission",
            404: "HTTP 404: not found",
            429: "HTTP 429: rate limited, try again in a minute",
        }.get(exc.status, f"HTTP {exc.status}")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not trusted ({exc.certificate_error})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ClientError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"
