"""One store, two databases: the small interface every store class is written against.

The store classes (events, audit, kv, stalkers, incidents, approvals, on-call cache) hold
their SQL once, in the dialect both databases accept (`INSERT … ON CONFLICT … DO
UPDATE/NOTHING`, `RETURNING`), with numbered placeholders `$1, $2, …`: a value may appear
twice, and `placeholders(n)` writes a VALUES row or an IN list. A backend runs it:

- `sqlite.SqliteDatabase` (aiosqlite): one process owns the file; one writer, group commit.
  `$n` becomes SQLite's `?n` (`sqlite_sql`: once per distinct statement, quotes and comments
  left alone; a bare `?` is refused).
- `postgres.PgDatabase` (asyncpg): several instances share it; the SQL goes as it is.

Inside a `transaction(fn)` callback every statement goes through `fn`'s `tx`: a call on the
database itself is refused at once (CallInsideTransaction; on SQLite it would deadlock the
writer). LIKE is written with `like_sql`, which finds the same rows on both databases.
Where the dialects really differ (a lock statement, a type), a store asks `db.dialect`.
`db.shared` says whether other processes may write at the same time: with SQLite (never
shared) a store may trust what it keeps in memory; with PostgreSQL it must ask the database
(the event ledger's claim, the audit chain's head).

Migrations are numbered per backend and kept side by side:

- SQLite:     chatopsd/store/migrations/NNNN_name.sql
- PostgreSQL: chatopsd/store/migrations_pg/NNNN_name.sql

To add a table: write the SQLite file in your number range, then its PostgreSQL twin with the
SAME number and name (`REAL` → `DOUBLE PRECISION`, `INTEGER PRIMARY KEY` → `BIGINT GENERATED
BY DEFAULT AS IDENTITY PRIMARY KEY`, drop `WITHOUT ROWID`, triggers as PL/pgSQL functions).
tests/test_store_contract.py fails while a SQLite migration has no twin, and runs every
store's contract against both databases. A database whose version is newer than the newest
migration this code knows is refused (it was written by a newer release).

The runners apply every migration whose number the database has not recorded, in order, not
only those above its highest: helpers work in separate number ranges, so a database made by a
build that had 0095 but not yet 0090 must still get 0090 when a build with both starts.
"""

from __future__ import annotations

import contextvars
import functools
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, Protocol, TypeVar

Params = Sequence[Any]
Op = tuple[str, Params]
Row = Any  # sqlite3.Row or asyncpg.Record: both index by position and by column name
Dialect = Literal["sqlite", "postgresql"]
T = TypeVar("T")

# PostgreSQL advisory lock keys (one 64-bit space per database): distinct and stable.
MIGRATE_LOCK = 0x63686F7073_01  # "chops" + 1
AUDIT_LOCK = 0x63686F7073_02
LEASE_LOCK = 0x63686F7073_03


class NewerDatabase(RuntimeError):
    """The database was migrated by a newer chatopsd than this one."""


class OlderDatabase(RuntimeError):
    """A read-only reader found migrations missing (it may not apply them itself)."""


class CallInsideTransaction(RuntimeError):
    """A `db.*` call made inside that database's own `transaction()` callback: a programming
    error. On SQLite it would wait for the writer, which is busy running the callback: a
    deadlock. On PostgreSQL it would run on another pooled connection, outside the
    transaction (and wait forever on a row the transaction has locked)."""


@dataclass(slots=True)
class _Open:
    """One `transaction()` callback running; `outer` is the one it runs inside, if any (a
    callback may use another database). Tasks the callback starts see it too (they copy the
    context): they are refused while it runs, and free once it has ended."""

    db: object
    outer: _Open | None
    running: bool = True


_OPEN: contextvars.ContextVar[_Open | None] = contextvars.ContextVar(
    "chatopsd_open_transaction", default=None
)


def refuse_inside_transaction(db: object, call: str) -> None:
    """Raise CallInsideTransaction when `db`'s own transaction callback makes this call."""
    open_ = _OPEN.get()
    while open_ is not None:
        if open_.db is db and open_.running:
            raise CallInsideTransaction(
                f"db.{call}() inside a transaction() callback of the same database: use the "
                "callback's `tx` (tx.execute, tx.fetchone, tx.fetchall) for every statement "
                "of the transaction"
            )
        open_ = open_.outer


async def run_transaction(db: object, fn: Callable[[Tx], Awaitable[T]], tx: Tx) -> T:
    """Run a `transaction()` callback, with `db.*` calls refused while it runs."""
    open_ = _Open(db, _OPEN.get())
    token = _OPEN.set(open_)
    try:
        return await fn(tx)
    finally:
        open_.running = False
        _OPEN.reset(token)


