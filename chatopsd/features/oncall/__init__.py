"""On-call awareness pushed out, from PagerDuty: the lookahead (`!ic next`, `!ic schedule`),
handoff announcements, shift reminders by DM, channel topics and Slack user groups kept true,
swap requests (`!ic swap`), and overrides made as the asker (`!ic take`, `!ic handback`,
`!incident page`, `!incident escalate --page`). Nothing without a [pagerduty] section."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from chatopsd.config import Config, PagerDutySection
    from chatopsd.features.oncall.shift_rules import Lookahead
    from chatopsd.features.oncall.topics import OnCallTopics
    from chatopsd.features.pagerduty.api import PagerDuty, Snapshot
    from chatopsd.runtime import Feature, Runtime


def install(runtime: Runtime, config: Config) -> Feature:
    from chatopsd.runtime import Feature

    if config.pagerduty is None and not config.demo:
        from chatopsd.core.commands import needs_section

        # `!ic next`, `!ic take`, … say what to configure instead of "unknown command"
        return Feature(
            "oncall",
            commands=[
                needs_section(("ic", word), "PagerDuty", "pagerduty", "docs/pagerduty.md")
                for word in ("next", "schedule", "take", "handback", "swap")
            ],
        )

    import logging

    from chatopsd.core.capabilities import DIRECT_MESSAGES
    from chatopsd.core.context import Call
    from chatopsd.core.messages import destination
    from chatopsd.features.incidents.api import ESCALATION_PAGER, INCIDENTS
    from chatopsd.features.oncall.handoffs import Handoffs
    from chatopsd.features.oncall.lookahead import LookaheadRefresher
    from chatopsd.features.oncall.overrides import OverrideHandler
    from chatopsd.features.oncall.posts import PostDelivery
    from chatopsd.features.oncall.reminders import Reminders
    from chatopsd.features.oncall.shift_commands import ShiftHandler
    from chatopsd.features.oncall.shifts_store import MemoryShifts, SqlShifts
    from chatopsd.features.oncall.store import SqlOnCallPosts
    from chatopsd.features.oncall.swaps import SwapHandler
    from chatopsd.features.oncall.swaps_store import SqlSwaps
    from chatopsd.features.pagerduty.api import PAGERDUTY, ROLE, section
    from chatopsd.runtime import Job

    pd = section(config)  # the configured one, or the demo's

    log = logging.getLogger("chatopsd.oncall_push")
    pagerduty = runtime.services.get(PAGERDUTY)
    identity, access = runtime.identity, runtime.access

    async def may_page(call: Call) -> bool:
        # read at call time: a config reload replaces the policy
        policy = access()
        role = policy.command_roles.get("incident page", ROLE)
        return policy.holds(await identity.of_call(call), role)

    take = OverrideHandler(
        pagerduty.api,
        pagerduty,
        runtime.kv,
        runtime.clock,
        schedules=pd.ic_schedules,
        pageable=[*pd.responder_schedules, *(s for svc in pd.services for s in svc.schedules)],
        service_id=pd.service_id,
        times=runtime.times,
        on_paged=runtime.services.get(INCIDENTS).link_page,
        may_page=may_page,
    )
    runtime.services.provide(ESCALATION_PAGER, take)

    schedules = [*pd.ic_schedules, *pd.responder_schedules]
    shifts = LookaheadRefresher(
        MemoryShifts() if config.demo else SqlShifts(runtime.store),  # the demo's: in memory
        pagerduty,
        runtime.clock,
        schedule_ids=schedules,
        days=pd.lookahead_days,
    )

    def current() -> Lookahead:
        return shifts.lookahead

    # `!ic swap`: requests in the database, overrides made as the taker
    swaps = SwapHandler(
        pagerduty.api,
        pagerduty,
        SqlSwaps(runtime.store),
        runtime.outbox,
        runtime.clock,
        schedules=pd.ic_schedules,
        tz=runtime.times.zone,
        lookahead=current,
    )
    store = SqlOnCallPosts(runtime.store)
    capabilities = runtime.capabilities

    async def dm_channel(platform: str, user_id: str) -> str:
        dms = capabilities.get(platform, DIRECT_MESSAGES)
        if dms is None:
            raise RuntimeError(f"{platform} cannot open direct messages")
        return await dms.dm_channel(user_id)

    # the lease: handoffs and reminders are decided and sent under the leader's token
    delivery = PostDelivery(store, runtime.outbox, dm_channel, runtime.ha.lease)
    parts: list[object] = [take, swaps, shifts, delivery]
    steps: list[tuple[str, Callable[[Snapshot], Awaitable[None]]]] = []
    if pd.handoff_channels:
        handoffs = Handoffs(
            store,
            delivery,
            destinations=[destination(t) for t in pd.handoff_channels],
            tz=runtime.times.zone,  # chatopsd.timezone
        )
        parts.append(handoffs)

        async def announce(snap: Snapshot) -> None:
            await handoffs.after_refresh([e for group in snap.entries.values() for e in group])

        steps.append(("handoffs", announce))

    async def lookahead(snap: Snapshot) -> None:
        if not await shifts.refresh():
            raise RuntimeError(f"on-call lookahead failed: {shifts.lookahead.error}")

    steps.append(("lookahead", lookahead))
    card = _fallback_card(runtime, config, pd, pagerduty, current)
    steps.append(("fallback card", card))
    if pd.topic_channels or pd.slack_usergroups:
        kept = _oncall_topics(runtime, config)
        parts.append(kept)

        async def keep(snap: Snapshot) -> None:
            await kept.after_refresh(snap.entries)

        steps.append(("topics and user groups", keep))
    if pd.remind_before_minutes:

        async def targets(person_id: str) -> list[str]:
            """Every DM-capable chat identity the identity service trusts for this PagerDuty
            user's email (configured, or a confirmed link: never an unconfirmed claim)."""
            person = pagerduty.snapshot.people.get(person_id)
            email = person.email if person is not None else ""
            if not email:
                email = str((await pagerduty.raw_user(person_id)).get("email") or "")
            return [
                chat
                for chat in await identity.chat_ids(email)
                if capabilities.has(chat.partition(":")[0], DIRECT_MESSAGES)
            ]

        reminders = Reminders(
            store,
            delivery,
            current,
            runtime.clock,
            targets,
            minutes=pd.remind_before_minutes,
            tz=runtime.times.zone,
        )
        parts.append(reminders)

        async def remind(snap: Snapshot) -> None:
            await reminders.run()

        steps.append(("reminders", remind))

    async def after_refresh(snap: Snapshot) -> None:
        # Each step runs even when one before it failed; the job then raises, so the
        # scheduler counts the failure and health shows it.
        failed = []
        for name, step in steps:
            try:
                await step(snap)
            except Exception as exc:
                log.exception("after the PagerDuty refresh: %s failed", name)
                failed.append(f"{name}: {exc}")
        if failed:
            raise RuntimeError("; ".join(failed))

    async def follow() -> None:
        # on a follower, re-read the lookahead the leader's refresh wrote, so `!ic next` and
        # `!ic schedule` answer here what they answer on the leader (one interval late at
        # most); its own fallback card too, in its own state directory
        await shifts.load()
        await card(pagerduty.snapshot)

    pagerduty.on_refresh(after_refresh, follow=follow)
    shift_handler = ShiftHandler(
        current,
        runtime.clock,
        ic_schedules=pd.ic_schedules,
        schedules=schedules,
        days=pd.lookahead_days,
        tz=runtime.times.zone,
        outage=lambda: (pagerduty.snapshot.failing_since, pagerduty.snapshot.error),
    )
    return Feature(
        "oncall",
        commands=[*take.commands(), *swaps.commands(), *shift_handler.commands()],
        jobs=[
            Job("swap-expire", 300, swaps.sweep, run_now=False),
            # a card at least once a day, even when nothing changed (every instance: each
            # keeps its own in its state directory)
            Job("fallback-card", 3600, lambda: card(pagerduty.snapshot), False, run_now=False),
        ],
        start=shifts.load,  # what the previous run cached, before the first refresh
        parts=parts,
    )


