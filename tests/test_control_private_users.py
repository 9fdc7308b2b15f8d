"""`PrivateUsers=yes` versus `control.allow_uids`: inside the unit's user
namespace every other caller is the overflow uid, so allow_uids cannot admit it. The unit
keeps PrivateUsers=yes, the README says so, and the refusal explains it instead of
leaving the operator puzzled by "uid 65534"."""

from __future__ import annotations

from pathlib import Path

from chatopsd.control import overflow_uid, refusal

ROOT = Path(__file__).resolve().parent.parent


def test_refusing_the_overflow_uid_explains_private_users() -> None:
    why = refusal(overflow_uid())
    assert "PrivateUsers=yes" in why and "sudo" in why
    assert refusal(1000 if overflow_uid() != 1000 else 1001) == ""


def test_the_unit_and_the_readme_agree() -> None:
    unit = (ROOT / "systemd" / "chatopsd.service").read_text()
    readme = (ROOT / "README.md").read_text()
    if "PrivateUsers=yes" in unit:
        assert "PrivateUsers=yes" in readme and "control.allow_uids" in readme
