"""`chatopsd doctor` for `[slack]`: the bot token (auth.test, with the scopes it carries,
compared with the scopes the enabled features need: permissions.py) and the app-level token
(apps.connections.open), read-only, through slack-sdk itself."""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from chatopsd.checks import TIMEOUT, Result, token_hint, why
from chatopsd.connectors.slack.config import SlackSection
from chatopsd.connectors.slack.permissions import needed
from chatopsd.core.capabilities import Capability
from chatopsd.httpclient import HttpTransport


async def probe(
    section: SlackSection, http: HttpTransport, uses: frozenset[Capability[Any]] = frozenset()
) -> list[Result]:
    """`uses`: the capabilities the enabled features use; the token must have every scope
    they need (and what every Slack daemon needs), each missing one is named."""
    base = section.api_url if section.api_url.endswith("/") else section.api_url + "/"
    out: list[Result] = []
    bot = AsyncWebClient(
        token=section.bot_token.get_secret_value(), base_url=base, timeout=int(TIMEOUT)
    )
    try:
        auth = await bot.auth_test()
        scopes = set(filter(None, auth.headers.get("x-oauth-scopes", "").split(",")))
        scopes = {s.strip() for s in scopes}
        wanted = needed(uses)
        missing = [s for s in sorted(wanted) if s not in scopes]
        who = f"@{auth.get('user')} in {auth.get('team')}"
        if missing:
            uses_of = "; ".join(f"{s} for {wanted[s]}" for s in missing)
            out.append(
                Result(
                    "slack bot token",
                    False,
                    f"{who}, but missing {len(missing)} of the {len(wanted)} scopes the "
                    f"enabled features need: {', '.join(missing)} ({uses_of}): add them "
                    "under OAuth & Permissions (docs/slack.md) and reinstall the app",
                )
            )
        else:
            out.append(Result("slack bot token", True, f"{who}, all {len(wanted)} scopes needed"))
    except SlackApiError as exc:
        out.append(
            Result(
                "slack bot token",
                False,
                f"{exc.response.get('error')}: {token_hint('slack', 'bot_token')}",
            )
        )
    except Exception as exc:
        out.append(Result("slack bot token", False, f"{base}: {why(exc)}"))
    # apps.connections.open takes the app-level token (xapp-), not the bot token.
    app_token = section.app_token.get_secret_value()
    app = AsyncWebClient(token=app_token, base_url=base, timeout=int(TIMEOUT))
    try:
        await app.apps_connections_open(app_token=app_token)
        out.append(Result("slack socket mode", True, "app token opens a Socket Mode connection"))
    except SlackApiError as exc:
        error = exc.response.get("error")
        fix = (
            "enable Socket Mode in the app settings"
            if error in ("not_allowed_token_type", "not_authed", "socket_mode_not_enabled")
            else "an app-level token with connections:write is needed"
        )
        out.append(
            Result(
                "slack socket mode", False, f"{error}: {fix}; {token_hint('slack', 'app_token')}"
            )
        )
    except Exception as exc:
        out.append(Result("slack socket mode", False, f"{base}: {why(exc)}"))
    return out
