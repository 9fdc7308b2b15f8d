"""The `[mattermost]` configuration section: a present section enables Mattermost (its
websocket and REST API).

Its token is read like every other one: the credential `mattermost_token`, then
CHATOPSD_MATTERMOST_TOKEN, then the file.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from chatopsd.sections import Section, url_problem


class MattermostSection(Section):
    url: str
    token: SecretStr

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, v: str) -> str:
        # Without a scheme the client cannot even build a request: say so here, not in a
        # reconnect loop at run time.
        problem = url_problem(v)
        if problem is not None:
            raise ValueError(f"must be the server's base URL with its scheme: it {problem}")
        return v

    ca_file: Path | None = None
    verify_tls: bool = True
    teams: list[str] = []
    allow_bots: bool = False
    heartbeat_seconds: float = Field(20.0, gt=0)
