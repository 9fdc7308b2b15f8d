"""Configuration: TOML → pydantic models. Errors name the key path, never the value.

Tokens may also come from a systemd credential ($CREDENTIALS_DIRECTORY/<section>_<key>) or an
environment variable (CHATOPSD_<SECTION>_<KEY>), preferred in that order over the file.

The platform sections (`[slack]`, `[discord]`, ...) are not listed here: each platform package
brings its own model, and `Config` is composed from the platform registry (chatopsd/platforms.py)
with one optional section per platform. A platform section that is present is enabled.
"""

from __future__ import annotations

import base64
import functools
import os
import tomllib
from collections.abc import Mapping, Sequence
from datetime import UTC, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from chatopsd import locations, redact
from chatopsd.connectors.platform import Platform
from chatopsd.core.errors import ConfigError
from chatopsd.core.values import EMAIL_MAX, is_email
from chatopsd.features.statuspage.api import TITLE_PLACEHOLDERS, placeholders
from chatopsd.platforms import PLATFORMS
from chatopsd.sections import Section, checked_url

# Sections that always exist: their secret may come from a credential alone.
_ALWAYS_PRESENT = frozenset({"audit"})
VerdictName = Literal["NORMAL", "DEGRADED", "CRITICAL", "UNKNOWN"]
S = TypeVar("S", bound=BaseModel)


class ChatopsdSection(Section):
    state_db: Path | None = None
    prefix: str = Field("!", min_length=1, max_length=3)
    bot_name: str = "chatopsd"
    log_format: Literal["plain", "json"] = "plain"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_grace_seconds: float = Field(10.0, gt=0)
    # PostgreSQL for several instances (high availability); absent: SQLite at state_db.
    database: str | None = None
    # How long connecting to PostgreSQL may take (each connection: TCP, TLS, log-in).
    database_connect_timeout_seconds: float = Field(10.0, gt=0, le=300)
    lease_seconds: float = Field(10.0, ge=1)  # leader lease for singleton jobs (PostgreSQL)
    # This instance's name among several (PostgreSQL); default: the host name.
    instance: str | None = Field(None, min_length=1, max_length=100)

    @field_validator("database")
    @classmethod
    def _postgresql_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = database_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    # IANA zone for every time shown ("Europe/Paris"); default: the host's zone.
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError("not an IANA time zone name, e.g. Europe/Paris or UTC") from None
        return v

    def zone(self, env: dict[str, str] | None = None) -> tzinfo:
        """The configured zone, else the host's ($TZ, then /etc/localtime), else UTC."""
        if self.timezone is not None:
            return ZoneInfo(self.timezone)
        return host_zone(env)

    def db_path(self) -> Path:
        # The rules live in locations.py, shared with `chatopsd ctl` and `chatopsd audit`.
        return locations.state_db(self.state_db)[0]

    def fallback_card(self) -> Path:
        """Where the daemon writes the fallback card (locations.py; `chatopsd runbook`)."""
        return locations.fallback_card(self.db_path())


def database_url_problem(url: str) -> str | None:
    """What is wrong with a PostgreSQL URL (`chatopsd.database`, `migrate-state --to`), or
    None. A password is refused wherever it sits (`user:pw@`, `?password=`): the URL is shown
    by `ctl health`, logs and errors, so the password lives in a credential instead. The
    message never repeats any part of the URL."""
    from urllib.parse import parse_qsl, urlsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "must be postgresql://user@host:5432/dbname"
    if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
        return "must be postgresql://user@host:5432/dbname"
    in_query = any(
        name.strip().lower() == "password"
        for name, _ in parse_qsl(parts.query, keep_blank_values=True)
    )
    if password is not None or in_query:
        return (
            "must not hold a password (neither user:password@ nor ?password=): put it in the "
            "credential $CREDENTIALS_DIRECTORY/chatopsd_database_password (systemd "
            "LoadCredential=), or in PGPASSWORD, or in ~/.pgpass"
        )
    return None


