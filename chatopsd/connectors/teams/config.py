"""The `[teams]` configuration section.

Two credentials, read like every other token (`$CREDENTIALS_DIRECTORY/teams_app_password`,
`teams_relay_key`, then `CHATOPSD_TEAMS_APP_PASSWORD` / `CHATOPSD_TEAMS_RELAY_KEY`, then the
file). The URL keys exist for tests and sovereign clouds: every URL that receives a secret or a
token must be https, except a loopback address (the test fakes); the relay URL may be plain
`ws://` only with `allow_insecure_relay = true`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from chatopsd.sections import Section

# A DNS name: labels of letters, digits and hyphens (what an Azure Relay namespace FQDN is).
_FQDN = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
# A Hybrid Connection name: letters, digits, periods, hyphens, underscores (and slashes).
_HC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,259}")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}")
LOOPBACK_NAMES = frozenset({"localhost"})

Host = Annotated[str, Field(min_length=1, max_length=253)]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: where a test fake runs, never a remote machine."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secure_url(value: str, schemes: tuple[str, str]) -> str:
    """`value` if it is an absolute URL with the secure scheme, or the plain one on loopback."""
    secure, plain = schemes
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"must be an absolute {secure}:// URL")
    if parts.scheme == plain and not is_loopback(parts.hostname):
        raise ValueError(f"must be {secure}:// ({plain}:// is allowed for 127.0.0.1 only)")
    return value


class TeamsSection(Section):
    """Microsoft Teams through an Azure Relay Hybrid Connection and a single-tenant Azure Bot."""

    # The Azure Bot's "Microsoft App ID" (the Entra application's client id) and its secret.
    app_id: str = Field(min_length=1, max_length=100)
    app_password: SecretStr
    # The bot's home tenant: tokens come from its authority, and only its activities pass.
    tenant_id: str = Field(min_length=1, max_length=100)
    # The Relay namespace FQDN (contoso-ops.servicebus.windows.net) and Hybrid Connection name.
    relay_namespace: str
    relay_path: str
    # A SAS policy on the Hybrid Connection with the Listen right only, and its key.
    relay_key_name: str = Field(min_length=1, max_length=256)
    relay_key: SecretStr
    # The messaging endpoint below the Hybrid Connection: https://{ns}/{relay_path}/api/messages.
    messaging_path: str = "/api/messages"
    # Default wss://{relay_namespace}/$hc/{relay_path}; a test points it at a loopback fake.
    relay_url: str | None = None
    allow_insecure_relay: bool = False
    sas_ttl_seconds: float = Field(3600.0, ge=1, le=7 * 86400)  # renewed at 75 %
    keepalive_seconds: float = Field(60.0, gt=0)  # unsolicited PONG period (never a PING)
    dead_after_seconds: float = Field(480.0, gt=0)  # no frame at all for this long: reconnect
    login_url: str = "https://login.microsoftonline.com"
    bot_scope: str = "https://api.botframework.com/.default"
    openid_url: str = "https://login.botframework.com/v1/.well-known/openidconfiguration"
    token_issuer: str = "https://api.botframework.com"  # noqa: S105 (an issuer URL)
    # A serviceUrl for proactive posts before any activity arrived; must pass the host list.
    service_url: str | None = None
    # The only hosts the bearer token is ever sent to (a serviceUrl elsewhere is refused).
    service_url_hosts: list[Host] = Field(["smba.trafficmanager.net"], min_length=1)
    graph_url: str = "https://graph.microsoft.com/v1.0"
    graph_scope: str = "https://graph.microsoft.com/.default"
    allowed_channel_ids: list[str] = Field(["msteams"], min_length=1)
    team_ids: list[str] = []  # empty: every team the app is installed in
    max_body_bytes: int = Field(262_144, ge=1024, le=16 * 1024 * 1024)
    invoke_deadline_seconds: float = Field(4.0, gt=0, le=10)
    allow_bots: bool = False

    @field_validator("relay_namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not _FQDN.fullmatch(v):
            raise ValueError(
                "must be the namespace's host name, like contoso-ops.servicebus.windows.net "
                "(no scheme, no path)"
            )
        return v.lower()

    @field_validator("relay_path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not _HC_NAME.fullmatch(v) or "//" in v or v.endswith("/"):
            raise ValueError(
                "must be the Hybrid Connection's name (letters, digits, '.', '-', '_'), "
                "like chatopsd"
            )
        return v

    @field_validator("messaging_path")
    @classmethod
    def _messaging_path(cls, v: str) -> str:
        if not v.startswith("/") or any(c in v for c in "?#% \t") or "//" in v:
            raise ValueError("must be a path starting with /, like /api/messages")
        return v

    @field_validator("relay_key_name")
    @classmethod
    def _key_name(cls, v: str) -> str:
        if any(c.isspace() or c in "&=" for c in v):
            raise ValueError("must be the SAS policy's name (no spaces, '&' or '=')")
        return v

    @field_validator("login_url", "openid_url", "graph_url", "service_url")
    @classmethod
    def _https(cls, v: str | None) -> str | None:
        return None if v is None else _secure_url(v, ("https", "http"))

    @field_validator("service_url_hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        for host in v:
            if not _HOST.fullmatch(host) or host.startswith(".") or ".." in host:
                raise ValueError(f"{host!r} is not a host name (no scheme, port or path)")
        return [h.lower() for h in v]

    @field_validator("app_password", "relay_key")
    @classmethod
    def _not_empty(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().strip():
            raise ValueError("must not be empty")
        return v

    @model_validator(mode="after")
    def _relay(self) -> TeamsSection:
        if self.relay_url is not None:
            parts = urlsplit(self.relay_url)
            if parts.scheme not in ("wss", "ws") or not parts.hostname:
                raise ValueError("relay_url must be a wss:// URL")
            if parts.scheme == "ws" and not self.allow_insecure_relay:
                raise ValueError(
                    "relay_url is ws:// (unencrypted): set allow_insecure_relay = true, "
                    "for a test relay only"
                )
            if parts.query or parts.fragment:
                raise ValueError("relay_url must not have a query or fragment")
        if self.keepalive_seconds >= self.dead_after_seconds:
            raise ValueError("keepalive_seconds must be shorter than dead_after_seconds")
        if self.service_url is not None:
            host = (urlsplit(self.service_url).hostname or "").lower()
            if host not in self.service_url_hosts:
                raise ValueError(
                    f"service_url's host {host} is not in service_url_hosts (the only hosts "
                    "that may receive the bot's token)"
                )
        return self

    @property
    def listen_url(self) -> str:
        """The control channel's URL without its query: wss://{namespace}/$hc/{path}."""
        if self.relay_url is not None:
            return self.relay_url.rstrip("/")
        return f"wss://{self.relay_namespace}/$hc/{self.relay_path}"

    @property
    def endpoint_target(self) -> str:
        """The request target a relayed Bot Service POST carries: /{relay_path}/api/messages."""
        return f"/{self.relay_path}{self.messaging_path}"

    @property
    def endpoint_url(self) -> str:
        """The Azure Bot's messaging endpoint, for the operator."""
        return f"https://{self.relay_namespace}{self.endpoint_target}"
