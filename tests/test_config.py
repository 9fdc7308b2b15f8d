"""Config validation: one clear line per problem, naming the key path, never the value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chatopsd import config
from chatopsd.connectors.discord.config import DiscordSection
from chatopsd.connectors.mattermost.config import MattermostSection
from chatopsd.connectors.slack.config import SlackSection
from chatopsd.core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[slack]\nbot_token = 'xoxb-test-1'\n", "slack.app_token: required key is missing"),
        ("[chatopsd]\nprefix = 3\n", "chatopsd.prefix: Input should be a valid string"),
        ("[slak]\n", "slak: unknown key (check the spelling against config.example.toml)"),
        (
            "[status]\nstalk_seconds = 'often'\n",
            "status.stalk_seconds: Input should be a valid number",
        ),
        (
            "[[status.sources]]\nname='am'\nkind='alertmanager'\n",
            "status.sources[0].url: required key is missing",
        ),
        (
            "[[status.sources]]\nname='x'\nkind='carrier-pigeon'\n",
            "status.sources[0]: Input tag 'carrier-pigeon' found using 'kind' does not match",
        ),
        ("[chatopsd\n", "not valid TOML"),
    ],
)
def test_bad_config_gives_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, text), env={})
    message = str(info.value)
    assert expected in message
    assert len(message.splitlines()) == 1


def test_secret_values_never_appear_in_errors(tmp_path: Path) -> None:
    secret = "xoxb-test-do-not-print-me"
    text = f"[slack]\napp_token = '{secret}'\nbot_token = 5\n"
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, text), env={})
    assert secret not in str(info.value)
    assert "slack.app_token: Value error, must be an app-level token starting with xapp-" in str(
        info.value
    )
    assert "slack.bot_token: Input should be a valid string" in str(info.value)


def test_tokens_prefer_credentials_then_environment(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "slack_app_token").write_text("xapp-test-from-credential\n")
    path = write(tmp_path, "[slack]\napp_token = 'xapp-test-file'\nbot_token = 'xoxb-test-file'\n")
    env = {
        "CREDENTIALS_DIRECTORY": str(creds),
        "CHATOPSD_SLACK_APP_TOKEN": "xapp-test-env",
        "CHATOPSD_SLACK_BOT_TOKEN": "xoxb-test-env",
    }
    cfg = config.load(path, env=env)
    assert cfg.slack is not None
    assert cfg.slack.app_token.get_secret_value() == "xapp-test-from-credential"
    assert cfg.slack.bot_token.get_secret_value() == "xoxb-test-env"
    assert sorted(config.secrets_of(cfg)) == ["xapp-test-from-credential", "xoxb-test-env"]
    assert "xapp-test" not in repr(cfg)


@pytest.mark.parametrize("content", ["", "\n", "  \n"])
def test_an_empty_credential_is_not_given(tmp_path: Path, content: str) -> None:
    """install.sh creates every credential the unit loads, empty: an empty one must let the
    environment variable (a drop-in's Environment=) and then the file apply."""
    creds = tmp_path / "creds"
    creds.mkdir()
    for name in config.credential_names():
        (creds / name).write_text(content)
    path = write(tmp_path, "[slack]\napp_token = 'xapp-test-file'\n")
    env = {"CREDENTIALS_DIRECTORY": str(creds), "CHATOPSD_SLACK_BOT_TOKEN": "xoxb-test-env"}
    cfg = config.load(path, env=env)
    assert cfg.slack is not None
    assert cfg.slack.bot_token.get_secret_value() == "xoxb-test-env"
    assert cfg.slack.app_token.get_secret_value() == "xapp-test-file"
    assert cfg.audit.hmac_key.get_secret_value() == ""  # still "no key", not an empty key


def test_an_empty_database_password_credential_is_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chatopsd.store.postgres import password_from_environment

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / config.DATABASE_CREDENTIAL).write_text("")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("PGPASSWORD", "from-pgpassword")
    assert password_from_environment() == "from-pgpassword"
    (creds / config.DATABASE_CREDENTIAL).write_text("from-credential\n")
    assert password_from_environment() == "from-credential"


def test_environment_alone_does_not_enable_a_platform() -> None:
    cfg = config.load(None, env={"CHATOPSD_SLACK_APP_TOKEN": "xapp-test-x"})
    assert cfg.platforms == [] and cfg.console_enabled


