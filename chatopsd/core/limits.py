"""Replies that fit: the one policy for text longer than a platform takes.

Platforms refuse an over-long message outright (Discord over 2,000 characters of content,
Mattermost over 16,383) or drop what is past their limit (Slack past 50 blocks). Each
renderer declares its limits as a function telling how far over them a rendered reply is;
`fit` then shortens the reply's code, then its text, ending each with "… (N more characters)",
so the reader knows something was left out and how much. Shortening happens on the plain
text, before escaping, so no escape sequence or code fence is ever cut in half.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import replace

from chatopsd.core.messages import Reply

# Unicode categories never shown in a one-line field: controls (ESC, newlines are handled as
# spaces first), format characters (bidi overrides, zero-width joiners), unassigned.
_HIDDEN = frozenset({"Cc", "Cf", "Cn", "Co", "Cs"})


def one_line(text: str, limit: int) -> str:
    """User text for a one-line field (a channel topic, header or purpose): control and
    format characters (ESC, bidi overrides, zero-width) removed, whitespace runs made one
    space, and at most `limit` characters, the last an ellipsis when cut."""
    cleaned = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or unicodedata.category(ch) not in _HIDDEN
    )
    line = " ".join(cleaned.split())
    return line if len(line) <= limit else line[: max(0, limit - 1)] + "…"


def rendered_line(text: str, limit: int, render: Callable[[str], str]) -> str:
    """`one_line(text)` rendered (escaped) by `render`, at most `limit` characters once
    rendered; shortened before rendering, so no escape sequence is cut in half."""
    keep = limit
    while True:
        out = render(one_line(text, keep))
        if len(out) <= limit or keep <= 0:
            return out if len(out) <= limit else ""
        keep -= len(out) - limit


def cut(text: str, keep: int) -> str:
    """`text` as is when it has at most `keep` characters, else its first `keep` characters
    and a note saying how many were left out."""
    if len(text) <= keep:
        return text
    keep = max(0, keep)
    return f"{text[:keep].rstrip()}… ({len(text) - keep:,} more characters)"


def fit(reply: Reply, excess: Callable[[Reply], int]) -> Reply:
    """`reply` shortened until `excess(reply)` (characters over the platform's limits, as the
    renderer counts them after escaping) is at most 0, keeping as much as fits.

    The code goes first (command output and logs), then the text (which says what happened),
    then fields; a binary search finds the longest part that fits, so escaping that grows the
    text is accounted for exactly (about 17 renders for 100 kB, and only for long replies)."""
    if excess(reply) <= 0:
        return reply
    text, code = reply.text, reply.code or ""

    def shortened(keep_text: int, keep_code: int) -> Reply:
        return replace(
            reply, text=cut(text, keep_text), code=cut(code, keep_code) if code else None
        )

    if code:
        keep = _longest(len(code), lambda n: excess(shortened(len(text), n)) <= 0)
        if keep is not None:
            return shortened(len(text), keep)
    keep = _longest(len(text), lambda n: excess(shortened(n, 0)) <= 0)
    if keep is not None:
        return shortened(keep, 0)
    # Still too long: the fields are. Keep as many as fit, and say how many were left out.
    for kept in range(len(reply.fields) - 1, -1, -1):
        left = len(reply.fields) - kept
        candidate = replace(
            reply,
            text=f"({left:,} more fields not shown)",
            code=None,
            fields=reply.fields[:kept],
        )
        if excess(candidate) <= 0:
            return candidate
    # The title alone is over. Keep only a note.
    return Reply(
        text=cut(reply.plain(), 0),
        thread=reply.thread,
        ephemeral=reply.ephemeral,
        priority=reply.priority,
    )


def _longest(size: int, fits: Callable[[int], bool]) -> int | None:
    """The largest n in [0, size) with fits(n), or None if not even 0 fits."""
    if not fits(0):
        return None
    low, high = 0, size - 1  # size itself is known not to fit
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low