class ConsoleSection(Section):
    enabled: bool | None = None
    format: Literal["text", "jsonl"] = "text"


class FallbackContact(Section):
    name: str = Field(min_length=1)
    phone: str = Field(min_length=1)


class PagerDutyService(Section):
    name: str = Field(min_length=1)
    schedules: list[str] = Field(min_length=1)


class PagerDutySection(Section):
    api_token: SecretStr
    api_url: str = "https://api.pagerduty.com"
    # Reserved (a fixed key in DESIGN.md): nothing reads it. Pages are REST `POST /incidents`,
    # which can assign the people on call; Events v2 cannot, and needs a routing key too.
    events_url: str = "https://events.pagerduty.com/v2/enqueue"
    from_email: str
    service_id: str
    ic_schedules: list[str] = Field(min_length=1)
    responder_schedules: list[str] = []
    refresh_seconds: float = Field(60.0, ge=5)
    page_deadline_seconds: float = Field(8.0, gt=0, le=10)
    # Who to call by hand whenever the on-call cache cannot answer (no data, or stale).
    fallback_contacts: list[FallbackContact] = []
    # A second `!ic page` within this many seconds answers "already paged" (with a button).
    repage_window_seconds: float = Field(300.0, ge=0)
    # Services known by name ("who is on call for payments?") -> their schedule ids.
    services: list[PagerDutyService] = []
    # Incidents followed in chat, and who is who.
    service_ids: list[str] = []
    incident_channels: list[str] = []
    incident_poll_seconds: float = Field(20.0, ge=1)
    users: dict[str, str] = {}
    # On-call awareness pushed out.
    handoff_channels: list[str] = []
    lookahead_days: float = Field(14.0, gt=0, le=90)
    remind_before_minutes: list[Annotated[int, Field(gt=0)]] = []
    topic_channels: dict[
        str, str
    ] = {}  # "platform:channel" -> "IC: {ic} · Responders: {responders}"
    slack_usergroups: dict[str, str] = {}  # schedule id -> Slack user group id

    @field_validator("api_url", "events_url")
    @classmethod
    def _urls(cls, v: str) -> str:
        return checked_url(v)

    @field_validator("from_email")
    @classmethod
    def _from_email(cls, v: str) -> str:
        return email(v)

    @field_validator("topic_channels")
    @classmethod
    def _topic_templates(cls, v: dict[str, str]) -> dict[str, str]:
        for target, template in v.items():
            try:
                template.format(ic="", responders="")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"the topic for {target} may only use {{ic}} and {{responders}} ({exc})"
                ) from None
        return v

    @field_validator("incident_channels", "users", "handoff_channels", "topic_channels")
    @classmethod
    def _platform_keys(cls, v: object) -> object:
        for target in v if isinstance(v, list) else v if isinstance(v, dict) else ():
            platform, _, rest = str(target).partition(":")
            if not platform or not rest:
                raise ValueError('entries look like "platform:id"')
        return v


def email(value: str) -> str:
    """`value` if it looks like an email address (core.values.is_email: linear, at most
    EMAIL_MAX characters), else a ValueError that does not repeat it."""
    if not is_email(value):
        raise ValueError(
            f"must be an email address like ada@example.com (at most {EMAIL_MAX} characters)"
        )
    return value


class SourceBase(Section):
    name: str = ""  # default: the kind, numbered when repeated (alertmanager, alertmanager-2)
    timeout_seconds: float = Field(5.0, gt=0)

    @field_validator("url", check_fields=False)
    @classmethod
    def _url(cls, v: str) -> str:
        return checked_url(v)


class AlertmanagerSource(SourceBase):
    kind: Literal["alertmanager"]
    url: str
    severity_map: dict[str, VerdictName] = {
        "critical": "CRITICAL",
        "page": "CRITICAL",
        "warning": "DEGRADED",
    }
    default_verdict: VerdictName = "DEGRADED"
    # Alertmanager filter matchers, e.g. ['team="payments"'] (sent as ?filter=...).
    matchers: list[str] = []