def test_example_config_is_valid_and_documents_every_key() -> None:
    example = ROOT / "config.example.toml"
    config.load(example, env={})
    text = example.read_text()

    def keys(model: type[config.Section], prefix: str) -> list[str]:
        return [f"{prefix}{name}" for name in model.model_fields]

    for section, model in [
        ("chatopsd", config.ChatopsdSection),
        ("console", config.ConsoleSection),
        ("slack", SlackSection),
        ("discord", DiscordSection),
        ("mattermost", MattermostSection),
        ("pagerduty", config.PagerDutySection),
        ("auth", config.AuthSection),
        ("ratelimit", config.RateLimitSection),
        ("incidents", config.IncidentsSection),
    ]:
        assert f"[{section}]" in text
        for key in keys(model, ""):
            assert f"{key} =" in text, f"{section}.{key} is not documented"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatopsd", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_check_config_cli(tmp_path: Path) -> None:
    ok = cli("check-config", str(ROOT / "config.example.toml"))
    assert ok.returncode == 0 and "OK" in ok.stdout
    bad = cli("check-config", str(write(tmp_path, "[discord]\ntoken = 'sekrit-token-1'\nx = 1\n")))
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith(
        "discord.x: unknown key (check the spelling against config.example.toml)"
    )
    assert "sekrit" not in bad.stderr + bad.stdout
    missing = cli("check-config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "file not found" in missing.stderr


def test_incident_destinations_are_checked(tmp_path: Path) -> None:
    good = write(
        tmp_path,
        "[slack]\napp_token = 'xapp-test-1'\nbot_token = 'xoxb-test-1'\n"
        "[discord]\ntoken = 'test-token-1'\n"
        "[incidents]\nrouting = { 'SEV-1' = ['slack:C1'] }\nmanagement_channel = 'discord:9'\n",
    )
    cfg = config.load(good, env={})
    assert cfg.incidents.routing == {"SEV-1": ["slack:C1"]} and cfg.incidents.pulse_minutes == 30
    for body, where in [
        ("routing = { 'SEV-1' = ['C1'] }", "incidents.routing"),
        ("routing = { 'SEV-5' = ['slack:C1'] }", "incidents.routing.SEV-5"),
        ("default_channels = ['slack:']", "incidents.default_channels"),
        ("pulse_minutes = 0", "incidents.pulse_minutes"),
    ]:
        with pytest.raises(config.ConfigError) as err:
            config.load(write(tmp_path, f"[incidents]\n{body}\n"), env={})
        assert where in str(err.value), str(err.value)


def test_mattermost_url_without_a_scheme_fails_check_config(tmp_path: Path) -> None:
    """Such a URL used to pass check-config, then `run` retried forever with
    InvalidUrlClientError."""
    for url in ("mattermost.example.com", "ftp://mattermost.example.com", "https://"):
        text = f"[mattermost]\nurl = '{url}'\ntoken = 'sekrit-token-2'\n"
        bad = cli("check-config", str(write(tmp_path, text)))
        assert bad.returncode == 2, url
        assert "mattermost.url: " in bad.stderr  # the key, named
        assert "must be the server's base URL with its scheme" in bad.stderr
        assert "sekrit" not in bad.stderr + bad.stdout
    good = "[mattermost]\nurl = 'http://127.0.0.1:8065'\ntoken = 'sekrit-token-2'\n"
    assert config.load(write(tmp_path, good), env={}).mattermost is not None


def test_status_source_name_is_optional(tmp_path: Path) -> None:
    """DESIGN.md: a source with only `kind` and `url` is valid; its name is the kind,
    numbered when the kind repeats."""
    text = (
        "[[status.sources]]\nkind = 'alertmanager'\nurl = 'http://127.0.0.1:9093'\n"
        "[[status.sources]]\nkind = 'alertmanager'\nurl = 'http://127.0.0.1:9094'\n"
        "[[status.sources]]\nkind = 'prometheus'\nurl = 'http://127.0.0.1:9090'\nquery = 'up'\n"
        "[[status.sources]]\nname = 'alertmanager-3'\nkind = 'http'\n"
        "url = 'http://127.0.0.1:8080'\nfield = 'status'\n"
        "[[status.sources]]\nkind = 'alertmanager'\nurl = 'http://127.0.0.1:9095'\n"
    )
    path = write(tmp_path, text)
    names = [s.name for s in config.load(path, env={}).status.sources]
    assert names == [
        "alertmanager",
        "alertmanager-2",
        "prometheus",
        "alertmanager-3",
        "alertmanager-4",
    ]
    ok = cli("check-config", str(path))
    assert ok.returncode == 0, ok.stderr
