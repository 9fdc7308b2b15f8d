"""Tamper evidence of the audit trail: blanking every hash is
tampering, a keyed (HMAC) chain cannot be recomputed without the key, a head hash from the
journal shows truncation, the daemon logs that head, and `chatopsd audit` prints no control
characters that chat users typed."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatopsd import cli, config
from chatopsd.app import App, Io
from chatopsd.core.ports import AuditEntry
from chatopsd.store.audit import SqlAuditLog, row_hash
from chatopsd.store.sqlite import SqliteDatabase
from tests.conftest import FakeClock, make_config

KEY = "PLANTED-audit-hmac-key-0123456789"
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def entry(i: int, actor_name: str = "Alice") -> AuditEntry:
    return AuditEntry(
        T0 + timedelta(seconds=i), "slack", "C1", None, "U1", actor_name, "message",
        f"!ic {i}", "ic", "ok", 1.0, f"E{i}", f"r{i}",
    )  # fmt: skip


async def fill(path: Path, n: int, key: bytes | None = None, name: str = "Alice") -> None:
    db = await SqliteDatabase.open(path)
    log = SqlAuditLog(db, key)
    for i in range(n):
        await log.append(entry(i, name))
    await db.close()


def cfg_file(tmp_path: Path, key: str | None = None) -> Path:
    path = tmp_path / "chatopsd.toml"
    extra = f'[audit]\nhmac_key = "{key}"\n' if key else ""
    path.write_text(f'[chatopsd]\nstate_db = "{tmp_path / "state.db"}"\n{extra}')
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = cli.main(list(args))
    out = capsys.readouterr()
    return rc, out.out + out.err


def tamper(path: Path, *statements: str) -> None:
    con = sqlite3.connect(path)
    con.execute("DROP TRIGGER audit_no_update")
    con.execute("DROP TRIGGER audit_no_delete")
    for sql in statements:
        con.execute(sql)
    con.commit()
    con.close()


def test_blanking_every_hash_after_an_edit_is_tampering(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(fill(tmp_path / "state.db", 5))
    tamper(
        tmp_path / "state.db",
        "UPDATE audit SET outcome = 'ok (edited)' WHERE id = 3",
        "UPDATE audit SET hash = NULL, prev_hash = NULL",
    )
    rc, out = run_cli(capsys, "audit", "verify", "--config", str(cfg_file(tmp_path)))
    assert rc == 1 and "row id 1" in out and "no hash" in out


def test_rows_from_before_the_chain_still_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a database from before migration 0005: rows without hashes, then the chain begins
    db = tmp_path / "state.db"
    asyncio.run(fill(db, 1))
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER audit_no_update")
    con.execute("UPDATE audit SET hash = NULL, prev_hash = NULL")
    # what migration 0020 records on such a database: the last row written without a hash
    con.execute("INSERT INTO audit_meta (key, value) VALUES ('legacy_max_id', '1')")
    con.commit()
    con.close()
    asyncio.run(fill(db, 3))
    rc, out = run_cli(capsys, "audit", "verify", "--config", str(cfg_file(tmp_path)))
    assert rc == 0 and "4 rows (1 older rows predate the chain)" in out


def test_keyed_chain_cannot_be_recomputed_without_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "state.db"
    asyncio.run(fill(db, 4, KEY.encode()))
    keyed = str(cfg_file(tmp_path, KEY))
    rc, out = run_cli(capsys, "audit", "verify", "--config", keyed)
    assert rc == 0 and "4 keyed" in out and KEY not in out
    # rewrite row 2 and recompute every hash after it as a plain (unkeyed) chain
    con = sqlite3.connect(db)
    head = con.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert head.startswith("hmac:")
    rows = con.execute(
        "SELECT id, at, platform, channel, thread, actor, actor_name, kind, text, command, "
        "outcome, duration_ms, event_id, ref, prev_hash, cause FROM audit ORDER BY id"
    ).fetchall()
    con.close()
    prev = rows[0][14]
    statements = []
    for r in rows:
        values = list(r[1:14])
        if r[0] == 2:
            values[9] = "ok, nothing to see"
        digest = row_hash(prev, values, r[15])
        statements.append(
            f"UPDATE audit SET outcome = '{values[9]}', prev_hash = '{prev}', hash = '{digest}' "
            f"WHERE id = {r[0]}"
        )
        prev = digest
    tamper(db, *statements)
    # the chain is keyed from row 1 on (audit_meta): an unkeyed rewrite is caught
    rc, out = run_cli(capsys, "audit", "verify", "--config", keyed)
    assert rc == 1 and "TAMPERED" in out and "row id 1" in out and "without the key" in out
    # a forger who also deletes that marker leaves a keyed configuration with no keyed row
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER audit_meta_no_delete")  # audit_meta is append-only too
    con.execute("DELETE FROM audit_meta WHERE key = 'keyed_from'")
    con.commit()
    con.close()
    rc, out = run_cli(capsys, "audit", "verify", "--config", keyed)
    assert rc == 1 and "NOT VERIFIED" in out and "none of the 4 rows" in out
    # and the head hash from the journal is gone from the chain
    rc, out = run_cli(capsys, "audit", "verify", "--config", keyed, "--head", head)
    assert rc == 1 and "TRUNCATED or rewritten" in out
    # and a keyed log is not "verified" by someone who lacks the key
    asyncio.run(fill(tmp_path / "other.db", 2, KEY.encode()))
    other = tmp_path / "other.toml"
    other.write_text(f'[chatopsd]\nstate_db = "{tmp_path / "other.db"}"\n')
    rc, out = run_cli(capsys, "audit", "verify", "--config", str(other))
    assert rc == 1 and "audit.hmac_key" in out


def test_the_key_comes_from_a_credential_and_is_never_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "audit_hmac_key").write_text(KEY + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    loaded = config.load(cfg_file(tmp_path))
    assert loaded.audit.hmac_key.get_secret_value() == KEY
    assert KEY in config.secrets_of(loaded)  # so logging redacts it


def test_truncation_shows_against_a_logged_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "state.db"
    asyncio.run(fill(db, 6))
    con = sqlite3.connect(db)
    head = con.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()[0]
    con.close()
    path = str(cfg_file(tmp_path))
    rc, out = run_cli(capsys, "audit", "verify", "--config", path, "--head", head)
    assert rc == 0, out
    tamper(db, "DELETE FROM audit WHERE id > 4")
    rc, out = run_cli(capsys, "audit", "verify", "--config", path)
    assert rc == 0  # the rows alone cannot show it...
    rc, out = run_cli(capsys, "audit", "verify", "--config", path, "--head", head)
    assert rc == 1 and "TRUNCATED" in out  # ...the head from the journal does


async def test_the_daemon_logs_the_head_at_shutdown(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(
        make_config(tmp_path), clock=clock, io=Io(stdin=io.StringIO(""), stdout=io.StringIO())
    )
    await app.start()
    assert "audit-head" in app.scheduler.jobs  # and hourly (audit.head_log_seconds)
    await app.audit.append(entry(1))
    with caplog.at_level(logging.INFO, logger="chatopsd"):
        await app.stop()
    con = sqlite3.connect(tmp_path / "state.db")
    head = con.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()[0]
    con.close()
    assert any(f"audit head: row 1 hash {head}" in r.getMessage() for r in caplog.records)


def test_audit_printing_strips_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = "mallory\x1b]0;pwned\x07\x1b[2J\x9b31m\u202e"
    asyncio.run(fill(tmp_path / "state.db", 1, name=evil))
    path = str(cfg_file(tmp_path))
    rc, out = run_cli(capsys, "audit", "--config", path)
    assert rc == 0 and "mallory" in out
    assert not any(ch in out for ch in "\x1b\x07\x9b\u202e")
    rc, out = run_cli(capsys, "audit", "--config", path, "--json")
    assert not any(ch in out for ch in "\x1b\x07\x9b\u202e")
    assert json.loads(out.splitlines()[0])["actor_name"] == evil  # escaped, not lost
