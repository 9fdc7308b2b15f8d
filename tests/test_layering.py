"""The layering of ARCHITECTURE.md, enforced by reading every module's imports with `ast`.

    core          imports nothing of ours outside core
    features      never import connectors
    connectors    never import features, stores, ha or identity
Only app.py (the composition root), cli.py and doctor.py put concrete pieces together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "chatopsd"

# Imports that break a rule above and are being removed; the list may only shrink. core/ports.py
# still names feature types (annotations only) for the stores' protocols, which move next to
# the feature that owns each.
HANDLER_STORE_ALLOWLIST: set[tuple[str, str]] = {
    ("core/ports.py", "chatopsd.features.approvals.rules"),
    ("core/ports.py", "chatopsd.features.incidents.rules"),
    ("core/ports.py", "chatopsd.features.oncall.handoff_rules"),
    ("core/ports.py", "chatopsd.features.status.stalking_rules"),
}

FORBIDDEN = {
    "core": ("chatopsd",),  # anything of ours but chatopsd.core itself
    "features": ("chatopsd.connectors",),
    "connectors": (
        "chatopsd.features",
        "chatopsd.store",
        "chatopsd.ha",
        "chatopsd.identity",
    ),
}


def _imports(path: Path) -> list[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _violations(layer: str) -> list[str]:
    bad: list[str] = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for module in _imports(path):
            if layer == "core" and _within(module, "chatopsd.core"):
                continue
            if not any(_within(module, forbidden) for forbidden in FORBIDDEN[layer]):
                continue
            if (rel, module) in HANDLER_STORE_ALLOWLIST or any(
                rel == f and _within(module, m) for f, m in HANDLER_STORE_ALLOWLIST
            ):
                continue
            bad.append(f"{rel} imports {module}")
    return bad


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports(layer: str) -> None:
    assert _violations(layer) == []


def test_the_allowlist_only_lists_real_imports() -> None:
    # An entry whose import is gone must be deleted, so the list can only shrink.
    for rel, module in HANDLER_STORE_ALLOWLIST:
        assert any(m.startswith(module) for m in _imports(PACKAGE / rel)), (rel, module)


def test_the_checker_catches_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text(
        "from chatopsd.connectors.slack.client import SlackConnector\n"
        "def f():\n    import chatopsd.store.kv\n"
    )
    assert "chatopsd.connectors.slack.client" in _imports(sample)
    assert "chatopsd.store.kv" in _imports(sample)
    features = PACKAGE / "features"
    assert not _within("chatopsd.corex", "chatopsd.core")
    assert _within("chatopsd.store.kv", "chatopsd.store") and features.is_dir()


# Outside HTTP APIs are reached through these modules; a store only keeps what a job or a
# command read from them (the PagerDuty refresher fills the on-call snapshot store).
HTTP_CLIENTS = (
    "aiohttp",
    "chatopsd.httpclient",
    "chatopsd.features.pagerduty.client",
    "chatopsd.features.pagerduty.incidents_api",
    "chatopsd.features.statuspage.atlassian",
    "chatopsd.features.followups.trackers",
    "chatopsd.features.status.sources",
    "slack_sdk",
    "discord",
)


def _stores() -> list[Path]:
    """chatopsd/store/**, and every store module of a feature (features/*/*store*.py)."""
    return sorted({*(PACKAGE / "store").rglob("*.py"), *PACKAGE.glob("features/*/*store*.py")})


def _client_imports(paths: list[Path]) -> list[str]:
    return [
        f"{'/'.join(path.parts[path.parts.index('chatopsd') :])} imports {module}"
        for path in paths
        for module in _imports(path)
        if any(_within(module, client) for client in HTTP_CLIENTS)
    ]


def test_no_store_imports_an_http_client() -> None:
    stores = _stores()
    assert PACKAGE / "features/pagerduty/oncall_store.py" in stores
    assert PACKAGE / "features/oncall/shifts_store.py" in stores
    assert _client_imports(stores) == []


def test_the_store_check_catches_a_client_import(tmp_path: Path) -> None:
    planted = tmp_path / "chatopsd" / "store" / "bad_store.py"
    planted.parent.mkdir(parents=True)
    planted.write_text(
        "from chatopsd.store.db import Database\n"
        "def refresh():\n    from chatopsd.features.pagerduty.client import PagerDutyClient\n"
    )
    assert _client_imports([planted]) == [
        "chatopsd/store/bad_store.py imports chatopsd.features.pagerduty.client",
        "chatopsd/store/bad_store.py imports chatopsd.features.pagerduty.client.PagerDutyClient",
    ]
