"""The SQLite and the PostgreSQL schema, after every migration, are the same schema: the same
tables, columns (in order), types, NOT NULL, defaults and generated keys, primary keys,
unique constraints, indexes (columns, uniqueness, partial or not), foreign keys and triggers.

The twin check (every SQLite migration has a PostgreSQL file of the same name) says nothing of
what the files do: a column forgotten in one twin, INTEGER where the other has BIGINT's range,
or an index only one backend has passes it. This reads both databases' own catalogues.

Types are compared as the stores use them: SQLite INTEGER is 64-bit, so PostgreSQL BIGINT
(INTEGER and SMALLINT are narrower: a difference); REAL is an 8-byte float, so DOUBLE
PRECISION (PostgreSQL's REAL is 4 bytes); TEXT is TEXT. A column of a primary key counts as
NOT NULL on both (PostgreSQL enforces it; SQLite's rowid tables famously do not, unless it is
said, and the stores never write one).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatopsd.store.db import Database
from chatopsd.store.postgres import PgDatabase
from chatopsd.store.sqlite import SqliteDatabase


@dataclass(frozen=True, order=True)
class Column:
    name: str
    type: str  # integer | real | text | blob | boolean | … (the mapped name)
    not_null: bool
    default: str | None  # normalised SQL text
    generated: bool  # a key the database numbers itself


@dataclass(frozen=True, order=True)
class Index:
    name: str
    unique: bool
    columns: tuple[str, ...]
    where: str | None  # a partial index's condition, normalised


@dataclass
class Table:
    columns: list[Column] = field(default_factory=list)
    primary_key: tuple[str, ...] = ()
    unique: set[tuple[str, ...]] = field(default_factory=set)  # UNIQUE constraints
    indexes: set[Index] = field(default_factory=set)  # CREATE [UNIQUE] INDEX
    foreign_keys: set[tuple[tuple[str, ...], str, tuple[str, ...], str]] = field(
        default_factory=set
    )
    triggers: set[str] = field(default_factory=set)


Schema = dict[str, Table]

_SQLITE_TYPES = {"INTEGER": "integer", "REAL": "real", "TEXT": "text", "BLOB": "blob"}
_PG_TYPES = {
    "bigint": "integer",
    "double precision": "real",
    "text": "text",
    "bytea": "blob",
    "boolean": "boolean",
    # narrower than SQLite's: shown as themselves, so they differ
    "integer": "int4 (32-bit)",
    "smallint": "int2 (16-bit)",
    "real": "float4 (4-byte)",
}


def _expression(sql: str | None) -> str | None:
    """SQL text in one spelling: PostgreSQL's casts and parentheses gone, case and spaces
    folded (`'x'::text` and `'x'`, `((a IS NULL))` and `a IS NULL`)."""
    if sql is None:
        return None
    text = re.sub(r"::[a-z ]+(\[\])?", "", sql)
    text = text.replace("(", " ").replace(")", " ")
    return " ".join(text.split()).lower() or None


def _sqlite_schema(path: Path) -> Schema:
    conn = sqlite3.connect(path)
    try:
        schema: Schema = {}
        tables = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
        for name, create in tables:
            table = schema.setdefault(name, Table())
            info = conn.execute(f"PRAGMA table_info({name})").fetchall()
            keys = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
            table.primary_key = keys
            rowid = not re.search(r"\bWITHOUT\s+ROWID\s*$", create, re.IGNORECASE)
            for _cid, col, decl, notnull, default, pk in info:
                # an INTEGER PRIMARY KEY of a rowid table numbers itself (the rowid)
                rowid_alias = rowid and bool(pk) and len(keys) == 1 and decl.upper() == "INTEGER"
                table.columns.append(
                    Column(
                        col,
                        _SQLITE_TYPES.get(decl.upper(), f"sqlite {decl}"),
                        bool(notnull or pk),
                        None if rowid_alias else _expression(default),
                        rowid_alias,
                    )
                )
            for _seq, index, unique, origin, partial in conn.execute(
                f"PRAGMA index_list({name})"
            ).fetchall():
                columns = tuple(
                    r[2] for r in conn.execute(f"PRAGMA index_info({index})").fetchall()
                )
                if origin == "u":
                    table.unique.add(columns)
                elif origin == "c":
                    (sql,) = conn.execute(
                        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?",
                        (index,),
                    ).fetchone()
                    where = sql.split(" WHERE ", 1)[1] if partial else None
                    table.indexes.add(Index(index, bool(unique), columns, _expression(where)))
            fks: dict[int, list[Any]] = {}
            for fk_id, _seq, parent, source, target, _upd, on_delete, _match in conn.execute(
                f"PRAGMA foreign_key_list({name})"
            ).fetchall():
                fks.setdefault(fk_id, []).append((source, target, parent, on_delete))
            for parts in fks.values():
                parent = parts[0][2]
                targets = tuple(p[1] for p in parts)
                if any(t is None for t in targets):  # REFERENCES parent: its primary key
                    parent_info = conn.execute(f"PRAGMA table_info({parent})").fetchall()
                    targets = tuple(
                        r[1] for r in sorted((r for r in parent_info if r[5]), key=lambda r: r[5])
                    )
                table.foreign_keys.add(
                    (tuple(p[0] for p in parts), parent, targets, parts[0][3].lower())
                )
        for trigger, table_name in conn.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"
        ).fetchall():
            schema[table_name].triggers.add(trigger)
        return schema
    finally:
        conn.close()


async def _pg_schema(conn: Any) -> Schema:
    schema: Schema = {}
    for r in await conn.fetch(
        "SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity "
        "FROM information_schema.columns WHERE table_schema = 'public' "
        "ORDER BY table_name, ordinal_position"
    ):
        default = r["column_default"]
        generated = r["is_identity"] == "YES" or (default or "").startswith("nextval(")
        schema.setdefault(r["table_name"], Table()).columns.append(
            Column(
                r["column_name"],
                _PG_TYPES.get(r["data_type"], f"pg {r['data_type']}"),
                r["is_nullable"] == "NO",
                None if generated else _expression(default),
                generated,
            )
        )
    for r in await conn.fetch(
        "SELECT c.contype::text, t.relname AS table_name, "
        "ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, i) "
        "      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
        "      ORDER BY k.i) AS columns, "
        "f.relname AS parent, "
        "ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, i) "
        "      JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum "
        "      ORDER BY k.i) AS targets, "
        "c.confdeltype::text "
        "FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace "
        "LEFT JOIN pg_class f ON f.oid = c.confrelid "
        "WHERE n.nspname = 'public' AND c.contype IN ('p', 'u', 'f')"
    ):
        table = schema[r["table_name"]]
        columns = tuple(r["columns"])
        if r["contype"] == "p":
            table.primary_key = columns
        elif r["contype"] == "u":
            table.unique.add(columns)
        else:
            on_delete = {
                "a": "no action",
                "r": "restrict",
                "c": "cascade",
                "n": "set null",
                "d": "set default",
            }[r["confdeltype"]]
            table.foreign_keys.add((columns, r["parent"], tuple(r["targets"]), on_delete))
    for r in await conn.fetch(
        "SELECT t.relname AS table_name, i.relname AS index_name, x.indisunique, "
        "ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, o) "
        "      JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum "
        "      ORDER BY k.o) AS columns, "
        "pg_get_expr(x.indpred, x.indrelid) AS predicate "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = 'public' "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
    ):
        schema[r["table_name"]].indexes.add(
            Index(
                r["index_name"],
                bool(r["indisunique"]),
                tuple(r["columns"]),
                _expression(r["predicate"]),
            )
        )
    for r in await conn.fetch(
        "SELECT DISTINCT event_object_table, trigger_name FROM information_schema.triggers "
        "WHERE trigger_schema = 'public'"
    ):
        schema[r["event_object_table"]].triggers.add(r["trigger_name"])
    return schema


def _differences(lite: Schema, pg: Schema) -> list[str]:
    found = [f"table {t} only on SQLite" for t in sorted(set(lite) - set(pg))]
    found += [f"table {t} only on PostgreSQL" for t in sorted(set(pg) - set(lite))]
    for name in sorted(set(lite) & set(pg)):
        a, b = lite[name], pg[name]
        if [c.name for c in a.columns] != [c.name for c in b.columns]:
            found.append(
                f"{name}: columns {[c.name for c in a.columns]} on SQLite, "
                f"{[c.name for c in b.columns]} on PostgreSQL"
            )
        for ca, cb in zip(a.columns, b.columns, strict=False):
            if ca.name == cb.name and ca != cb:
                found.append(f"{name}.{ca.name}: SQLite {ca} / PostgreSQL {cb}")
        for what in ("primary_key", "unique", "indexes", "foreign_keys", "triggers"):
            if getattr(a, what) != getattr(b, what):
                found.append(
                    f"{name} {what}: SQLite {getattr(a, what)} / PostgreSQL {getattr(b, what)}"
                )
    return found


async def _both(tmp_path: Path, pg_url: str) -> tuple[Schema, Schema]:
    lite: Database = await SqliteDatabase.open(tmp_path / "state.db")
    await lite.close()
    pg = await PgDatabase.open(pg_url)
    try:
        async with pg.pool.acquire() as conn:
            return _sqlite_schema(tmp_path / "state.db"), await _pg_schema(conn)
    finally:
        await pg.close()


# Indexes one backend has on purpose, each for a query only that backend runs
# (store/events.py): on SQLite a restart looks for commands started and never finished; on
# PostgreSQL a survivor sweeps a dead instance's unanswered claims.
ONLY_ON = {
    ("events", "events_started"): "sqlite",
    ("events", "events_open"): "postgresql",
}


def _without_intended(schema: Schema, dialect: str) -> Schema:
    """The schema minus ONLY_ON's indexes, each of which must be there on its backend (so
    the list cannot go stale) and not on the other."""
    for (table, index), owner in ONLY_ON.items():
        names = {i.name for i in schema[table].indexes}
        assert (index in names) == (owner == dialect), f"{table}.{index} on {dialect}"
        schema[table].indexes = {i for i in schema[table].indexes if i.name != index}
    return schema


async def test_sqlite_and_postgresql_have_the_same_schema(tmp_path: Path, pg_url: str) -> None:
    lite, pg = await _both(tmp_path, pg_url)
    assert len(lite) > 30 and "audit" in lite  # the reader reads something
    assert len(pg) == len(lite)
    assert sum(len(t.indexes) for t in lite.values()) > 10
    assert (
        _differences(_without_intended(lite, "sqlite"), _without_intended(pg, "postgresql")) == []
    )


def test_the_comparison_sees_each_kind_of_difference() -> None:
    """Each kind of drift between the twins is reported (so a green run means something)."""
    col = Column("n", "integer", True, None, False)
    base = Table([col], ("n",), {("n",)}, {Index("t_n", False, ("n",), None)})
    same = Table([col], ("n",), {("n",)}, {Index("t_n", False, ("n",), None)})
    assert _differences({"t": base}, {"t": same}) == []
    variants = {
        "type": Table(
            [Column("n", "int4 (32-bit)", True, None, False)], ("n",), {("n",)}, set(base.indexes)
        ),
        "null": Table(
            [Column("n", "integer", False, None, False)], ("n",), {("n",)}, set(base.indexes)
        ),
        "default": Table(
            [Column("n", "integer", True, "0", False)], ("n",), {("n",)}, set(base.indexes)
        ),
        "column": Table(
            [col, Column("m", "text", False, None, False)], ("n",), {("n",)}, set(base.indexes)
        ),
        "unique": Table([col], ("n",), set(), set(base.indexes)),
        "index": Table([col], ("n",), {("n",)}, {Index("t_n", True, ("n",), None)}),
        "partial": Table([col], ("n",), {("n",)}, {Index("t_n", False, ("n",), "n > 0")}),
        "key": Table([col], (), {("n",)}, set(base.indexes)),
    }
    for what, other in variants.items():
        assert _differences({"t": base}, {"t": other}) != [], what
    assert _differences({"t": base}, {}) == ["table t only on SQLite"]
