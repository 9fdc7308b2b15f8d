"""The base of every config section: unknown keys refused, values frozen; and the URL check
every section's URL keys share.

A module of its own so a platform package's section (connectors/<platform>/config.py) needs
nothing from config.py, which composes those sections from the platform registry.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

# The schemes of the keys that name an HTTP API or a web page (plain http for test fakes and
# servers inside the network), and of a websocket gateway.
WEB = ("https", "http")
SOCKET = ("wss", "ws")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def url_problem(value: str, schemes: tuple[str, ...] = WEB) -> str | None:
    """What is wrong with a URL given for a key whose connection speaks one of `schemes`, or
    None. An absolute URL is required: a scheme-less one ("slack.com/api") would be read as a
    path, and a malformed one only fails at the first request, long after check-config said
    OK. The message never repeats the value (a URL may carry a key)."""
    wanted = " or ".join(f"{s}://" for s in schemes)
    example = f"{schemes[0]}://host/..."
    if not value or any(c.isspace() or ord(c) < 32 for c in value):
        return f"must be a URL like {example} (no spaces)"
    try:
        parts = urlsplit(value)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        return f"is not a valid URL (it must look like {example})"
    if not parts.scheme or "://" not in value:
        return f"has no scheme: write it in full, like {example}"
    if parts.scheme.lower() not in schemes:
        return f"must start with {wanted} (not {parts.scheme.lower()}://)"
    if not parts.hostname:
        return f"has no host: it must look like {example}"
    return None


def checked_url(value: str, schemes: tuple[str, ...] = WEB) -> str:
    """`value`, or a ValueError naming the problem (for a field validator)."""
    problem = url_problem(value, schemes)
    if problem is not None:
        raise ValueError(problem)
    return value
