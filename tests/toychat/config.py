"""The `[toychat]` configuration section: a present section enables Toy Chat."""

from __future__ import annotations

from pydantic import Field, SecretStr

from chatopsd.sections import Section


class ToyChatSection(Section):
    room: str = Field(min_length=1)  # which Toy Chat server (its address)
    token: SecretStr  # the bot's token: credential toychat_token, CHATOPSD_TOYCHAT_TOKEN
    bot_name: str = "toybot"  # mentioned as @toybot
