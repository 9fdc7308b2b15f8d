"""The default argument pattern refuses path traversal and host:path values;
a command's own pattern may still allow them."""

from __future__ import annotations

import pytest

from chatopsd.core.errors import UsageError
from chatopsd.features.ops.runner import ArgRule


@pytest.mark.parametrize(
    "value",
    [
        "x/../../etc/shadow",
        "a/..",
        "../x",  # refused twice over: no leading "." either
        "user@host:/path",
        "git:x",
        "C:foo",
    ],
)
def test_default_pattern_refuses(value: str) -> None:
    with pytest.raises(UsageError, match="not allowed"):
        ArgRule("target").check(value)


@pytest.mark.parametrize(
    "value", ["api", "v1.2.3", "release/2026.11", "a..b", "x/..y/z", "team@example.com", "k=v"]
)
def test_default_pattern_keeps_ordinary_values(value: str) -> None:
    assert ArgRule("target").check(value) == value


def test_a_configured_pattern_may_allow_them() -> None:
    rule = ArgRule("dest", pattern=r"[a-z]+@[a-z]+:/[a-z/.]+")
    assert rule.check("user@host:/srv/../x") == "user@host:/srv/../x"
