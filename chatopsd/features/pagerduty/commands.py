"""`!pd ...`: work PagerDuty incidents from chat, as the person who asked.

Who is who is the identity service's answer (core/identity.py): an admin's entry in config,
an address the platform verified, or a `!pd link` someone who can vouch for it confirmed
(links.py). Every PagerDuty write is sent with `From: <that email>`; without one the
action is refused with what to do, never done silently as the bot.

Clicks are claimed once per (incident, action), in the database (so across instances too):
when two people press Acknowledge together, one write goes to PagerDuty and the other is told
who got there first. A failed write frees the claim, so the buttons stay usable. `!pd ack
mine` takes the same claim for each incident it acknowledges.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence

from chatopsd.core.commands import Arg, CommandSpec
from chatopsd.core.context import Call
from chatopsd.core.errors import Forbidden, NotFound, UsageError
from chatopsd.core.identity import unknown_reason
from chatopsd.core.messages import Priority, Reply
from chatopsd.core.ports import Clock
from chatopsd.core.times import UTC_TIMES, Times
from chatopsd.core.values import duration, is_email, whole_number
from chatopsd.features.pagerduty import rules as core
from chatopsd.features.pagerduty.cards import IncidentSync
from chatopsd.features.pagerduty.ports import ClickClaims
from chatopsd.features.pagerduty.rules import IncidentApi, PdIncident, PdUser
from chatopsd.identity.service import IdentityService

log = logging.getLogger("chatopsd.pd")

PD_ID = re.compile(r"[A-Z0-9]{5,}")
# PagerDuty snoozes and overrides made from chat: 1 second to 7 days.
MAX_DURATION = 7 * 24 * 3600
ROLE = "oncall"


class PagerDutyHandler:
    def __init__(
        self,
        api: IncidentApi,
        sync: IncidentSync,
        identities: IdentityService,
        clock: Clock,
        *,
        service_ids: Sequence[str],
        claims: ClickClaims,
        times: Times = UTC_TIMES,
    ) -> None:
        self.times = times
        self.api, self.sync, self.identities, self.clock = api, sync, identities, clock
        self.service_ids = tuple(service_ids)
        self.claims = claims  # (incident, action) -> who clicked first, in the database

    def commands(self) -> list[CommandSpec]:
        target = Arg("incident", "its number (#12), its PagerDuty id, or mine")

        def rest(name: str, help: str, required: bool = True) -> Arg:
            return Arg(name, help, kind="rest", required=required)

        def spec(
            words: tuple[str, ...],
            summary: str,
            handler: Callable[[Call], Awaitable[Reply | list[Reply]]],
            args: tuple[Arg, ...] = (),
            *,
            pages: bool = True,
            examples: tuple[str, ...] = (),
        ) -> CommandSpec:
            return CommandSpec(
                ("pd", *words),
                summary,
                handler,
                args,
                role=ROLE if pages else None,
                pages=pages,
                mutates=pages,
                priority=Priority.PAGE if pages else Priority.NORMAL,
                examples=examples,
            )

        return [
            spec(
                ("incidents",),
                "open PagerDuty incidents on the followed services",
                self.incidents,
                pages=False,
            ),
            spec(
                ("incidents", "--all"),
                "open PagerDuty incidents on every service",
                self.incidents_all,
                pages=False,
            ),
            spec(
                ("ack",),
                "acknowledge an incident (or all of yours: mine)",
                self.ack,
                (target,),
                examples=("pd ack 12", "pd ack mine"),
            ),
            spec(
                ("resolve",),
                "resolve an incident, with an optional note",
                self.resolve,
                (target, rest("note", "a resolution note", False)),
            ),
            spec(
                ("note",),
                "add a note to an incident",
                self.note,
                (target, rest("text", "the note")),
            ),
            spec(
                ("reassign",),
                "reassign an incident to someone",
                self.reassign,
                (target, rest("user", "an email, a name, or a linked chat user")),
            ),
            spec(
                ("escalate",),
                "escalate an incident (next level by default)",
                self.escalate,
                (target, Arg("level", "escalation level", kind="int", required=False)),
            ),
            spec(
                ("snooze",),
                "snooze an acknowledged incident",
                self.snooze,
                (target, Arg("duration", "e.g. 30m, 2h, 1h30m")),
                examples=("pd snooze 12 1h",),
            ),
        ]

    # -- identity ----------------------------------------------------------------------------

    async def sender(self, call: Call) -> str:
        """The caller's PagerDuty email, or Forbidden saying what to do."""
        me = await self.identities.of_call(call)
        if me.email is None:
            why, todo = unknown_reason(me, call.prefix)
            raise Forbidden(f"{why[0].upper()}{why[1:]}.", hint=todo)
        # Checked here, so the refusal says what to do instead of PagerDuty's bare 400.
        if await self.api.user_by_email(me.email) is None:
            raise Forbidden(
                f"{me.email} is not a PagerDuty user, so I cannot act in PagerDuty as you",
                hint=f"link your PagerDuty login: {call.prefix}pd link you@example.com",
            )
        return me.email

    # -- reading -----------------------------------------------------------------------------

    async def incidents(self, call: Call) -> list[Reply]:
        found = await self.api.open_incidents(self.service_ids)
        scope = ", ".join(self.service_ids) or "every service"
        return core.listing(found, self.clock.now(), scope)

    async def incidents_all(self, call: Call) -> list[Reply]:
        return core.listing(await self.api.open_incidents(()), self.clock.now(), "every service")

    async def _target(self, raw: str) -> str:
        """An incident id from "12", "#12" or "PABC123"."""
        word = raw.strip().lstrip("#")
        if word.isdigit():
            number = whole_number(word, "the incident number")
            known = await self.sync.cards.by_number(number)
            if known is not None:
                return known
            for inc in await self.api.open_incidents(self.service_ids):
                if inc.number == number:
                    return inc.id
            raise NotFound(f"no open PagerDuty incident #{number} on the followed services")
        if PD_ID.fullmatch(word):
            return word
        raise UsageError(f"{_cut(raw)!r} is not an incident number or PagerDuty id")

    # -- writing -----------------------------------------------------------------------------

    async def ack(self, call: Call) -> Reply:
        sender = await self.sender(call)
        raw = call.text("incident") or ""
        if raw.lower() == "mine":
            return await self._ack_mine(call, sender)
        incident_id = await self._target(raw)
        done = await self._claimed(call, incident_id, "acknowledged", sender, status="acknowledged")
        return Reply(text=f"#{done.number} {done.title}: {core.state_line(done, self.times)}.")

    async def resolve(self, call: Call) -> Reply:
        sender = await self.sender(call)
        incident_id = await self._target(call.text("incident") or "")
        note = call.text("note")
        done = await self._claimed(
            call, incident_id, "resolved", sender, status="resolved", resolution=note
        )
        return Reply(text=f"#{done.number} {done.title}: {core.state_line(done, self.times)}.")

    async def _claimed(
        self,
        call: Call,
        incident_id: str,
        verb: str,
        sender: str,
        *,
        status: str,
        resolution: str | None = None,
    ) -> PdIncident:
        """One write per (incident, action), whoever clicks: the rest are told who won."""
        known = await self.sync.current(incident_id)
        if known is not None and known.status == verb and verb != "triggered":
            raise UsageError(f"#{known.number} is already {core.state_line(known, self.times)}")
        if known is not None and known.status == "resolved":
            raise UsageError(f"#{known.number} is already {core.state_line(known, self.times)}")
        who = call.event.actor.display
        e = call.event
        event = f"{e.platform}:{e.event_id}" if e.event_id else ""
        claim = await self.claims.claim(incident_id, verb, who, self.clock.now().timestamp(), event)
        if claim is None:
            holder = await self.claims.holder(incident_id, verb)
            raise UsageError(f"already {verb} by {holder or 'someone else'}")
        try:
            done = await self.api.update(incident_id, sender, status=status, resolution=resolution)
        finally:
            await self.claims.release(incident_id, verb, claim)
        await self._show(done)
        return done

    async def _show(self, done: PdIncident) -> None:
        try:
            await self.sync.record(done)
        except Exception:  # PagerDuty has it; the next poll will show it
            log.warning("card update after a chat action failed", exc_info=True)

    async def _ack_mine(self, call: Call, sender: str) -> Reply:
        """Acknowledge every triggered incident assigned to the sender, each under the same
        (incident, acknowledged) claim as a click: an incident someone is acknowledging on
        another instance (a click, another `mine`) gets one write, theirs."""
        me = await self.api.user_by_email(sender)
        if me is None:
            raise NotFound(f"PagerDuty has no user with the email {sender}")
        mine = [
            i
            for i in await self.api.open_incidents(self.service_ids)
            if i.status == "triggered" and me.id in i.assignee_ids
        ]
        if not mine:
            return Reply(text="Nothing triggered is assigned to you.")
        e = call.event
        event = f"{e.platform}:{e.event_id}" if e.event_id else ""
        who = e.actor.display
        done, taken = [], []
        for inc in mine:
            now = self.clock.now().timestamp()
            claim = await self.claims.claim(inc.id, "acknowledged", who, now, event)
            if claim is None:
                holder = await self.claims.holder(inc.id, "acknowledged")
                taken.append(f"#{inc.number} (by {holder or 'someone else'})")
                continue
            try:
                after = await self.api.update(inc.id, sender, status="acknowledged")
            finally:
                await self.claims.release(inc.id, "acknowledged", claim)
            await self._show(after)
            done.append(f"#{after.number}")
        text = f"Acknowledged {', '.join(done)} as {me.name}." if done else ""
        if taken:
            text += (" " if text else "") + f"Already being acknowledged: {', '.join(taken)}."
        return Reply(text=text)

    async def note(self, call: Call) -> Reply:
        sender = await self.sender(call)
        incident_id = await self._target(call.text("incident") or "")
        text = call.text("text") or ""
        await self.api.note(incident_id, sender, text)
        return Reply(text=f"Note added to {incident_id} as {sender}.")

    async def reassign(self, call: Call) -> Reply:
        sender = await self.sender(call)
        incident_id = await self._target(call.text("incident") or "")
        user = await self.user(call, call.text("user") or "")
        done = await self.api.update(incident_id, sender, assignee_ids=[user.id])
        await self._show(done)
        return Reply(text=f"#{done.number} reassigned to {user.name}.")

    async def escalate(self, call: Call) -> Reply:
        sender = await self.sender(call)
        incident_id = await self._target(call.text("incident") or "")
        level = call.args.get("level")
        if not isinstance(level, int):
            known = await self.sync.current(incident_id) or await self.api.get(incident_id)
            level = (known.level or 1) + 1
        if level < 1:
            raise UsageError("the escalation level starts at 1")
        done = await self.api.update(incident_id, sender, level=level)
        done = done.with_level(level)
        await self._show(done)
        return Reply(text=f"#{done.number} escalated to level {level}.")

    async def snooze(self, call: Call) -> Reply:
        sender = await self.sender(call)
        incident_id = await self._target(call.text("incident") or "")
        seconds = parse_duration(call.text("duration") or "")
        done = await self.api.snooze(incident_id, sender, seconds)
        await self._show(done)
        return Reply(text=f"#{done.number} snoozed for {call.text('duration')}.")

    async def user(self, call: Call, query: str) -> PdUser:
        """A PagerDuty user from an email, a name, or a chat mention of a linked person."""
        query = query.strip()
        email: str | None = None
        person = await self.identities.of_mention(call.event.platform, query)
        if person is not None:
            if person.email is None:
                raise NotFound(
                    f"I don't know the PagerDuty user of {query}",
                    hint="they can link themselves with !pd link, or use an email",
                )
            email = person.email
        elif is_email(query):
            email = query.lower()
        if email is not None:
            user = await self.api.user_by_email(email)
            if user is None:
                raise NotFound(f"PagerDuty has no user with the email {email}")
            return user
        found = await self.api.find_users(query)
        if not found:
            raise NotFound(f"nobody in PagerDuty matches {query!r}")
        if len(found) > 1:
            names = ", ".join(u.name for u in found[:5])
            raise UsageError(f"{len(found)} people match {query!r}: {names}", hint="use an email")
        return found[0]


def parse_duration(text: str) -> int:
    """ "90s", "30m", "2h", "1h30m", "1d" → seconds (PagerDuty takes 1 s to 7 days)."""
    return duration(text, maximum=MAX_DURATION)


def _cut(text: str) -> str:
    """A typed value quoted back in a refusal, kept short."""
    return text if len(text) <= 60 else text[:60] + "…"
