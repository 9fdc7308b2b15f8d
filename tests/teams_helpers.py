"""Shared pieces of the Teams tests: a `[teams]` section pointing at the loopback fakes, and
the two fakes as fixtures (`relay`, `bot`; tests/conftest.py offers them to every test), each
failing the test that used it if it received anything its published description refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from chatopsd.connectors.teams.config import TeamsSection
from tests.fakes import teams_relay

if TYPE_CHECKING:  # the bot fake reads this module's ids: imported where used
    from tests.fakes.teams_bot import FakeBotService
    from tests.fakes.teams_relay import FakeRelay

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


@pytest.fixture
async def relay() -> AsyncIterator[FakeRelay]:
    fake = teams_relay.FakeRelay(pong_every=30)
    await fake.start()
    yield fake
    await fake.close()
    assert fake.violations == []


@pytest.fixture
async def bot() -> AsyncIterator[FakeBotService]:
    from tests.fakes.teams_bot import FakeBotService

    fake = FakeBotService()
    await fake.start()
    yield fake
    await fake.close()
    assert fake.violations == []
