"""THE feature list: every feature's installer, in the order app.py installs them.

A feature provides its declared interfaces (its api.py) in `runtime.services` when installed,
so it comes before the features that use them. Each installer decides from its own config
section whether it does anything; none is skipped here. Importing this module imports the
packages' `__init__` only (cheap): what a feature needs is imported inside its install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatopsd.features import (
    approvals,
    followups,
    help,
    incidents,
    intents,
    oncall,
    ops,
    pagerduty,
    paging,
    status,
    statuspage,
)

if TYPE_CHECKING:
    from chatopsd.runtime import Install

FEATURES: tuple[Install, ...] = (
    help.install,
    incidents.install,  # the incident service: the status page, follow-ups and paging use it
    statuspage.install,
    followups.install,
    incidents.install_bridge,  # after them: the bridge follows the lifecycle last
    approvals.install,  # ops, intents and `!pd link` ask for approvals
    ops.install,
    intents.install,
    status.install,
    pagerduty.install,  # the on-call directory and the pager paging asks; on-call reads it
    paging.install,
    oncall.install,
)
