"""The platform registry: config, app and doctor all read the same list, each entry is its
package's PLATFORM, and what each entry says it can do is what its connector does."""

from __future__ import annotations

from typing import get_args

import pytest

from chatopsd.config import SECRET_KEYS, Config, Section
from chatopsd.connectors import discord, mattermost, slack, teams
from chatopsd.connectors.platform import Wiring
from chatopsd.core import capabilities
from chatopsd.core.capabilities import THREADS, Capabilities, Capability
from chatopsd.core.ports import SystemClock
from chatopsd.platforms import PLATFORMS

SECTIONS = {
    "slack": {"app_token": "xapp-1-test", "bot_token": "xoxb-test"},
    "discord": {"token": "discord-test-token"},
    "mattermost": {"url": "http://127.0.0.1:1", "token": "mm-test"},
    "teams": {
        "app_id": "00000000-0000-4000-8000-0000000000b1",
        "app_password": "teams-test-password",
        "tenant_id": "11111111-2222-4333-8444-555555555555",
        "relay_namespace": "contoso.servicebus.windows.net",
        "relay_path": "chatopsd",
        "relay_key_name": "chatopsd-listen",
        "relay_key": "teams-test-relay-key",
    },
}


class _Kv:
    async def get(self, key: str) -> str | None:
        return None

    async def put(self, key: str, value: str) -> None:
        return None


def test_every_platform_has_a_config_section() -> None:
    assert PLATFORMS == (slack.PLATFORM, discord.PLATFORM, mattermost.PLATFORM, teams.PLATFORM)
    for platform in PLATFORMS:
        field = Config.model_fields[platform.name]
        assert get_args(field.annotation) == (platform.section, type(None))
        assert issubclass(platform.section, Section)
    assert [p.name for p in Config.platform_registry] == list(SECTIONS)


def test_config_lists_the_configured_platforms_in_registry_order() -> None:
    cfg = Config.model_validate({"mattermost": SECTIONS["mattermost"], "slack": SECTIONS["slack"]})
    assert cfg.platforms == ["slack", "mattermost"]
    assert not cfg.console_enabled
    assert Config().platforms == [] and Config().console_enabled


def test_each_entry_builds_its_connector_with_the_capabilities_it_declares() -> None:
    cfg = Config.model_validate(SECTIONS)
    wiring = Wiring(prefix="!", clock=SystemClock(), kv=_Kv())
    built = {p.name: p.build(section, wiring) for p, section in cfg.configured_platforms()}
    assert list(built) == [p.name for p in PLATFORMS]
    offers = [(p.name, built[p.name], p.capabilities) for p in PLATFORMS]
    table = Capabilities(offers)  # refuses a declared capability whose methods are missing
    for platform in PLATFORMS:
        connector = built[platform.name]
        assert connector.platform == platform.name
        # nothing it can do goes undeclared: a capability whose methods the connector has
        # is in its declaration (threads have no method: every platform but the console)
        assert THREADS in platform.capabilities, platform.name
        for capability in CAPABILITIES:
            implemented = all(callable(getattr(connector, m, None)) for m in capability.methods)
            assert (capability in platform.capabilities) is implemented, (platform, capability)
            assert table.get(platform.name, capability) is (connector if implemented else None)


CAPABILITIES = [
    value
    for value in vars(capabilities).values()
    if isinstance(value, Capability) and value.methods
]


def test_a_declared_capability_the_connector_lacks_is_refused() -> None:
    class Mute:
        platform = "mute"

    with pytest.raises(TypeError, match=r"mute declares direct messages .* no dm_channel\(\)"):
        Capabilities([("mute", Mute(), [capabilities.DIRECT_MESSAGES])])
    assert Capabilities([("mute", Mute(), [THREADS])]).has("mute", THREADS)
    assert Capabilities().get("mute", capabilities.DIRECT_MESSAGES) is None


def test_every_token_is_found_without_a_list_of_names() -> None:
    # config.SECRET_KEYS is derived from the SecretStr fields: redaction and credentials
    # cover a new section's token without anyone listing it.
    assert set(SECRET_KEYS) >= {
        ("slack", "app_token"),
        ("slack", "bot_token"),
        ("discord", "token"),
        ("mattermost", "token"),
        ("pagerduty", "api_token"),
    }
    for section, key in SECRET_KEYS:
        annotation = Config.model_fields[section].annotation
        # an optional section (`SlackSection | None`) or one that is always there (`audit`)
        model = next(t for t in (annotation, *get_args(annotation)) if isinstance(t, type))
        assert "SecretStr" in str(model.model_fields[key].annotation)
