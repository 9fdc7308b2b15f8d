"""The [teams] section: defaults, the URL rules (https, plain ws:// only when allowed, the
token's hosts), and errors that name the key without showing a secret."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from chatopsd.config import explain
from chatopsd.connectors.teams.config import TeamsSection
from tests.fakes import teams_relay
from tests.teams_helpers import APP_PASSWORD, section


def test_defaults_and_derived_addresses() -> None:
    cfg = section()
    assert cfg.listen_url == f"wss://{teams_relay.NAMESPACE}/$hc/{teams_relay.PATH}"
    assert cfg.endpoint_target == "/chatopsd/api/messages"
    assert cfg.endpoint_url == f"https://{teams_relay.NAMESPACE}/chatopsd/api/messages"
    assert cfg.sas_ttl_seconds == 3600 and cfg.keepalive_seconds == 60
    assert cfg.dead_after_seconds == 480 and cfg.invoke_deadline_seconds == 4
    assert cfg.allowed_channel_ids == ["msteams"] and cfg.max_body_bytes == 262_144
    assert cfg.login_url == "https://login.microsoftonline.com"
    assert cfg.openid_url.startswith("https://login.botframework.com/")
    default = TeamsSection.model_validate(
        {k: v for k, v in _raw().items() if k != "service_url_hosts"}
    )
    assert default.service_url_hosts == ["smba.trafficmanager.net"]


def _raw(**overrides: Any) -> dict[str, Any]:
    raw = section().model_dump()
    raw["app_password"] = APP_PASSWORD
    raw["relay_key"] = teams_relay.KEY
    raw.update(overrides)
    return {k: v for k, v in raw.items() if v is not None}


def _error(**overrides: Any) -> str:
    with pytest.raises(ValidationError) as refused:
        TeamsSection.model_validate(_raw(**overrides))
    lines = "\n".join(explain(refused.value))
    assert APP_PASSWORD not in lines and teams_relay.KEY not in lines
    return lines


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"relay_url": "ws://127.0.0.1:1/$hc/chatopsd"}, "allow_insecure_relay"),
        ({"relay_url": "https://relay.example/$hc/x"}, "wss://"),
        ({"relay_namespace": "https://contoso.servicebus.windows.net"}, "host name"),
        ({"relay_path": "a b"}, "Hybrid Connection's name"),
        ({"messaging_path": "api/messages"}, "starting with /"),
        ({"login_url": "http://login.example.com"}, "https://"),
        ({"openid_url": "ftp://x/y"}, "https://"),
        ({"service_url": "https://smba.trafficmanager.net/amer/"}, "service_url_hosts"),
        ({"service_url_hosts": ["https://smba.trafficmanager.net/"]}, "not a host name"),
        ({"service_url_hosts": []}, "service_url_hosts"),
        ({"keepalive_seconds": 500}, "shorter than dead_after_seconds"),
        ({"app_password": "  "}, "app_password: Value error, must not be empty"),
        ({"allowed_channel_ids": []}, "allowed_channel_ids"),
        ({"unknown_key": 1}, "unknown_key"),
    ],
)
def test_refused(overrides: dict[str, Any], words: str) -> None:
    assert words in _error(**overrides)


def test_missing_keys_are_named() -> None:
    with pytest.raises(ValidationError) as refused:
        TeamsSection.model_validate({"app_id": "x"})
    lines = explain(refused.value)
    for key in (
        "app_password",
        "tenant_id",
        "relay_namespace",
        "relay_path",
        "relay_key_name",
        "relay_key",
    ):
        assert f"{key}: required key is missing" in lines


def test_loopback_overrides_for_tests() -> None:
    cfg = TeamsSection.model_validate(
        _raw(
            relay_url="ws://127.0.0.1:9/$hc/chatopsd",
            allow_insecure_relay=True,
            login_url="http://127.0.0.1:8",
            service_url="http://127.0.0.1:8/amer/t/",
            service_url_hosts=["127.0.0.1"],
        )
    )
    assert cfg.listen_url == "ws://127.0.0.1:9/$hc/chatopsd"


def test_secrets_never_printed() -> None:
    cfg = section()
    assert APP_PASSWORD not in repr(cfg) and teams_relay.KEY not in str(cfg)
