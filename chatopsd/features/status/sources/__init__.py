"""Status sources built from `[[status.sources]]`: the one place config becomes sources."""

from __future__ import annotations

from collections.abc import Sequence

from chatopsd.config import (
    AlertmanagerSource,
    CommandSource,
    HttpSource,
    PrometheusSource,
    StatusSourceConfig,
)
from chatopsd.features.status.api import StatusSource
from chatopsd.features.status.sources.alertmanager import AlertmanagerStatus
from chatopsd.features.status.sources.command import CommandStatus
from chatopsd.features.status.sources.http import HttpStatus
from chatopsd.features.status.sources.prometheus import PrometheusStatus
from chatopsd.httpclient import HttpTransport


def build(configs: Sequence[StatusSourceConfig], http: HttpTransport) -> list[StatusSource]:
    found: list[StatusSource] = []
    for c in configs:
        if isinstance(c, AlertmanagerSource):
            found.append(
                AlertmanagerStatus(
                    c.name,
                    c.url,
                    http,
                    timeout=c.timeout_seconds,
                    severity_map=c.severity_map,
                    default_verdict=c.default_verdict,
                    matchers=tuple(c.matchers),
                )
            )
        elif isinstance(c, PrometheusSource):
            found.append(
                PrometheusStatus(
                    c.name,
                    c.url,
                    c.query,
                    http,
                    timeout=c.timeout_seconds,
                    firing_verdict=c.firing_verdict,
                    alert_name=c.alert_name,
                )
            )
        elif isinstance(c, HttpSource):
            found.append(
                HttpStatus(
                    c.name,
                    c.url,
                    c.field,
                    http,
                    timeout=c.timeout_seconds,
                    value_map=c.value_map,
                    default_verdict=c.default_verdict,
                )
            )
        elif isinstance(c, CommandSource):
            found.append(
                CommandStatus(
                    c.name,
                    c.argv,
                    timeout=c.timeout_seconds,
                    exit_map=c.exit_map,
                    output_map=c.output_map,
                )
            )
    return found
