"""Who acts as whom, end to end: one daemon on Slack, Mattermost and Discord at once (the real
slack-sdk, aiohttp and discord.py against their fakes) and the fake PagerDuty (every request
checked against PagerDuty's OpenAPI document, every `From` against its users).

The table: for each way an address can be known (configured, a Slack profile, a Mattermost
address its server verified or did not, a `!pd link` confirmed or not, a claim on an address
another account holds), a role given to that address and a PagerDuty note either act as the
right person or are refused, saying why. Then Mallory's attack from the security review: she
links a colleague's address and tries to ack, resolve, note and take the pager as her."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chatopsd.app import App
from chatopsd.core.ports import AuditEntry
from chatopsd.features.approvals.service import ApprovalService
from tests.conftest import FakeClock, make_config
from tests.fakes import slack as slack_fake
from tests.fakes.discord import GUILD_ID, FakeDiscord
from tests.fakes.discord import TOKEN as DISCORD_TOKEN
from tests.fakes.mattermost import ALICE, BOB, FakeMattermost
from tests.fakes.mattermost import TOKEN as MM_TOKEN
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fixtures.pagerduty import first_refresh, pd, pd_section  # noqa: F401
from tests.waiting import eventually

# Slack members: Ada (her real account), Mallory (her address hidden), and Jane (U1, whom the
# config makes Grace)
SLACK_USERS = {"U0ADA": "ada@example.com", "U0MAL": ""}
ED, LINUS, ADA_ON_DISCORD, MALLORY = 51, 52, 53, 54  # Discord users (Discord shows no email)


@dataclass
class World:
    app: App
    slack: FakeSlack
    mm: FakeMattermost
    discord: FakeDiscord
    pd: FakePagerDuty

    async def say(self, platform: str, who: Any, text: str) -> AuditEntry:
        """Send `text` as `who` on `platform`; the audit row once the command has run."""
        if platform == "slack":
            event_id = f"EvId{next(_ids):06d}"
            await self.slack.event(self.slack.message(text, user=who), event_id=event_id)
        elif platform == "mattermost":
            event_id = str((await self.mm.user_post(text, user=who))["id"])
        else:
            message = self.discord.message(text, author_id=who, name=f"user{who}")
            await self.discord.dispatch("MESSAGE_CREATE", message)
            event_id = str(message["id"])
        return await audited(self.app, event_id)

    async def settled(self) -> None:
        """Every command handed to the bus (granted ones too) has run."""
        await eventually(
            lambda: not self.app.bus.in_flight, timeout=5, what="commands still running"
        )

    def slack_dms(self, user: str) -> list[str]:
        channel = next((c for c, u in self.slack.dms.items() if u == user), None)
        return [str(p.get("text")) for p in self.slack.posts() if p.get("channel") == channel]


_ids = itertools.count(1)


async def audited(app: App, event_id: str) -> AuditEntry:
    for _ in range(500):
        for row in await app.audit.since(None):
            if row.event_id == event_id and row.kind != "request":
                return row
        await asyncio.sleep(0.01)
    raise AssertionError(f"no audit row for {event_id}")


@pytest.fixture
async def world(
    tmp_path: Path, pd: FakePagerDuty, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    for uid, email in SLACK_USERS.items():
        profile = {"real_name": uid, **({"email": email} if email else {})}
        user = {"id": uid, "name": uid.lower(), "is_bot": False, "profile": profile}
        monkeypatch.setitem(slack_fake.USERS, uid, user)
    slack, mm, discord = FakeSlack(), FakeMattermost(), FakeDiscord()
    for server in (slack, mm, discord):
        await server.start()
    mm.emails = {ALICE["id"]: "alan@example.com", BOB["id"]: "ada@example.com"}
    mm.verified = {ALICE["id"]}  # Bob typed Ada's address into his profile: never verified
    pd.now = clock.now
    config = make_config(
        tmp_path,
        console={"enabled": False},
        slack={"app_token": APP_TOKEN, "bot_token": BOT_TOKEN, "api_url": slack.api_url},
        mattermost={"url": mm.url, "token": MM_TOKEN, "heartbeat_seconds": 1.0},
        discord={
            "token": DISCORD_TOKEN,
            "api_url": discord.api_url,
            "gateway_url": discord.gateway_url,
            "guild_ids": [GUILD_ID],
            "identify_delay": 0.05,
            "heartbeat_timeout": 8.0,
            "guild_ready_timeout": 0.05,
        },
        pagerduty=pd_section(pd, service_ids=["PSVC1"], users={"slack:U1": "grace@example.com"}),
        roles={
            # anyone may try PagerDuty writes (who they act as is the identity service's
            # answer); reading the incident list is a role given to addresses
            "oncall": ["*"],
            "responder": [
                "grace@example.com",
                "ada@example.com",
                "alan@example.com",
                "linus@example.com",
                "edsger@example.com",
            ],
            "admin": ["slack:U1"],
        },
        auth={"command_roles": {"pd incidents": "responder"}},
    )
    app = App(config, clock=clock)
    await app.start()
    for supervisor in app.supervisors:
        await asyncio.wait_for(supervisor.ready_event.wait(), 10)
    await first_refresh(app)
    pd.trigger("Checkout errors", assignees=["PGRACE"])
    yield World(app, slack, mm, discord, pd)
    await app.stop()
    for server in (slack, mm, discord):
        await server.stop()


async def approval_id(world: World, command: str) -> str:
    [action] = [
        a for a in await world.app.part(ApprovalService).store.pending() if a.command == command
    ]
    return action.id


def dm_request_id(text: str) -> str:
    """The id in "answer here with !pd link allow <id> within …"."""
    return text.split("pd link allow ", 1)[1].split()[0]


# (platform, who, how the address is known, what `!pd note` and the role do: the address
# they act as, or the refusal's words)
TABLE: list[tuple[str, Any, str, str]] = [
    ("slack", "U1", "configured (over her own Slack profile)", "grace@example.com"),
    ("slack", "U0ADA", "Slack profile", "ada@example.com"),
    ("mattermost", ALICE, "Mattermost, verified", "alan@example.com"),
    ("mattermost", BOB, "Mattermost, not verified", "has not verified your email ada@"),
    (
        "discord",
        ED,
        "self-asserted, unconfirmed",
        "your link to edsger@example.com is not confirmed",
    ),
    ("discord", LINUS, "self-asserted, confirmed by an admin", "linus@example.com"),
    ("discord", ADA_ON_DISCORD, "self-asserted, confirmed by the holder", "ada@example.com"),
    ("slack", "U0MAL", "conflicting with the verified address of another user", "don't know your"),
    ("discord", MALLORY, "claims a verified address, unconfirmed", "your link to ada@example"),
]


async def test_who_acts_as_whom(world: World) -> None:
    # -- the links, made the ways the rules allow (or refused) ------------------------------
    asked = await world.say("discord", ED, "!pd link edsger@example.com")
    assert (asked.command, asked.outcome) == ("pd link", "pending")  # an admin must approve
    await world.say("discord", LINUS, "!pd link linus@example.com")
    approve = await world.say(
        "slack", "U1", f"!approve {await approval_id(world, 'pd link linus@example.com')}"
    )
    assert approve.outcome == "ok"
    await world.settled()
    # Mallory's Discord account asks for Ada's address: Ada is told, nothing is granted
    mallory = await world.say("discord", MALLORY, "!pd link ada@example.com")
    assert mallory.outcome == "pending", mallory.cause
    # Ada's own Discord account asks too (a pending claim holds nobody back): her verified
    # Slack account gets a DM and confirms it
    own = await world.say("discord", ADA_ON_DISCORD, "!pd link ada@example.com")
    assert own.outcome == "pending", own.cause
    [_, ask] = world.slack_dms("U0ADA")
    assert f"user{ADA_ON_DISCORD}" in ask and "asks to act in PagerDuty as you" in ask
    allowed = await world.say("slack", "U0ADA", f"!pd link allow {dm_request_id(ask)}")
    assert allowed.outcome == "ok", allowed.cause
    # Mallory's Slack account cannot even ask: Ada's Slack account has the address
    taken = await world.say("slack", "U0MAL", "!pd link ada@example.com")
    assert taken.outcome == "denied"
    assert "ada@example.com already belongs to another slack account (verified" in str(taken.cause)

    # -- the table --------------------------------------------------------------------------
    for platform, who, how, expected in TABLE:
        row = f"{platform} {who} ({how})"
        note = await world.say(platform, who, f"!pd note PINC001 {how}")
        listing = await world.say(platform, who, "!pd incidents")
        notes = [email for email, text in world.pd.notes.get("PINC001", []) if text == how]
        if "@" in expected and " " not in expected:
            assert (note.outcome, notes) == ("ok", [expected]), row
            assert listing.outcome == "ok", row  # the role given to that address
        else:
            assert note.outcome == "denied" and notes == [], row
            assert expected in str(note.cause).lower(), (row, note.cause)
            assert listing.outcome == "denied", row
            assert "needs the role 'responder'" in str(listing.cause), row
    # every PagerDuty write named a real user, and none was made as the bot
    assert all(sender != "chatopsd-bot@example.com" for _, _, sender in world.pd.writes)


async def test_mallory_cannot_act_as_ada(world: World) -> None:
    """She links Ada's address from her Discord account and holds the `oncall` role, then
    tries every PagerDuty write. Ada, verified on Slack, is asked; Mallory gets nothing."""
    linked = await world.say("discord", MALLORY, "!pd link ada@example.com")
    assert linked.outcome == "pending"
    [ask] = world.slack_dms("U0ADA")
    request = dm_request_id(ask)
    again = await world.say("discord", MALLORY, "!pd link ada@example.com")
    assert again.outcome == "ok" and len(world.slack_dms("U0ADA")) == 1  # no flood of DMs
    for command in (
        "!pd ack PINC001",
        "!pd resolve PINC001 done",
        "!pd note PINC001 all good",
        "!pd reassign PINC001 grace@example.com",
        "!ic take 1h",
        "!incident page PIC1",
    ):
        refused = await world.say("discord", MALLORY, command)
        assert refused.outcome == "denied", (command, refused.cause)
        assert "your link to ada@example.com is not confirmed yet" in str(refused.cause).lower()
    # guessing the request id does not help: only Ada's own account can confirm it
    guessed = await world.say("discord", MALLORY, f"!pd link allow {request}")
    assert guessed.outcome == "denied" and "only an account that already has" in str(guessed.cause)
    # nor can an admin hand her Ada's address while Ada's account has it
    assert await world.app.part(ApprovalService).store.pending() == []
    assert world.pd.writes == [] and world.pd.overrides == {} and world.pd.notes == {}
    assert world.pd.incident("PINC001")["status"] == "triggered"
    # the real Ada is not locked out: her Slack account acts as her
    ack = await world.say("slack", "U0ADA", "!pd ack PINC001")
    assert ack.outcome == "ok", ack.cause
    assert world.pd.writes == [("PUT", "/incidents/PINC001", "ada@example.com")]


async def test_a_claim_is_never_accepted_on_a_guess(world: World) -> None:
    """Slack cannot say whether a member has the address: the claim is refused for now."""
    world.slack.fail("users.lookupByEmail", 200, "fatal_error")
    row = await world.say("discord", ED, "!pd link edsger@example.com")
    assert row.outcome == "failed"
    assert "could not ask slack whether someone there already uses" in str(row.cause)
    assert await world.app.part(ApprovalService).store.pending() == []
    assert await world.app.identities.links.link("discord", str(ED)) is None
