"""`!ic ...`: who is on call, and paging them. Answers come from the on-call cache."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from chatopsd.core.commands import Arg, CommandSpec
from chatopsd.core.context import Call
from chatopsd.core.errors import NotFound, Unavailable, UsageError
from chatopsd.core.messages import Button, Priority, Reply
from chatopsd.core.oncall import Directory, Group, Pager, PageResult, Person, Roster
from chatopsd.core.times import UTC_TIMES, Times

log = logging.getLogger("chatopsd.ic")

_TITLES: dict[Group, str] = {"ic": "Incident Commanders", "responders": "Responders"}


class IcHandler:
    def __init__(
        self,
        directory: Directory,
        pager: Pager,
        *,
        page_deadline: float = 8.0,
        on_paged: Callable[[Call, PageResult], Awaitable[None]] | None = None,
        times: Times = UTC_TIMES,
    ) -> None:
        self.times = times
        self.directory = directory
        self.pager = pager
        self.page_deadline = page_deadline
        # e.g. the incident handler linking the page to the incident whose channel this is
        self.on_paged = on_paged

    def commands(self) -> list[CommandSpec]:
        user = Arg("user", "a chat mention, email or name", kind="rest")
        return [
            CommandSpec(("ic",), "the Incident Commanders on call now", self.show_ics),
            CommandSpec(
                ("ic", "responders"),
                "everyone on call on the responder schedules",
                self.show_responders,
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
                "page the Incident Commanders, or one person",
                self.page,
                (Arg(user.name, user.help, kind="rest", required=False),),
                pages=True,
                priority=Priority.PAGE,
                examples=("ic page", "ic page jane@example.com"),
            ),
            CommandSpec(
                ("ic", "page", "responders"),
                "page everyone on the responder schedules",
                self.page_responders,
                pages=True,
                priority=Priority.PAGE,
            ),
        ]

    async def show_ics(self, call: Call) -> Reply:
        return self._show(call, "ic", await self.directory.roster("ic"))

    async def show_responders(self, call: Call) -> Reply:
        return self._show(call, "responders", await self.directory.roster("responders"))

    def _show(self, call: Call, group: Group, roster: Roster) -> Reply:
        command = "ic page" if group == "ic" else "ic page responders"
        if not roster.entries:
            return Reply(
                title=f"No {_TITLES[group]} on call",
                text=_freshness(roster, self.times)
                or roster.error
                or "The on-call schedules are empty right now.",
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
            text = f"{note}\n{text}"
        return Reply(
            title=f"{_TITLES[group]} on call",
            fields=fields,
            text=text,
            buttons=(Button(f"Page {_TITLES[group]}", command, "danger"),),
        )

    async def who(self, call: Call) -> Reply:
        person = await self._one(call.text("user") or "")
        return Reply(
            title=person.name,
            fields=(_field(person, "contact"),),
            text=f"Page them with {call.prefix}ic page {person.email or person.name}.",
        )

    async def page(self, call: Call) -> Reply:
        query = call.text("user")
        if query:
            person = await self._one(query)
            return await self._page(call, [person], person.name, Roster((), None))
        roster = await self.directory.roster("ic")
        return await self._page(call, roster.people(), "the Incident Commanders", roster)

    async def page_responders(self, call: Call) -> Reply:
        roster = await self.directory.roster("responders")
        return await self._page(call, roster.people(), "the Responders", roster)

    async def _one(self, query: str) -> Person:
        if not query.strip():
            raise UsageError("say who: a mention, an email or a name")
        found = await self.directory.find(query)
        if not found:
            raise NotFound(f"nobody matches {query!r} in the on-call directory")
        if len(found) > 1:
            names = ", ".join(p.name for p in found[:5])
            raise UsageError(
                f"{len(found)} people match {query!r}: {names}", hint="use their email to pick one"
            )
        return found[0]

    async def _page(self, call: Call, people: Sequence[Person], whom: str, roster: Roster) -> Reply:
        actor = call.event.actor.display
        summary = f"{actor} is paging {whom} from {call.event.platform} #{call.event.channel}"
        try:
            if not people:
                raise Unavailable("nobody is on call to page")
            async with asyncio.timeout(self.page_deadline):
                result = await self.pager.page(people, summary, call.key)
        except (Unavailable, TimeoutError) as exc:
            what = str(exc) or f"no answer from the pager within {self.page_deadline:.0f} s"
            log.error("page failed command=%r ref=%s: %s", call.command, call.ref, what)
            return _fallback(people, whom, what, roster, self.times)
        if self.on_paged is not None:
            try:
                await self.on_paged(call, result)
            except Exception:  # the page went out; a failed link must not hide that
                log.exception("after-page hook failed ref=%s", call.ref)
        names = ", ".join(p.name for p in result.paged)
        lines = [
            f"Paged {names}."
            if not result.duplicate
            else f"Already paged for this request: {names}.",
            f"Incident: {result.url}",
        ]
        lines.extend(result.notes)
        return Reply(title=f"Paging {whom}", text="\n".join(lines), priority=Priority.PAGE)


def _fallback(
    people: Sequence[Person], whom: str, what: str, roster: Roster, times: Times
) -> Reply:
    text = f"Could not page {whom}: {what}."
    if people:
        text += "\nCall them now:"
    else:
        text += "\nNobody to call from the on-call cache; escalate by hand."
    if note := _freshness(roster, times):
        text += f"\n{note}"
    return Reply(
        title=f"⚠ PAGING FAILED: {whom}",
        text=text,
        fields=tuple(_field(p, "") for p in people),
        priority=Priority.PAGE,
    )


def _field(person: Person, role: str) -> tuple[str, str]:
    label = f"{person.name} ({role})" if role else person.name
    contact = ", ".join(person.phones) or "no phone number on file"
    if person.email:
        contact += f" · {person.email}"
    return label, contact


def _freshness(roster: Roster, times: Times) -> str:
    if not roster.stale and not roster.failing_since:
        return ""
    as_of = times.hm(roster.as_of) if roster.as_of else "never"
    since = f" since {times.hm(roster.failing_since)}" if roster.failing_since else ""
    why = f" ({roster.error})" if roster.error else ""
    return f"On-call data as of {as_of}; PagerDuty unreachable{since}{why}."
