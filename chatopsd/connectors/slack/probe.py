"""`chatopsd doctor` for `[slack]`: the bot token (auth.test, with the scopes it carries) and
the app-level token (apps.connections.open), read-only, through slack-sdk itself."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from chatopsd.checks import TIMEOUT, Result, token_hint, why
from chatopsd.connectors.slack.config import SlackSection
from chatopsd.httpclient import HttpTransport

# What the Slack connector needs: post, see mentions, see prefixed commands in channels.
SLACK_SCOPES = ("chat:write", "app_mentions:read", "channels:history")


async def probe(section: SlackSection, http: HttpTransport) -> list[Result]:
    base = section.api_url if section.api_url.endswith("/") else section.api_url + "/"
    out: list[Result] = []
    bot = AsyncWebClient(
        token=section.bot_token.get_secret_value(), base_url=base, timeout=int(TIMEOUT)
    )
    try:
        auth = await bot.auth_test()
        scopes = set(filter(None, auth.headers.get("x-oauth-scopes", "").split(",")))
        scopes = {s.strip() for s in scopes}
        missing = [s for s in SLACK_SCOPES if s not in scopes]
        who = f"@{auth.get('user')} in {auth.get('team')}"
        if missing:
            out.append(
                Result(
                    "slack bot token",
                    False,
                    f"{who}, but missing scopes "
                    f"{', '.join(missing)}: add them under OAuth & Permissions and "
                    "reinstall the app",
                )
            )
        else:
            out.append(Result("slack bot token", True, f"{who}, scopes ok"))
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
