"""The audit trail: hash chain, append-only triggers, `chatopsd audit verify`, filters, JSONL."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatopsd import cli
from chatopsd.core.ports import AuditEntry
from chatopsd.store.audit import GENESIS, SqlAuditLog
from chatopsd.store.sqlite import SqliteDatabase

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def entry(
    i: int, actor: str = "alice", command: str = "ic", outcome: str = "ok", cause: str = ""
) -> AuditEntry:
    return AuditEntry(
        at=T0 + timedelta(seconds=i),
        platform="slack",
        channel="C1",
        thread=None if i % 2 else "t1",
        actor=actor,
        actor_name=actor.title(),
        kind="message",
        text=f"!{command} {i} “quoted” ünïcode",
        command=command,
        outcome=outcome,
        duration_ms=0.123 * i,
        event_id=f"E{i}",
        ref=f"r{i}",
        cause=cause,
    )


async def fill(path: Path, n: int = 20) -> None:
    db = await SqliteDatabase.open(path)
    log = SqlAuditLog(db)
    # concurrent appends, like commands handled at once: the chain must still hold
    await asyncio.gather(*(log.append(entry(i)) for i in range(n // 2)))
    for i in range(n // 2, n):
        await log.append(
            entry(
                i,
                actor="bob" if i % 3 else "carol",
                command="deploy" if i % 4 else "ic page",
                outcome="ok" if i % 5 else "denied",
                cause="" if i % 5 else "needs the role 'lead'",
            )
        )
    await db.close()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    db_path = tmp_path / "state.db"
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text(f'[chatopsd]\nstate_db = "{db_path}"\n')
    asyncio.run(fill(db_path))
    return db_path, cfg


def verify(cfg: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = cli.main(["audit", "verify", "--config", str(cfg)])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_intact_log_verifies(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = verify(setup[1], capsys)
    assert rc == 0, out
    assert "audit log OK: 20 rows" in out


def test_rows_are_append_only_in_the_database(setup: tuple[Path, Path]) -> None:
    con = sqlite3.connect(setup[0])
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE audit SET outcome = 'ok' WHERE id = 3")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM audit WHERE id = 3")
    con.close()


def _tamper(path: Path, sql: str) -> None:
    con = sqlite3.connect(path)
    con.execute("DROP TRIGGER audit_no_update")  # what someone editing the file would do
    con.execute("DROP TRIGGER audit_no_delete")
    con.execute(sql)
    con.commit()
    con.close()


def test_verify_detects_an_edited_row(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _tamper(setup[0], "UPDATE audit SET outcome = 'ok (edited)' WHERE id = 17")
    rc, out = verify(setup[1], capsys)
    assert rc == 1
    assert "row id 17" in out and "edited" in out


def test_verify_detects_an_edited_row_with_its_hash_recomputed(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from chatopsd.store.audit import row_hash

    con = sqlite3.connect(setup[0])
    row = con.execute(
        "SELECT at, platform, channel, thread, actor, actor_name, kind, text, command, "
        "outcome, duration_ms, event_id, ref, prev_hash, cause FROM audit WHERE id = 5"
    ).fetchone()
    con.close()
    forged = (*row[:9], "ok, nothing to see", *row[10:13])
    _tamper(
        setup[0],
        f"UPDATE audit SET outcome = 'ok, nothing to see', "
        f"hash = '{row_hash(row[13], forged, row[14])}' WHERE id = 5",
    )
    rc, out = verify(setup[1], capsys)
    assert rc == 1
    assert "row id 6" in out  # the next row no longer points at it


def test_verify_detects_a_deleted_row(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _tamper(setup[0], "DELETE FROM audit WHERE id = 9")
    rc, out = verify(setup[1], capsys)
    assert rc == 1 and "row id 10" in out and "deleted" in out


def test_verify_detects_deleting_the_first_rows(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _tamper(setup[0], "DELETE FROM audit WHERE id <= 2")
    rc, out = verify(setup[1], capsys)
    assert rc == 1 and "row id 3" in out


def test_chain_continues_across_reopen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db_path = tmp_path / "state.db"
    asyncio.run(fill(db_path, 6))
    asyncio.run(fill(db_path, 6))  # a restart: the new log picks up the head
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[chatopsd]\nstate_db = "{db_path}"\n')
    rc, out = verify(cfg, capsys)
    assert rc == 0 and "12 rows" in out
    con = sqlite3.connect(db_path)
    first = con.execute("SELECT prev_hash FROM audit ORDER BY id LIMIT 1").fetchone()[0]
    con.close()
    assert first == GENESIS


def test_filters_and_json_lines(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(setup[1])

    def rows(*extra: str) -> list[dict[str, object]]:
        assert cli.main(["audit", "--config", cfg, "--json", *extra]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    everything = rows()
    assert len(everything) == 20
    assert everything[0]["text"] == "!ic 0 “quoted” ünïcode"
    assert {r["actor"] for r in rows("--actor", "bob")} == {"bob"}
    assert {r["actor"] for r in rows("--actor", "Carol")} == {"carol"}  # by display name
    assert {r["command"] for r in rows("--command", "ic")} == {"ic", "ic page"}
    assert {r["command"] for r in rows("--command", "ic page")} == {"ic page"}
    denied = rows("--outcome", "denied")
    assert denied and all(r["outcome"] == "denied" for r in denied)
    assert rows("--cause", "role 'lead'") == denied  # text: found in the cause
    assert rows("--actor", "bob", "--command", "deploy", "--outcome", "denied") == [
        r for r in denied if r["actor"] == "bob" and r["command"] == "deploy"
    ]
    assert cli.main(["audit", "--config", cfg, "--actor", "bob"]) == 0
    assert "Bob" in capsys.readouterr().out


def test_an_unknown_outcome_is_refused_and_an_empty_result_says_so(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(setup[1])
    with pytest.raises(SystemExit) as refused:  # a typo must not read as "no such rows"
        cli.main(["audit", "--config", cfg, "--outcome", "faild"])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "--outcome: invalid choice: 'faild'" in err
    assert "'ok', 'failed', 'user_error', 'denied', 'rate_limited', 'error', 'pending'" in err
    assert cli.main(["audit", "--config", cfg, "--actor", "nobody-here", "--outcome", "ok"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "no audit rows match --actor nobody-here --outcome ok\n"
