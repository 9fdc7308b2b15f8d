"""The guides in docs/ are checked against the code: every config key they name exists.

Keys are found three ways: `section.key` in backticks, `[section]` in backticks, and every key
of every ```toml block (parsed, so a block that is not valid TOML fails too)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from chatopsd.config import Config
from tests.test_config_example import model_keys

DOCS = Path(__file__).resolve().parent.parent / "docs"
GUIDES = (
    "slack",
    "discord",
    "mattermost",
    "pagerduty",
    "status",
    "statuspage",
    "tickets",
    "operations",
)
SECTIONS = set(Config.model_fields)
_DOTTED = re.compile(r"`(\[?)([a-z_]+)\.([a-z_]+)(?: = [^`]*)?\]?`")
_SECTION = re.compile(r"`\[\[?([a-z_.]+)\]\]?`")
_TOML = re.compile(r"```toml\n(.*?)```", re.S)


def _known(path: str, keys: set[str]) -> bool:
    """`path` without kinds ("status.sources.url") matches any kind's key."""
    plain = {re.sub(r"\[kind=[a-z]+\]", "", k) for k in keys}
    prefixes = {p.rsplit(".", 1)[0] for p in plain if "." in p}
    return path in plain or path in prefixes


def named_keys(text: str) -> set[str]:
    found: set[str] = set()
    for m in _DOTTED.finditer(text):
        if m.group(2) in SECTIONS:
            found.add(f"{m.group(2)}.{m.group(3)}")
    for m in _SECTION.finditer(text):
        if m.group(1).split(".")[0] in SECTIONS:
            found.add(m.group(1))
    for block in _TOML.findall(text):
        found |= set(_walk(tomllib.loads(block), ""))
    return found


def _walk(doc: dict[str, Any], prefix: str) -> list[str]:
    paths = []
    for key, value in doc.items():
        path = f"{prefix}.{key}" if prefix else key
        paths.append(path)
        if isinstance(value, dict) and not _is_free(path):
            paths += _walk(value, path)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                paths += _walk(item, path)
    return paths


def _is_free(path: str) -> bool:
    """A free-form table (roles, severity_map): its keys are the user's, not the model's."""
    free = ("_map", ".routing", ".command_roles", ".users", ".components")
    return path in {"roles"} or path.endswith(free)


@pytest.mark.parametrize("guide", sorted({*GUIDES, *(p.stem for p in DOCS.glob("*.md"))}))
def test_every_config_key_a_guide_names_exists(guide: str) -> None:
    text = (DOCS / f"{guide}.md").read_text(encoding="utf-8")
    keys = model_keys()
    unknown = sorted(k for k in named_keys(text) if not _known(k, keys))
    assert not unknown, f"docs/{guide}.md names keys the config does not accept: {unknown}"


def test_the_check_sees_what_it_checks() -> None:
    keys = model_keys()
    found = named_keys(
        "`pagerduty.refresh_seconds` `[discord]` `pagerduty.nope`\n"
        '```toml\n[discord]\ntoken = "x"\n[[status.sources]]\nkind = "http"\nfield = "a"\n```\n'
    )
    assert {"pagerduty.refresh_seconds", "discord", "discord.token"} <= found
    assert "status.sources.field" in found
    assert [k for k in found if not _known(k, keys)] == ["pagerduty.nope"]


def test_the_readme_links_every_guide() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    for guide in GUIDES:
        assert f"docs/{guide}.md" in readme, guide


# -- ARCHITECTURE.md: every rule names the test that checks it, and that test exists ------

_TEST_REF = re.compile(r"tests/[\w/]+\.py(?:::\w+)?|(?<![\w/])::\w+")


def named_tests(text: str) -> list[tuple[str, str | None]]:
    """(file, test) pairs a text names: `tests/f.py`, `tests/f.py::t`, and `::t` meaning a
    test of the file named last."""
    found: list[tuple[str, str | None]] = []
    last = ""
    for ref in _TEST_REF.findall(text):
        if ref.startswith("::"):
            found.append((last, ref[2:]))
            continue
        last, _, name = ref.partition("::")
        found.append((last, name or None))
    return found


def _missing(root: Path, refs: list[tuple[str, str | None]]) -> list[str]:
    missing = []
    for file, name in refs:
        path = root / file
        if not file or not path.is_file():
            missing.append(f"{file}::{name}" if name else file or f"::{name}")
            continue
        if name is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        if name not in defined:
            missing.append(f"{file}::{name}")
    return missing


def test_every_test_architecture_names_exists() -> None:
    text = (DOCS.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    refs = named_tests(text)
    assert len(refs) >= 20
    assert _missing(DOCS.parent, refs) == []


def test_every_section_of_architecture_names_a_test() -> None:
    text = (DOCS.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    sections = text.split("\n## ")[1:]
    assert len(sections) >= 8
    for section in sections:
        assert named_tests(section), section.splitlines()[0]


def test_the_test_reference_check_sees_a_missing_test() -> None:
    refs = named_tests(
        "rule (tests/test_docs.py::test_every_test_architecture_names_exists, ::nope);"
        " tests/test_gone.py and tests/fakes/toychat.py"
    )
    assert refs == [
        ("tests/test_docs.py", "test_every_test_architecture_names_exists"),
        ("tests/test_docs.py", "nope"),
        ("tests/test_gone.py", None),
        ("tests/fakes/toychat.py", None),
    ]
    assert _missing(DOCS.parent, refs) == ["tests/test_docs.py::nope", "tests/test_gone.py"]
