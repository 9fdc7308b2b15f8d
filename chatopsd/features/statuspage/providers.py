"""The status page providers: which one the `[statuspage]` section stands for, built on the
daemon's HTTP transport. One line per provider; each lives in its own module and implements
api.StatusPageProvider (atlassian.py shows how)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatopsd.config import StatuspageSection
    from chatopsd.features.statuspage.api import StatusPageProvider
    from chatopsd.httpclient import HttpTransport


def build(section: StatuspageSection, http: HttpTransport) -> StatusPageProvider:
    # imported here: a daemon without [statuspage] never loads a provider
    from chatopsd.features.statuspage.atlassian import AtlassianStatuspage

    return AtlassianStatuspage(
        http,
        section.api_url,
        section.api_key.get_secret_value(),
        section.page_id,
        timeout=section.timeout_seconds,
    )
