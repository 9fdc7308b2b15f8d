"""`!pd link`, `!pd link allow`, `!pd unlink`, `!pd whoami`: a person says which PagerDuty
user they are, and someone who can vouch for it confirms (the rules: core/identity.py).

`!pd link <email>` records a claim that grants nothing yet. If an account is already
configured or verified for that address (the person it belongs to), that account gets a direct
message and confirms with `!pd link allow <id>`; nobody else can. If no account has the address,
an admin approves the claim through the approvals machinery (`!approve <id>`), and the link is
written when the granted command comes back. Either way a claim is refused when another
account on the same platform already has the address.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from chatopsd.core.commands import Arg, CommandSpec
from chatopsd.core.context import Call
from chatopsd.core.errors import Forbidden, NotFound, UsageError
from chatopsd.core.identity import (
    Holder,
    Trust,
    confirmers,
    link_refusal,
    parse_email,
    unknown_reason,
)
from chatopsd.core.messages import Reply
from chatopsd.core.outcome import Outcome
from chatopsd.core.ports import Clock
from chatopsd.core.times import UTC_TIMES, Times
from chatopsd.features.approvals.rules import command_line, new_id
from chatopsd.features.approvals.service import ApprovalService
from chatopsd.features.pagerduty.rules import IncidentApi
from chatopsd.identity.service import IdentityService

log = logging.getLogger("chatopsd.identity")

# (chat identity "platform:user_id", message) -> whether a direct message went out
Direct = Callable[[str, Reply], Awaitable[bool]]
ADMIN = "admin"


class LinkHandler:
    def __init__(
        self,
        identities: IdentityService,
        api: IncidentApi,
        approvals: ApprovalService,
        direct: Direct,
        clock: Clock,
        *,
        confirm_seconds: float = 900.0,
        times: Times = UTC_TIMES,
    ) -> None:
        self.identities, self.api, self.approvals = identities, api, approvals
        self.direct, self.clock, self.times = direct, clock, times
        self.confirm_seconds = confirm_seconds

    def commands(self) -> list[CommandSpec]:
        return [
            CommandSpec(
                ("pd", "link"),
                "link your chat identity to your PagerDuty email (confirmed before it counts)",
                self.link,
                (Arg("email", "your PagerDuty login email"),),
                examples=("pd link ada@example.com",),
            ),
            CommandSpec(
                ("pd", "link", "allow"),
                "confirm that a link to your address is really you",
                self.allow,
                (Arg("id", "the id in the direct message"),),
            ),
            CommandSpec(("pd", "unlink"), "remove your own !pd link", self.unlink),
            CommandSpec(("pd", "whoami"), "the PagerDuty user you act as", self.whoami),
        ]

    # -- !pd link <email> ------------------------------------------------------------------

    async def link(self, call: Call) -> Reply:
        raw = call.text("email") or ""
        email = parse_email(raw)
        if email is None:
            raise UsageError(f"{raw[:80]!r} is not an email address")
        e = call.event
        me = await self.identities.of_call(call)
        if me.trust >= Trust.PLATFORM:
            if me.email == email:
                return _private(f"You already act in PagerDuty as {email} ({me.source}).")
            raise Forbidden(
                f"you are {me.email} ({me.source}); a link cannot change that",
                hint="if that is wrong, ask an admin to set it under [pagerduty.users]",
            )
        if me.trust == Trust.CONFIRMED and me.email == email:
            return _private(f"You already act in PagerDuty as {email} ({me.source}).")
        user = await self.api.user_by_email(email)
        if user is None:
            raise NotFound(f"PagerDuty has no user with the email {email}")
        holders = await self.identities.holders(email)
        if why := link_refusal(me.chat, email, holders):
            raise Forbidden(why, hint="if that is wrong, ask an admin to fix it in the config")
        vouchers = confirmers(me.chat, holders)
        text = command_line("pd link", [email])
        grant = await self.approvals.grant_for(call, text)
        if grant is not None:
            if vouchers:
                raise Forbidden(
                    f"{email} belongs to {_names(vouchers)} now, so an admin's approval no "
                    "longer decides: that account confirms",
                    hint=f"run {call.prefix}pd link {email} again",
                )
            await self.identities.links.grant(
                e.platform, e.actor.id, email, f"an admin (request {grant.id})"
            )
            log.info("link %s -> %s approved by an admin (%s)", me.chat, email, grant.id)
            await self.approvals.record_result(grant, "linked")
            return _private(f"Linked: you act in PagerDuty as {user.name} ({email}).")
        earlier = await self.identities.links.link(e.platform, e.actor.id)
        if (
            earlier is not None
            and not earlier.confirmed
            and earlier.email == email
            and earlier.expires is not None
            and earlier.expires > self.clock.now()
        ):
            # asked already: asking again must not flood the holder (or the admins)
            return _private(
                f"Still waiting for the confirmation of your link to {email} (request "
                f"{earlier.request}, until {self.times.hm(earlier.expires)})."
            )
        if vouchers:
            return await self._ask_holders(call, email, vouchers)
        action = await self.approvals.request(
            call,
            kind="approval",
            command=text,
            summary=f"{e.actor.display} ({me.chat}) wants to act in PagerDuty as {user.name}",
            needed=1,
            role=ADMIN,
        )
        await self.identities.links.claim(
            e.platform, e.actor.id, email, action.id, action.expires_at
        )
        call.set_outcome(Outcome.PENDING, "awaiting an admin's approval")
        return _private(
            f"Not linked yet: nobody's account has {email}, so an admin must approve "
            f"(request {action.id}, {call.prefix}approve {action.id}). Until then I treat you "
            "as unknown in PagerDuty, for roles and for shift messages."
        )

    async def _ask_holders(self, call: Call, email: str, vouchers: list[Holder]) -> Reply:
        e = call.event
        now = self.clock.now()
        request = new_id()
        expires = now + timedelta(seconds=self.confirm_seconds)
        await self.identities.links.claim(e.platform, e.actor.id, email, request, expires)
        minutes = max(1, round(self.confirm_seconds / 60))
        ask = Reply(
            title="Is this you?",
            text=(
                f"{e.actor.display} ({e.platform} user {e.actor.id}) asks to act in PagerDuty as "
                f"you ({email}). If that is your own account, answer here with "
                f"{call.prefix}pd link allow {request} within {minutes} min. If it is not you, "
                "ignore this (nothing is granted) and tell your admins."
            ),
        )
        reached = [h for h in vouchers if await self.direct(h.chat, ask)]
        if not reached:
            await self.identities.links.drop(e.platform, e.actor.id)
            raise Forbidden(
                f"{email} belongs to {_names(vouchers)}, and I could not reach that account "
                "by direct message to confirm it is you",
                hint="ask an admin to add your account under [pagerduty.users]",
            )
        call.set_outcome(Outcome.PENDING, f"awaiting confirmation {request}")
        return _private(
            f"Not linked yet: {email} belongs to {_names(reached)}. I sent that account a "
            f"direct message; confirm from there within {minutes} min. Until then I treat "
            "you as unknown in PagerDuty, for roles and for shift messages."
        )

    # -- !pd link allow <id> ---------------------------------------------------------------

    async def allow(self, call: Call) -> Reply:
        request = (call.text("id") or "").strip().lower()
        link = await self.identities.links.by_request(request) if request else None
        now = self.clock.now()
        if link is None or link.confirmed or (link.expires is not None and link.expires <= now):
            raise NotFound(f"no pending link request {request!r}", hint="it may have expired")
        me = await self.identities.of_call(call)
        if me.trust < Trust.PLATFORM or me.email != link.email or me.chat == link.chat:
            raise Forbidden(
                f"only an account that already has {link.email} (set by an admin, or verified "
                "by its platform) can confirm this"
            )
        holders = await self.identities.holders(link.email)
        if why := link_refusal(link.chat, link.email, holders):
            raise Forbidden(why)
        platform, _, user_id = link.chat.partition(":")
        by = f"{me.chat} ({Holder(me.chat, me.trust).how})"
        if not await self.identities.links.confirm(platform, user_id, link.email, by):
            raise NotFound(f"no pending link request {request!r}", hint="it may have changed")
        log.info("link %s -> %s confirmed by %s", link.chat, link.email, me.chat)
        return _private(f"Confirmed: {link.chat} now acts in PagerDuty as you ({link.email}).")

    # -- !pd unlink, !pd whoami ------------------------------------------------------------

    async def unlink(self, call: Call) -> Reply:
        e = call.event
        if not await self.identities.links.drop(e.platform, e.actor.id):
            raise NotFound("you have no !pd link")
        return _private("Unlinked.")

    async def whoami(self, call: Call) -> Reply:
        me = await self.identities.of_call(call)
        if me.email is None:
            why, todo = unknown_reason(me, call.prefix)
            pending = me.claimed
            if pending is not None and pending.expires is not None:
                if pending.expires <= self.clock.now():
                    todo = f"the request expired: {call.prefix}pd link {pending.email} again"
                else:
                    todo += f" (request {pending.request}, until {self.times.hm(pending.expires)})"
            return _private(f"You act as nobody in PagerDuty: {why}. {todo[0].upper()}{todo[1:]}.")
        user = await self.api.user_by_email(me.email)
        who = (
            f"{user.name} ({me.email}, {user.id})"
            if user
            else f"{me.email} (no such PagerDuty user!)"
        )
        return _private(f"You act in PagerDuty as {who}; {me.source}.")


def _names(holders: list[Holder]) -> str:
    return ", ".join(f"{h.chat} ({h.how})" for h in holders[:5])


def _private(text: str) -> Reply:
    return Reply(text=text, ephemeral=True)