class Tx(Protocol):
    """A transaction in progress (see Database.transaction)."""

    dialect: Dialect

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; returns the number of rows it changed."""
        ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...


class Database(Protocol):
    dialect: Dialect
    shared: bool

    def describe(self) -> str:
        """Where the data lives, for logs (never a password)."""
        ...

    async def write(self, sql: str, params: Params = ()) -> None:
        """Run one statement; durable once this returns."""
        ...

    async def write_many(self, ops: Iterable[Op]) -> None:
        """Run statements atomically (all or none)."""
        ...

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement on its own; returns the number of rows it changed."""
        ...

    async def transaction(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `fn` in one transaction (read, decide, write); committed when it returns."""
        ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    async def close(self) -> None: ...


def migrations(dialect: Dialect = "sqlite") -> list[tuple[int, str, str]]:
    """(version, file name, sql) of every migration of a backend, in order."""
    folder = "migrations" if dialect == "sqlite" else "migrations_pg"
    found = []
    for entry in resources.files("chatopsd.store").joinpath(folder).iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two {dialect} migrations share a number: {versions}")
    return found


def refuse_newer(current: int, dialect: Dialect, where: str) -> None:
    """Refuse a database a newer release migrated: its tables may not mean what we think."""
    known = max((v for v, _, _ in migrations(dialect)), default=0)
    if current > known:
        raise NewerDatabase(
            f"the database {where} is at schema version {current}, newer than this chatopsd "
            f"knows ({known}): it was upgraded by a newer release. Run that release, or "
            "restore a backup taken before the upgrade."
        )


def missing(applied: Iterable[int], dialect: Dialect, where: str) -> list[tuple[int, str, str]]:
    """The migrations a database still needs, in order: every one whose version it has not
    recorded, below its highest too. A database newer than this code is refused first."""
    done = set(applied)
    refuse_newer(max(done, default=0), dialect, where)
    return [m for m in migrations(dialect) if m[0] not in done]


def require_current(applied: Iterable[int], dialect: Dialect, where: str) -> None:
    """For a read-only reader (`chatopsd audit`): the schema must be exactly what this code
    knows, since a reader cannot migrate. Newer is refused as by the runners; older says who
    upgrades it."""
    lacking = missing(applied, dialect, where)
    if lacking:
        names = ", ".join(name for _, name, _ in lacking)
        raise OlderDatabase(
            f"the database {where} lacks migrations this chatopsd expects ({names}): start "
            "the daemon of this release once (it upgrades the database), or use the chatopsd "
            "that runs the daemon"
        )


class PlaceholderError(ValueError):
    """SQL that breaks the store's placeholder rules (`$1`, `$2`, … every number used): a
    programming error, raised before the statement reaches either database."""


# What the scanner stops at: a quote, a comment, a placeholder (ours or a stray `?`).
_SPECIAL = re.compile(r"['\"?$]|--|/\*")
_DIGITS = re.compile(r"[0-9]+")


@functools.lru_cache(maxsize=1024)
def sqlite_sql(sql: str) -> str:
    """The store's SQL (`$1`, `$2`, …, as PostgreSQL takes it) with SQLite's numbered `?1`,
    `?2`, …: a value may be used twice, and each value keeps its number whatever the order.

    One linear scan, once per distinct statement (cached): text in quotes ('…' literals,
    "…" identifiers) and comments is copied unchanged, so a `?` or `$` there never counts.
    Refused with PlaceholderError: a bare `?` (the old unnumbered style), `$` without a
    number (dollar quoting, `$name`), `$0`, an unterminated literal or comment, and numbers
    with a gap (PostgreSQL cannot type a parameter it never sees; SQLite would bind it
    silently)."""
    out: list[str] = []
    copied = 0
    used: set[int] = set()
    found = _SPECIAL.search(sql)
    while found is not None:
        mark, at = found.group(), found.start()
        if mark in ("'", '"'):
            end = _closing(sql, mark, at)
        elif mark == "--":
            newline = sql.find("\n", at)
            end = len(sql) if newline == -1 else newline + 1
        elif mark == "/*":
            close = sql.find("*/", at + 2)
            if close == -1:
                raise PlaceholderError(f"unterminated comment in SQL: {_short(sql)}")
            end = close + 2
        elif mark == "?":
            raise PlaceholderError(
                f"a `?` placeholder in SQL: the store numbers its parameters ($1, $2, …): "
                f"{_short(sql)}"
            )
        else:  # "$"
            digits = _DIGITS.match(sql, at + 1)
            if digits is None or int(digits.group()) == 0:
                raise PlaceholderError(
                    f"`$` not followed by a parameter number (from $1) in SQL: {_short(sql)}"
                )
            used.add(int(digits.group()))
            out.append(sql[copied:at])
            out.append("?" + digits.group())
            copied = end = digits.end()
        found = _SPECIAL.search(sql, end)
    if used and len(used) != max(used):
        gaps = ", ".join(f"${n}" for n in range(1, max(used)) if n not in used)
        raise PlaceholderError(f"parameter {gaps} never used in SQL: {_short(sql)}")
    out.append(sql[copied:])
    return "".join(out)


def _closing(sql: str, quote: str, at: int) -> int:
    """Just past the quote that closes the literal opened at `at` (a doubled quote is one
    quote character inside it)."""
    close = sql.find(quote, at + 1)
    while close != -1 and sql.startswith(quote, close + 1):
        close = sql.find(quote, close + 2)
    if close == -1:
        raise PlaceholderError(f"unterminated {quote}…{quote} in SQL: {_short(sql)}")
    return close + 1


def _short(sql: str) -> str:
    one_line = " ".join(sql.split())
    return one_line if len(one_line) <= 200 else one_line[:199] + "…"


def like_sql(text: str, pattern: str, dialect: Dialect) -> str:
    """SQL for `text LIKE pattern` that finds the same rows on both databases: ASCII letters
    match in either case, every other character only itself, `%` and `_` are wildcards and
    `\\` escapes them (build patterns with `like_escape`).

    That is SQLite's own LIKE. PostgreSQL's LIKE is case-sensitive and its ILIKE also folds
    é/É, so there both sides are lowered in the "C" collation, which lowers A-Z only.
    `text` and `pattern` are SQL expressions (a column, a `$n`)."""
    if dialect == "postgresql":
        return f'lower({text} COLLATE "C") LIKE lower({pattern} COLLATE "C") ESCAPE \'\\\''
    return f"{text} LIKE {pattern} ESCAPE '\\'"


def like_escape(text: str) -> str:
    """`text` matched literally inside a LIKE pattern of `like_sql`."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def placeholders(count: int, first: int = 1) -> str:
    """`$first, $first+1, …` for `count` values: a VALUES row, an IN list."""
    return ", ".join(f"${n}" for n in range(first, first + count))
