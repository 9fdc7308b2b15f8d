"""Where migrations live: one sequence of numbers across the kernel's folder and the
features' folders, every folder listed, every file in the package."""

from __future__ import annotations

from pathlib import Path

import pytest

import chatopsd
from chatopsd.store.db import MIGRATION_HOMES, migration_files


def test_every_folder_with_migrations_is_listed() -> None:
    """A feature's migrations/ folder that MIGRATION_HOMES lacks would never run."""
    package = Path(chatopsd.__file__).parent
    found = {
        folder.parent.relative_to(package).as_posix()
        for folder in package.rglob("migrations")
        if folder.is_dir()
    }
    assert found == set(MIGRATION_HOMES)
    for home in MIGRATION_HOMES:  # one folder per database, nothing else
        assert sorted((package / home / "migrations").iterdir()) == [
            package / home / "migrations" / "postgresql",
            package / home / "migrations" / "sqlite",
        ], home


def _write(root: Path, home: str, name: str, dialect: str = "sqlite") -> None:
    folder = root / home / "migrations" / dialect
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("SELECT 1;\n")


def test_migrations_are_one_sequence_across_folders(tmp_path: Path) -> None:
    _write(tmp_path, "store", "0002_b.sql")
    _write(tmp_path, "features/x", "0001_a.sql")
    _write(tmp_path, "features/x", "0003_c.sql")
    _write(tmp_path, "features/x", "README")  # not a migration
    found = migration_files("sqlite", ("store", "features/x"), tmp_path)
    assert [(m.version, m.home, m.name) for m in found] == [
        (1, "features/x", "0001_a.sql"),
        (2, "store", "0002_b.sql"),
        (3, "features/x", "0003_c.sql"),
    ]
    _write(tmp_path, "features/y", "0002_again.sql")
    with pytest.raises(RuntimeError, match="share the number 2") as refused:
        migration_files("sqlite", ("store", "features/x", "features/y"), tmp_path)
    assert "features/y/migrations/sqlite/0002_again.sql" in str(refused.value)
    assert "store/migrations/sqlite/0002_b.sql" in str(refused.value)
    with pytest.raises(RuntimeError, match="no postgresql migrations in chatopsd/store/"):
        migration_files("postgresql", ("store",), tmp_path)


def test_the_package_holds_every_migration_this_code_runs() -> None:
    """What the runners read is what the package holds (importlib.resources, as installed):
    every .sql file under chatopsd/, both databases, each exactly once."""
    package = Path(chatopsd.__file__).parent
    on_disk = sorted(p.relative_to(package).as_posix() for p in package.rglob("*.sql"))
    read = sorted(
        f"{m.home}/migrations/{dialect}/{m.name}"
        for dialect in ("sqlite", "postgresql")
        for m in migration_files(dialect)  # type: ignore[arg-type]
    )
    assert read == on_disk
