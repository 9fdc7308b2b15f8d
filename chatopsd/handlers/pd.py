"""`!pd ...`: work PagerDuty incidents from chat, as the person who asked.

Who is who: a chat user maps to a PagerDuty user by email. In order: an admin's link in
config (`[pagerduty.users]`), the email the platform gives (Slack users.info, Mattermost
GET /users/{id}), then a link made with `!pd link` (Discord gives no email). A platform's email
wins over a self-made link, and an email already claimed by someone else cannot be linked, so
`!pd link` cannot take over a colleague's PagerDuty identity. Every PagerDuty write is sent
with `From: <that email>`; without one the action is refused with how to link, never done
silently as the bot.

Clicks are claimed once per (incident, action), in the database (so across instances too):
when two people press Acknowledge together, one write goes to PagerDuty and the other is told
who got there first. A failed write frees the claim, so the buttons stay usable. `!pd ack
mine` takes the same claim for each incident it acknowledges.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence

from chatopsd.core import pd as core
from chatopsd.core.commands import Arg, CommandSpec
from chatopsd.core.context import Call
from chatopsd.core.errors import Forbidden, NotFound, UsageError
from chatopsd.core.messages import Inbound, Priority, Reply
from chatopsd.core.pd import IncidentApi, PdIncident, PdUser
from chatopsd.core.ports import ClickClaims, Clock, IdentityLinks
from chatopsd.core.times import UTC_TIMES, Times
from chatopsd.core.values import EMAIL_MAX, duration, is_email, whole_number
from chatopsd.handlers.pd_sync import IncidentSync

log = logging.getLogger("chatopsd.pd")

EmailLookup = Callable[[str, str], Awaitable[str | None]]  # (platform, user id) -> email
PD_ID = re.compile(r"[A-Z0-9]{5,}")
# PagerDuty snoozes and overrides made from chat: 1 second to 7 days.
MAX_DURATION = 7 * 24 * 3600
ROLE = "oncall"


class Identities:
    """Chat identity → PagerDuty email, in the order the module docstring gives."""

    def __init__(
        self,
        links: IdentityLinks,
        configured: Mapping[str, str],
        lookup: EmailLookup | None = None,
        *,
        clock: Clock | None = None,
        ttl: float = 3600.0,
    ) -> None:
        self.links = links
        self.configured = {k: v.lower() for k, v in configured.items()}
        self._lookup = lookup
        self.clock, self.ttl = clock, ttl
        # platform lookups (Mattermost GET /users/{id}) cached: one request per person per TTL
        self._seen: dict[tuple[str, str], tuple[float, str | None]] = {}

    async def lookup(self, platform: str, user_id: str) -> str | None:
        if self._lookup is None:
            return None
        now = self.clock.monotonic() if self.clock is not None else 0.0
        hit = self._seen.get((platform, user_id))
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        try:
            found = await self._lookup(platform, user_id)
        except Exception:  # a lookup failure is "unknown", never "act as the bot"; not cached
            log.warning("email lookup failed for %s:%s", platform, user_id, exc_info=True)
            return None
        found = found.lower() if found else None
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[(platform, user_id)] = (now, found)
        return found

    async def email(self, platform: str, user_id: str, given: str | None = None) -> str | None:
        if found := self.configured.get(f"{platform}:{user_id}"):
            return found
        if given:
            return given.lower()
        if found := await self.lookup(platform, user_id):
            return found
        return await self.links.email(platform, user_id)

    async def source(self, event: Inbound) -> tuple[str | None, str]:
        """(email, where it came from) for `!pd whoami`."""
        actor = event.actor
        if found := self.configured.get(f"{event.platform}:{actor.id}"):
            return found, "set by an admin in [pagerduty.users]"
        if actor.email:
            return actor.email.lower(), f"from your {event.platform} profile"
        if found := await self.lookup(event.platform, actor.id):
            return found, f"from your {event.platform} profile"
        if found := await self.links.email(event.platform, actor.id):
            return found, "linked with !pd link"
        return None, ""

    async def chat_ids(self, email: str, platform: str) -> list[str]:
        """User ids on `platform` linked to this email (by an admin or `!pd link`)."""
        email, prefix = email.lower(), f"{platform}:"
        found = [k for k, v in self.configured.items() if v == email and k.startswith(prefix)]
        found += [h for h in await self.links.holders(email) if h.startswith(prefix)]
        return list(dict.fromkeys(f.removeprefix(prefix) for f in found))

    async def claimed_by_other(self, email: str, platform: str, user_id: str) -> bool:
        """Linked to someone else already, by an admin or with `!pd link`."""
        me = f"{platform}:{user_id}"
        email = email.lower()
        if any(v == email and k != me for k, v in self.configured.items()):
            return True
        return any(h != me for h in await self.links.holders(email))


class PdHandler:
    def __init__(
        self,
        api: IncidentApi,
        sync: IncidentSync,
        identities: Identities,
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
            spec(
                ("link",),
                "link your chat identity to your PagerDuty email",
                self.link,
                (Arg("email", "your PagerDuty login email"),),
                pages=False,
            ),
            spec(("whoami",), "the PagerDuty user you act as", self.whoami, pages=False),
        ]

    # -- identity ----------------------------------------------------------------------------

    async def sender(self, call: Call) -> str:
        """The caller's PagerDuty email, or Forbidden with how to link."""
        e = call.event
        email = await self.identities.email(e.platform, e.actor.id, e.actor.email)
        if email is None:
            raise Forbidden(
                "I don't know your PagerDuty user, and I never act in PagerDuty as the bot "
                "on someone's behalf.",
                hint=(
                    f"link yourself: {call.prefix}pd link you@example.com (or ask an admin to "
                    f'add "{e.platform}:{e.actor.id}" = "you@example.com" under [pagerduty.users])'
                ),
            )
        # Checked here, so the refusal says what to do instead of PagerDuty's bare 400.
        if await self.api.user_by_email(email) is None:
            raise Forbidden(
                f"{email} is not a PagerDuty user, so I cannot act in PagerDuty as you",
                hint=f"link your PagerDuty login: {call.prefix}pd link you@example.com",
            )
        return email

    async def link(self, call: Call) -> Reply:
        email = (call.text("email") or "").strip().lower().strip("<>")
        if email.startswith("mailto:"):
            email = email[7:].split("|", 1)[0]
        if not is_email(email):
            raise UsageError(
                f"{_cut(email)!r} is not an email address",
                hint=f"at most {EMAIL_MAX} characters, like you@example.com",
            )
        e = call.event
        if await self.identities.claimed_by_other(email, e.platform, e.actor.id):
            raise Forbidden(
                f"{email} is already linked to someone else",
                hint="if that is wrong, ask an admin to set it under [pagerduty.users]",
            )
        user = await self.api.user_by_email(email)
        if user is None:
            raise NotFound(f"PagerDuty has no user with the email {email}")
        await self.identities.links.link(e.platform, e.actor.id, email)
        return Reply(text=f"Linked: you act in PagerDuty as {user.name} ({email}).", ephemeral=True)

    async def whoami(self, call: Call) -> Reply:
        email, where = await self.identities.source(call.event)
        if email is None:
            return Reply(
                text=f"You are not linked to a PagerDuty user. Link with "
                f"{call.prefix}pd link you@example.com.",
                ephemeral=True,
            )
        user = await self.api.user_by_email(email)
        who = f"{user.name} ({email}, {user.id})" if user else f"{email} (no such PagerDuty user!)"
        return Reply(text=f"You act in PagerDuty as {who}; {where}.", ephemeral=True)

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
        chat_id = query.removeprefix("<").removesuffix(">").lstrip("@!")
        email = await self.identities.email(call.event.platform, chat_id) if chat_id else None
        if email is None and is_email(query):
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
