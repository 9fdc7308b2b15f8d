"""The layering of ARCHITECTURE.md, enforced: an allow-list read from its table.

The table "Packages, their job, and what they may import" has a row for every part of the
package: each top-level module, each package, each feature (`features/<name>/`) and each
platform package (`connectors/<name>/`). A module belongs to the row that names it most
precisely; it may import its own part freely and, outside it, only what its row's third column
lists (a folder `x/`, a module `x.py`, `*` for one path segment, or "everything"). A row keyed
`features/*/` adds what every feature may use. Every import counts: at any depth (inside a
function), under `if TYPE_CHECKING:` (annotations only), relative or absolute. Adding a module
is adding it to a row; a new feature or platform folder without its own row fails here.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "chatopsd"
TABLE_HEADING = "## Packages, their job, and what they may import"
# Parts that must each have a row of their own, not share their parent's.
OWN_ROW = ("features", "connectors")


@dataclass(frozen=True, slots=True)
class Row:
    keys: tuple[str, ...]  # the parts it describes: "core/", "outbox.py", "features/*/"
    allowed: tuple[str, ...]  # what they may import besides themselves
    everything: bool = False


@dataclass(frozen=True, slots=True)
class Import:
    source: str  # path of the importing module, relative to the package: "store/db.py"
    line: int
    target: str  # path of the imported module: "features/oncall/api.py", "core/"-relative


def read_table(markdown: str) -> list[Row]:
    """The rows of the allow-list table under TABLE_HEADING."""
    start = markdown.index(TABLE_HEADING)
    section = markdown[start:].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 3:
            continue
        keys = tuple(re.findall(r"`([^`]+)`", cells[0]))
        if not keys:
            continue  # the header and the |---| line
        rows.append(Row(keys, tuple(re.findall(r"`([^`]+)`", cells[2])), "everything" in cells[2]))
    return rows


def _matches(pattern: str, path: str) -> bool:
    """`x/` matches every module under x/ (and, for a row's key, the folder x/ itself);
    `x.py` that module; `*` is one path segment."""
    pat = pattern.rstrip("/").split("/")
    parts = path.rstrip("/").split("/")
    if pattern.endswith("/") and not path.endswith("/"):
        parts = parts[: len(pat)] if len(parts) > len(pat) else []
    return len(parts) == len(pat) and all(p in ("*", s) for p, s in zip(pat, parts, strict=True))


def modules(root: Path) -> list[str]:
    """Every module of the package, as a path relative to it."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py"))


def _module_path(root: Path, dotted: str) -> str | None:
    """ "chatopsd.features.oncall.api" -> "features/oncall/api.py"; None if not ours."""
    parts = dotted.split(".")
    if parts[0] != root.name:
        return None
    rel = "/".join(parts[1:])
    if not rel:
        return "__init__.py"
    if (root / rel).is_dir():
        return f"{rel}/__init__.py"
    return f"{rel}.py"


