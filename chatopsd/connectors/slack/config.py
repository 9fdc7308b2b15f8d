"""The `[slack]` configuration section: a present section enables Slack (Socket Mode).

Its two tokens are read like every other one: the credentials `slack_app_token` and
`slack_bot_token`, then CHATOPSD_SLACK_APP_TOKEN / CHATOPSD_SLACK_BOT_TOKEN, then the file.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from chatopsd.sections import Section, checked_url


class SlackSection(Section):
    app_token: SecretStr
    bot_token: SecretStr
    api_url: str = "https://slack.com/api/"
    allow_bots: bool = False
    # Socket Mode heartbeat: a dead or half-open socket is replaced within ~2 intervals.
    ping_interval_seconds: float = Field(3.0, gt=0, le=60)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, v: str) -> str:
        return checked_url(v)

    @field_validator("app_token")
    @classmethod
    def _app_token(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return v

    @field_validator("bot_token")
    @classmethod
    def _bot_token(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return v
