"""What `chatopsd doctor`'s probes share: the result line, the hint that names a token's key
and credential, and a failure said as the operator needs it. Used by doctor.py and by each
platform package's probe (connectors/<platform>/probe.py), which doctor finds through the
platform registry.

Tokens are never printed: lines name the key and the credential file, not the value.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatopsd.httpclient import HttpError

TIMEOUT = 10.0
STATUS_WORDS = {
    401: "HTTP 401: the token is not accepted",
    403: "HTTP 403: the token lacks permission",
    404: "HTTP 404: not found",
    429: "HTTP 429: rate limited, try again in a minute",
}


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


def why(exc: BaseException) -> str:
    """A failure as the operator needs it: no token, no traceback."""
    if isinstance(exc, TimeoutError):
        return "no answer in time (timeout)"
    if isinstance(exc, HttpError):
        if exc.kind == "timeout":
            return "no answer in time (timeout)"
        if exc.kind == "malformed":
            return "the answer is not JSON"
        if exc.kind == "unreachable":
            return exc.detail or exc.text
        status = exc.status or 0
        return STATUS_WORDS.get(status, f"HTTP {status}")
    return f"{type(exc).__name__}: {exc}"