class PrometheusSource(SourceBase):
    kind: Literal["prometheus"]
    url: str
    query: str
    firing_verdict: VerdictName = "CRITICAL"
    # The alert name shown for each result series (default: its alertname/__name__ label).
    alert_name: str | None = None


class HttpSource(SourceBase):
    kind: Literal["http"]
    url: str
    field: str
    # Case-insensitive value -> state; empty means the built-in map (ok/up/none -> NORMAL,
    # degraded/warning/minor -> DEGRADED, down/critical/major -> CRITICAL).
    value_map: dict[str, VerdictName] = {}
    default_verdict: VerdictName = "UNKNOWN"


class CommandSource(SourceBase):
    kind: Literal["command"]
    argv: list[str] = Field(min_length=1)
    exit_map: dict[str, VerdictName] = {"0": "NORMAL", "1": "DEGRADED", "2": "CRITICAL"}
    # First line of stdout (case-insensitive) -> state; wins over the exit code when it matches.
    output_map: dict[str, VerdictName] = {}

    @field_validator("exit_map")
    @classmethod
    def _exit_codes(cls, v: dict[str, str]) -> dict[str, str]:
        for code in v:
            if not code.strip().lstrip("-").isdigit():
                raise ValueError(f'keys must be exit codes like "0" (got {code!r})')
        return v


StatusSourceConfig = Annotated[
    AlertmanagerSource | PrometheusSource | HttpSource | CommandSource,
    Field(discriminator="kind"),
]


class StatusSection(Section):
    stalk_seconds: float = Field(30.0, ge=1)
    # A source must fail this many polls in a row before stalkers are told it is UNKNOWN.
    unknown_after: int = Field(2, ge=1)
    # Deadline for reading all sources at once (each source also has timeout_seconds).
    read_timeout_seconds: float = Field(10.0, gt=0)
    max_stalkers_per_channel: int = Field(5, ge=1)  # a channel and its threads together
    max_stalkers: int = Field(500, ge=1)
    sources: list[StatusSourceConfig] = []

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, v: list[Any]) -> list[Any]:
        v = _named_sources(v)
        names = [s.name for s in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"two sources share the name {dupes[0]!r}")
        return v


def _named_sources(sources: list[Any]) -> list[Any]:
    """Give unnamed sources their kind as name, numbered from the second one of a kind."""
    taken = {s.name for s in sources if s.name}
    counts: dict[str, int] = {}
    named: list[Any] = []
    for source in sources:
        if not source.name:
            counts[source.kind] = n = counts.get(source.kind, 0) + 1
            name = source.kind if n == 1 else f"{source.kind}-{n}"
            while name in taken:
                n += 1
                name = f"{source.kind}-{n}"
            counts[source.kind] = n
            taken.add(name)
            source = source.model_copy(update={"name": name})
        named.append(source)
    return named


class AuthSection(Section):
    command_roles: dict[str, str] = {}
    paging_channels: list[str] = []
    mutating_channels: list[str] = []
    # "platform:user_id" = "email": one person's chat identities, counted as one approver
    identities: dict[str, str] = {}


class RateLimitSection(Section):
    per_minute: float = Field(30.0, gt=0)
    burst: int = Field(10, ge=1)


