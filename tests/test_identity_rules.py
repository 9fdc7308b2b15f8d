"""The pure identity rules (core/identity.py), table-driven: the decision table over what is
known of one chat identity, who may claim and who may confirm an address, and the parsers of
addresses and mentions typed in chat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chatopsd.core.identity import (
    Holder,
    Link,
    Trust,
    confirmers,
    decide,
    link_refusal,
    mentioned,
    parse_email,
    unknown_reason,
)
from chatopsd.features.oncall.shift_rules import Shift, held_through

CONFIRMED = Link("discord:42", "ada@example.com", confirmed_by="slack:U0ADA")
CLAIM = Link("discord:42", "ada@example.com", request="k7m2q")

# (what is known) -> (the address acted as, the level)
DECISIONS = [
    ({"configured": "ada@x.io", "platform_email": "bob@x.io", "verified": True}, "ada@x.io", 4),
    ({"platform_email": "bob@x.io", "verified": True, "link": CONFIRMED}, "bob@x.io", 3),
    ({"platform_email": "bob@x.io", "verified": False}, None, 0),  # Mattermost, unverified
    ({"platform_email": "bob@x.io", "verified": False, "link": CONFIRMED}, CONFIRMED.email, 2),
    ({"link": CONFIRMED}, "ada@example.com", 2),
    ({"link": CLAIM}, None, 1),  # a claim grants nothing
    ({"link": CONFIRMED, "configured_elsewhere": ["discord:7"]}, None, 0),  # config gave it away
    ({"link": CONFIRMED, "configured_elsewhere": ["slack:U0ADA"]}, CONFIRMED.email, 2),
    ({}, None, 0),
]


@pytest.mark.parametrize(("known", "email", "level"), DECISIONS)
def test_the_decision_table(known: dict[str, object], email: str | None, level: int) -> None:
    who = decide("discord:42", **known)  # type: ignore[arg-type]
    assert (who.email, int(who.trust)) == (email, level)


def test_what_a_refusal_says_to_do() -> None:
    claimed = unknown_reason(decide("discord:42", link=CLAIM), "!")
    assert "not confirmed yet" in claimed[0] and "!approve" in claimed[1]
    unverified = unknown_reason(decide("mattermost:b", platform_email="ada@x.io"), "!")
    assert "has not verified your email ada@x.io" in unverified[0]
    failed = unknown_reason(decide("slack:U1", lookup_failed=True), "!")
    assert "could not look you up on slack" in failed[0]
    nothing = unknown_reason(decide("discord:42"), "!")
    assert "!pd link you@example.com" in nothing[1] and '"discord:42"' in nothing[1]


ADA_SLACK = Holder("slack:U0ADA", Trust.PLATFORM)
ADA_CONFIG = Holder("mattermost:a", Trust.CONFIGURED)
LINKED = Holder("discord:7", Trust.CONFIRMED)
CLAIMER = Holder("discord:9", Trust.CLAIMED)


@pytest.mark.parametrize(
    ("claimant", "holders", "refused", "vouchers"),
    [
        ("discord:42", [], False, []),  # nobody has it: an admin decides
        ("discord:42", [CLAIMER], False, []),  # a claim holds nobody back
        ("discord:42", [ADA_SLACK], False, [ADA_SLACK]),  # Ada's verified account decides
        ("discord:42", [ADA_SLACK, ADA_CONFIG], False, [ADA_SLACK, ADA_CONFIG]),
        ("slack:U0MAL", [ADA_SLACK], True, []),  # another account on the same platform
        ("discord:42", [LINKED], True, []),  # another Discord account's confirmed link
        ("slack:U0ADA", [ADA_SLACK], False, []),  # (one's own entry is not a conflict)
    ],
)
def test_who_may_claim_and_who_confirms(
    claimant: str, holders: list[Holder], refused: bool, vouchers: list[Holder]
) -> None:
    assert (link_refusal(claimant, "ada@example.com", holders) is not None) == refused
    if not refused:
        assert confirmers(claimant, holders) == vouchers


@pytest.mark.parametrize(
    ("typed", "email"),
    [
        ("Ada@Example.com", "ada@example.com"),
        ("<mailto:ada@example.com|ada@example.com>", "ada@example.com"),  # Slack's link
        ("<ada@example.com>", "ada@example.com"),
        ("ada@example", None),
        ("ada@@example.com", None),
        ("@example.com", None),
        ("ada@example..com", None),
        ("a b@example.com", None),
        ("a@" + "b." * 20000 + "@", None),  # the review's backtracking input: plain rejection
        ("a" * 65 + "@example.com", None),
        ("a@" + "b" * 250 + ".com", None),  # over 254 characters
    ],
)
def test_addresses_typed_in_chat(typed: str, email: str | None) -> None:
    assert parse_email(typed) == email


@pytest.mark.parametrize(
    ("word", "user_id"),
    [
        ("<@U0ADA>", "U0ADA"),
        ("<@U0ADA|ada>", "U0ADA"),
        ("<@!123456>", "123456"),
        ("<@123456>", "123456"),
        ("@ada", None),
        ("ada@example.com", None),
        ("<#C123>", None),
        ("<@>", None),
        ("<@" + "1" * 200 + ">", None),
        ("<@١٢٣>", None),  # unicode digits are no platform's ids
    ],
)
def test_mentions(word: str, user_id: str | None) -> None:
    assert mentioned(word) == user_id


MON = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)


def shift(person: str, start: datetime, end: datetime, schedule: str = "PIC1") -> Shift:
    return Shift(schedule, "IC", "primary", person, person, start, end)


@pytest.mark.parametrize(
    ("start", "end", "held"),
    [
        (MON, MON + 4 * H, True),
        (MON + 6 * H, MON + 14 * H, True),  # across two back-to-back shifts
        (MON + 14 * H, MON + 20 * H, False),  # runs into the gap
        (MON + 20 * H, MON + 21 * H, False),  # someone else's
        (MON - H, MON + H, False),  # starts before
    ],
)
def test_a_window_held_throughout(start: datetime, end: datetime, held: bool) -> None:
    shifts = [
        shift("PGRACE", MON, MON + 8 * H),
        shift("PGRACE", MON + 8 * H, MON + 16 * H),
        shift("PADA", MON + 18 * H, MON + 24 * H),
        shift("PGRACE", MON + 18 * H, MON + 24 * H, schedule="PIC2"),
    ]
    assert held_through(shifts, "PIC1", "PGRACE", start, end) is held
