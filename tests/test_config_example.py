"""config.example.toml documents every key the config model accepts.

The model is walked field by field (sections, [[arrays of tables]], each status source kind);
the example is read line by line, commented or not, tracking the [section] a key sits in. A key
the model accepts that the example never names fails with its full path.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from chatopsd import config
from chatopsd.config import Config

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
_HEADER = re.compile(r"^#?\s*\[\[?\s*([A-Za-z0-9_.\"-]+)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r'^#?\s*("[^"]+"|[A-Za-z_][A-Za-z0-9_-]*)\s*=')
_KIND = re.compile(r'^#?\s*kind\s*=\s*"([a-z]+)"')


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The BaseModel classes an annotation holds (through Optional, list, unions, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is dict:
        return []  # a free-form table (roles, severity_map): the key itself is documented
    if origin is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    if origin in (list, typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def _kind(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("kind")
    if field is None or typing.get_origin(field.annotation) is not typing.Literal:
        return None
    return str(typing.get_args(field.annotation)[0])


def model_keys(model: type[BaseModel] = Config, prefix: str = "") -> set[str]:
    """Every key path, e.g. "pagerduty.refresh_seconds", "status.sources[kind=http].field"."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        children = _models(field.annotation)
        if not children:
            keys.add(path)
        for child in children:
            kind = _kind(child)
            keys |= model_keys(child, f"{path}[kind={kind}]" if kind else path)
    return keys


def example_keys(text: str) -> set[str]:
    """Key paths the example names, commented out or not; sections count as keys too, so a
    free-form table like [roles] documents `roles`. In a [[status.sources]] block the keys
    belong to the block's `kind`, wherever the `kind` line sits in it."""
    keys: set[str] = set()
    section = ""
    block: list[str] = []  # keys of the current block, re-filed once its kind is known
    for raw in text.splitlines():
        line = raw.strip()
        if m := _HEADER.match(line):
            section, block = m.group(1).replace('"', ""), []
            keys.add(section)
        elif m := _KIND.match(line):
            keys.add(f"{section}.kind")
            section = f"{section}[kind={m.group(1)}]"
            keys |= {f"{section}.{k}" for k in [*block, "kind"]}
        elif m := _KEY.match(line):
            key = m.group(1).strip('"')
            block.append(key)
            keys.add(f"{section}.{key}" if section else key)
    return keys


def test_the_example_names_every_key_the_model_accepts() -> None:
    documented = example_keys(EXAMPLE.read_text(encoding="utf-8"))
    missing = sorted(model_keys() - documented)
    assert not missing, "config.example.toml does not document: " + ", ".join(missing)


def test_the_walk_sees_nested_and_per_kind_keys() -> None:
    """The check would be hollow if the walk missed what it is meant to catch."""
    keys = model_keys()
    assert {"control.socket", "metrics.listen", "pagerduty.refresh_seconds"} <= keys
    assert "status.sources[kind=prometheus].query" in keys
    assert "approvals.rules.count" in keys
    assert "roles" in keys
    found = example_keys("[status]\n# [[status.sources]]\n# name = 'x'\n# kind = \"http\"\n")
    assert "status.sources[kind=http].name" in found
    # a key missing from a text is reported by its full path
    missing = model_keys() - example_keys("[control]\nsocket = '/x'\n")
    assert "control.enabled" in missing and "control.socket" not in missing
    assert config.Config.model_fields  # the model under test is the one the daemon loads
