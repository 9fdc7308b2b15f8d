"""`chatopsd doctor` for `[discord]`: the token (GET /users/@me) and the application's
message content intent (GET /oauth2/applications/@me), read-only."""

from __future__ import annotations

from chatopsd.checks import Result, token_hint, why
from chatopsd.connectors.discord.config import DiscordSection
from chatopsd.httpclient import HttpError, HttpTransport

# Discord application flags: the message content intent, approved (large bot) or limited.
DISCORD_MESSAGE_CONTENT = (1 << 18) | (1 << 19)


async def probe(section: DiscordSection, http: HttpTransport) -> list[Result]:
    api = section.api_url.rstrip("/")
    headers = {"Authorization": f"Bot {section.token.get_secret_value()}"}
    try:
        me = await http.get_json(f"{api}/users/@me", headers=headers)
    except Exception as exc:
        if isinstance(exc, HttpError) and exc.status in (401, 403):
            reason = f"{why(exc)}; {token_hint('discord', 'token')}"
        else:
            # Not an answer about the token: the network, a proxy or discord.api_url is at fault.
            reason = f"{api}: {why(exc)} (the token could not be checked: check the network)"
        return [Result("discord token", False, reason)]
    out = [Result("discord token", True, f"logged in as {me.get('username', '?')}")]
    try:
        app = await http.get_json(f"{api}/oauth2/applications/@me", headers=headers)
        flags = int(app.get("flags") or 0)
    except Exception as exc:
        out.append(Result("discord intents", False, f"cannot read the application: {why(exc)}"))
        return out
    if flags & DISCORD_MESSAGE_CONTENT:
        out.append(Result("discord intents", True, "message content intent enabled"))
    else:
        out.append(
            Result(
                "discord intents",
                False,
                "message content intent is off: enable it "
                "under Bot → Privileged Gateway Intents (else only mentions work)",
            )
        )
    return out
