"""The store's SQL dialect, run on SQLite and on a real PostgreSQL: `$n` placeholders (a value
used twice, quotes and comments left alone), the refusal of a database call inside that
database's own transaction callback, and LIKE finding the same rows on both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatopsd.core.ports import AuditEntry
from chatopsd.store.audit import SqlAuditLog
from chatopsd.store.db import (
    CallInsideTransaction,
    Database,
    PlaceholderError,
    Tx,
    like_escape,
    like_sql,
    sqlite_sql,
)
from tests.pg_cluster import BACKENDS, open_backend
from tests.test_parsers_linear import _cpu

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with open_backend(request, tmp_path) as database:
        yield database


# -- `$n` placeholders -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1", "SELECT 1"),
        ("SELECT a FROM t WHERE a = $1", "SELECT a FROM t WHERE a = ?1"),
        (
            "UPDATE t SET a = $2 WHERE b = $1 OR c = $1",
            "UPDATE t SET a = ?2 WHERE b = ?1 OR c = ?1",
        ),
        ("VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)", "VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"),
        # quotes and comments are copied as they are, whatever they hold
        ("SELECT 'what? $1' || $1", "SELECT 'what? $1' || ?1"),
        ("SELECT 'it''s $2 ?' || $1", "SELECT 'it''s $2 ?' || ?1"),
        ('SELECT "odd?$1" FROM t WHERE a = $1', 'SELECT "odd?$1" FROM t WHERE a = ?1'),
        ("SELECT $1 -- is it $2? yes\n, $2", "SELECT ?1 -- is it $2? yes\n, ?2"),
        ("SELECT $1 /* $3 ? '\n */, $2", "SELECT ?1 /* $3 ? '\n */, ?2"),
        ("SELECT $1 -- last line ? $9", "SELECT ?1 -- last line ? $9"),
        (
            "SELECT x FROM t WHERE y LIKE $1 ESCAPE '\\'",
            "SELECT x FROM t WHERE y LIKE ?1 ESCAPE '\\'",
        ),
    ],
)
def test_placeholders_become_sqlites_numbered_ones(sql: str, expected: str) -> None:
    assert sqlite_sql(sql) == expected


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT a FROM t WHERE a = ?", "a `\\?` placeholder"),
        ("SELECT a FROM t WHERE a = $1 AND b = ?", "a `\\?` placeholder"),
        ("SELECT $$ x $$", "`\\$` not followed by a parameter number"),
        ("SELECT $name", "`\\$` not followed by a parameter number"),
        ("SELECT $0", "`\\$` not followed by a parameter number"),
        ("SELECT $1, $3", "parameter \\$2 never used"),
        ("SELECT $3", "parameter \\$1, \\$2 never used"),
        ("SELECT 'open $1", "unterminated '…'"),
        ("SELECT 'it''s", "unterminated '…'"),
        ('SELECT "open', 'unterminated "…"'),
        ("SELECT $1 /* open", "unterminated comment"),
    ],
)
def test_sql_that_breaks_the_placeholder_rules_is_refused(sql: str, why: str) -> None:
    with pytest.raises(PlaceholderError, match=why) as refused:
        sqlite_sql(sql)
    assert "SELECT" in str(refused.value)  # the statement is named, so it can be found


def test_the_rewrite_is_linear_on_long_statements() -> None:
    """One pass, whatever the shape (the statements are ours, but a long IN list or VALUES
    row is normal): 16 times the text costs about 16 times the CPU, not 256 times."""
    rewrite = sqlite_sql.__wrapped__  # not the cached one

    def refused_or_rewritten(sql: str) -> object:
        try:
            return rewrite(sql)
        except PlaceholderError as exc:
            return exc

    shapes = {
        "placeholders": lambda n: "SELECT " + ", ".join(f"${i}" for i in range(1, n // 6)),
        "one value again and again": lambda n: "SELECT " + "$1, " * (n // 4) + "$1",
        "doubled quotes": lambda n: "SELECT '" + "''" * (n // 2) + "' || $1",
        "unterminated doubled quotes": lambda n: "SELECT '" + "''" * (n // 2),
        "literals": lambda n: "SELECT " + "'a?' || " * (n // 8) + "$1",
        "comments": lambda n: "SELECT $1 " + "-- ? $2\n" * (n // 8),
        "block comments": lambda n: "SELECT $1 " + "/* ' */" * (n // 7),
        "unterminated block comments": lambda n: "SELECT $1 " + "/* " * (n // 3),
        "dollar runs": lambda n: "SELECT " + "$" * n,
    }
    for shape, make in shapes.items():
        small, large = make(2_500), make(40_000)
        t_small, t_large = _cpu(refused_or_rewritten, small), _cpu(refused_or_rewritten, large)
        assert t_large < 0.25, f"{shape}: {len(large):,} characters took {t_large * 1e3:.0f} ms"
        assert t_large <= 40 * t_small + 0.003, (
            f"{shape}: {len(small):,} chars {t_small * 1e3:.2f} ms, "
            f"{len(large):,} chars {t_large * 1e3:.2f} ms"
        )


async def test_a_value_is_used_twice_and_quoted_text_never_counts(db: Database) -> None:
    await db.write("INSERT INTO kv (key, value, updated) VALUES ($1, $1, $2)", ("same?", 1.0))
    await db.write_many(
        [
            ("INSERT INTO kv (key, value, updated) VALUES ($2, 'it''s $1?', $1)", (2.0, "quoted")),
            ("INSERT INTO kv (key, value, updated) VALUES ($2, $1, $3)", ("v", "reversed", 3.0)),
        ]
    )
    rows = await db.fetchall(
        "SELECT key, value FROM kv WHERE key = $1 OR value = $1 OR value = 'it''s $1?' "
        "-- a comment with a ? and a $2\n ORDER BY updated",
        ("same?",),
    )
    assert [tuple(r) for r in rows] == [("same?", "same?"), ("quoted", "it's $1?")]
    row = await db.fetchone("SELECT key FROM kv WHERE value = $1 AND updated = $2", ("v", 3.0))
    assert row is not None and row[0] == "reversed"

    async def in_transaction(tx: Tx) -> int:
        changed = await tx.execute(
            "UPDATE kv SET value = $1 WHERE key = $1 OR key = $2", ("reversed", "quoted")
        )
        found = await tx.fetchall("SELECT value FROM kv WHERE value = $1", ("reversed",))
        return changed + 10 * len(found)

    assert await db.transaction(in_transaction) == 2 + 10 * 2
    assert await db.execute("DELETE FROM kv WHERE value = $1 OR key = $1", ("same?",)) == 1


async def test_a_question_mark_placeholder_is_refused_on_both(db: Database) -> None:
    """The old unnumbered style fails at once, on either database (SQLite would otherwise
    bind it in order; PostgreSQL refuses it as a syntax error)."""
    with pytest.raises(Exception, match=r"placeholder|syntax error") as refused:
        await db.fetchone("SELECT key FROM kv WHERE key = ?", ("x",))
    if db.dialect == "sqlite":
        assert isinstance(refused.value, PlaceholderError)


# -- no database call inside the database's own transaction ------------------------------


async def test_a_database_call_inside_its_own_transaction_is_refused(db: Database) -> None:
    """Each `db.*` call inside a `transaction()` callback fails at once with a clear error
    (on SQLite it used to wait for the writer that runs the callback: a silent deadlock;
    on PostgreSQL it ran outside the transaction). The callback goes on through its `tx`,
    and the transaction commits."""
    insert = "INSERT INTO kv (key, value, updated) VALUES ($1, $2, $3)"
    calls = {
        "write": lambda: db.write(insert, ("w", "w", 1.0)),
        "write_many": lambda: db.write_many([(insert, ("m", "m", 1.0))]),
        "execute": lambda: db.execute(insert, ("e", "e", 1.0)),
        "fetchone": lambda: db.fetchone("SELECT 1"),
        "fetchall": lambda: db.fetchall("SELECT 1"),
        "transaction": lambda: db.transaction(lambda tx: tx.fetchone("SELECT 1")),
    }
    refused: list[str] = []
    go_on = asyncio.Event()

    async def after_commit() -> object:
        await go_on.wait()  # started inside the callback, runs once it has ended
        return await db.fetchone("SELECT value FROM kv WHERE key = $1", ("in tx",))

    later: asyncio.Task[object] | None = None

    async def callback(tx: Tx) -> str:
        nonlocal later
        await tx.execute(insert, ("in tx", "kept", 1.0))
        for name, call in calls.items():
            with pytest.raises(CallInsideTransaction, match=rf"db\.{name}\(\).*tx") as exc:
                # (a deadlock fails here, instead of hanging the writer and the test)
                await asyncio.wait_for(call(), 10)
            refused.append(name)
            assert "transaction() callback" in str(exc.value)
        later = asyncio.get_running_loop().create_task(after_commit())
        return "done"

    assert await db.transaction(callback) == "done"
    assert refused == list(calls)
    rows = await db.fetchall("SELECT key, value FROM kv ORDER BY key")
    assert [tuple(r) for r in rows] == [("in tx", "kept")]
    go_on.set()
    assert later is not None
    row = await later
    assert row is not None and row[0] == "kept"


async def test_a_refused_call_that_is_not_caught_rolls_the_transaction_back(
    db: Database,
) -> None:
    async def callback(tx: Tx) -> None:
        await tx.execute("INSERT INTO kv (key, value, updated) VALUES ('k', 'v', 1)")
        await asyncio.wait_for(
            db.write("INSERT INTO kv (key, value, updated) VALUES ('k2', 'v', 1)"), 10
        )

    with pytest.raises(CallInsideTransaction):
        await db.transaction(callback)
    assert await db.fetchall("SELECT key FROM kv") == []
    await db.write("INSERT INTO kv (key, value, updated) VALUES ('after', 'v', 1)")
    assert [r[0] for r in await db.fetchall("SELECT key FROM kv")] == ["after"]


# -- LIKE: the same rows on both databases -----------------------------------------------

TEXTS = [
    "PagerDuty refused",
    "pagerduty timeout",
    "PAGERDUTY down",
    "Élan",
    "élan",
    "straße",
    "STRASSE",
    "100% sure",
    "100x sure",
    "a_b",
    "axb",
    "back\\slash",
]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("pagerduty", ["PagerDuty refused", "pagerduty timeout", "PAGERDUTY down"]),
        ("PagerDuty", ["PagerDuty refused", "pagerduty timeout", "PAGERDUTY down"]),
        ("élan", ["élan"]),  # outside ASCII a letter matches only itself
        ("Élan", ["Élan"]),
        ("straße", ["straße"]),
        ("100%", ["100% sure"]),  # % and _ in the text are matched as they are
        ("a_b", ["a_b"]),
        ("\\", ["back\\slash"]),
        ("sure", ["100% sure", "100x sure"]),
    ],
)
async def test_like_finds_the_same_rows_on_both_databases(
    db: Database, text: str, found: list[str]
) -> None:
    await db.write("CREATE TABLE like_probe (n INTEGER NOT NULL, t TEXT NOT NULL)")
    await db.write_many(
        [("INSERT INTO like_probe (n, t) VALUES ($1, $2)", (n, t)) for n, t in enumerate(TEXTS)]
    )
    rows = await db.fetchall(
        f"SELECT t FROM like_probe WHERE {like_sql('t', '$1', db.dialect)} ORDER BY n",
        (f"%{like_escape(text)}%",),
    )
    assert [r[0] for r in rows] == found


async def test_audit_query_matches_the_same_rows_on_both_databases(db: Database) -> None:
    """`chatopsd audit --cause/--command/--outcome` go through like_sql: ASCII letters in
    either case, everything else exactly, on SQLite and PostgreSQL alike."""
    audit = SqlAuditLog(db)
    base = AuditEntry(
        T0,
        "slack",
        "C1",
        None,
        "U1",
        "ada",
        "message",
        "!ic page",
        "ic page",
        "failed",
        1.0,
        "Ev",
        "r",
    )
    for i, (command, outcome, cause) in enumerate(
        [
            ("ic page", "failed", "PagerDuty refused"),
            ("IC Page", "failed", "pagerduty timeout"),
            ("ic who", "ok", "Élan"),
            ("status", "denied: role", ""),
            ("ic_page", "failed", "100% sure"),
        ]
    ):
        entry = replace(base, at=T0 + timedelta(seconds=i), command=command, outcome=outcome)
        await audit.append(replace(entry, cause=cause, event_id=f"Ev{i}"))

    async def events(**query: str) -> list[str]:
        return [e.event_id for e in await audit.query(**query)]  # type: ignore[arg-type]

    assert await events(cause="PAGERDUTY") == ["Ev0", "Ev1"]
    assert await events(cause="élan") == []
    assert await events(cause="Élan") == ["Ev2"]
    assert await events(cause="100%") == ["Ev4"]
    assert await events(command="ic") == ["Ev0", "Ev1", "Ev2"]  # a prefix: "ic …"
    assert await events(command="IC") == ["Ev0", "Ev1", "Ev2"]
    assert await events(command="ic page") == ["Ev0"]  # the whole command: exactly
    assert await events(outcome="denied") == ["Ev3"]