def _fallback_card(
    runtime: Runtime,
    config: Config,
    pd: PagerDutySection,
    pagerduty: PagerDuty,
    lookahead: Callable[[], Lookahead],
) -> Callable[[Snapshot], Awaitable[None]]:
    """The step that writes the fallback card (fallback_card.py) when it is due."""
    import logging

    from chatopsd.features.oncall.fallback_card import CardWriter, Facts, render, setting
    from chatopsd.features.pagerduty.api import PagerDutyError, person_of, web_url
    from chatopsd.features.paging.api import Person

    log = logging.getLogger("chatopsd.oncall")

    shown = setting(config, pd, web_url(config))
    writer = CardWriter(config.chatopsd.fallback_card())
    clock, times = runtime.clock, runtime.times

    # People on call next but not now are not in the on-call cache: their numbers are read
    # once (PagerDuty answered the refresh just before), and kept for the card
    numbers: dict[str, Person] = {}

    async def write(snap: Snapshot) -> None:
        now = clock.now()
        known = lookahead()
        for shift in known.shifts:
            pid = shift.person_id
            if pid in snap.people or pid in numbers or snap.failing_since is not None:
                continue
            try:
                numbers[pid] = person_of(await pagerduty.raw_user(pid))
            except PagerDutyError as exc:
                log.info("fallback card: no numbers for %s (%s)", shift.person_name, exc.message)
                numbers[pid] = Person(pid, shift.person_name)  # not asked again this run
        facts = Facts(
            now,
            tuple(e for group in ("ic", "responders") for e in snap.entries.get(group, ())),
            {**numbers, **snap.people},
            snap.last_ok,
            snap.failing_since,
            snap.error,
            known.shifts,
        )
        writer.write(render(facts, shown, times), now)

    return write


