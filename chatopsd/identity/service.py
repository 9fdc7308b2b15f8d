"""The one identity service: who a chat user is, as a PagerDuty/email identity, and how sure
we are. It gathers the evidence (config, the platform's profile, `!pd link`) through ports and
lets core/identity.decide rule on it. Roles, approvals, `!pd`, shift DMs and mentions all ask
here; nothing else reads `[pagerduty.users]`, `auth.identities` or the links table.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from chatopsd.core.capabilities import USER_PROFILES, Capabilities
from chatopsd.core.context import Call
from chatopsd.core.errors import Unavailable
from chatopsd.core.identity import (
    USABLE,
    Holder,
    Identity,
    Link,
    Profile,
    ProfileUnavailable,
    Trust,
    chat_id,
    decide,
    mentioned,
    strongest,
)
from chatopsd.core.messages import Actor
from chatopsd.core.ports import IdentityLinks

log = logging.getLogger("chatopsd.identity")


class IdentityService:
    """The platforms with the USER_PROFILES capability (core/capabilities) are asked about
    their users. `configured` is the merged
    `[pagerduty.users]` and `auth.identities` table; `reconfigure` swaps it on reload."""

    def __init__(
        self,
        links: IdentityLinks,
        capabilities: Capabilities,
        configured: Mapping[str, str] | None = None,
    ) -> None:
        self.links = links
        self.capabilities = capabilities
        self.configured: dict[str, str] = dict(configured or {})

    def reconfigure(self, configured: Mapping[str, str]) -> None:
        self.configured = dict(configured)

    # -- one chat identity ---------------------------------------------------------------

    async def of_call(self, call: Call) -> Identity:
        """The caller's identity, resolved once per command."""
        if call.identity is None:
            call.identity = await self.of(call.event.platform, call.event.actor)
        return call.identity

    async def of(self, platform: str, actor: Actor) -> Identity:
        """`actor.email` is what the connector read from the platform's own profile (Slack);
        connectors set it only for an address the platform vouches for."""
        chat = chat_id(platform, actor.id)
        configured = self.configured.get(chat)
        if configured:
            return decide(chat, configured=configured)
        email, verified, failed = actor.email, actor.email is not None, False
        if email is None:
            try:
                profile = await self._profile(platform, actor.id)
            except ProfileUnavailable as exc:
                log.warning("could not look up %s: %s", chat, exc)
                profile, failed = None, True
            if profile is not None and not profile.is_bot and profile.email:
                email, verified = profile.email.lower(), profile.email_verified
        if email and verified:
            return decide(chat, platform_email=email.lower(), verified=True)
        link = await self.links.link(platform, actor.id)
        return decide(
            chat,
            platform_email=email,
            verified=False,
            link=link,
            lookup_failed=failed,
            configured_elsewhere=self._configured_for(link.email) if link else (),
        )

    async def of_chat(self, platform: str, user_id: str) -> Identity:
        """A chat identity known only by its id (a mention, a requester at decision time)."""
        return await self.of(platform, Actor(user_id))

    async def of_mention(self, platform: str, word: str) -> Identity | None:
        """The identity a chat mention names (Slack `<@U…>`, Discord `<@…>`), or None when the
        word is not a mention."""
        user_id = mentioned(word)
        return None if user_id is None else await self.of_chat(platform, user_id)

    async def _profile(self, platform: str, user_id: str) -> Profile | None:
        profiles = self.capabilities.get(platform, USER_PROFILES)
        if profiles is None:
            return None
        try:
            return await profiles.user_profile(user_id)
        except ProfileUnavailable:
            raise
        except Exception as exc:  # a platform fault is "could not look", never "nobody"
            raise ProfileUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _configured_for(self, email: str) -> list[str]:
        return [chat for chat, known in self.configured.items() if known == email]

    # -- one address -----------------------------------------------------------------------

    async def holders(self, email: str) -> list[Holder]:
        """Every chat identity that has `email`, at its level: the config, each platform's
        own directory (an account whose address it verified) and the links. Unavailable when
        a platform could not be asked: we never say "nobody has it" without looking."""
        found = [Holder(chat, Trust.CONFIGURED) for chat in self._configured_for(email)]
        for platform, profiles in self.capabilities.every(USER_PROFILES):
            try:
                profile = await profiles.user_by_email(email)
            except Exception as exc:
                log.warning("could not ask %s who has %s: %s", platform, email, exc)
                why = str(exc) if isinstance(exc, ProfileUnavailable) else type(exc).__name__
                raise Unavailable(
                    f"I could not ask {platform} whether someone there already uses {email} "
                    f"({why})",
                    hint="try again in a minute; if it keeps failing, tell an admin",
                ) from None
            if profile is not None and profile.email_verified and not profile.is_bot:
                found.append(Holder(chat_id(platform, profile.user_id), Trust.PLATFORM))
        for link in await self.links.holders(email):
            found.append(Holder(link.chat, Trust.CONFIRMED if link.confirmed else Trust.CLAIMED))
        return strongest(found)

    async def chat_ids(self, email: str, platform: str | None = None) -> list[str]:
        """The chat identities someone may be reached at for `email` (shift DMs, private
        notices): configured ones and confirmed links, never an unconfirmed claim."""
        email = email.strip().lower()
        if not email:
            return []
        found = self._configured_for(email)
        for link in await self.links.holders(email):
            if link.chat in found or not self._usable(link):
                continue
            found.append(link.chat)
        if platform is not None:
            found = [c for c in found if c.partition(":")[0] == platform]
        return found

    def _usable(self, link: Link) -> bool:
        who = decide(link.chat, link=link, configured_elsewhere=self._configured_for(link.email))
        return who.trust >= USABLE
