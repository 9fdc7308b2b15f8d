"""`chatopsd migrate-state`: a single-host SQLite state moved into a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from chatopsd import cli
from chatopsd.core.ports import AuditEntry, Home
from chatopsd.features.incidents import rules as core
from chatopsd.features.incidents.rules import TimelineEntry
from chatopsd.features.incidents.store import SqlIncidentStore
from chatopsd.features.status.stalking_rules import Stalker
from chatopsd.features.status.store import SqlStalkerStore
from chatopsd.store.audit import SqlAuditLog
from chatopsd.store.db import Database
from chatopsd.store.events import SqlEventLedger
from chatopsd.store.kv import SqlKeyValue
from chatopsd.store.postgres import PgDatabase
from chatopsd.store.sqlite import SqliteDatabase
from tests import daemon_helpers
from tests.conftest import FakeClock
from tests.pg_cluster import SUPERUSER, Cluster

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def _fill(db: Database, clock: FakeClock) -> str:
    ledger = SqlEventLedger(db, clock)
    for i in range(50):
        await ledger.claim("slack", f"E{i}")
    audit = SqlAuditLog(db)
    for i in range(30):
        at = T0 + timedelta(seconds=i)
        await audit.append(
            AuditEntry(
                at,
                "slack",
                "C1",
                None,
                "U1",
                "ada",
                "message",
                f"!ic {i}",
                "ic",
                "ok",
                0.5,
                f"E{i}",
                f"r{i}",
            )
        )
    store = SqlIncidentStore(db)

    def make(incident_id: str) -> tuple[core.Incident, TimelineEntry]:
        inc = core.declare(incident_id, "Payments", 1, T0, "ada", "slack", "C1")
        return inc, TimelineEntry(T0, "ada", "slack", "C1", "declared", "declared")

    inc = await store.create(2026, make)
    await store.save(
        core.transition(inc, "ack", T0), TimelineEntry(T0, "bo", "s", "c", "acknowledged", "ack")
    )
    await store.bind_home(inc.id, Home("slack", "CINC", None))
    await SqlStalkerStore(db).put(Stalker("slack", "C1", "", 30, "fp", "NORMAL", 1, 1, "ada"))
    await SqlKeyValue(db).put("mattermost.cursor", "1700")
    return inc.id


def test_migrate_state_copies_everything_and_refuses_a_second_time(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.db"

    async def setup() -> tuple[str, str]:
        db = await SqliteDatabase.open(path)
        try:
            inc_id = await _fill(db, FakeClock())
            head = (await SqlAuditLog(db).verify()).head
        finally:
            await db.close()
        return inc_id, head

    inc_id, head = asyncio.run(setup())
    assert cli.main(["migrate-state", "--from", f"sqlite:{path}", "--to", pg_url]) == 0
    out = capsys.readouterr().out
    assert "audit: 30 rows" in out and "events: 50 rows" in out

    async def check() -> None:
        pg = await PgDatabase.open(pg_url)
        try:
            verdict = await SqlAuditLog(pg).verify()
            assert verdict.ok and verdict.rows == 30 and verdict.head == head
            store = SqlIncidentStore(pg)
            got = await store.get(inc_id)
            assert got is not None and got.state is core.State.ACKNOWLEDGED
            assert [e.kind for e in await store.timeline(inc_id)] == ["declared", "acknowledged"]
            assert await store.home(inc_id) == Home("slack", "CINC", None)
            assert not await SqlEventLedger(pg, FakeClock()).claim("slack", "E7")
            assert await SqlKeyValue(pg).get("mattermost.cursor") == "1700"
            assert [s.channel for s in await SqlStalkerStore(pg).all()] == ["C1"]
            # new rows get ids after the copied ones (identity moved past them)
            await SqlAuditLog(pg).append(
                AuditEntry(
                    T0,
                    "slack",
                    "C1",
                    None,
                    "U1",
                    "ada",
                    "message",
                    "!ic",
                    "ic",
                    "ok",
                    0.5,
                    "E99",
                    "r99",
                )
            )
            assert (await SqlAuditLog(pg).verify()).ok
        finally:
            await pg.close()

    asyncio.run(check())
    assert cli.main(["migrate-state", "--from", f"sqlite:{path}", "--to", pg_url]) == 1
    assert "not empty" in capsys.readouterr().err
    assert cli.main(["migrate-state", "--from", f"sqlite:{tmp_path}/nope.db", "--to", pg_url]) == 1


def test_migrate_state_refuses_while_the_single_host_daemon_holds_the_file(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy taken while the daemon writes misses what it writes meanwhile. Refused while
    the daemon runs, idle or not; a daemon killed with -9 holds nothing any more."""
    path = tmp_path / "state.db"
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text(f'[chatopsd]\nstate_db = "{path}"\n[console]\nformat = "jsonl"\n')
    daemon = daemon_helpers.start(cfg)
    try:
        assert daemon.stdin is not None and daemon.stdout is not None
        daemon.stdin.write('{"text": "!help", "event_id": "e1"}\n')
        daemon.stdin.flush()
        daemon_helpers.read_json(daemon.stdout)  # answered: the database is open
        args = ["migrate-state", "--from", f"sqlite:{path}", "--to", pg_url]
        assert cli.main(args) == 1
        err = capsys.readouterr().err
        assert f"migrate-state: {path} is open in another process" in err
        assert "stop it first (systemctl stop chatopsd)" in err
    finally:
        daemon.kill()  # as kill -9 would: no clean close, its WAL left behind
        daemon.wait(20)
    assert path.with_name("state.db-wal").exists()
    assert cli.main(args) == 0, capsys.readouterr().err
    assert "audit: 1 rows" in capsys.readouterr().out  # what the daemon wrote is copied


def test_a_refused_postgresql_login_names_the_credential_and_pgpassword(
    tmp_path: Path,
    pg_cluster: Cluster,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The test cluster trusts every local login; one role is made to need a password."""
    role = "chatopsd_needs_password"
    hba = pg_cluster.datadir / "data" / "pg_hba.conf"
    if f" {role} " not in hba.read_text():
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())

    async def make_role() -> None:
        admin = await asyncpg.connect(pg_url)
        try:
            exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            if not exists:
                await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'placeholder-pw'")
            await admin.execute("SELECT pg_reload_conf()")
        finally:
            await admin.close()

    asyncio.run(make_role())
    path = tmp_path / "state.db"
    asyncio.run(_make(path))
    target = pg_url.replace(f"//{SUPERUSER}@", f"//{role}@")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    for password, said in ((None, "no password was given"), ("wrong", "was refused")):
        if password is not None:
            monkeypatch.setenv("PGPASSWORD", password)
        assert cli.main(["migrate-state", "--from", f"sqlite:{path}", "--to", target]) == 1
        err = capsys.readouterr().err
        assert "password authentication failed" in err and said in err
        assert "chatopsd_database_password" in err and "PGPASSWORD" in err
        assert "wrong" not in err and "placeholder-pw" not in err


async def _make(path: Path) -> None:
    await (await SqliteDatabase.open(path)).close()
