"""The plain-language intent parser: a table of phrasings, and mentions through the running App
(read-only answered at once, paging only after a confirmation, ambiguity asked back)."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound
from chatopsd.features.approvals.service import ApprovalService
from chatopsd.features.intents.parser import parse
from tests.conftest import FakeClock, make_config

ASK = "ASK"
SAY = "SAY"
HELP = None

# (phrasing, expected command text | ASK | SAY | None for "not understood", needs confirmation)
TABLE: list[tuple[str, str | None, bool]] = [
    # who is on call: read-only
    ("who is on call", "ic", False),
    # a service it does not know: said so, never the IC list as if it answered
    ("who is on call for payments?", SAY, False),
    ("Who's on call right now?", "ic", False),
    ("whos oncall", "ic", False),
    ("who is the IC", "ic", False),
    ("who's the incident commander?", "ic", False),
    ("who should I page?", "ic", False),
    ("who do I call about the database?", "ic", False),
    ("hey, who is on-call for the payments service?", SAY, False),
    ("who are the responders", "ic responders", False),
    ("who else is on call, everyone please", "ic responders", False),
    ("how do I reach jane@example.com", "ic who jane@example.com", False),
    ("contact details for Jane Doe", 'ic who "Jane Doe"', False),
    ("phone number for bob@example.com?", "ic who bob@example.com", False),
    # paging: always confirmed
    ("page the IC", "ic page", True),
    ("Page the incident commander please", "ic page", True),
    ("can you page the on-call engineer?", "ic page", True),
    ("wake up the IC", "ic page", True),
    ("page the IC about INC-2026-0042", "ic page", True),
    ("please page everyone", "ic page responders", True),
    ("page all responders now", "ic page responders", True),
    ("page the whole team", "ic page responders", True),
    ("page jane@example.com", "ic page jane@example.com", True),
    ("page @jane about the db", "ic page @jane", True),
    ("page Jane Doe", 'ic page "Jane Doe"', True),
    ("page", ASK, False),
    ("page someone", ASK, False),
    ("page somebody asap", ASK, False),
    ("don't page anyone", SAY, False),
    # status
    ("what's the status", "status", False),
    ("what’s the status?", "status", False),
    ("status?", "status", False),
    ("is everything ok?", "status", False),
    ("any alerts firing?", "status", False),
    ("how are things", "status", False),
    ("is the api down?", "status", False),
    ("what's broken", "status", False),
    # incidents, read-only
    ("any open incidents?", "incident list", False),
    ("list incidents", "incident list", False),
    ("what incidents are open", "incident list", False),
    ("what's the status of INC-2026-0042", "incident status INC-2026-0042", False),
    ("INC-2026-0042?", "incident status INC-2026-0042", False),
    ("show me the timeline for inc-2026-0042", "incident timeline INC-2026-0042", False),
    ("postmortem for INC-2026-0007", "incident export INC-2026-0007", False),
    # acknowledge
    ("acknowledge INC-2026-0042", "incident ack INC-2026-0042", True),
    ("ack inc-2026-0042", "incident ack INC-2026-0042", True),
    ("I'm on it, ack INC-2026-0042", "incident ack INC-2026-0042", True),
    ("ack the page for INC-2026-0001", "incident ack INC-2026-0001", True),
    ("acknowledge", ASK, False),
    ("ack the incident", ASK, False),
    # declare
    ("create an incident for API errors", 'incident declare "API errors"', True),
    (
        "declare a sev1 incident: Payments failing on service payments",
        'incident declare "Payments failing" --sev SEV-1 --service payments',
        True,
    ),
    (
        "open a P2 incident about checkout latency",
        'incident declare "checkout latency" --sev SEV-2',
        True,
    ),
    ("we have an incident: login is broken", 'incident declare "login is broken"', True),
    ("start a new critical incident for the db", 'incident declare "the db" --sev SEV-1', True),
    ("create an incident", ASK, False),
    ("declare incident", ASK, False),
    # resolve / close / escalate / update
    (
        "resolve INC-2026-0042 rolled back the deploy",
        'incident resolve INC-2026-0042 "rolled back the deploy"',
        True,
    ),
    ("INC-2026-0042 is resolved", ASK, False),
    ("resolve it", ASK, False),
    ("close INC-2026-0042", "incident close INC-2026-0042", True),
    ("escalate INC-2026-0042 to sev 1", "incident escalate INC-2026-0042 SEV-1", True),
    ("escalate INC-2026-0042", ASK, False),
    ("escalate to the IC", "ic page", True),
    (
        "update INC-2026-0042: cache flushed",
        'incident update INC-2026-0042 "cache flushed"',
        True,
    ),
    ("update INC-2026-0042", ASK, False),
    # two things at once: asked back
    ("page the IC and create an incident for API errors", ASK, False),
    ("create an incident for API errors and then page the IC", ASK, False),
    ("acknowledge INC-2026-0042 and page everyone", ASK, False),
    # help, chatter, nonsense
    ("help", "help", False),
    ("what can you do?", "help", False),
    ("thanks!", SAY, False),
    ("hello", SAY, False),
    ("pending approvals?", "approvals", False),
    ("banana", HELP, False),
    ("make me a sandwich", HELP, False),
    ("", ASK, False),
]


@pytest.mark.parametrize(("text", "expected", "confirm"), TABLE)
def test_intent_table(text: str, expected: str | None, confirm: bool) -> None:
    intent = parse(text)
    if expected == ASK:
        assert intent.ask and intent.command is None, intent
    elif expected == SAY:
        assert intent.say and intent.command is None, intent
    else:
        assert intent.command == expected, intent
        assert intent.ask is None
    assert intent.confirm is confirm, intent


def test_table_is_big_enough() -> None:
    assert len(TABLE) >= 50
    assert sum(1 for _, e, _ in TABLE if e == ASK) >= 10


def test_extracts_ids_severities_and_services() -> None:
    i = parse("declare a sev-2 incident on service checkout: carts empty")
    assert (i.severity, i.service) == ("SEV-2", "checkout")
    assert parse("who is on call for payments").service == "payments"
    assert parse("ack inc-2026-0042").incident == "INC-2026-0042"
    assert parse("page the IC about billing", services=["billing"]).service == "billing"


def test_mutating_intents_always_need_confirmation() -> None:
    for text, _expected, _ in TABLE:
        cmd = parse(text).command or ""
        if cmd.startswith(
            (
                "ic page",
                "incident ack",
                "incident declare",
                "incident resolve",
                "incident close",
                "incident escalate",
                "incident update",
            )
        ):
            assert parse(text).confirm, text


# -- through the running App ---------------------------------------------------------------


@pytest.fixture
async def app(tmp_path: Path, clock: FakeClock) -> AsyncIterator[App]:
    out = io.StringIO()
    a = App(
        make_config(tmp_path, console={"format": "jsonl"}),
        clock=clock,
        io=Io(stdin=io.StringIO(""), stdout=out),
    )
    await a.start()
    a.out = out  # type: ignore[attr-defined]
    yield a
    await a.stop()


class Chat:
    def __init__(self, app: App) -> None:
        self.app, self.n, self.read = app, 0, 0

    async def send(self, actor: str, text: str, kind: str = "mention", **kw: str) -> list[dict]:
        self.n += 1
        await self.app.bus.handle(
            Inbound(
                platform="console",
                channel="ops",
                actor=Actor(actor, actor),
                text=text,
                kind=kind,
                event_id=f"m{self.n}",
                **kw,
            )
        )  # type: ignore[arg-type]
        for _ in range(500):
            if not self.app.bus.in_flight:
                break
            import asyncio

            await asyncio.sleep(0.01)
        await self.app.outbox.flush(5)
        lines = self.app.out.getvalue().splitlines()  # type: ignore[attr-defined]
        fresh = [json.loads(x) for x in lines[self.read :]]
        self.read = len(lines)
        return fresh


def _text(lines: list[dict]) -> str:
    return "\n".join(x.get("text", "") for x in lines)


async def test_mention_question_is_answered_at_once(app: App) -> None:
    chat = Chat(app)
    lines = await chat.send("alice", "who is on call?")
    assert "Incident Commanders on call" in _text(lines)
    rows = await app.audit.since(None)
    assert [r.command for r in rows] == ["intent", "ic"]  # both audited, the command as itself


async def test_on_call_for_an_unknown_service_says_so(app: App) -> None:
    chat = Chat(app)
    lines = await chat.send("alice", "who is on call for billing?")
    text = _text(lines)
    assert "I don't know a service called billing." in text
    assert "payments" in text  # the demo PagerDuty's services, named
    assert "Ada Lovelace" not in text  # not the IC list, as if it were the answer


def test_on_call_for_a_known_service_asks_for_that_service() -> None:
    i = parse("who is on call for payments?", services=["payments", "billing"])
    assert (i.command, i.confirm) == ("ic service payments", False)
    i = parse("@chatopsd who is on call for checkout?", services=["payments", "billing"])
    assert i.say is not None and i.command is None
    assert "I don't know a service called checkout. I know: payments, billing." in i.say


async def test_paging_from_free_text_waits_for_the_askers_confirmation(app: App) -> None:
    chat = Chat(app)
    lines = await chat.send("alice", "page the IC")
    assert "Confirm: !ic page" in _text(lines)
    assert not [r for r in await app.audit.since(None) if r.command == "ic page"]
    request = next(x for x in lines if "Confirm:" in x["text"])
    lines = await chat.send(
        "bob", "white_check_mark", kind="reaction", message_id=request["message_id"]
    )
    assert "only the person who asked" in _text(lines)
    assert not [r for r in await app.audit.since(None) if r.command == "ic page"]
    lines = await chat.send(
        "alice", "white_check_mark", kind="reaction", message_id=request["message_id"]
    )
    paged = [r for r in await app.audit.since(None) if r.command == "ic page"]
    assert len(paged) == 1 and paged[0].actor == "alice"
    assert "page" in _text(lines).lower()


async def test_paging_cancelled_by_reaction_never_pages(app: App) -> None:
    chat = Chat(app)
    lines = await chat.send("alice", "page everyone")
    request = next(x for x in lines if "Confirm:" in x["text"])
    lines = await chat.send("alice", "x", kind="reaction", message_id=request["message_id"])
    assert "cancelled" in _text(lines)
    assert not [r for r in await app.audit.since(None) if r.command.startswith("ic page")]


async def test_ambiguous_mention_asks_back(app: App) -> None:
    chat = Chat(app)
    lines = await chat.send("alice", "page someone")
    assert "Page whom?" in _text(lines)
    lines = await chat.send("alice", "page the IC and create an incident for API errors")
    assert "Which one first?" in _text(lines)
    assert await app.part(ApprovalService).store.pending() == []


async def test_unrecognised_mention_gets_help_not_silence(app: App) -> None:
    chat = Chat(app)
    lines = await chat.send("alice", "make me a sandwich")
    assert "did not understand" in _text(lines)
    assert "!help" in _text(lines)


async def test_grammar_mentions_still_work_and_typos_get_suggestions(app: App) -> None:
    chat = Chat(app)
    lines = await chat.send("alice", "ic pgae")
    assert "did you mean !ic page?" in _text(lines)
    lines = await chat.send("alice", "status")
    assert "status" in _text(lines).lower()


async def test_intent_for_a_command_this_daemon_lacks_says_so(app: App) -> None:
    chat = Chat(app)
    lines = await chat.send("alice", "acknowledge INC-2026-0042")
    text = _text(lines)
    if "no such command" in text:  # the incident handler is a separate piece of work
        assert "!incident ack INC-2026-0042" in text
    else:
        assert "Confirm: !incident ack INC-2026-0042" in text


async def test_plain_messages_are_not_parsed_as_intents(app: App) -> None:
    chat = Chat(app)
    assert await chat.send("alice", "page the IC", kind="message") == []


async def test_typed_at_name_in_a_plain_message_reaches_the_parser(app: App) -> None:
    chat = Chat(app)
    lines = await chat.send("alice", "@chatopsd page someone", kind="message")
    assert "Page whom?" in _text(lines)
