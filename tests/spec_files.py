"""Where the API descriptions that the fakes validate against are found.

Documents whose licence allows it are copied under `tests/specs/<provider>/` with their licence
notes (see `tests/specs/README.md`). The others (PagerDuty, Statuspage: no licence stated) stay in
`shared/specs/` beside the repository and are read only through `shared_spec`, which resolves the
path from the repository root and skips the test, visibly, when that folder is absent. No test
names an absolute path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENDORED = REPO / "tests" / "specs"
SHARED = REPO.parent / "shared" / "specs"


def vendored_spec(*parts: str) -> Path:
    """A document copied into this repository (always present)."""
    path = VENDORED.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"tests/specs/{'/'.join(parts)} is missing from the repository")
    return path


def shared_spec(*parts: str) -> Path:
    """A document read from ../shared/specs/; skips the calling test when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared/specs/{'/'.join(parts)} not found beside the repository")
    return path
