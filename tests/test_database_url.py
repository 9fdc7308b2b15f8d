"""The PostgreSQL URL never carries a password: the config and `migrate-state` refuse one in
either place libpq reads it (`user:password@`, `?password=`), naming the key and where the
password goes instead, without repeating it; and whatever shows a URL (`ctl health`, logs,
errors) shows it without one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chatopsd import config
from chatopsd.core.errors import ConfigError
from chatopsd.store.postgres import PgDatabase, redact

ROOT = Path(__file__).resolve().parent.parent
SECRET = "pw-not-for-eyes-4711"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://chatopsd@db.example.internal:5432/chatopsd?password={SECRET}",
        f"postgresql://chatopsd@db/chatopsd?sslmode=verify-full&PassWord={SECRET}",
        f"postgresql://chatopsd@db/chatopsd?%70assword={SECRET}",  # percent-encoded name
        f"postgres://chatopsd:{SECRET}@db/chatopsd",
    ],
)
def test_a_password_in_the_database_url_is_refused_by_key_never_echoed(
    tmp_path: Path, url: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[chatopsd]\ndatabase = "{url}"\n')
    with pytest.raises(ConfigError) as caught:
        config.load(path, env={})
    said = str(caught.value)
    assert "chatopsd.database" in said
    assert "$CREDENTIALS_DIRECTORY/chatopsd_database_password" in said and "PGPASSWORD" in said
    assert SECRET not in said and "db.example.internal" not in said


def test_libpq_parameters_without_a_password_are_accepted(tmp_path: Path) -> None:
    url = "postgresql://chatopsd@db/chatopsd?sslmode=verify-full&passfile=/etc/chatopsd/pgpass"
    path = tmp_path / "c.toml"
    path.write_text(f'[chatopsd]\ndatabase = "{url}"\n')
    assert config.load(path, env={}).chatopsd.database == url


def test_redact_drops_the_password_wherever_it_sits() -> None:
    assert redact(f"postgresql://u:{SECRET}@h:5/db?sslmode=require") == (
        "postgresql://u@h:5/db?sslmode=require"
    )
    assert redact(f"postgresql://u@h/db?sslmode=require&password={SECRET}&x=1") == (
        "postgresql://u@h/db?sslmode=require&x=1"
    )
    assert SECRET not in redact(f"postgresql://u@h/db?pass%77ord={SECRET}")


async def test_health_shows_the_database_without_a_password(pg_url: str) -> None:
    # The config refuses such a URL; the database layer still never shows one it was given
    # (the test cluster trusts every connection, so the password is simply not needed).
    db = await PgDatabase.open(f"{pg_url}?password={SECRET}")
    try:
        assert SECRET not in db.describe() and pg_url in db.describe()
    finally:
        await db.close()


def test_migrate_state_refuses_a_password_in_its_target(tmp_path: Path) -> None:
    source = tmp_path / "state.db"
    source.write_bytes(b"")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "chatopsd",
            "migrate-state",
            "--from",
            f"sqlite:{source}",
            "--to",
            f"postgresql://chatopsd@127.0.0.1:1/chatopsd?password={SECRET}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--to must not hold a password" in done.stderr
    assert "chatopsd_database_password" in done.stderr
    assert SECRET not in done.stderr + done.stdout