class IncidentsSection(Section):
    """Where incident announcements go. Destinations are "platform:channel_id"."""

    routing: dict[Literal["SEV-1", "SEV-2", "SEV-3", "SEV-4"], list[str]] = {}
    default_channels: list[str] = []
    management_channel: str | None = None
    pulse_minutes: float = Field(30.0, gt=0)
    pulse_check_seconds: float = Field(60.0, ge=1)
    create_channels: bool = True
    # A video bridge link template ("https://meet.example.com/{incident_id}"), posted and pinned
    # when an incident opens.
    bridge_url: str | None = None

    @field_validator("bridge_url")
    @classmethod
    def _bridge_url(cls, v: str | None) -> str | None:
        return None if v is None else checked_url(v)

    @field_validator("default_channels", "routing", "management_channel")
    @classmethod
    def _destinations(cls, v: object) -> object:
        values: list[object] = []
        if isinstance(v, dict):
            for targets in v.values():
                values.extend(targets)
        elif isinstance(v, list):
            values.extend(v)
        elif v is not None:
            values.append(v)
        for target in values:
            platform, _, channel = str(target).partition(":")
            if not platform or not channel:
                raise ValueError('destinations look like "platform:channel_id"')
        return v


class StatuspageSection(Section):
    """Atlassian Statuspage: incidents published from chat (features/statuspage/)."""

    api_url: str = "https://api.statuspage.io/v1"
    api_key: SecretStr
    page_id: str = Field(min_length=1)
    components: dict[str, str] = {}  # incident service -> component id
    auto_publish: list[Literal["SEV-1", "SEV-2", "SEV-3", "SEV-4"]] = []
    # The public name of an auto-published incident (nobody chose to show its internal
    # title): {service} (when it is one of `components`), {sev}; "{title}" opts into the title.
    public_title: str = Field("Service disruption: {service}", min_length=1, max_length=255)
    timeout_seconds: float = Field(10.0, gt=0)
    # Statuspage allows one request per second per API key.
    min_interval_seconds: float = Field(1.0, ge=0)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, v: str) -> str:
        return checked_url(v)

    @field_validator("public_title")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        unknown = sorted(placeholders(template) - TITLE_PLACEHOLDERS)
        if unknown:
            known = ", ".join(f"{{{p}}}" for p in sorted(TITLE_PLACEHOLDERS))
            raise ValueError(f"unknown placeholder {{{unknown[0]}}} (known: {known})")
        return template


class TicketsSection(Section):
    """Where follow-ups become tickets (features/followups/trackers.py)."""

    kind: Literal["github", "jira"]
    url: str | None = None  # default https://api.github.com for github; required for jira
    token: SecretStr
    project: str = Field(min_length=1)  # owner/repo (github) or project key (jira)
    labels: list[str] = []
    email: str | None = None  # jira: the account of the API token (basic auth)
    issue_type: str = "Task"  # jira
    # Link in each ticket back to the incident ("https://wiki.example.com/{incident_id}").
    incident_url: str | None = None
    timeout_seconds: float = Field(10.0, gt=0)

    @field_validator("url", "incident_url")
    @classmethod
    def _urls(cls, v: str | None) -> str | None:
        return None if v is None else checked_url(v)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        return None if v is None else email(v)

    @model_validator(mode="after")
    def _shape(self) -> TicketsSection:
        if self.kind == "github" and self.project.count("/") != 1:
            raise ValueError('project must be "owner/repo" for github')
        if self.kind == "jira" and not self.url:
            raise ValueError("url (your Jira site, https://example.atlassian.net) is required")
        return self


