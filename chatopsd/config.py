"""Configuration: TOML → pydantic models. Errors name the key path, never the value.

Tokens may also come from a systemd credential ($CREDENTIALS_DIRECTORY/<section>_<key>) or an
environment variable (CHATOPSD_<SECTION>_<KEY>), preferred in that order over the file.
A platform section that is present is enabled.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from chatopsd.core.errors import ConfigError

SECRET_KEYS: tuple[tuple[str, str], ...] = (
    ("slack", "app_token"),
    ("slack", "bot_token"),
    ("discord", "token"),
    ("mattermost", "token"),
    ("pagerduty", "api_token"),
)
VerdictName = Literal["NORMAL", "DEGRADED", "CRITICAL", "UNKNOWN"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChatopsdSection(Section):
    state_db: Path | None = None
    prefix: str = Field("!", min_length=1, max_length=3)
    bot_name: str = "chatopsd"
    log_format: Literal["plain", "json"] = "plain"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_grace_seconds: float = Field(10.0, gt=0)

    def db_path(self) -> Path:
        if self.state_db is not None:
            return self.state_db
        state_dir = os.environ.get("STATE_DIRECTORY")
        return Path(state_dir.split(":")[0]) / "state.db" if state_dir else Path("chatopsd.db")


class ConsoleSection(Section):
    enabled: bool | None = None
    format: Literal["text", "jsonl"] = "text"


class SlackSection(Section):
    app_token: SecretStr
    bot_token: SecretStr
    api_url: str = "https://slack.com/api/"
    allow_bots: bool = False

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


class MattermostSection(Section):
    url: str
    token: SecretStr
    ca_file: Path | None = None
    verify_tls: bool = True
    teams: list[str] = []
    allow_bots: bool = False


class PagerDutySection(Section):
    api_token: SecretStr
    api_url: str = "https://api.pagerduty.com"
    events_url: str = "https://events.pagerduty.com/v2/enqueue"
    from_email: str
    service_id: str
    ic_schedules: list[str] = Field(min_length=1)
    responder_schedules: list[str] = []
    refresh_seconds: float = Field(60.0, ge=5)
    page_deadline_seconds: float = Field(8.0, gt=0, le=10)


class SourceBase(Section):
    name: str
    timeout_seconds: float = Field(5.0, gt=0)


class AlertmanagerSource(SourceBase):
    kind: Literal["alertmanager"]
    url: str
    severity_map: dict[str, VerdictName] = {
        "critical": "CRITICAL",
        "page": "CRITICAL",
        "warning": "DEGRADED",
    }
    default_verdict: VerdictName = "DEGRADED"


class PrometheusSource(SourceBase):
    kind: Literal["prometheus"]
    url: str
    query: str
    firing_verdict: VerdictName = "CRITICAL"


class HttpSource(SourceBase):
    kind: Literal["http"]
    url: str
    field: str
    value_map: dict[str, VerdictName] = {}
    default_verdict: VerdictName = "UNKNOWN"


class CommandSource(SourceBase):
    kind: Literal["command"]
    argv: list[str] = Field(min_length=1)
    exit_map: dict[str, VerdictName] = {"0": "NORMAL", "1": "DEGRADED", "2": "CRITICAL"}


StatusSourceConfig = Annotated[
    AlertmanagerSource | PrometheusSource | HttpSource | CommandSource,
    Field(discriminator="kind"),
]


class StatusSection(Section):
    stalk_seconds: float = Field(30.0, ge=1)
    sources: list[StatusSourceConfig] = []


class AuthSection(Section):
    command_roles: dict[str, str] = {}
    paging_channels: list[str] = []
    mutating_channels: list[str] = []


class RateLimitSection(Section):
    per_minute: float = Field(30.0, gt=0)
    burst: int = Field(10, ge=1)


class Config(Section):
    chatopsd: ChatopsdSection = ChatopsdSection()
    console: ConsoleSection = ConsoleSection()
    slack: SlackSection | None = None
    discord: DiscordSection | None = None
    mattermost: MattermostSection | None = None
    pagerduty: PagerDutySection | None = None
    status: StatusSection = StatusSection()
    auth: AuthSection = AuthSection()
    roles: dict[str, list[str]] = {}
    ratelimit: RateLimitSection = RateLimitSection()

    @property
    def platforms(self) -> list[str]:
        return [p for p in ("slack", "discord", "mattermost") if getattr(self, p) is not None]

    @property
    def console_enabled(self) -> bool:
        if self.console.enabled is not None:
            return self.console.enabled
        return not self.platforms


def load(path: Path | None, env: dict[str, str] | None = None) -> Config:
    """Read and validate the config file (or the defaults when `path` is None)."""
    env = dict(os.environ) if env is None else env
    raw: dict[str, Any] = {}
    where = str(path) if path else "defaults"
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{where}: file not found") from None
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    _overlay_secrets(raw, env)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("\n".join(f"{where}: {line}" for line in explain(exc))) from None


def explain(exc: ValidationError) -> list[str]:
    """One line per problem: key path and message. The offending value is never included,
    because it may be a token (pydantic puts the raw input into str(exc))."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        path = ""
        for part in err["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif part in ("alertmanager", "prometheus", "http", "command") and path.endswith("]"):
                continue  # the discriminator's branch name adds nothing for the reader
            else:
                path += f".{part}" if path else str(part)
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against config.example.toml)"
        elif err["type"] == "missing":
            message = "required key is missing"
        lines.append(f"{path or '(top level)'}: {message}")
    return lines


def _overlay_secrets(raw: dict[str, Any], env: dict[str, str]) -> None:
    creds = env.get("CREDENTIALS_DIRECTORY")
    for section, key in SECRET_KEYS:
        table = raw.get(section)
        if not isinstance(table, dict):
            continue  # sections enable platforms; a token alone does not
        value = None
        if creds:
            cred = Path(creds) / f"{section}_{key}"
            if cred.is_file():
                value = cred.read_text(encoding="utf-8").strip()
        if value is None:
            value = env.get(f"CHATOPSD_{section.upper()}_{key.upper()}")
        if value:
            table[key] = value


def secrets_of(config: Config) -> list[str]:
    """Every token value in the config, so logging can redact them."""
    found = []
    for section, key in SECRET_KEYS:
        table = getattr(config, section)
        if table is not None:
            value = getattr(table, key).get_secret_value()
            if value:
                found.append(value)
    return found
