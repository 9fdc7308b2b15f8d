"""`!ic take`, `!ic handback` and `!incident page`: PagerDuty writes made from chat as the
person who asked (registered under the `ic` and `incident` commands, kept apart from them).

`!ic take [duration]` puts an override for the caller on the IC schedule (or `--schedule`,
one of `pagerduty.ic_schedules`), until the current shift ends unless a duration is given;
`!ic handback` deletes it. The override id is kept in the key/value store, so a handback works
after a restart. `!incident page` pages a schedule only if it is configured (IC, responder or a
service's): nothing here reaches a schedule of the account that the config does not name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from chatopsd.core.commands import Arg, CommandSpec
from chatopsd.core.context import Call
from chatopsd.core.errors import Forbidden, NotFound, UsageError, UserError
from chatopsd.core.messages import Destination, Priority, Reply
from chatopsd.core.ports import Clock, KeyValue
from chatopsd.core.times import UTC_TIMES, Times
from chatopsd.features.pagerduty.api import ROLE, IncidentApi, PagerDuty, hhmm, parse_duration
from chatopsd.features.paging.api import PageResult, Person

log = logging.getLogger("chatopsd.pd")

OnPaged = Callable[[Call, PageResult, str | None], Awaitable[None]]


class OverrideHandler:
    def __init__(
        self,
        api: IncidentApi,
        pd: PagerDuty,
        kv: KeyValue,
        clock: Clock,
        *,
        schedules: Sequence[str],
        pageable: Sequence[str] = (),
        service_id: str,
        on_paged: OnPaged | None = None,
        may_page: Callable[[Call], Awaitable[bool]] | None = None,
        times: Times = UTC_TIMES,
    ) -> None:
        self.times = times
        self.api, self.pd, self.kv, self.clock = api, pd, kv, clock
        self.schedules = tuple(schedules)  # the IC schedules: `!ic take` and `handback`
        # every configured schedule (IC, responders, services'): `!incident page`
        self.pageable = frozenset((*schedules, *pageable))
        self.service_id = service_id
        self.on_paged = on_paged  # the incident handler's timeline hook
        # `!incident escalate --page` runs under escalate's own role: check paging's too
        self.may_page = may_page

    def commands(self) -> list[CommandSpec]:
        schedule = Arg(
            "schedule",
            "a schedule id (default: the first IC schedule)",
            option=True,
            required=False,
        )
        return [
            CommandSpec(
                ("ic", "take"),
                "take the pager: an override for you on the IC schedule",
                self.take,
                (
                    Arg("duration", "e.g. 2h (default: until the shift ends)", required=False),
                    schedule,
                ),
                role=ROLE,
                pages=True,
                mutates=True,
                examples=("ic take", "ic take 2h", "ic take 1h --schedule PIC2"),
            ),
            CommandSpec(
                ("ic", "handback"),
                "end your override (give the pager back)",
                self.handback,
                (schedule,),
                role=ROLE,
                pages=True,
                mutates=True,
            ),
            CommandSpec(
                ("incident", "page"),
                "page a schedule or a person through PagerDuty from an incident",
                self.page,
                (Arg("target", "a schedule id, an email or a name", kind="rest"),),
                role=ROLE,
                pages=True,
                priority=Priority.PAGE,
                examples=("incident page PIC1", "incident page grace@example.com"),
            ),
        ]

    def _schedule(self, call: Call) -> str:
        asked = call.text("schedule")
        if not asked:
            if not self.schedules:
                raise UsageError("no IC schedule configured (pagerduty.ic_schedules)")
            return self.schedules[0]
        if asked not in self.schedules:
            raise UsageError(
                f"{_clip(asked)!r} is not one of the IC schedules",
                hint=f"pagerduty.ic_schedules: {', '.join(self.schedules)}",
            )
        return asked

    def _key(self, call: Call, schedule: str) -> str:
        return f"pagerduty.take.{schedule}.{call.event.platform}:{call.event.actor.id}"

    async def take(self, call: Call) -> Reply:
        duration = call.text("duration")
        seconds = parse_duration(duration) if duration else None  # a bad one: usage, first
        schedule = self._schedule(call)  # before anything is asked of PagerDuty
        sender = await self.pd.sender(call)
        me = await self.api.user_by_email(sender)
        if me is None:
            raise NotFound(f"PagerDuty has no user with the email {sender}")
        now = self.clock.now()
        held = await self._held(call, schedule)
        if held is not None and held[1] > now:
            raise UsageError(
                f"you already hold the pager on {schedule} until "
                f"{hhmm(held[1].isoformat(), self.times)}",
                hint=f"{call.prefix}ic handback first, then take it again",
            )
        before = await self.api.on_call(schedule)
        others = [u for u, _ in before if u.id != me.id]
        if seconds is not None:
            end = now + timedelta(seconds=seconds)
        else:
            ends = [datetime.fromisoformat(t.replace("Z", "+00:00")) for _, t in before if t]
            if not ends:
                raise UsageError(
                    "I cannot see when the current shift ends", hint="say how long: ic take 2h"
                )
            end = min(ends)
        override = await self.api.add_override(schedule, sender, me.id, now, end)
        await self.kv.put(
            self._key(call, schedule), json.dumps({"id": override, "end": end.isoformat()})
        )
        relieved = ", ".join(u.name for u in others)
        until = hhmm(end.isoformat(), self.times)
        lines = [f"{me.name} has the pager on {schedule} until {until}."]
        if relieved:
            lines.append(f"{relieved}: you are off the pager until then (override {override}).")
        for person in others:
            await self._tell(
                call, person.id, f"{me.name} took the pager on {schedule} from you until {until}."
            )
        return Reply(title="Pager taken", text="\n".join(lines), priority=Priority.PAGE)

    async def handback(self, call: Call) -> Reply:
        schedule = self._schedule(call)
        sender = await self.pd.sender(call)
        key = self._key(call, schedule)
        held = await self._held(call, schedule)
        if held is None:
            raise NotFound(f"you have no override on {schedule} from {call.prefix}ic take")
        override, end = held
        if end <= self.clock.now():
            await self.kv.put(key, "")
            return Reply(
                text=f"Your override on {schedule} already ended at "
                f"{hhmm(end.isoformat(), self.times)}."
            )
        try:
            await self.api.delete_override(schedule, sender, override)
        except NotFound:  # removed in PagerDuty already: nothing left to hand back
            await self.kv.put(key, "")
            return Reply(
                text=f"Override {override} on {schedule} was already removed in PagerDuty."
            )
        await self.kv.put(key, "")
        after = await self.api.on_call(schedule)
        back = ", ".join(u.name for u, _ in after) or "the schedule"
        for person, _ in after:
            await self._tell(call, person.id, f"The pager on {schedule} is yours again.")
        return Reply(
            title="Pager handed back",
            text=f"Override {override} on {schedule} removed; {back}: the pager is yours again.",
            priority=Priority.PAGE,
        )

    async def _held(self, call: Call, schedule: str) -> tuple[str, datetime] | None:
        """The caller's override from `!ic take` on this schedule: (id, end)."""
        raw = await self.kv.get(self._key(call, schedule))
        if not raw:
            return None
        held = json.loads(raw)
        return str(held["id"]), datetime.fromisoformat(held["end"])

    async def _tell(self, call: Call, user_id: str, text: str) -> None:
        """Tell someone whose shift changed, privately in this channel, if they are linked on
        this platform (the channel message names them in any case). Best effort."""
        e = call.event
        try:
            person = await self.api.user(user_id)
            ids = [
                chat.partition(":")[2]
                for chat in await self.pd.identities.chat_ids(person.email, e.platform)
            ]
        except UserError as exc:
            log.warning("could not tell %s of the shift change: %s", user_id, exc)
            return
        for chat_id in ids:
            if chat_id != e.actor.id:
                where = Destination(e.platform, e.channel, e.thread, actor=chat_id)
                call.outbox.enqueue(where, Reply(text=text, ephemeral=True))

    async def page(self, call: Call) -> Reply:
        return await self._page(call, (call.text("target") or "").strip(), None)

    async def escalation_page(self, call: Call, target: str, incident_id: str) -> Reply:
        """`!incident escalate <id> --page <target>`."""
        if self.may_page is not None and not await self.may_page(call):
            raise Forbidden(
                f"--page pages people and needs the role {ROLE!r} (as {call.prefix}incident page)",
                hint="ask an admin to add you under [roles] in the config",
            )
        return await self._page(call, target.strip(), incident_id)

    async def _page(self, call: Call, target: str, incident_id: str | None) -> Reply:
        """Page a configured schedule (who is on call on it), a person, or a team (its
        escalation policy). "schedule:", "user:" and "team:" force the kind; otherwise a
        configured schedule, then a person, then a team."""
        kind, _, name = target.partition(":")
        if kind not in ("schedule", "user", "team") or not name:
            kind, name = "", target
        if not name:
            raise UsageError("say whom to page: a schedule id, an email or name, or team:NAME")
        if kind == "schedule" and name not in self.pageable:
            raise UsageError(
                f"{_clip(name)!r} is not a configured schedule",
                hint=f"schedules: {', '.join(sorted(self.pageable)) or 'none configured'}",
            )
        sender = await self.pd.sender(call)
        e = call.event
        title = f"{e.actor.display} pages {name} from {e.platform} #{e.channel}"
        people: list[Person] = []
        if kind == "schedule" or (not kind and name in self.pageable):
            people = [Person(u.id, u.name, u.email) for u, _ in await self.api.on_call(name)]
            if not people:
                raise NotFound(f"nobody is on call on {name} (or PagerDuty has no such schedule)")
        elif kind != "team":
            try:
                user = await self.pd.user(call, name)
                people = [Person(user.id, user.name, user.email)]
            except NotFound:
                if kind == "user":
                    raise
        me = await self.api.user_by_email(sender)
        if people and me is not None and all(p.id == me.id for p in people):
            # PagerDuty would create it acknowledged by the requester and ring nobody.
            raise UsageError(
                f"that would page only you ({me.name}): PagerDuty would open the incident "
                "already acknowledged and ring nobody"
            )
        if people:
            inc = await self.api.create(
                sender,
                service_id=self.service_id,
                title=title,
                user_ids=[p.id for p in people],
                key=call.key,
            )
            whom = ", ".join(p.name for p in people)
        else:
            team = await self.api.team_policy(name)
            if team is None:
                raise NotFound(f"no schedule, person or team (with a policy) matches {name!r}")
            team_name, policy = team
            inc = await self.api.create_for_policy(
                sender, service_id=self.service_id, title=title, policy_id=policy, key=call.key
            )
            whom = f"team {team_name} ({', '.join(inc.assignees) or 'its escalation policy'})"
            people = [
                Person(uid, n) for uid, n in zip(inc.assignee_ids, inc.assignees, strict=False)
            ]
        result = PageResult(inc.id, inc.url, tuple(people))
        if self.on_paged is not None:
            try:
                await self.on_paged(call, result, incident_id)
            except Exception:  # the page went out; a failed timeline entry must not hide it
                log.exception("incident timeline hook failed ref=%s", call.ref)
        return Reply(
            title=f"Paging {name}",
            text=f"Paged {whom} as {sender}.\nIncident: {inc.url}",
            priority=Priority.PAGE,
        )


def _clip(text: str, limit: int = 40) -> str:
    """User text quoted back in a refusal: short."""
    return text if len(text) <= limit else text[:limit] + "…"