class OpsCommandSection(Section):
    """An operations command from `[[commands]]`: run without a shell, arguments validated first.

    `run` is an argv template: each `{arg}` is replaced inside its own element only, so a value
    can never become a second argument. An argument without a `patterns`/`choices` entry must
    match DEFAULT_ARG_PATTERN (ops/runner.py).
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*( [a-z][a-z0-9-]*)*$")
    summary: str = ""
    args: list[str] = []
    patterns: dict[str, str] = {}
    choices: dict[str, list[str]] = {}
    run: list[str] = Field(min_length=1)
    timeout_seconds: float = Field(300.0, gt=0)
    role: str | None = None
    destructive: bool = False
    max_concurrent: int = Field(1, ge=1)
    max_output_chars: int = Field(3000, ge=100)

    @model_validator(mode="after")
    def _known_args(self) -> OpsCommandSection:
        import re

        for table in (self.patterns, self.choices):
            for arg in table:
                if arg not in self.args:
                    raise ValueError(f"{arg!r} is not one of args {self.args}")
        for arg, pattern in self.patterns.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"patterns.{arg} is not a valid regex: {exc}") from None
        for element in self.run:
            for ref in re.findall(r"\{([^{}]*)\}", element):
                if ref not in self.args:
                    raise ValueError(f"run refers to {{{ref}}}, which is not one of args")
        return self


class ApprovalRuleSection(Section):
    """One row of the approval matrix: first matching rule wins; count 0 = no approval."""

    command: str
    when: dict[str, str] = {}
    count: int = Field(1, ge=0, le=10)
    role: str = "lead"


class ApprovalsSection(Section):
    expire_seconds: float = Field(900.0, gt=0)
    sweep_seconds: float = Field(10.0, ge=1)
    rules: list[ApprovalRuleSection] = []


class ControlSection(Section):
    # Default: $RUNTIME_DIRECTORY/control.sock (systemd), else next to the state database.
    socket: Path | None = None
    enabled: bool = True
    # Numeric uids besides the daemon's own (and root) allowed to use the socket.
    allow_uids: list[int] = []
    # Where `chatopsd ctl broadcast` posts: "platform:channel" strings.
    broadcast_channels: list[str] = []

    def socket_path(self, state_db: Path) -> Path:
        return locations.control_socket(self.socket, state_db)[0]


class MetricsSection(Section):
    # Off unless one of these is set. textfile: node_exporter textfile-collector path;
    # listen: "127.0.0.1:9108" (loopback only) or "unix:/path/metrics.sock".
    textfile: Path | None = None
    listen: str | None = None
    interval_seconds: float = Field(15.0, ge=1)

    @field_validator("listen")
    @classmethod
    def _loopback_only(cls, v: str | None) -> str | None:
        if v is None or v.startswith("unix:"):
            return v
        host, _, port = v.rpartition(":")
        if host not in ("127.0.0.1", "::1", "[::1]", "localhost") or not port.isdigit():
            raise ValueError("must be 127.0.0.1:PORT, [::1]:PORT or unix:/path (no public port)")
        return v


class AuditSection(Section):
    """The audit trail's tamper evidence (see store/audit.py)."""

    # HMAC-SHA256 key for the chain: without it nobody can rewrite rows and recompute hashes.
    # Like every secret: a credential (audit_hmac_key), CHATOPSD_AUDIT_HMAC_KEY, or this key.
    hmac_key: SecretStr = SecretStr("")
    head_log_seconds: float = Field(3600.0, ge=60)  # the chain's head hash goes to the journal


