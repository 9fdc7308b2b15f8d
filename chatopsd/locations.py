"""Where the daemon keeps its database and control socket: one set of rules for the daemon and
for the `chatopsd ctl` / `chatopsd audit` clients.

The fallback card (what to do by hand when chatopsd is down) sits beside the database:
`state.fallback.md` in the service's state directory, `chatopsd.fallback.md` in the working
directory; `chatopsd runbook` finds it by the same rules, with the daemon stopped.

In order: the config file (`chatopsd.state_db`, `control.socket`); systemd's
`$STATE_DIRECTORY` / `$RUNTIME_DIRECTORY`, set for the service; then, for a client only, the
directories the shipped unit asks for (`/var/lib/chatopsd`, `/run/chatopsd`) when the daemon has
put something there, because an operator's shell has neither variable; last, the working
directory (`./chatopsd.db`, the socket next to it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatopsd.config import Config


@dataclass(frozen=True)
class UnitDirs:
    """What systemd/chatopsd.service sets up: StateDirectory=, RuntimeDirectory=, --config."""

    state: Path = Path("/var/lib/chatopsd")
    runtime: Path = Path("/run/chatopsd")
    config: Path = Path("/etc/chatopsd/chatopsd.toml")


UNIT = UnitDirs()
DB_NAME = "state.db"
SOCKET_NAME = "control.sock"
CARD_SUFFIX = ".fallback.md"


@dataclass(frozen=True)
class Locations:
    state_db: Path
    socket: Path
    # How each was found, for error messages ("… (from $STATE_DIRECTORY)").
    db_source: str
    socket_source: str


def locate(
    cfg: Config,
    env: Mapping[str, str] | None = None,
    *,
    client: bool = False,
    unit: UnitDirs = UNIT,
) -> Locations:
    """The database and socket paths. `client=True` adds the unit's directories, used only
    when the daemon left its files there (a client must not invent a path a daemon never used)."""
    db, db_source = state_db(cfg.chatopsd.state_db, env, client=client, unit=unit)
    socket, socket_source = control_socket(cfg.control.socket, db, env, client=client, unit=unit)
    return Locations(db, socket, db_source, socket_source)


def default_config(explicit: Path | None, *, unit: UnitDirs = UNIT) -> Path | None:
    """The config a client reads: the one given, else the unit's when it exists."""
    if explicit is not None:
        return explicit
    return unit.config if unit.config.is_file() else None


def _first(value: str | None) -> str | None:
    # systemd joins several directories with ":"; the first is ours.
    return value.split(":")[0] if value else None


def state_db(
    configured: Path | None,
    env: Mapping[str, str] | None = None,
    *,
    client: bool = False,
    unit: UnitDirs = UNIT,
) -> tuple[Path, str]:
    """The SQLite path and where the rule came from."""
    env = os.environ if env is None else env
    if configured is not None:
        return configured, "chatopsd.state_db"
    if state := _first(env.get("STATE_DIRECTORY")):
        return Path(state) / DB_NAME, "$STATE_DIRECTORY"
    if client and (unit.state / DB_NAME).exists():
        return unit.state / DB_NAME, "the unit's StateDirectory"
    return Path("chatopsd.db"), "the working directory"


def control_socket(
    configured: Path | None,
    db: Path,
    env: Mapping[str, str] | None = None,
    *,
    client: bool = False,
    unit: UnitDirs = UNIT,
) -> tuple[Path, str]:
    """The control socket's path and where the rule came from."""
    env = os.environ if env is None else env
    if configured is not None:
        return configured, "control.socket"
    if runtime := _first(env.get("RUNTIME_DIRECTORY")):
        return Path(runtime) / SOCKET_NAME, "$RUNTIME_DIRECTORY"
    if client and (unit.runtime / SOCKET_NAME).is_socket():
        return unit.runtime / SOCKET_NAME, "the unit's RuntimeDirectory"
    return db.parent / "chatopsd.sock", "next to the database"


def fallback_card(db: Path) -> Path:
    """The fallback card beside the database (`state.db` -> `state.fallback.md`)."""
    return db.with_suffix(CARD_SUFFIX)
