"""`audit_meta` cannot vouch for a forged log: with the HMAC key set, blanking every hash and
widening the legacy range over the whole log, moving or deleting the keyed marker, or
rewriting the chain without the key all make `chatopsd audit verify` fail, on SQLite and on
PostgreSQL alike. The attacker here has write access to the database: the append-only
triggers are dropped (SQLite) or disabled (PostgreSQL) first, as anyone editing it would."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatopsd import cli
from chatopsd.app import App, Io
from chatopsd.core.ports import AuditEntry
from chatopsd.store.audit import SqlAuditLog, row_hash
from chatopsd.store.backend import open_database
from chatopsd.store.db import Database
from tests.conftest import FakeClock, make_config
from tests.pg_cluster import BACKENDS

KEY = "PLANTED-audit-hmac-key-0123456789"
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ROWS = 6
_TRIGGERS = ("audit_no_update", "audit_no_delete", "audit_meta_no_update", "audit_meta_no_delete")


def entry(i: int) -> AuditEntry:
    return AuditEntry(
        T0 + timedelta(seconds=i), "slack", "C1", None, "U1", "Mallory", "message",
        f"!deploy production {i}", "deploy", "ok", 1.0, f"E{i}", f"r{i}",
    )  # fmt: skip


@dataclass
class Where:
    """One backend's database and the config that `chatopsd audit verify` reads."""

    url: str | None
    path: Path
    config: Path

    async def run(self, fn: Callable[[Database], Awaitable[None]]) -> None:
        db = await open_database(self.url, self.path)
        try:
            await fn(db)
        finally:
            await db.close()

    def fill(self, n: int = ROWS, key: str | None = KEY) -> None:
        async def go(db: Database) -> None:
            log = SqlAuditLog(db, key.encode() if key else None)
            for i in range(n):
                await log.append(entry(i))

        asyncio.run(self.run(go))

    def tamper(self, *statements: tuple[str, tuple[object, ...]]) -> None:
        """Lift the append-only guards, then run the forger's statements."""

        async def go(db: Database) -> None:
            if db.dialect == "sqlite":
                for name in _TRIGGERS:
                    await db.write(f"DROP TRIGGER {name}")
            else:
                await db.write("ALTER TABLE audit DISABLE TRIGGER USER")
                await db.write("ALTER TABLE audit_meta DISABLE TRIGGER USER")
            for sql, params in statements:
                await db.write(sql, params)

        asyncio.run(self.run(go))

    def rows(self) -> list[tuple[object, ...]]:
        found: list[tuple[object, ...]] = []

        async def go(db: Database) -> None:
            found.extend(
                tuple(r)
                for r in await db.fetchall(
                    "SELECT id, at, platform, channel, thread, actor, actor_name, kind, text, "
                    "command, outcome, duration_ms, event_id, ref, cause FROM audit ORDER BY id"
                )
            )

        asyncio.run(self.run(go))
        return found

    def verify(self, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
        rc = cli.main(["audit", "verify", "--config", str(self.config), *extra])
        out = capsys.readouterr()
        return rc, out.out + out.err


@pytest.fixture(params=BACKENDS)
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Where:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    path = tmp_path / "state.db"
    database = f'database = "{url}"\n' if url else ""
    config = tmp_path / "chatopsd.toml"
    config.write_text(f'[chatopsd]\nstate_db = "{path}"\n{database}[audit]\nhmac_key = "{KEY}"\n')
    return Where(url, path, config)


def _set_meta(key: str, value: int) -> list[tuple[str, tuple[object, ...]]]:
    return [
        ("DELETE FROM audit_meta WHERE key = $1", (key,)),
        ("INSERT INTO audit_meta (key, value) VALUES ($1, $2)", (key, str(value))),
    ]


def _blank_and_rewrite() -> list[tuple[str, tuple[object, ...]]]:
    """The attack as reported: every hash NULL, a row rewritten, the whole log 'legacy'."""
    return [
        ("UPDATE audit SET hash = NULL, prev_hash = NULL", ()),
        ("UPDATE audit SET outcome = 'denied', text = '!deploy staging' WHERE id = 3", ()),
        *_set_meta("legacy_max_id", ROWS),
    ]


def test_an_intact_keyed_log_verifies(where: Where, capsys: pytest.CaptureFixture[str]) -> None:
    where.fill()
    rc, out = where.verify(capsys)
    assert rc == 0 and f"audit log OK: {ROWS} rows, {ROWS} keyed" in out, out


def test_blanked_hashes_and_a_widened_legacy_range_fail(
    where: Where, capsys: pytest.CaptureFixture[str]
) -> None:
    where.fill()
    where.tamper(*_blank_and_rewrite())
    rc, out = where.verify(capsys)
    assert rc == 1 and "TAMPERED: row id 1" in out, out
    assert "no hash though the chain is keyed from row 1" in out


def test_the_same_with_the_keyed_marker_deleted_fails(
    where: Where, capsys: pytest.CaptureFixture[str]
) -> None:
    where.fill()
    where.tamper(*_blank_and_rewrite(), ("DELETE FROM audit_meta WHERE key = 'keyed_from'", ()))
    rc, out = where.verify(capsys)
    assert rc == 1 and "NOT VERIFIED" in out, out
    assert f"none of the {ROWS} rows, {ROWS} of them claiming to predate the chain" in out


def test_an_unkeyed_rewrite_with_the_marker_moved_past_the_end_fails(
    where: Where, capsys: pytest.CaptureFixture[str]
) -> None:
    where.fill()
    statements: list[tuple[str, tuple[object, ...]]] = []
    prev = "0" * 64
    for r in where.rows():
        values = list(r[1:14])
        if r[0] == 2:
            values[9] = "denied"
        digest = row_hash(prev, values, str(r[14]))
        statements.append(
            ("UPDATE audit SET outcome = $1, prev_hash = $2, hash = $3 WHERE id = $4",
             (values[9], prev, digest, r[0]))
        )  # fmt: skip
        prev = digest
    where.tamper(*statements, *_set_meta("keyed_from", ROWS + 1))
    rc, out = where.verify(capsys)
    assert rc == 1 and "NOT VERIFIED" in out and f"none of the {ROWS} rows is keyed" in out, out


def test_a_legacy_range_reaching_into_the_chain_fails(
    where: Where, capsys: pytest.CaptureFixture[str]
) -> None:
    where.fill()
    where.tamper(*_set_meta("legacy_max_id", ROWS))  # the hashes themselves untouched
    rc, out = where.verify(capsys)
    assert rc == 1 and "TAMPERED: row id 1" in out, out
    assert f"rows up to id {ROWS} predate the chain, but the chain begins at this row" in out


def test_blanking_the_first_rows_into_a_wider_legacy_range_fails(
    where: Where, capsys: pytest.CaptureFixture[str]
) -> None:
    where.fill()
    where.tamper(
        ("UPDATE audit SET hash = NULL, prev_hash = NULL WHERE id <= 3", ()),
        ("DELETE FROM audit_meta WHERE key = 'keyed_from'", ()),
        *_set_meta("legacy_max_id", 3),
    )
    rc, out = where.verify(capsys)
    assert rc == 1 and "TAMPERED: row id 4" in out and "previous-row hash" in out, out


def test_audit_meta_is_append_only(where: Where) -> None:
    where.fill()

    async def go(db: Database) -> None:
        for sql in (
            "UPDATE audit_meta SET value = '999' WHERE key = 'keyed_from'",
            "DELETE FROM audit_meta WHERE key = 'keyed_from'",
        ):
            with pytest.raises(Exception, match="append-only"):
                await db.write(sql)
        if db.dialect == "postgresql":
            for table in ("audit", "audit_meta"):
                with pytest.raises(Exception, match="append-only"):
                    await db.write(f"TRUNCATE {table}")
        row = await db.fetchone("SELECT value FROM audit_meta WHERE key = 'keyed_from'")
        assert row is not None and row[0] == "1"

    asyncio.run(where.run(go))


async def test_the_daemon_keys_an_unkeyed_chain_when_it_starts_with_a_key(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.db"
    config = tmp_path / "chatopsd.toml"
    config.write_text(f'[chatopsd]\nstate_db = "{path}"\n[audit]\nhmac_key = "{KEY}"\n')
    where = Where(None, path, config)
    await where.run(lambda db: _append_unkeyed(db, 3))
    # the key is configured, the daemon has not run with it: verify cannot vouch for the log
    rc, out = await asyncio.to_thread(where.verify, capsys)
    assert rc == 1 and "none of the 3 rows is keyed" in out and "has not run with this key" in out

    cfg = make_config(tmp_path, audit={"hmac_key": KEY})
    for _ in range(2):  # a restart adds no second marker row
        app = App(cfg, clock=clock, io=Io(stdin=io.StringIO(""), stdout=io.StringIO()))
        await app.start()
        await app.stop()
    rc, out = await asyncio.to_thread(where.verify, capsys)
    assert rc == 0 and "audit log OK: 4 rows, 1 keyed" in out, out


async def _append_unkeyed(db: Database, n: int) -> None:
    log = SqlAuditLog(db)
    for i in range(n):
        await log.append(entry(i))
