"""Slack's incident channels, invites and pins (optional capabilities, core/capabilities).

Calls go through the connector's AsyncWebClient, so 429 (Retry-After) and 5xx are retried by
its retry handlers first; whatever still fails becomes `ChannelRefused` with a message a
person can act on (which scope to add, what an admin restricts), because the incident
handler shows that message in chat and falls back to a thread.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from chatopsd.connectors.slack.render import escape
from chatopsd.core.capabilities import ChannelRefused
from chatopsd.core.limits import rendered_line
from chatopsd.core.messages import Sent

log = logging.getLogger("chatopsd.slack")

# Slack user ids (U…, W… on Enterprise Grid); anything else cannot be invited.
_USER_ID = re.compile(r"^[UW][A-Z0-9]+$")
_TOKEN = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}

# Slack error code -> why, in words (the code is appended).
_WHY: dict[str, str] = {
    "name_taken": "the name is taken",
    "restricted_action": (
        "the workspace does not let this app do that (an admin restricts who may create "
        "channels or invite people)"
    ),
    "not_allowed": "Slack does not allow it here",
    "not_allowed_token_type": "the bot token is not allowed to do this",
    "user_is_restricted": "the bot user is restricted in this workspace",
    "user_is_bot": "bots may not do this in this workspace",
    "team_added_to_org": "the workspace is moving into an Enterprise Grid org; try later",
    "method_not_supported_for_channel_type": "not possible in this kind of channel",
    "invalid_name": "Slack refused the channel name",
    "invalid_name_required": "Slack refused the channel name (empty)",
    "invalid_name_punctuation": "Slack refused the channel name (punctuation)",
    "invalid_name_maxlength": "Slack refused the channel name (too long)",
    "invalid_name_specials": "Slack refused the channel name (special characters)",
    "channel_not_found": "the channel does not exist or the bot cannot see it",
    "not_in_channel": "the bot is not a member of the channel",
    "is_archived": "the channel is archived",
    "user_not_found": "no such Slack user",
    "cant_invite": "Slack would not invite them (guest or external user?)",
    "too_many_users": "too many people at once",
    "ura_max_channels": "a single-channel guest cannot join another channel",
    "user_is_ultra_restricted": "a single-channel guest cannot join another channel",
    "permission_denied": "the bot may not pin in this channel",
    "no_permission": "the bot may not pin in this channel",
    "message_not_found": "the message to pin is gone",
    "not_pinnable": "that message cannot be pinned",
}


async def create_channel(web: AsyncWebClient, name: str, topic: str) -> str:
    """conversations.create, then conversations.setTopic; the channel id.

    The creator (the bot) is a member of the new channel, so it can post there at once.
    A topic Slack refuses does not undo the channel: it is logged and left empty."""
    response = await _admin(web.conversations_create, "conversations.create", name=name)
    channel = response.get("channel")
    channel_id = channel.get("id") if isinstance(channel, dict) else None
    if not isinstance(channel_id, str) or not channel_id:
        raise ChannelRefused(f"conversations.create for #{name} returned no channel id")
    # The title is user text: escaped like any reply (no <!here>, no links), on one line
    # without control characters, within Slack's 250 characters.
    topic = rendered_line(topic, 250, escape)
    if topic:
        try:
            await _admin(
                web.conversations_setTopic,
                "conversations.setTopic",
                channel=channel_id,
                topic=topic,
            )
        except ChannelRefused as exc:
            log.warning("created #%s (%s) but could not set its topic: %s", name, channel_id, exc)
    return channel_id


async def invite(web: AsyncWebClient, channel: str, user_ids: Sequence[str], me: str) -> None:
    """conversations.invite for the Slack user ids among `user_ids` (not the bot itself).

    People already in the channel are not an error. Names that are not user ids (a plain
    "bob" instead of an @-mention) are refused by name, after the others are invited."""
    wanted = list(dict.fromkeys(u for u in user_ids if u and u != me))
    valid = [u for u in wanted if _USER_ID.match(u)]
    invalid = [u for u in wanted if not _USER_ID.match(u)]
    if valid:
        try:
            await _admin(
                web.conversations_invite, "conversations.invite", channel=channel, users=valid
            )
        except _Refused as exc:
            if exc.error != "already_in_channel":
                raise
    if invalid:
        raise ChannelRefused(
            f"not Slack users: {', '.join(invalid)} (@-mention them so Slack sends their ids)"
        )


async def pin(web: AsyncWebClient, sent: Sent) -> None:
    """pins.add for a message we posted; pinning it twice is not an error."""
    if sent.extra.get("ephemeral") or not sent.message_id:
        raise ChannelRefused("a private or response_url message cannot be pinned")
    channel = sent.extra.get("channel") or sent.destination.channel
    try:
        await _admin(web.pins_add, "pins.add", channel=channel, timestamp=sent.message_id)
    except _Refused as exc:
        if exc.error != "already_pinned":
            raise


class _Refused(ChannelRefused):
    def __init__(self, message: str, error: str) -> None:
        super().__init__(message)
        self.error = error


async def _admin(method: Callable[..., Awaitable[Any]], name: str, /, **args: Any) -> Any:
    """One Web API call (the client has already retried 429 and 5xx); failures → ChannelRefused."""
    try:
        return await method(**args)
    except SlackApiError as exc:
        raise _refusal(name, exc) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise _Refused(f"{name}: Slack did not answer ({type(exc).__name__})", "network") from None


def _refusal(name: str, exc: SlackApiError) -> _Refused:
    error = str(exc.response.get("error") or "")
    status = exc.response.status_code
    if status == 429 or error == "ratelimited":
        return _Refused(f"{name}: Slack is rate limiting us; still limited after retrying", error)
    if status >= 500:
        return _Refused(f"{name}: Slack is failing (HTTP {status}) after retries", error)
    if error == "missing_scope":
        needed = str(exc.response.get("needed") or "")
        scopes = needed or "channels:manage / pins:write"
        return _Refused(
            f"{name}: the Slack app lacks the {scopes} scope (missing_scope); add it under "
            "OAuth & Permissions and reinstall the app",
            error,
        )
    if error in _TOKEN:
        return _Refused(f"{name}: Slack refused the bot token ({error})", error)
    why = _WHY.get(error, "Slack refused it")
    return _Refused(f"{name}: {why} ({error or f'HTTP {status}'})", error)
