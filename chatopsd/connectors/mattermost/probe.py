"""`chatopsd doctor` for `[mattermost]`: the TLS settings and the token (GET /api/v4/users/me),
read-only."""

from __future__ import annotations

import ssl

from chatopsd.checks import Result, token_hint, why
from chatopsd.connectors.mattermost.config import MattermostSection
from chatopsd.httpclient import HttpError, HttpTransport


def _tls(section: MattermostSection) -> ssl.SSLContext | bool:
    if not section.verify_tls:
        return False
    ctx = ssl.create_default_context()
    if section.ca_file is not None:
        ctx.load_verify_locations(cafile=str(section.ca_file))
    return ctx


async def probe(section: MattermostSection, http: HttpTransport) -> list[Result]:
    base = section.url.rstrip("/")
    out: list[Result] = []
    if base.startswith("https://"):
        if section.verify_tls:
            out.append(Result("mattermost TLS", True, "https with certificate verification"))
        else:
            out.append(
                Result(
                    "mattermost TLS",
                    False,
                    "verify_tls = false: set "
                    "mattermost.ca_file to your CA instead of turning checks off",
                )
            )
    elif base.startswith("http://"):
        out.append(
            Result(
                "mattermost TLS",
                False,
                "url is http://: the token crosses the network in clear; use https://",
            )
        )
    else:
        return [Result("mattermost url", False, f"{base!r} is not an http(s) URL")]
    try:
        ctx = _tls(section)
    except (OSError, ssl.SSLError) as exc:
        out.append(Result("mattermost token", False, f"cannot load ca_file: {exc}"))
        return out
    headers = {"Authorization": f"Bearer {section.token.get_secret_value()}"}
    try:
        me = await http.get_json(f"{base}/api/v4/users/me", headers=headers, ssl=ctx)
    except Exception as exc:
        answered = isinstance(exc, HttpError) and exc.kind == "status"
        hint = f"; {token_hint('mattermost', 'token')}" if answered else ""
        out.append(Result("mattermost token", False, f"{base}: {why(exc)}{hint}"))
        return out
    out.append(Result("mattermost token", True, f"{base}: logged in as {me.get('username')}"))
    return out