def _oncall_topics(runtime: Runtime, config: Config) -> OnCallTopics:
    """Channel topics and Slack user groups that say who is on call, rewritten when it
    changes (under the leader's token)."""
    from chatopsd.core.capabilities import CHANNEL_TOPICS, USER_GROUPS
    from chatopsd.features.oncall.store import SqlKeptState
    from chatopsd.features.oncall.topics import OnCallTopics, Topic
    from chatopsd.features.paging.api import Person

    pd = config.pagerduty
    assert pd is not None  # topics and user groups are never in the demo
    capabilities, identity = runtime.capabilities, runtime.identity

    async def set_topic(platform: str, channel: str, text: str) -> None:
        topics = capabilities.get(platform, CHANNEL_TOPICS)
        if topics is None:
            raise RuntimeError(f"{platform} cannot set channel topics")
        await topics.set_topic(channel, text)

    async def set_group(group_id: str, user_ids: list[str]) -> None:
        groups = capabilities.get("slack", USER_GROUPS)
        if groups is None:
            raise RuntimeError("no Slack connector to update user groups with")
        await groups.set_usergroup(group_id, user_ids)

    async def chat_ids(person: Person, platform: str) -> list[str]:
        found = await identity.chat_ids(person.email, platform)
        return [c.partition(":")[2] for c in found]

    return OnCallTopics(
        SqlKeptState(runtime.store),
        topics=[
            Topic(target.partition(":")[0], target.partition(":")[2], template)
            for target, template in pd.topic_channels.items()
        ],
        usergroups=pd.slack_usergroups,
        set_topic=set_topic,
        set_group=set_group,
        chat_ids=chat_ids,
        lease=runtime.ha.lease,  # topics and user groups are written under the leader's token
    )