def imports(root: Path, rel: str) -> list[Import]:
    """Every import of ours in a module: at any depth, TYPE_CHECKING and relative included."""
    path = root / rel
    tree = ast.parse(path.read_text(), filename=str(path))
    package = [root.name, *rel.split("/")[:-1]]  # the package a relative import starts from
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package[: len(package) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:  # `from pkg import module` imports that module
                sub = _module_path(root, f"{base}.{alias.name}")
                targets.append(f"{base}.{alias.name}" if sub and (root / sub).is_file() else base)
        for dotted in targets:
            target = _module_path(root, dotted)
            if target is not None:
                found.append(Import(rel, node.lineno, target))
    return found


def owner(rows: list[Row], rel: str) -> str | None:
    """The key of the row that names this module most precisely (never a wildcard row)."""
    keys = [k for row in rows for k in row.keys if "*" not in k and _matches(k, rel)]
    return max(keys, key=lambda k: k.rstrip("/").count("/"), default=None)


def _own_part(rel: str) -> str | None:
    """features/<f>/ or connectors/<p>/ for a module inside one, else None."""
    parts = rel.split("/")
    if len(parts) >= 3 and parts[0] in OWN_ROW:
        return f"{parts[0]}/{parts[1]}/"
    return None


def unowned(root: Path, rows: list[Row]) -> list[str]:
    """Modules no row names, and features or platform packages without a row of their own."""
    bad = []
    for rel in modules(root):
        key, part = owner(rows, rel), _own_part(rel)
        if part is not None and key != part:
            bad.append(f"{part} has no row of its own")
        elif key is None:
            bad.append(f"{rel} is in no row")
    return sorted(set(bad))


def allowances(rows: list[Row], key: str) -> tuple[bool, list[str]]:
    everything, allowed = False, []
    for row in rows:
        if any(k == key or ("*" in k and _matches(k, key)) for k in row.keys):
            everything = everything or row.everything
            allowed.extend(row.allowed)
    return everything, allowed


def violations(root: Path, rows: list[Row]) -> list[str]:
    bad = []
    for rel in modules(root):
        key = owner(rows, rel)
        if key is None:
            continue  # unowned() reports it
        everything, allowed = allowances(rows, key)
        for imp in imports(root, rel):
            if everything or owner(rows, imp.target) == key:
                continue
            if not any(_matches(pattern, imp.target) for pattern in allowed):
                bad.append(f"{rel}:{imp.line} imports {imp.target} ({key} may not)")
    return bad


@pytest.fixture(scope="module")
def table() -> list[Row]:
    return read_table((ROOT / "ARCHITECTURE.md").read_text())


# -- the real package ---------------------------------------------------------------------


def test_every_module_imports_only_what_its_row_allows(table: list[Row]) -> None:
    assert violations(PACKAGE, table) == []


def test_every_module_feature_and_platform_has_a_row(table: list[Row]) -> None:
    assert unowned(PACKAGE, table) == []
    keys = {k for row in table for k in row.keys}
    for feature in sorted(p for p in (PACKAGE / "features").iterdir() if p.is_dir()):
        if (feature / "__init__.py").exists():
            assert f"features/{feature.name}/" in keys
    for platform in ("slack", "discord", "mattermost"):
        assert f"connectors/{platform}/" in keys


def test_every_row_names_what_exists(table: list[Row]) -> None:
    # A stale row, or an allowance with a typo, would let a future import through unnoticed.
    every = modules(PACKAGE)
    for row in table:
        for pattern in (*row.keys, *row.allowed):
            assert any(_matches(pattern, rel) for rel in every), pattern


def test_the_core_imports_only_the_standard_library() -> None:
    bad = []
    for rel in modules(PACKAGE / "core"):
        tree = ast.parse((PACKAGE / "core" / rel).read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "chatopsd":
                    bad.append(f"core/{rel} imports {name}")
    assert bad == []


# -- the checker bites: the same functions on a throwaway package -------------------------

TOY_TABLE = f"""
{TABLE_HEADING}

| part | job | may import |
|---|---|---|
| `core/` | the kernel | nothing of ours |
| `store/` | the database | `core/` |
| `features/*/` | every feature | `core/`, `store/` |
| `features/a/` | a | `features/b/api.py` |
| `features/b/` | b | |
| `features/integrations/` | outside systems | |
| `features/__init__.py` | the feature list | `features/*/__init__.py` |
| `app.py`, `__init__.py` | composition | everything |

## Next section

| `store/` | not part of the table | `features/` |
"""


def _tree(root: Path, files: dict[str, str]) -> Path:
    package = root / "chatopsd"
    base = {
        "__init__.py": "",
        "app.py": "from chatopsd.features.b import internal\n",
        "core/__init__.py": "",
        "core/bus.py": "",
        "store/__init__.py": "",
        "store/db.py": "from chatopsd.core.bus import Bus\n",
        "features/__init__.py": "from chatopsd.features import a, b, integrations\n",
        "features/a/__init__.py": "",
        "features/a/commands.py": (
            "from chatopsd.features.b.api import Service\n"
            "from chatopsd.store import db\n"
            "from . import helpers\n"
            "from .helpers import tool\n"
        ),
        "features/a/helpers.py": "",
        "features/b/__init__.py": "",
        "features/b/api.py": "",
        "features/b/internal.py": "",
        "features/integrations/__init__.py": "",
        "features/integrations/client.py": "",
        **files,
    }
    for rel, text in base.items():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(text)
    return package


def _check(tmp_path: Path, files: dict[str, str]) -> list[str]:
    package = _tree(tmp_path, files)
    rows = read_table(TOY_TABLE)
    return [*unowned(package, rows), *violations(package, rows)]


def test_a_clean_toy_package_passes(tmp_path: Path) -> None:
    assert _check(tmp_path, {}) == []


def test_a_store_importing_a_feature_is_caught(tmp_path: Path) -> None:
    found = _check(
        tmp_path, {"store/db.py": "from chatopsd.features.integrations.client import Pd\n"}
    )
    assert found == ["store/db.py:1 imports features/integrations/client.py (store/ may not)"]


def test_a_feature_bypassing_anothers_api_is_caught(tmp_path: Path) -> None:
    found = _check(
        tmp_path,
        {
            "features/a/commands.py": (
                "from chatopsd.features.b.api import Service\n"
                "from chatopsd.features.b.internal import Secret\n"
                "from chatopsd.features.b import internal\n"
                "import chatopsd.features.b\n"
            )
        },
    )
    assert found == [
        "features/a/commands.py:2 imports features/b/internal.py (features/a/ may not)",
        "features/a/commands.py:3 imports features/b/internal.py (features/a/ may not)",
        "features/a/commands.py:4 imports features/b/__init__.py (features/a/ may not)",
    ]


def test_annotation_only_and_function_level_imports_count(tmp_path: Path) -> None:
    found = _check(
        tmp_path,
        {
            "features/b/api.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from chatopsd.features.a.helpers import Tool\n"
                "def build():\n"
                "    import chatopsd.app\n"
            )
        },
    )
    assert found == [
        "features/b/api.py:3 imports features/a/helpers.py (features/b/ may not)",
        "features/b/api.py:5 imports app.py (features/b/ may not)",
    ]


def test_relative_imports_count(tmp_path: Path) -> None:
    found = _check(
        tmp_path,
        {
            "features/a/helpers.py": "from ..b import internal\nfrom ..b.api import Service\n",
            "store/db.py": "from ..features.integrations import client\n",
        },
    )
    assert found == [
        "features/a/helpers.py:1 imports features/b/internal.py (features/a/ may not)",
        "store/db.py:1 imports features/integrations/client.py (store/ may not)",
    ]


def test_a_feature_without_its_own_row_is_caught(tmp_path: Path) -> None:
    # `features/*/` says what every feature may use; it does not stand for a new one's row.
    found = _check(tmp_path, {"features/c/__init__.py": "", "toy.py": ""})
    assert found == ["features/c/ has no row of its own", "toy.py is in no row"]


# -- stores keep what was read, they do not read ------------------------------------------

# Outside HTTP APIs are reached through these modules; a store only keeps what a job or a
# command read from them (the PagerDuty refresher fills the on-call snapshot store).
HTTP_CLIENTS = (
    "httpclient.py",
    "features/pagerduty/client.py",
    "features/pagerduty/incidents_api.py",
    "features/statuspage/atlassian.py",
    "features/followups/trackers.py",
    "features/status/sources/",
)
HTTP_LIBRARIES = ("aiohttp", "slack_sdk", "discord")


def _stores(root: Path) -> list[str]:
    """store/**, and every store module of a feature (features/*/*store*.py)."""
    return [
        rel
        for rel in modules(root)
        if rel.startswith("store/") or re.fullmatch(r"features/[^/]+/[^/]*store[^/]*\.py", rel)
    ]


def _client_imports(root: Path, stores: list[str]) -> list[str]:
    ours = [
        f"{imp.source} imports {imp.target}"
        for rel in stores
        for imp in imports(root, rel)
        if any(_matches(client, imp.target) for client in HTTP_CLIENTS)
    ]
    libraries = [
        f"{rel} imports {name}"
        for rel in stores
        for node in ast.walk(ast.parse((root / rel).read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if node.level == 0
            else []
        )
        if name.split(".")[0] in HTTP_LIBRARIES
    ]
    return ours + libraries


def test_no_store_imports_an_http_client() -> None:
    stores = _stores(PACKAGE)
    assert "features/pagerduty/oncall_store.py" in stores
    assert "features/oncall/shifts_store.py" in stores
    assert _client_imports(PACKAGE, stores) == []


def test_the_store_check_catches_a_client_import(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {
            "store/bad_store.py": (
                "from chatopsd.store.db import Database\n"
                "import aiohttp\n"
                "def refresh():\n"
                "    from chatopsd.features.pagerduty.client import PagerDutyClient\n"
            )
        },
    )
    assert _client_imports(package, _stores(package)) == [
        "store/bad_store.py imports features/pagerduty/client.py",
        "store/bad_store.py imports aiohttp",
    ]