class BaseConfig(Section):
    """Every section but the platforms'. The daemon's model is `Config`: this one composed
    with the registry's platforms (`with_platforms`)."""

    # The platforms this model was composed with: each has an optional section (a field).
    platform_registry: ClassVar[tuple[Platform[Any], ...]] = ()

    chatopsd: ChatopsdSection = ChatopsdSection()
    console: ConsoleSection = ConsoleSection()
    pagerduty: PagerDutySection | None = None
    status: StatusSection = StatusSection()
    auth: AuthSection = AuthSection()
    roles: dict[str, list[str]] = {}
    ratelimit: RateLimitSection = RateLimitSection()
    control: ControlSection = ControlSection()
    metrics: MetricsSection = MetricsSection()
    incidents: IncidentsSection = IncidentsSection()
    commands: list[OpsCommandSection] = []
    approvals: ApprovalsSection = ApprovalsSection()
    audit: AuditSection = AuditSection()
    statuspage: StatuspageSection | None = None
    tickets: TicketsSection | None = None

    @model_validator(mode="after")
    def _rules_name_commands(self) -> BaseConfig:
        known = {c.name: c for c in self.commands}
        if len(known) != len(self.commands):
            raise ValueError("two [[commands]] share a name")
        for i, rule in enumerate(self.approvals.rules):
            cmd = known.get(rule.command)
            if cmd is None:
                raise ValueError(f"approvals.rules[{i}].command: no [[commands]] named that")
            for arg in rule.when:
                if arg not in cmd.args:
                    raise ValueError(f"approvals.rules[{i}].when: {arg!r} is not an argument")
        return self

    @model_validator(mode="after")
    def _destinations_reach_a_platform(self) -> BaseConfig:
        """Each "platform:channel" destination names a platform that is configured (the
        console counts when it is on), and each "platform:user" identity a platform the
        daemon knows: `slak:C1` or a `[discord]` destination without `[discord]` would
        otherwise be dropped, or fail, at the first announcement."""
        known = [p.name for p in self.platform_registry] + ["console"]
        reachable = set(self.platforms) | ({"console"} if self.console_enabled else set())
        problems = []
        for key, value, must_reach in self.addresses():
            platform = value.partition(":")[0]
            if platform not in known:
                problems.append(f"{key}: unknown platform {platform!r} (known: {', '.join(known)})")
            elif must_reach and platform not in reachable:
                problems.append(
                    f"{key}: {platform!r} is not configured (no [{platform}] section)"
                    if platform != "console"
                    else f"{key}: the console is off (console.enabled = false)"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def addresses(self) -> list[tuple[str, str, bool]]:
        """(key path, "platform:id", is a destination) of every chat address in the config:
        where the daemon posts (destinations, which must reach a configured platform) and
        who is who (identities, whose platform may be off for now)."""
        found: list[tuple[str, str, bool]] = []

        def each(key: str, values: object, destination: bool = True) -> None:
            if isinstance(values, str):
                found.append((key, values, destination))
            elif isinstance(values, list):
                found.extend((f"{key}[{i}]", v, destination) for i, v in enumerate(values))
            elif isinstance(values, dict):
                found.extend((f"{key}.{k}", str(k), destination) for k in values)

        pd = self.pagerduty
        if pd is not None:
            each("pagerduty.incident_channels", pd.incident_channels)
            each("pagerduty.handoff_channels", pd.handoff_channels)
            each("pagerduty.topic_channels", pd.topic_channels)
            each("pagerduty.users", pd.users, destination=False)
        for sev, targets in self.incidents.routing.items():
            each(f"incidents.routing.{sev}", targets)
        each("incidents.default_channels", self.incidents.default_channels)
        if self.incidents.management_channel is not None:
            each("incidents.management_channel", self.incidents.management_channel)
        each("control.broadcast_channels", self.control.broadcast_channels)
        each("auth.identities", self.auth.identities, destination=False)
        # where paging / mutating commands are allowed: a channel of a platform that is off
        # allows nothing, but a misspelt platform is a mistake
        each("auth.paging_channels", self.auth.paging_channels, destination=False)
        each("auth.mutating_channels", self.auth.mutating_channels, destination=False)
        for role, members in self.roles.items():
            # members are "platform:user_id", an email address, or "*"
            found.extend(
                (f"roles.{role}[{i}]", m, False)
                for i, m in enumerate(members)
                if ":" in m and "@" not in m
            )
        return found

    def unreachable(self) -> str | None:
        """Why nobody could talk to a daemon run with this config, or None: the console is
        off and no platform is configured. (Tests run such daemons through the control
        socket alone; `check-config` refuses it for a service.)"""
        if self.console_enabled or self.platforms:
            return None
        sections = ", ".join(f"[{p.name}]" for p in self.platform_registry)
        return (
            "console.enabled: the console is off and no platform is configured "
            f"({sections}): nothing can reach the daemon"
        )

    def section(self, platform: Platform[S]) -> S | None:
        """The platform's section; None when it is absent (the platform is off)."""
        found = getattr(self, platform.name, None)
        return found if isinstance(found, platform.section) else None

    def configured_platforms(self) -> list[tuple[Platform[Any], BaseModel]]:
        """The platforms whose section is present, with that section, in registry order."""
        found = []
        for platform in self.platform_registry:
            section = self.section(platform)
            if section is not None:
                found.append((platform, section))
        return found

    @property
    def platforms(self) -> list[str]:
        return [platform.name for platform, _section in self.configured_platforms()]

    @property
    def console_enabled(self) -> bool:
        if self.console.enabled is not None:
            return self.console.enabled
        return not self.platforms

    @property
    def demo(self) -> bool:
        """THE one decision about demo data: a console-only daemon with nothing real
        configured (no PagerDuty, status source, status page or ticket tracker to talk to,
        and no `[roles]` or `[[commands]]` of its own) runs an in-process demo of all of them,
        so every command can be tried with no account. Anything real configured, and there
        is no demo anywhere: made-up people or alerts never sit beside real ones, and the
        demo's every-role operator never overrides roles someone set."""
        return (
            not self.platforms
            and self.console_enabled
            and self.pagerduty is None
            and not self.status.sources
            and self.statuspage is None
            and self.tickets is None
            and not any(self.roles.values())
            and not self.commands
        )


@functools.cache
def with_platforms(platforms: tuple[Platform[Any], ...]) -> type[BaseConfig]:
    """The config model with one optional `[<name>]` section per platform, in their order.
    `Config` is this for the registry; a test may compose its own platform list."""
    names = [platform.name for platform in platforms]
    for name in names:
        if name in BaseConfig.model_fields or names.count(name) > 1:
            raise ValueError(f"platform {name!r}: another section has that name")
    fields: dict[str, Any] = {p.name: (p.section | None, None) for p in platforms}
    model = create_model("Config", __base__=BaseConfig, __module__=__name__, **fields)
    model.platform_registry = platforms
    return model


if TYPE_CHECKING:
    # What the code sees: every section but the platforms', which it reads through
    # `cfg.section(PLATFORM)` (`cfg.slack` works too, at run time).
    Config = BaseConfig
else:
    Config = with_platforms(PLATFORMS)


@functools.cache
def secret_keys(config_model: type[BaseConfig] = Config) -> tuple[tuple[str, str], ...]:
    """(section, key) of every token: the SecretStr fields of the top-level sections, so a
    new platform's or integration's token is redacted and read from credentials without
    being listed here."""
    found: list[tuple[str, str]] = []
    for name, field in config_model.model_fields.items():
        for model in (field.annotation, *get_args(field.annotation)):
            if isinstance(model, type) and issubclass(model, BaseModel):
                found += [
                    (name, key)
                    for key, f in model.model_fields.items()
                    if SecretStr in (f.annotation, *get_args(f.annotation))
                ]
    return tuple(found)


SECRET_KEYS: tuple[tuple[str, str], ...] = secret_keys(Config)
# chatopsd.database holds no password: it comes from this credential, else PGPASSWORD.
DATABASE_CREDENTIAL = "chatopsd_database_password"


def host_zone(
    env: dict[str, str] | None = None, localtime: Path = Path("/etc/localtime")
) -> tzinfo:
    name = (os.environ if env is None else env).get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass  # a POSIX TZ string or a typo: fall back to the system file
    try:
        with localtime.open("rb") as f:
            return ZoneInfo.from_file(f, key=_zone_key(localtime))
    except (OSError, ValueError):
        return UTC


def _zone_key(localtime: Path) -> str | None:
    # /etc/localtime -> /usr/share/zoneinfo/Europe/Paris: the name, for logs and repr
    target = str(localtime.resolve())
    return target.split("/zoneinfo/", 1)[1] if "/zoneinfo/" in target else None


def load(
    path: Path | None,
    env: dict[str, str] | None = None,
    platforms: Sequence[Platform[Any]] = PLATFORMS,
) -> Config:
    """Read and validate the config file (or the defaults when `path` is None), with a
    section for each of `platforms` (default: the registry's)."""
    env = dict(os.environ) if env is None else env
    model = with_platforms(tuple(platforms))
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
    _overlay_secrets(raw, env, secret_keys(model))
    try:
        return model.model_validate(raw)
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
        if not path and err["type"] == "value_error":
            # a rule across sections: its message names each key itself, one per line
            lines += message.removeprefix("Value error, ").splitlines()
            continue
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against config.example.toml)"
        elif err["type"] == "missing":
            message = "required key is missing"
        lines.append(f"{path or '(top level)'}: {message}")
    return lines


