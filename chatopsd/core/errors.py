"""Typed errors. Handlers raise these; ONE place (bus.render_error) turns them into replies."""

from __future__ import annotations


class UserError(Exception):
    """Something the person in chat can fix or should know; shown to them as-is."""

    prefix = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(UserError):
    """Wrong arguments or unknown command; `hint` carries the usage line or a suggestion."""


class NotFound(UserError):
    """A user, incident or schedule asked for does not exist."""


class Forbidden(UserError):
    """The actor lacks the role, or the command is not allowed in this channel."""


class RateLimited(UserError):
    """The actor sent too many commands; `retry_after` seconds until the next one is taken.

    `quiet`: the actor was told already in this dry spell; refused (and audited) without a
    reply, so a flood cannot make the bot flood the channel back."""

    def __init__(self, message: str, *, retry_after: float, quiet: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.quiet = quiet


class Unavailable(UserError):
    """An outside system (PagerDuty, monitoring) failed; the message says what and what to do."""


class ConfigError(Exception):
    """The configuration is invalid; the message names the key path and never the value."""


class FatalConnectorError(Exception):
    """A connector cannot work until a human fixes something (bad token, missing intent)."""


class TransientSendError(Exception):
    """Sending failed in a way worth retrying; `retry_after` when the platform said how long."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedSend(TransientSendError):
    """A platform or service answered 429: it did not act on the request, so repeating it is
    always safe (unlike a 5xx or a timeout, after which the effect may have happened).

    Not `RateLimited`, which is a person sending too many commands."""


class JobFailed(Exception):
    """A scheduled job's run that did not do its work, with the cause in a few words. Raised by
    jobs that handle the failure themselves, so health counts it (without a traceback).
    `logged`: the job already logged it (per status source), so the scheduler does not."""

    def __init__(self, cause: str, *, logged: bool = False) -> None:
        super().__init__(cause)
        self.logged = logged
