"""`!ic ...`: who is on call, and paging them. Answers come from the on-call cache.

Truth first: an answer built from no data says so before anything else ("I can't tell who is
on call: ..."), never "nobody is on call"; whenever the cache cannot answer (no data, or stale)
the configured fallback contacts are listed, so there is always someone to call by hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from chatopsd.core.commands import Arg, CommandSpec
from chatopsd.core.context import Call
from chatopsd.core.errors import NotFound, Unavailable, UsageError
from chatopsd.core.messages import Button, Priority, Reply, Sent
from chatopsd.core.outcome import Outcome
from chatopsd.core.ports import Clock, SystemClock
from chatopsd.core.times import UTC_TIMES, Times
from chatopsd.features.paging.api import (
    Directory,
    PageLog,
    Pager,
    PageRecord,
    PageResult,
    Person,
    Roster,
)
from chatopsd.identity.service import IdentityService

log = logging.getLogger("chatopsd.ic")

SEARCH_BEFORE_PAGE = 1.0  # seconds a one-word `!ic page <word>` may spend asking who <word> is
_TITLES: dict[str, str] = {"ic": "Incident Commanders", "responders": "Responders"}


class PagingHandler:
    def __init__(
        self,
        directory: Directory,
        pager: Pager,
        *,
        page_deadline: float = 8.0,
        on_paged: Callable[[Call, PageResult], Awaitable[None]] | None = None,
        clock: Clock | None = None,
        fallback: Sequence[Person] = (),
        page_log: PageLog | None = None,
        repage_window: float = 300.0,
        services: Sequence[str] = (),
        times: Times = UTC_TIMES,
        identities: IdentityService | None = None,
    ) -> None:
        self.times = times
        self.identities = identities  # who a chat mention names
        self.directory = directory
        self.pager = pager
        self.page_deadline = page_deadline
        # e.g. the incident handler linking the page to the incident whose channel this is
        self.on_paged = on_paged
        self.clock: Clock = clock or SystemClock()
        self.fallback = tuple(fallback)  # pagerduty.fallback_contacts
        self.page_log = page_log
        self.repage_window = repage_window
        self.services = tuple(services)  # pagerduty.services names

    def commands(self) -> list[CommandSpec]:
        user = Arg("user", "a chat mention, email or name", kind="rest")
        target = Arg(
            "target",
            "a mention or email to page one person; any other words are the reason, "
            "put in the PagerDuty incident's title",
            kind="rest",
            required=False,
        )
        return [
            CommandSpec(("ic",), "the Incident Commanders on call now", self.show_ics),
            CommandSpec(
                ("ic", "responders"),
                "everyone on call on the responder schedules",
                self.show_responders,
            ),
            CommandSpec(
                ("ic", "service"),
                "who is on call for one service (pagerduty.services)",
                self.show_service,
                (Arg("service", "a service name from the config"),),
                examples=("ic service payments",),
            ),
            CommandSpec(
                ("ic", "who"),
                "contact details for one person",
                self.who,
                (user,),
                examples=("ic who jane@example.com",),
            ),
            CommandSpec(
                ("ic", "page"),
                "page the Incident Commanders (with a reason), or one person",
                self.page,
                (target,),
                pages=True,
                priority=Priority.PAGE,
                examples=("ic page", "ic page checkout is down", "ic page jane@example.com"),
            ),
            CommandSpec(
                ("ic", "page", "again"),
                "page now even if a page went out in the last few minutes",
                self.page_again,
                (target,),
                pages=True,
                priority=Priority.PAGE,
            ),
            CommandSpec(
                ("ic", "page", "responders"),
                "page everyone on the responder schedules",
                self.page_responders,
                pages=True,
                priority=Priority.PAGE,
            ),
        ]

    # -- who is on call --------------------------------------------------------------------

    async def show_ics(self, call: Call) -> Reply:
        return self._show(call, "ic", await self.directory.roster("ic"))

    async def show_responders(self, call: Call) -> Reply:
        return self._show(call, "responders", await self.directory.roster("responders"))

    async def show_service(self, call: Call) -> Reply:
        asked = call.text("service") or ""
        known = {s.lower(): s for s in self.services}
        name = known.get(asked.lower())
        if name is None:
            listing = f"I know: {', '.join(self.services)}." if self.services else ""
            raise NotFound(
                f"I don't know a service called {asked}. {listing}".strip(),
                hint="services are listed under pagerduty.services in the config",
            )
        return self._show(call, f"service:{name}", await self.directory.roster(f"service:{name}"))

    def _show(self, call: Call, group: str, roster: Roster) -> Reply:
        command = "ic page" if group != "responders" else "ic page responders"
        title = _TITLES.get(group) or f"People on call for {group.removeprefix('service:')}"
        if not roster.entries:
            if roster.answers:
                return Reply(
                    # PagerDuty answered, recently, that nobody is on these schedules.
                    title=f"No {title} on call"
                    if group in _TITLES
                    else f"Nobody on call for {group.removeprefix('service:')}",
                    text="PagerDuty lists nobody on these schedules right now.",
                    fields=_contacts(self.fallback, "fallback"),
                )
            call.set_outcome(Outcome.FAILED, _unknown(roster, self.times))
            return Reply(
                title="⚠ Can't tell who is on call"
                + ("" if roster.configured else ": PagerDuty is not configured"),
                text=_cant_tell(roster, self.times) + self._by_hand(),
                fields=_contacts(self.fallback, "fallback"),
            )
        fields = tuple(
            _field(
                e.person,
                f"{e.schedule_name}, {e.role}"
                + (f", until {self.times.day(e.until)}" if e.until else ""),
            )
            for e in roster.entries
        )
        text = f"Page them with {call.prefix}{command}."
        if note := _freshness(roster, self.times):
            # the cause first, then who is on call, then whom to call if they do not answer
            text = f"{note}\n{text}"
            fields += self._fallback_after()
        label = _TITLES.get(group, "Incident Commanders")
        return Reply(
            title=title if group.startswith("service:") else f"{title} on call",
            fields=fields,
            text=text,
            buttons=(Button(f"Page {label}", command, "danger"),),
        )

    def _by_hand(self) -> str:
        if not self.fallback:
            return ""
        return "\nIf you cannot reach anyone, call the fallback contacts:"

    def _fallback_after(self) -> tuple[tuple[str, str], ...]:
        """The fallback contacts as one field, to follow the people on call: its label is
        the header, so it can never sit above their names."""
        if not self.fallback:
            return ()
        listed = " · ".join(f"{p.name} {', '.join(p.phones)}" for p in self.fallback)
        return (("If you cannot reach anyone, call the fallback contacts", listed),)

    async def who(self, call: Call) -> Reply:
        person = await self._one(call.text("user") or "", call.event.platform)
        text = f"Page them with {call.prefix}ic page {person.email or person.name}."
        roster = await self.directory.roster("ic")  # in memory: how old the cache is
        if roster.configured and (note := _freshness(roster, self.times)):
            text = f"{note}\n{text}"  # cached numbers, served with their age
        return Reply(title=person.name, fields=(_field(person, "contact"),), text=text)

    # -- paging ----------------------------------------------------------------------------

    async def page(self, call: Call) -> Reply:
        return await self._page_command(call, again=False)

    async def page_again(self, call: Call) -> Reply:
        return await self._page_command(call, again=True)

    async def page_responders(self, call: Call) -> Reply:
        roster = await self.directory.roster("responders")
        # (no "already paged" window here: that guards the IC page, the 3am reflex)
        return await self._page(
            call, roster.people(), "the Responders", roster, "responders", again=True
        )

    async def _page_command(self, call: Call, *, again: bool) -> Reply:
        words = (call.text("target") or "").split()
        person, reason = await self._target(words, call.event.platform)
        if person is not None:
            return await self._page(
                call, [person], person.name, None, f"person:{person.id}", reason, again
            )
        roster = await self.directory.roster("ic")
        return await self._page(
            call, roster.people(), "the Incident Commanders", roster, "ic", reason, again
        )

    async def _target(self, words: Sequence[str], platform: str) -> tuple[Person | None, str]:
        """(one person to page, reason). A mention or an email first names a person; a single
        word that is someone in the on-call cache does too; any other words are a reason."""
        if not words:
            return None, ""
        first = words[0]
        if "@" in first or first.startswith("<"):
            return await self._one(first, platform), " ".join(words[1:])
        if len(words) == 1:
            found = await self.directory.find(first, search=False)
            if not found:
                # Someone not on call ("!ic page linus")? Ask PagerDuty, briefly: a one-word
                # reason must not hold the page up for long.
                try:
                    async with asyncio.timeout(SEARCH_BEFORE_PAGE):
                        found = await self.directory.find(first)
                except (TimeoutError, Unavailable):
                    found = []
            if len(found) == 1:
                return found[0], ""
            if len(found) > 1:
                raise _ambiguous(first, found)
        return None, " ".join(words)

    async def _one(self, query: str, platform: str) -> Person:
        if not query.strip():
            raise UsageError("say who: a mention, an email or a name")
        named = (
            await self.identities.of_mention(platform, query.strip())
            if self.identities is not None
            else None
        )
        if named is not None:
            # a chat mention: the person's email as the identity service trusts it
            if named.email is None:
                raise NotFound(
                    f"I don't know who {query.strip()} is in PagerDuty",
                    hint="use their email or name (they can link themselves with !pd link)",
                )
            query = named.email
        found = await self.directory.find(query)
        if not found:
            raise NotFound(f"nobody matches {query!r} in the on-call directory")
        if len(found) > 1:
            raise _ambiguous(query, found)
        return found[0]

    async def _page(
        self,
        call: Call,
        people: Sequence[Person],
        whom: str,
        roster: Roster | None,
        target: str,
        reason: str = "",
        again: bool = False,
    ) -> Reply:
        if roster is not None and not roster.configured:
            why = roster.error or "PagerDuty is not configured"
            call.set_outcome(Outcome.FAILED, why)
            return Reply(
                title=f"⚠ Cannot page {whom}: PagerDuty is not configured",
                text=f"{why}. Call them by hand." + self._by_hand(),
                fields=_contacts(self.fallback, "fallback"),
                priority=Priority.PAGE,
            )
        if not again and (earlier := await self._recent(target)) is not None:
            call.set_outcome(Outcome.OK, f"already paged at {self.times.hm(earlier.at)}")
            again_cmd = "ic page again"
            if target.startswith("person:") and people:
                again_cmd += f" {people[0].email or people[0].name}"
            return Reply(
                title=f"{whom[0].upper()}{whom[1:]}: already paged",
                text=f"Already paged at {self.times.hm(earlier.at)} by {earlier.actor} "
                f"({earlier.url}).",
                buttons=(Button("Page again", again_cmd, "danger"),),
                priority=Priority.PAGE,
            )
        # Said at once on every platform; edited with the result below.
        interim = asyncio.get_running_loop().create_task(
            call.outbox.send(
                call.destination, Reply(text=f"Paging {whom}…", priority=Priority.PAGE)
            ),
            name=f"paging-notice:{call.ref}",
        )
        try:
            reply = await self._send_page(call, people, whom, roster, target, reason)
        finally:
            call.replaces = await _posted(interim)
        return reply

    async def _send_page(
        self,
        call: Call,
        people: Sequence[Person],
        whom: str,
        roster: Roster | None,
        target: str,
        reason: str,
    ) -> Reply:
        actor = call.event.actor.display
        where = f"{call.event.platform} #{call.event.channel}"
        summary = f"{actor} is paging {whom} from {where}"
        if reason:
            summary = f"{reason} ({actor} paging {whom} from {where})"
        try:
            async with asyncio.timeout(self.page_deadline):
                result = await self.pager.page(people, summary, call.key)
        except (Unavailable, TimeoutError) as exc:
            what = str(exc) or f"no answer from the pager within {self.page_deadline:.0f} s"
            log.error("page failed command=%r ref=%s: %s", call.command, call.ref, what)
            call.set_outcome(Outcome.FAILED, what)
            return self._fallback_reply(people, whom, what, roster)
        call.set_outcome(Outcome.OK, f"incident {result.incident_id}")
        if self.page_log is not None:
            await self.page_log.record(PageRecord(target, self.clock.now(), actor, result.url))
        if self.on_paged is not None:
            try:
                await self.on_paged(call, result)
            except Exception:  # the page went out; a failed link must not hide that
                log.exception("after-page hook failed ref=%s", call.ref)
        if result.paged:
            names = ", ".join(p.name for p in result.paged)
        else:
            names = f"{whom} through the service's escalation policy"
        lines = [
            f"Paged {names}."
            if not result.duplicate
            else f"Already paged for this request: {names}.",
            f"Incident: {result.url}",
        ]
        if not result.paged:
            lines.append(
                "The on-call cache is empty, so PagerDuty chose whom to notify."
                + (
                    f" {_unknown(roster, self.times)}."
                    if roster is not None and not roster.answers
                    else ""
                )
            )
        if reason:
            lines.append(f"Reason: {reason}")
        lines.extend(result.notes)
        return Reply(title=f"Paging {whom}", text="\n".join(lines), priority=Priority.PAGE)

    async def _recent(self, target: str) -> PageRecord | None:
        if self.page_log is None or self.repage_window <= 0:
            return None
        last = await self.page_log.last(target)
        if last is None:
            return None
        age = (self.clock.now() - last.at).total_seconds()
        return last if 0 <= age < self.repage_window else None

    def _fallback_reply(
        self, people: Sequence[Person], whom: str, what: str, roster: Roster | None
    ) -> Reply:
        # The cause first (what failed, how old the numbers are), then whom to call: the
        # people paged, then the fallback contacts if they do not answer.
        text = f"Could not page {whom}: {what}."
        if roster is not None and people and (note := _freshness(roster, self.times)):
            text += f"\n{note}"
        fields = tuple(_field(p, "") for p in people)
        cache_short = roster is not None and not roster.answers
        fallback = self.fallback and (cache_short or not people)
        if people:
            text += "\nCall them now:"
            if fallback:
                fields += self._fallback_after()
        else:
            if roster is not None and not roster.answers:
                text += f"\n{_cant_tell(roster, self.times)}"
            else:
                text += "\nNobody to call from the on-call cache; escalate by hand."
            if fallback:
                text += self._by_hand()
                fields += _contacts(self.fallback, "fallback")
        return Reply(
            title=f"⚠ PAGING FAILED: {whom}",
            text=text,
            fields=fields,
            priority=Priority.PAGE,
        )


async def _posted(interim: asyncio.Task[Sent | None]) -> Sent | None:
    """The "Paging…" message, if it was posted (None: the result is posted as a new one)."""
    try:
        return await interim
    except Exception:
        log.warning("could not post the paging notice", exc_info=True)
        return None


def _ambiguous(query: str, found: Sequence[Person]) -> UsageError:
    names = ", ".join(p.name for p in found[:5])
    return UsageError(
        f"{len(found)} people match {query!r}: {names}", hint="use their email to pick one"
    )


def _field(person: Person, role: str) -> tuple[str, str]:
    label = f"{person.name} ({role})" if role else person.name
    contact = ", ".join(person.phones) or "no phone number on file"
    if person.email:
        contact += f" · {person.email}"
    return label, contact


def _contacts(people: Sequence[Person], role: str) -> tuple[tuple[str, str], ...]:
    return tuple(_field(p, role) for p in people)


def _unknown(roster: Roster, times: Times) -> str:
    """Why the cache cannot answer, in a few words (the audit cause)."""
    if not roster.configured:
        return roster.error or "PagerDuty is not configured"
    if roster.failing_since is not None:
        return f"PagerDuty failing since {times.hm(roster.failing_since)} ({roster.error})"
    return "no on-call data from PagerDuty yet"


def _cant_tell(roster: Roster, times: Times) -> str:
    """The first line of an answer built from nothing: it says so, never "nobody"."""
    if not roster.configured:
        return f"I can't tell who is on call: {roster.error or 'PagerDuty is not configured'}."
    if roster.failing_since is not None:
        answered = f"PagerDuty has not answered since {times.hm(roster.failing_since)}"
        if roster.error:
            answered += f" ({roster.error})"
    else:
        answered = "PagerDuty has not answered yet (the first refresh is still running)"
    if roster.as_of is None:
        return f"I can't tell who is on call: {answered}, and there is no cached data."
    return (
        f"I can't tell who is on call: {answered}; the last data, as of "
        f"{times.hm(roster.as_of)}, listed nobody."
    )


def _freshness(roster: Roster, times: Times) -> str:
    if not roster.stale and not roster.failing_since:
        return ""
    as_of = times.hm(roster.as_of) if roster.as_of else "never"
    since = f" since {times.hm(roster.failing_since)}" if roster.failing_since else ""
    why = f" ({roster.error})" if roster.error else ""
    return f"On-call data as of {as_of}; PagerDuty unreachable{since}{why}."
