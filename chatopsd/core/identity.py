"""Who a chat user is, as a PagerDuty/email identity, and how sure we are. Pure rules.

Every place that asks "who is this person" (roles, approvals, `!pd` writes sent with
`From: <email>`, shift DMs, mentions) gets its answer from core/identity_service.py, which
gathers the evidence and lets `decide` below rule on it. The levels, highest first:

- CONFIGURED: an admin wrote it in the config (`[pagerduty.users]`, `auth.identities`).
- PLATFORM: the platform vouches for the address: a Slack profile email, a Mattermost email
  whose user object says `email_verified: true`. Discord shows no email at all.
- CONFIRMED: a `!pd link` confirmed by the person it names (from an account of theirs that is
  configured or verified for that address) or approved by an admin.
- CLAIMED: a `!pd link` nobody confirmed yet. It grants nothing: the person is unknown to
  roles, approvals, PagerDuty writes and shift DMs until it is confirmed.

A self-made link never lets one person act as another (`link_refusal`, `confirmers`): it is
refused when another account on the same platform already has the address, and only the
person who already holds the address (or, when nobody does, an admin) can confirm it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

from chatopsd.core.values import EMAIL_MAX, is_email


class Trust(IntEnum):
    NONE = 0
    CLAIMED = 1
    CONFIRMED = 2
    PLATFORM = 3
    CONFIGURED = 4


# The lowest level that lets someone act: below it, the person is unknown.
USABLE = Trust.CONFIRMED


@dataclass(frozen=True, slots=True)
class Profile:
    """What a platform says about one of its users (Slack users.info, Mattermost
    GET /users/{id}). `email_verified`: the platform vouches that the person controls it."""

    user_id: str
    name: str = ""
    email: str | None = None
    email_verified: bool = False
    is_bot: bool = False


class ProfileUnavailable(Exception):
    """The platform could not be asked just now (network, rate limit): unknown, not "none"."""


@dataclass(frozen=True, slots=True)
class Link:
    """A `!pd link`: a chat identity's claim to an email, as stored.

    `confirmed_by` says who confirmed it (None: nobody yet); `request` is the id the person
    holding the address confirms it with, until `expires`."""

    chat: str  # "platform:user_id"
    email: str
    confirmed_by: str | None = None
    request: str | None = None
    expires: datetime | None = None

    @property
    def confirmed(self) -> bool:
        return self.confirmed_by is not None


@dataclass(frozen=True, slots=True)
class Identity:
    """The answer for one chat identity. `email` is set only at a usable level; `claimed`
    and `unverified` carry an address we do not trust yet, so a refusal can say what to do.
    `complete` is False when a platform lookup failed (a verified address may exist)."""

    chat: str
    email: str | None = None
    trust: Trust = Trust.NONE
    source: str = ""
    claimed: Link | None = None
    unverified: str | None = None
    complete: bool = True

    @property
    def platform(self) -> str:
        return self.chat.partition(":")[0]


@dataclass(frozen=True, slots=True)
class Holder:
    """A chat identity that has an address at some level (for conflicts and confirmations)."""

    chat: str
    trust: Trust

    @property
    def platform(self) -> str:
        return self.chat.partition(":")[0]

    @property
    def how(self) -> str:
        return {
            Trust.CONFIGURED: "set by an admin in the config",
            Trust.PLATFORM: "verified by the platform",
            Trust.CONFIRMED: "a confirmed !pd link",
        }.get(self.trust, "unconfirmed")


def chat_id(platform: str, user_id: str) -> str:
    return f"{platform}:{user_id}"


def decide(
    chat: str,
    *,
    configured: str | None = None,
    platform_email: str | None = None,
    verified: bool = False,
    link: Link | None = None,
    lookup_failed: bool = False,
    configured_elsewhere: Iterable[str] = (),
) -> Identity:
    """The decision table. The highest level that has an address wins; an unconfirmed link
    or an unverified platform address is kept only to explain the refusal.
    `configured_elsewhere` lists the chat identities the config gives `link.email` to: a
    confirmed link yields when the config gives the address to another account on the
    same platform (the admin has spoken since)."""
    platform = chat.partition(":")[0]
    if configured:
        return Identity(chat, configured, Trust.CONFIGURED, "set by an admin in the config")
    if platform_email and verified:
        return Identity(
            chat, platform_email, Trust.PLATFORM, f"from your {platform} profile (verified)"
        )
    unverified = platform_email if platform_email and not verified else None
    if link is not None and link.confirmed:
        taken = any(
            other != chat and other.partition(":")[0] == platform for other in configured_elsewhere
        )
        if not taken:
            return Identity(
                chat,
                link.email,
                Trust.CONFIRMED,
                f"linked with !pd link, confirmed by {link.confirmed_by}",
                unverified=unverified,
                complete=not lookup_failed,
            )
    claimed = link if link is not None and not link.confirmed else None
    return Identity(
        chat,
        None,
        Trust.CLAIMED if claimed is not None else Trust.NONE,
        "",
        claimed=claimed,
        unverified=unverified,
        complete=not lookup_failed,
    )


def strongest(holders: Iterable[Holder]) -> list[Holder]:
    """One entry per chat identity, at its highest level, in first-seen order."""
    best: dict[str, Holder] = {}
    for h in holders:
        if h.chat not in best or h.trust > best[h.chat].trust:
            best[h.chat] = h
    return list(best.values())


def link_refusal(claimant: str, email: str, holders: Iterable[Holder]) -> str | None:
    """Why `claimant` may not claim `email` at all (None: it may ask). Another account on
    the same platform that has the address (configured, verified, or a confirmed link) is
    someone else: a platform gives one address to one account."""
    platform = claimant.partition(":")[0]
    for h in holders:
        if h.chat != claimant and h.platform == platform and h.trust >= Trust.CONFIRMED:
            return f"{email} already belongs to another {platform} account ({h.how})"
    return None


def confirmers(claimant: str, holders: Iterable[Holder]) -> list[Holder]:
    """Who may confirm a claim: the accounts already configured or verified for the address.
    When there are any, only they decide; an admin's approval is refused (the person the
    address belongs to is known, and must agree themselves)."""
    return [h for h in holders if h.chat != claimant and h.trust >= Trust.PLATFORM]


def unknown_reason(who: Identity, prefix: str) -> tuple[str, str]:
    """(what is wrong, what to do) when `who` has no usable address."""
    link = f"{prefix}pd link you@example.com"
    if who.claimed is not None:
        return (
            f"your link to {who.claimed.email} is not confirmed yet, so I treat you as "
            "unknown in PagerDuty, for roles and for shift messages",
            "it is confirmed from an account that already uses that address (it got a direct "
            f"message), or by an admin with {prefix}approve; {prefix}pd whoami shows where it "
            f"stands",
        )
    if not who.complete:
        return (
            f"I could not look you up on {who.platform} just now",
            "try again in a minute",
        )
    if who.unverified:
        return (
            f"{who.platform} has not verified your email {who.unverified}, so it cannot say "
            "who you are",
            f"verify the address in {who.platform}, or link yourself: {link}",
        )
    return (
        "I don't know your PagerDuty user, and I never act in PagerDuty as the bot on "
        "someone's behalf",
        f"link yourself: {link} (or ask an admin to add "
        f'"{who.chat}" = "you@example.com" under [pagerduty.users])',
    )


def parse_email(text: str) -> str | None:
    """An email address as typed in chat (`<mailto:a@b.c|a@b.c>` from Slack, `<a@b.c>`), lower
    case; None if it is not one (core/values.is_email: linear time whatever the input)."""
    raw = text.strip()
    if len(raw) > 2 * EMAIL_MAX + 20:  # room for Slack's "<mailto:x|x>" form only
        return None
    raw = raw.removeprefix("<").removesuffix(">")
    if raw.lower().startswith("mailto:"):
        raw = raw[7:].split("|", 1)[0]
    email = raw.lower()
    return email if is_email(email) else None


def mentioned(word: str) -> str | None:
    """The user id a chat mention names: Slack `<@U123>` / `<@U123|name>`, Discord `<@123>` /
    `<@!123>`. None when the word is not such a mention."""
    if not (word.startswith("<@") and word.endswith(">")) or len(word) > 100:
        return None
    inner = word[2:-1].removeprefix("!").split("|", 1)[0]
    return inner if inner and inner.isascii() and inner.isalnum() else None


def configured_map(*tables: Mapping[str, str]) -> dict[str, str]:
    """Config tables of chat identity -> email merged (later tables win), lower-cased."""
    merged: dict[str, str] = {}
    for table in tables:
        merged.update({chat: email.strip().lower() for chat, email in table.items()})
    return merged