def _overlay_secrets(
    raw: dict[str, Any], env: dict[str, str], keys: Sequence[tuple[str, str]]
) -> None:
    for section, key in keys:
        table = raw.setdefault(section, {}) if section in _ALWAYS_PRESENT else raw.get(section)
        if not isinstance(table, dict):
            continue  # sections enable platforms; a token alone does not
        # An empty credential means "not given": install.sh creates every file the unit
        # loads (systemd refuses to start when one is missing), most of them left empty.
        value = credential(env, f"{section}_{key}") or env.get(
            f"CHATOPSD_{section.upper()}_{key.upper()}"
        )
        if value:
            table[key] = value


def credential(env: Mapping[str, str], name: str) -> str | None:
    """The systemd credential `name` ($CREDENTIALS_DIRECTORY/name), stripped; None when the
    file is absent or empty, so the next source (the environment, the file) applies."""
    creds = env.get("CREDENTIALS_DIRECTORY")
    if not creds:
        return None
    path = Path(creds) / name
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8").strip() or None


def credential_names() -> tuple[str, ...]:
    """Every credential the service may be given: one per token key of the config model,
    plus the PostgreSQL password (read by store/postgres.py). The unit loads each one."""
    return (*(f"{section}_{key}" for section, key in SECRET_KEYS), DATABASE_CREDENTIAL)


