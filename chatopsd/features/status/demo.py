"""The demo status source, used only when nothing real is configured (`Config.demo`), so
`!status` answers out of the box. Marked as demo data."""

from __future__ import annotations

from chatopsd.features.status.api import Alert, Reading, Verdict


class DemoStatusSource:
    name = "demo"

    async def read(self) -> Reading:
        return Reading(
            self.name,
            Verdict.DEGRADED,
            alerts=(
                Alert("DemoHighLatency", Verdict.DEGRADED, "p99 latency above 800 ms", self.name),
            ),
        )
