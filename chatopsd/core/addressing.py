"""Is a message addressed to the bot, and what is the command in it? One pure function.

Every connector and the bus ask `address`; nothing else decides. A message is ours when:
    !ic page                   it starts with the prefix (followed by a letter or digit)
    hey @chatopsd ic page      it mentions the bot anywhere (the platform's mention syntax,
                               given by the connector as data: "<@U123>", "<@!123>", "@name")
    ic page                    it is a direct message, or a reply in a thread the bot started
    /ic page, a button         the platform already addressed it (slash command, our button)
The command is what follows the mention ("hey @chatopsd ic" -> "ic"), or what precedes it when
nothing follows ("ic page @chatopsd" -> "ic page"). A prefix after a mention is dropped
("@chatopsd !ic" -> "ic").

`how` tells the bus how much to trust it: a plain reply in a bot thread that is not a known
command is chatter between people, not a typo to correct.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from chatopsd.core.messages import Kind

How = Literal["prefix", "mention", "direct", "thread", "platform"]
_SEPARATORS = " :,\t\n"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the bot is on one platform: its user id, the tokens that mention it there (the
    platform's syntax, as data), whether other bots' messages count, and (Slack) the bot id
    its own app posts carry."""

    user_id: str
    mentions: tuple[str, ...] = ()
    allow_bots: bool = False
    bot_id: str = ""


@dataclass(frozen=True, slots=True)
class Addressed:
    """The command text of a message addressed to us, and how it was addressed."""

    text: str
    how: How

    @property
    def by_name(self) -> bool:
        """Spoken to directly (a mention or a DM): free text may be a plain-language question."""
        return self.how in ("mention", "direct")

    def inbound(self, original: str) -> tuple[Kind, str]:
        """The kind and text a connector puts in the Inbound it emits for this message: the
        prefix form keeps its text (the bus finds the same command in it again), the others
        carry the command text found here, under the kind that says how it was addressed."""
        if self.how == "prefix":
            return "message", original
        return ("mention" if self.by_name else "thread"), self.text


def address(
    text: str,
    *,
    prefix: str,
    mentions: Sequence[str] = (),
    kind: Kind = "message",
    direct: bool = False,
    bot_thread: bool = False,
) -> Addressed | None:
    """The command in `text`, or None when the message is not for us.

    `mentions` are the literal tokens that mention the bot on this platform (matched without
    regard to case; "<@X>" also matches Slack's labelled "<@X|name>"). `direct`: a DM.
    `bot_thread`: a reply in a thread the bot started. `kind` is the Inbound kind when a
    connector already addressed the message ("mention", "thread", "slash", "button")."""
    text = text.strip()
    if kind in ("slash", "button"):
        return Addressed(text[1:] if text.startswith("/") else text, "platform")
    if kind == "reaction":
        return None
    if prefix and text.startswith(prefix):
        rest = text[len(prefix) :]
        # "!" alone, "! ic" or "!!" is chatter, not a command.
        return Addressed(rest, "prefix") if rest[:1].isalnum() else None
    found = _mention_pattern(tuple(mentions)).search(text) if mentions else None
    if found is not None:
        after = text[found.end() :].lstrip(_SEPARATORS)
        # "thanks @chatopsd!" has nothing but punctuation after the mention: take what precedes
        body = after if after.strip(_SEPARATORS + ".!?;") else text[: found.start()]
        body = _mention_pattern(tuple(mentions)).sub(" ", body)
        return Addressed(_unprefixed(body.strip(_SEPARATORS), prefix), "mention")
    if kind == "mention" or direct:
        return Addressed(_unprefixed(text, prefix), "direct")
    if kind == "thread" or bot_thread:
        return Addressed(_unprefixed(text, prefix), "thread")
    return None


def _unprefixed(text: str, prefix: str) -> str:
    text = text.strip()
    return text[len(prefix) :].lstrip() if prefix and text.startswith(prefix) else text


@lru_cache(maxsize=64)
def _mention_pattern(tokens: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for the bot's mention tokens, whole tokens only: "@chatopsd" does not match
    in "@chatopsdx" or "ops@chatopsd.example" (an email is not a mention).

    Linear in the text, since every message in every channel goes through it: a label stops
    at the next "<" (Slack escapes "<" in what people type), so "<@U1|<@U1|…" does not make
    each mention scan the rest of the message; and "not followed by more of a word" looks
    past dots and hyphens possessively, so it cannot backtrack."""
    parts = []
    for token in sorted(set(tokens), key=len, reverse=True):
        if token.endswith(">"):
            # angle-bracket mentions may carry a label: <@U123|chatopsd>
            parts.append(re.escape(token[:-1]) + r"(?:\|[^<>]*+)?>")
        else:
            # not "@chatopsdx", "@chatopsd.example", "@chatopsd-bot": no word char follows,
            # directly or after dots and hyphens
            parts.append(re.escape(token) + r"(?![.-]*+\w)")
    return re.compile(r"(?<![\w@.])(?:" + "|".join(parts) + ")", re.IGNORECASE)
