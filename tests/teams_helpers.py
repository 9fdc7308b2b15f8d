"""Shared pieces of the Teams tests: a `[teams]` section pointing at the loopback fakes."""

from __future__ import annotations

from typing import Any

from chatopsd.connectors.teams.config import TeamsSection
from tests.fakes import teams_relay

APP_ID = "00000000-0000-4000-8000-0000000000b1"
TENANT = "11111111-2222-4333-8444-555555555555"
APP_PASSWORD = "test-app-password-not-a-secret"


def section(relay_url: str | None = None, **overrides: Any) -> TeamsSection:
    raw: dict[str, Any] = {
        "app_id": APP_ID,
        "app_password": APP_PASSWORD,
        "tenant_id": TENANT,
        "relay_namespace": teams_relay.NAMESPACE,
        "relay_path": teams_relay.PATH,
        "relay_key_name": teams_relay.KEY_NAME,
        "relay_key": teams_relay.KEY,
        "service_url_hosts": ["127.0.0.1"],
    }
    if relay_url is not None:
        raw.update(relay_url=relay_url, allow_insecure_relay=True)
    raw.update(overrides)
    return TeamsSection.model_validate(raw)


def raw_section(relay_url: str, bot_keys: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The `[teams]` table, TOML-shaped, for a daemon pointed at the loopback fakes."""
    return {
        "app_id": APP_ID,
        "app_password": APP_PASSWORD,
        "tenant_id": TENANT,
        "relay_namespace": teams_relay.NAMESPACE,
        "relay_path": teams_relay.PATH,
        "relay_key_name": teams_relay.KEY_NAME,
        "relay_key": teams_relay.KEY,
        "service_url_hosts": ["127.0.0.1"],
        "relay_url": relay_url,
        "allow_insecure_relay": True,
        **bot_keys,
        **overrides,
    }
