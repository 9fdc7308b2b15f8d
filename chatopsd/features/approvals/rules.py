"""Approval rules and decisions, pure: what a command needs, and whether a vote counts.

A pending action is either an `approval` (N people holding a role, never the requester) or a
`confirm` (the requester clicks once more: destructive commands with no approval rule, and
anything mutating that came from free text).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

ActionKind = Literal["approval", "confirm"]
State = Literal["pending", "approved", "rejected", "expired"]
Vote = Literal["approve", "reject"]

APPROVE_EMOJI = frozenset(
    {"white_check_mark", "heavy_check_mark", "ballot_box_with_check", "+1", "thumbsup"}
    | {"\u2705", "\u2714\ufe0f", "\u2714", "\U0001f44d"}
)
REJECT_EMOJI = frozenset(
    {"x", "no_entry", "no_entry_sign", "-1", "thumbsdown"} | {"\u274c", "\u26d4", "\U0001f44e"}
)
_ID_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/o, 1/l/i: read aloud and typed


def new_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(5))


def vote_for_emoji(name: str) -> Vote | None:
    name = name.strip(":").lower()
    if name in APPROVE_EMOJI:
        return "approve"
    if name in REJECT_EMOJI:
        return "reject"
    return None


@dataclass(frozen=True, slots=True)
class Rule:
    command: str
    when: Mapping[str, str] = field(default_factory=dict)
    count: int = 1
    role: str = "lead"

    def matches(self, command: str, args: Mapping[str, str]) -> bool:
        if command != self.command:
            return False
        return all(args.get(k, "").lower() == v.lower() for k, v in self.when.items())


@dataclass(frozen=True, slots=True)
class Requirement:
    """What must happen before a command runs."""

    approvals: int = 0
    role: str | None = None
    confirm: bool = False

    @property
    def kind(self) -> ActionKind | None:
        if self.approvals > 0:
            return "approval"
        return "confirm" if self.confirm else None


def requirement(
    rules: Sequence[Rule], command: str, args: Mapping[str, str], *, destructive: bool
) -> Requirement:
    """The first matching rule decides (count 0: the operator ruled that nothing is needed).
    With no rule at all, a destructive command needs its requester's confirmation."""
    rule = next((r for r in rules if r.matches(command, args)), None)
    if rule is None:
        return Requirement(confirm=destructive)
    if rule.count > 0:
        return Requirement(approvals=rule.count, role=rule.role)
    return Requirement()


@dataclass(frozen=True, slots=True)
class Person:
    platform: str
    id: str
    email: str | None = None

    def same(self, other: Person) -> bool:
        if self.platform == other.platform and self.id == other.id:
            return True
        # one human, two chat identities: the same email is the same person
        return bool(self.email and other.email and self.email.lower() == other.email.lower())


@dataclass(frozen=True, slots=True)
class Action:
    """A pending (or decided) request, as stored."""

    id: str
    kind: ActionKind
    command: str
    summary: str
    platform: str
    channel: str
    thread: str | None
    requester: Person
    requester_name: str
    role: str | None
    needed: int
    state: State
    created_at: datetime
    expires_at: datetime
    message_id: str | None = None
    approvers: tuple[str, ...] = ()


def refusal(
    action: Action,
    voter: Person,
    vote: Vote,
    holds_role: bool,
    now: datetime,
    *,
    requester_now: Person | None = None,
    sure: bool = True,
) -> str | None:
    """Why this vote does not count (None: it counts).

    The voter is the requester when they are the same chat identity, or share an address
    with the requester as stored at request time OR as resolved now (`requester_now`): an
    address unknown when the request was made must not let its owner approve it from
    another account. `sure` is False when a lookup of either failed: then no approval counts
    (we cannot tell them apart), though withdrawing and confirming still work."""
    if action.state != "pending":
        return f"request {action.id} is already {action.state}"
    if now >= action.expires_at:
        return f"request {action.id} has expired"
    is_requester = voter.same(action.requester) or (
        requester_now is not None and voter.same(requester_now)
    )
    if action.kind == "confirm":
        if not is_requester:
            return f"only the person who asked can confirm {action.id}"
        return None
    if vote == "reject" and is_requester:
        return None  # withdrawing your own request is always allowed
    if is_requester:
        return "you cannot approve your own request"
    if not sure:
        return (
            "I could not look up who you or the requester are just now, so I cannot tell "
            "you apart: try again in a minute"
        )
    if not holds_role:
        return f"approving {action.id} needs the role {action.role!r}"
    return None


_NEEDS_QUOTES = frozenset(" \t\n\"'\\\u201c\u201d\u2018\u2019\u201e")


def quote(word: str) -> str:
    """A word as grammar text that tokenizes back to exactly this word."""
    if word and not any(ch in _NEEDS_QUOTES or ch.isspace() for ch in word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def command_line(name: str, values: Sequence[str]) -> str:
    """The canonical grammar text of a command: what is stored, shown and granted."""
    return " ".join([name, *(quote(v) for v in values)])
