"""The `[discord]` configuration section: a present section enables Discord (the gateway).

Its token is read like every other one: the credential `discord_token`, then
CHATOPSD_DISCORD_TOKEN, then the file.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from chatopsd.sections import SOCKET, Section, checked_url


class DiscordSection(Section):
    token: SecretStr
    api_url: str = "https://discord.com/api/v10"
    gateway_url: str = "wss://gateway.discord.gg/"
    guild_ids: list[int] = []
    allow_bots: bool = False
    # No gateway traffic (not even a heartbeat ACK) for this long means a zombie connection.
    heartbeat_timeout: float = Field(60.0, gt=0)
    # Discord allows one IDENTIFY per 5 s per bot; tests shorten it.
    identify_delay: float = Field(5.0, ge=0)
    # How long after the last GUILD_CREATE discord.py waits before it calls the session ready.
    guild_ready_timeout: float = Field(2.0, ge=0)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, v: str) -> str:
        return checked_url(v)

    @field_validator("gateway_url")
    @classmethod
    def _gateway_url(cls, v: str) -> str:
        return checked_url(v, SOCKET)
