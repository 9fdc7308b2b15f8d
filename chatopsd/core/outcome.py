"""The closed set of command outcomes, and how a command comes to have one.

One vocabulary for the audit trail, metrics and logs, so `chatopsd audit --outcome failed`
finds every command whose effect did not happen, whatever the handler was:

- `ok`: the command did what it was asked.
- `failed`: it ran and did not achieve its effect (a page PagerDuty refused, an ops command
  that exited non-zero or timed out, an outside system that did not answer).
- `user_error`: wrong arguments, unknown command, nothing found.
- `denied`: the actor lacks the role, or the command is not allowed in this channel.
- `rate_limited`: refused or dropped by the per-actor rate limit.
- `error`: an internal error (a bug); the reply quotes a reference to the log.
- `pending`: awaiting approval or confirmation.
- `interrupted`: it was cut short before it finished (its instance was killed or crashed,
  or a shutdown did not wait for it): its effect may or may not have happened. For a kill,
  written by whoever found the command (a surviving instance, or the next start on SQLite),
  which also tells the command's channel; it is not run again.

The handler states its outcome (`Call.set_outcome`); middleware fills in the rest from the
exception the handler raised, if any.
"""

from __future__ import annotations

from asyncio import CancelledError
from enum import StrEnum

from chatopsd.core.errors import Forbidden, RateLimited, Unavailable, UserError


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    USER_ERROR = "user_error"
    DENIED = "denied"
    RATE_LIMITED = "rate_limited"
    ERROR = "error"
    PENDING = "pending"
    INTERRUPTED = "interrupted"


def outcome_of(exc: BaseException) -> Outcome:
    """The outcome of a command that raised `exc`."""
    if isinstance(exc, CancelledError):
        return Outcome.INTERRUPTED  # cut short (shutdown): its effect is unknown
    if isinstance(exc, Forbidden):
        return Outcome.DENIED
    if isinstance(exc, RateLimited):
        return Outcome.RATE_LIMITED
    if isinstance(exc, Unavailable):
        return Outcome.FAILED  # an outside system failed: the effect did not happen
    if isinstance(exc, UserError):
        return Outcome.USER_ERROR
    return Outcome.ERROR


def audit_cause(text: str, limit: int = 200) -> str:
    """One line, bounded: causes go into every audit row."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
