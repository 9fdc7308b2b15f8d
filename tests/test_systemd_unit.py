"""The unit file: systemd's own analyser scores its sandbox and finds nothing to complain of."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel, SecretStr

from chatopsd import config

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "chatopsd.service"
# The score this unit reached; raise it only with a reason written next to the unit's change.
MAX_EXPOSURE = 1.1
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False)


def test_unit_has_the_required_settings() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "StateDirectory=chatopsd",
        "LoadCredential=slack_bot_token:",
        "LoadCredential=pagerduty_api_token:",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "RestartPreventExitStatus=78",  # a config that cannot work fails once, no restart loop
    ):
        assert re.search(rf"^{re.escape(line)}", text, re.M), line
    assert re.search(r"^WatchdogSec=\d+", text, re.M)


@needs_analyze
def test_security_exposure_does_not_regress() -> None:
    result = _analyze("security", "--offline=true", "--no-pager", str(UNIT))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    score, verdict = float(match.group(1)), match.group(2)
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}:\n{result.stdout}"
    assert verdict == "OK"
    # what the unit's comment and the README claim is what systemd says
    claimed = re.search(r"rates this unit (\d+\.\d+) (\w+)", UNIT.read_text())
    assert claimed and claimed.groups() == (match.group(1), verdict), claimed
    readme = (UNIT.parent.parent / "README.md").read_text()
    assert f"rates it **{match.group(1)} {verdict}**" in readme.replace("\n", " ")


@needs_analyze
def test_verify_is_silent(tmp_path: Path) -> None:
    # verify insists that ExecStart's binary exists: point it at this interpreter in a copy.
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={sys.executable}", UNIT.read_text(), flags=re.M)
    copy = tmp_path / "chatopsd.service"
    copy.write_text(text)
    result = _analyze("verify", "--no-pager", str(copy))
    assert result.returncode == 0
    assert (result.stdout + result.stderr).strip() == "", result.stdout + result.stderr


def _secret_fields(model: type[BaseModel], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every SecretStr field of the config model, at any depth (through optional sections,
    lists and unions), found here independently of config.py's own list."""
    for name, field in model.model_fields.items():
        pending: list[object] = [field.annotation]
        while pending:
            kind = pending.pop()
            if kind is SecretStr:
                yield (*path, name)
            elif isinstance(kind, type) and issubclass(kind, BaseModel):
                yield from _secret_fields(kind, (*path, name))
            else:
                pending.extend(get_args(kind))


def test_the_unit_loads_a_credential_for_every_token_key_the_config_knows() -> None:
    """A token key the unit does not load never reaches the service: its credential file is
    silently unused. The list comes from the model, so a new token key cannot be forgotten."""
    secrets = sorted(_secret_fields(config.Config))
    assert secrets, "the config model has no SecretStr field: this walk is broken"
    # a credential is named <section>_<key>: a secret deeper than a section's key has none
    assert all(len(path) == 2 for path in secrets), secrets
    expected = {"_".join(path) for path in secrets} | {config.DATABASE_CREDENTIAL}
    assert set(config.credential_names()) == expected
    loaded = dict(re.findall(r"^LoadCredential=([a-z_]+):(\S+)$", UNIT.read_text(), re.M))
    assert set(loaded) == expected
    for name, path in loaded.items():
        assert path == f"/etc/chatopsd/credentials/{name}", name
