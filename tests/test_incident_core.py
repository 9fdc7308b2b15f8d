"""The pure incident core: every transition, every refusal, ids, severities and the texts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from chatopsd.core.errors import UsageError, UserError
from chatopsd.features.incidents import rules as core
from chatopsd.features.incidents.rules import IllegalTransition, Incident, State, TimelineEntry

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def make(state: State = State.DECLARED, severity: int = 3) -> Incident:
    base = core.declare("INC-2026-0042", "Payments failing", severity, T0, "alice", "slack", "C1")
    return replace(base, state=state)


# (action, from state, resulting state or None when refused, words the refusal must contain)
TABLE: list[tuple[str, State, State | None, str]] = [
    ("ack", State.DECLARED, State.ACKNOWLEDGED, ""),
    ("ack", State.ACKNOWLEDGED, None, "already acknowledged"),
    ("ack", State.RESOLVED, None, "nothing left to acknowledge"),
    ("ack", State.CLOSED, None, "is closed"),
    ("resolve", State.DECLARED, State.RESOLVED, ""),
    ("resolve", State.ACKNOWLEDGED, State.RESOLVED, ""),
    ("resolve", State.RESOLVED, None, "already resolved"),
    ("resolve", State.CLOSED, None, "is closed"),
    ("close", State.DECLARED, None, "resolve it before closing"),
    ("close", State.ACKNOWLEDGED, None, "resolve it before closing"),
    ("close", State.RESOLVED, State.CLOSED, ""),
    ("close", State.CLOSED, None, "is closed"),
]


@pytest.mark.parametrize(("action", "start", "end", "words"), TABLE)
def test_state_machine(action: str, start: State, end: State | None, words: str) -> None:
    incident = make(start)
    at = T0 + timedelta(minutes=5)
    if end is None:
        with pytest.raises(IllegalTransition) as err:
            core.transition(incident, action, at, "note")
        assert words in str(err.value) and "INC-2026-0042" in str(err.value)
        assert isinstance(err.value, UserError)  # so the bus shows it to the asker
        return
    after = core.transition(incident, action, at, "note")
    assert after.state is end and after.last_update_at == at
    stamp = {"ack": "acknowledged_at", "resolve": "resolved_at", "close": "closed_at"}[action]
    assert getattr(after, stamp) == at
    assert incident.state is start  # pure: the input is untouched


def test_table_covers_every_state_changing_action_from_every_state() -> None:
    changing = {a for a, (_, to) in core.TRANSITIONS.items() if to is not None}
    assert {(a, s) for a, s, _, _ in TABLE} == {(a, s) for a in changing for s in State}


# actions that keep the state: which states allow them
KEEPING = [
    ("update", {State.DECLARED, State.ACKNOWLEDGED, State.RESOLVED}),
    ("join", {State.DECLARED, State.ACKNOWLEDGED, State.RESOLVED}),
    ("role", {State.DECLARED, State.ACKNOWLEDGED, State.RESOLVED}),
    ("escalate", {State.DECLARED, State.ACKNOWLEDGED}),
]


@pytest.mark.parametrize(("action", "allowed"), KEEPING)
@pytest.mark.parametrize("state", list(State))
def test_non_state_actions(action: str, allowed: set[State], state: State) -> None:
    incident = make(state, severity=3)
    at = T0 + timedelta(minutes=1)

    def run() -> Incident:
        if action == "escalate":
            return core.escalate(incident, None, at)
        if action == "role":
            return core.set_role(incident, "scribe", "bob", at)
        if action == "join":
            return core.join(incident)
        return core.touch(incident, action, at)

    if state in allowed:
        after = run()
        assert after.state is state
        # a join is no status update: it must not silence the pulse
        assert after.last_update_at == (T0 if action == "join" else at)
    else:
        with pytest.raises(IllegalTransition):
            run()


def test_escalate_goes_up_only() -> None:
    incident = make(severity=3)
    assert core.escalate(incident, None, T0).severity == 2
    assert core.escalate(incident, 1, T0).severity == 1
    for sev in (3, 4):
        with pytest.raises(IllegalTransition, match="more severe"):
            core.escalate(incident, sev, T0)
    with pytest.raises(IllegalTransition, match="already SEV-1"):
        core.escalate(make(severity=1), None, T0)
    # naming SEV-1 on a SEV-1 incident answered "(SEV-1 to SEV-0)"
    for sev in (1, 2):
        with pytest.raises(IllegalTransition, match="already SEV-1, the highest") as caught:
            core.escalate(make(severity=1), sev, T0)
        assert "SEV-0" not in str(caught.value)


def test_roles() -> None:
    incident = make()
    assert incident.commander == "alice"  # the declarer commands until handing over
    after = core.set_role(incident, "commander", "<@U2>", T0)
    assert after.roles == {"commander": "<@U2>"}
    with pytest.raises(UsageError, match="unknown role"):
        core.set_role(incident, "boss", "bob", T0)
    with pytest.raises(UsageError, match="say who"):
        core.set_role(incident, "scribe", "  ", T0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("INC-2026-0042", "INC-2026-0042"),
        ("inc-2026-42", "INC-2026-0042"),
        ("#INC-2027-7", "INC-2027-0007"),
    ],
)
def test_ids(text: str, expected: str) -> None:
    assert core.parse_id(text) == expected


@pytest.mark.parametrize(
    "text", ["INC-26-1", "INC-2026", "2026-0042", "incident", "", "INC-2026-x"]
)
def test_not_ids(text: str) -> None:
    assert core.parse_id(text) is None


@pytest.mark.parametrize(("text", "sev"), [("SEV-1", 1), ("sev2", 2), ("3", 3), ("Sev-4", 4)])
def test_severities(text: str, sev: int) -> None:
    assert core.parse_severity(text) == sev


@pytest.mark.parametrize("text", ["SEV-0", "SEV-5", "high", "", "sev-12"])
def test_bad_severities(text: str) -> None:
    with pytest.raises(UsageError, match="SEV-1, SEV-2, SEV-3 or SEV-4"):
        core.parse_severity(text)


def test_declare_needs_a_title() -> None:
    with pytest.raises(UsageError, match="needs a title"):
        core.declare("INC-2026-0001", "   ", 2, T0, "a", "slack", "C")


def test_channel_names_fall_back_to_a_numbered_one() -> None:
    assert core.channel_names(make()) == [
        "inc-20261123-payments-failing",
        "inc-20261123-payments-failing-0042",
    ]


def test_channel_name() -> None:
    incident = replace(make(), title="Payments: failing for ÉU customers!!")
    assert core.channel_name(incident) == "inc-20261123-payments-failing-for-eu-customers"
    assert core.channel_name(replace(make(), title="🔥🔥")) == "inc-20261123-incident"
    assert len(core.channel_name(replace(make(), title="x" * 300))) <= 80


def entries() -> list[TimelineEntry]:
    return [
        TimelineEntry(T0, "alice", "slack", "C1", "declared", "declared SEV-3: Payments failing"),
        TimelineEntry(
            T0 + timedelta(minutes=3), "bob", "slack", "C9", "acknowledged", "acknowledged"
        ),
        TimelineEntry(
            T0 + timedelta(minutes=20), "bob", "discord", "42", "update", "rolled back | v2"
        ),
        TimelineEntry(T0 + timedelta(minutes=95), "bob", "slack", "C9", "resolved", "fixed *db*"),
    ]


def resolved() -> Incident:
    i = core.transition(make(), "ack", T0 + timedelta(minutes=3))
    i = core.set_role(i, "scribe", "carol", T0)
    return core.transition(i, "resolve", T0 + timedelta(minutes=95), "fixed *db*")


def test_postmortem_export() -> None:
    md = core.postmortem(resolved(), entries(), T0 + timedelta(hours=3))
    for heading in (
        "# Postmortem: INC-2026-0042",
        "## Summary",
        "## Impact window",
        "## Timeline",
        "## Roles",
        "## Follow-ups",
    ):
        assert heading in md
    assert "- Declared: 2026-11-23 12:00 UTC" in md
    assert "- Resolved: 2026-11-23 13:35 UTC" in md and "- Duration: 1h 35m" in md
    assert "| 2026-11-23 12:20:00 | bob | discord #42 | update: rolled back \\| v2 |" in md
    # the kind is not said twice when the text starts with it
    assert "| alice | slack #C1 | declared SEV-3: Payments failing |" in md
    assert "declared: declared" not in md and "acknowledged: acknowledged" not in md
    assert "- Incident Commander: alice" in md and "- Scribe: carol" in md
    assert "- Resolution: fixed \\*db\\*" in md  # user text cannot become markup


def test_postmortem_of_an_open_incident_says_ongoing() -> None:
    md = core.postmortem(make(), entries()[:1], T0 + timedelta(minutes=10))
    assert "- Resolved: ongoing (as of 2026-11-23 12:10 UTC)" in md


def test_wrapup_and_status() -> None:
    wrap = core.wrapup(resolved(), entries())
    text = wrap.plain()
    assert "Resolved after 1h 35m" in text and "Resolution: fixed *db*" in text
    assert "4 entries (1 acknowledged, 1 declared, 1 resolved, 1 update), from alice, bob" in text
    status = core.status(resolved(), entries()[2], T0 + timedelta(hours=5)).plain()
    assert "State: resolved" in status and "Duration: 1h 35m" in status
    assert "Last update: 2026-11-23 12:20 UTC bob: rolled back | v2" in status
    open_status = core.status(make(), None, T0 + timedelta(minutes=7)).plain()
    assert "Open for: 7m" in open_status and "State: declared" in open_status


def test_announcement_has_buttons_and_page_priority_for_sev1() -> None:
    reply = core.announcement(make(severity=1), "!")
    assert [b.command for b in reply.buttons] == [
        "incident ack INC-2026-0042",
        "incident escalate INC-2026-0042",
        "incident join INC-2026-0042",
    ]
    assert reply.priority == 0 and "[SEV-1] Payments failing" in (reply.title or "")


@pytest.mark.parametrize(
    ("minutes", "text"), [(0, "0m"), (59, "59m"), (61, "1h 1m"), (60 * 24 + 5, "1d 0h 5m")]
)
def test_duration(minutes: int, text: str) -> None:
    assert core.duration(T0, T0 + timedelta(minutes=minutes)) == text