def secrets_of(config: Config) -> list[str]:
    """Every token value in the config, so logs, chat and the audit trail can redact them:
    the token keys, the secret parts of the status sources' URLs (a key in the path or the
    query), and the basic-auth pair that carries the Jira token."""
    found = []
    for section, key in secret_keys(type(config)):
        table = getattr(config, section)
        if table is not None:
            value = getattr(table, key).get_secret_value()
            if value:
                found.append(value)
    for source in config.status.sources:
        url = getattr(source, "url", None)
        if url:
            found += redact.url_secrets(url, every_value=False)
    tickets = config.tickets
    if tickets is not None and tickets.email:
        pair = f"{tickets.email}:{tickets.token.get_secret_value()}"
        found.append(base64.b64encode(pair.encode()).decode())
    return found


def with_keys(running: Config, new: Config, keys: Sequence[str]) -> Config:
    """`running` with the values of `new` at these key paths ("roles", "approvals.rules"):
    what a reload applied. A key inside a section that either config lacks is left alone."""
    update: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key in keys:
        section, _, field = key.partition(".")
        if not field:
            update[section] = getattr(new, section)
        elif getattr(running, section) is not None and getattr(new, section) is not None:
            nested.setdefault(section, {})[field] = getattr(getattr(new, section), field)
    for section, fields in nested.items():
        update[section] = getattr(running, section).model_copy(update=fields)
    return running.model_copy(update=update)


def differences(running: Config, new: Config) -> list[str]:
    """Key paths whose value differs ("incidents.pulse_minutes"; a whole section when it was
    added or removed): after a reload, exactly what it could not apply."""
    found: list[str] = []
    for name in type(running).model_fields:
        a, b = getattr(running, name), getattr(new, name)
        if a == b:
            continue
        if isinstance(a, BaseModel) and isinstance(b, BaseModel) and type(a) is type(b):
            found += [f"{name}.{k}" for k in type(a).model_fields if getattr(a, k) != getattr(b, k)]
        else:
            found.append(name)
    return found
