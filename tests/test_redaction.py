"""A token planted in the config never reaches a log line, an error message or a traceback."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatopsd import cli, config, logs
from chatopsd.core.errors import ConfigError

BOT = "xoxb-test-0000-PLANTEDSECRETBOT"
APP = "xapp-test-0000-PLANTEDSECRETAPP"
PD = "pd-test-PLANTEDSECRETPD"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "chatopsd.toml"
    path.write_text(body)
    return path


def planted(tmp_path: Path) -> config.Config:
    return config.load(
        write(
            tmp_path,
            f'[slack]\napp_token = "{APP}"\nbot_token = "{BOT}"\n'
            f'[pagerduty]\napi_token = "{PD}"\nfrom_email = "a@example.com"\n'
            'service_id = "PSVC"\nic_schedules = ["PSCHED"]\n',
        ),
        env={},
    )


def boom(token: str) -> None:
    # What a library might do: put the token in the exception and in a chained cause.
    try:
        raise ValueError(f"auth header Bearer {token} rejected")
    except ValueError as exc:
        raise RuntimeError(f"request with {token!r} failed") from exc


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_token_never_in_log_lines_or_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    cfg = planted(tmp_path)
    logs.setup("debug", fmt, config.secrets_of(cfg))
    log = logging.getLogger("chatopsd.test")
    log.info("connecting with %s and %s", BOT, APP)
    log.warning(f"f-string with {PD}")
    log.debug("as a dict %s", {"Authorization": f"Token token={PD}"})
    try:
        boom(BOT)
    except RuntimeError:
        log.exception("call failed")
    logging.getLogger("slack_sdk").error("library line with %s", APP)
    err = capsys.readouterr().err
    assert "call failed" in err and "Traceback" in err and "ValueError" in err
    assert err.count("[redacted]") >= 7
    for token in (BOT, APP, PD):
        assert token not in err
        assert token[8:] not in err  # not even most of it


def test_tokens_from_env_and_credentials_are_redacted_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "slack_bot_token").write_text(BOT + "\n")
    path = write(tmp_path, '[slack]\napp_token = "xapp-file"\nbot_token = "xoxb-file"\n')
    cfg = config.load(
        path, env={"CREDENTIALS_DIRECTORY": str(creds), "CHATOPSD_SLACK_APP_TOKEN": APP}
    )
    assert cfg.slack is not None
    assert cfg.slack.bot_token.get_secret_value() == BOT  # credential beats file
    assert cfg.slack.app_token.get_secret_value() == APP  # env beats file
    logs.setup("info", "plain", config.secrets_of(cfg))
    logging.getLogger("chatopsd").error("%s %s", BOT, APP)
    err = capsys.readouterr().err
    assert BOT not in err and APP not in err


def test_repr_of_config_hides_tokens(tmp_path: Path) -> None:
    cfg = planted(tmp_path)
    for text in (repr(cfg), str(cfg), cfg.model_dump_json()):
        for token in (BOT, APP, PD):
            assert token not in text


@pytest.mark.parametrize(
    "body",
    [
        # wrong prefix: the validator rejects the value
        f'[slack]\napp_token = "{APP}"\nbot_token = "xoxp-{BOT}"\n',
        # wrong type: pydantic would normally echo the input
        f'[slack]\napp_token = ["{APP}"]\nbot_token = "{BOT}"\n',
        # unknown key next to a token
        f'[slack]\napp_token = "{APP}"\nbot_token = "{BOT}"\nbot_tokn = "{BOT}"\n',
        # a token where a number belongs
        f'[pagerduty]\napi_token = "{PD}"\nfrom_email = "a@example.com"\nservice_id = "S"\n'
        f'ic_schedules = ["X"]\nrefresh_seconds = "{PD}"\n',
    ],
)
def test_validation_errors_never_echo_the_value(
    tmp_path: Path, body: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        config.load(path, env={})
    text = str(info.value)
    assert "slack." in text or "pagerduty." in text  # it names the key
    assert cli.main(["check-config", str(path)]) == 2
    out = capsys.readouterr()
    for token in (BOT, APP, PD):
        assert token not in text
        assert token not in out.out + out.err
        # nor does the traceback someone might log (pydantic's error is suppressed context)
        assert token not in "".join(traceback.format_exception(info.value))
