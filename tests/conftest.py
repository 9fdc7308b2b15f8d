"""Shared fixtures: a controllable clock, a fresh on-disk database, and a running App."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import io
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chatopsd.app import App, Io
from chatopsd.config import Config
from chatopsd.core.ports import Clock, SystemClock
from chatopsd.httpclient import HttpTransport
from chatopsd.store.sqlite import SqliteDatabase
from tests.pg_cluster import pg_cluster, pg_url  # noqa: F401 (fixtures)
from tests.teams_helpers import bot, relay  # noqa: F401 (fixtures)


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
        self._mono = 1000.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds
        for due, woken in list(self._sleepers):
            if due <= self._mono:
                self._sleepers.remove((due, woken))
                if not woken.done():
                    woken.set_result(None)

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep on this clock: it ends when `advance` has passed the time."""
        woken = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._mono + seconds, woken))
        await woken


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@contextlib.asynccontextmanager
async def transport(
    clock: Clock | None = None, secrets: tuple[str, ...] = ()
) -> AsyncIterator[HttpTransport]:
    """The outbound HTTP transport, closed after use (the clients under test read through it)."""
    http = HttpTransport(clock or SystemClock(), secrets=secrets)
    try:
        yield http
    finally:
        await http.close()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = await SqliteDatabase.open(tmp_path / "state.db")
    yield database
    await database.close()


def make_config(tmp_path: Path, **sections: Any) -> Config:
    """A Config with its database in tmp_path; keyword arguments are TOML-shaped sections."""
    # a fixed zone: what tests read must not depend on the machine's
    raw: dict[str, Any] = {"chatopsd": {"state_db": str(tmp_path / "state.db"), "timezone": "UTC"}}
    for name, value in sections.items():
        raw.setdefault(name, {}).update(value) if isinstance(value, dict) else None
        if not isinstance(value, dict):
            raw[name] = value
    return Config.model_validate(raw)


@pytest.fixture
async def console_app(tmp_path: Path, clock: FakeClock) -> AsyncIterator[App]:
    """A console-only App with demo data, its console fed from nothing (tests call the bus)."""
    app = App(
        make_config(tmp_path), clock=clock, io=Io(stdin=io.StringIO(""), stdout=io.StringIO())
    )
    await app.start()
    yield app
    await app.stop()


# -- unit, integration, system: one marker per test, from what it touches ------------------
# unit: pure code and in-memory objects. integration: our code against a protocol-level fake
# on 127.0.0.1, a database file or a running App in this process. system: the daemon as a
# process (`python -m chatopsd`), or a real outside server (PostgreSQL, Alertmanager,
# Prometheus, tmux). Read from the test's source and its fixtures' (`-m unit` runs the fast
# ones; CI runs them all).
SYSTEM_SIGNS = ("sys.executable", "daemon_helpers", "subprocess", "pg_url", "pg_cluster", "tmux")
INTEGRATION_SIGNS = (
    "App(",
    ".start()",
    "Database.open",
    "SqliteDatabase",
    "open_database",
    "aiohttp",
    "127.0.0.1",
    "transport(",
    "console_app",
)
LEVELS = ("unit", "integration", "system")


@functools.cache
def _source(function: Callable[..., object]) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


def level_of(item: pytest.Item) -> str:
    function = getattr(item, "function", None)
    sources = [_source(function)] if function is not None else []
    info = getattr(item, "_fixtureinfo", None)
    names = set(info.names_closure) if info is not None else set()
    for defs in info.name2fixturedefs.values() if info is not None else ():
        sources += [_source(d.func) for d in defs]
    text = "\n".join(sources)
    if (
        item.get_closest_marker("external")
        or any(s in text for s in SYSTEM_SIGNS)
        or (names & {"pg_url", "pg_cluster"})
    ):
        return "system"
    if any(s in text for s in INTEGRATION_SIGNS) or names & {"db", "console_app"}:
        return "integration"
    return "unit"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(level) for level in LEVELS):
            item.add_marker(getattr(pytest.mark, level_of(item)))
