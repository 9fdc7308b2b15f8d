"""An App as a process: signals (SIGTERM/SIGINT stop it, SIGHUP reloads the config, SIGUSR1
toggles debug logging), systemd's notifications and watchdog, the control socket and the
metrics exporter."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from chatopsd import config as config_mod
from chatopsd.app import App, Io
from chatopsd.config import Config
from chatopsd.control import ControlServer
from chatopsd.core.errors import ConfigError
from chatopsd.kernel import StartupError
from chatopsd.logs import toggle_debug
from chatopsd.metrics import Exporter
from chatopsd.systemd import Notifier, Watchdog

log = logging.getLogger("chatopsd")


async def serve(
    config: Config,
    io: Io | None = None,
    on_ready: Callable[[App], None] | None = None,
    config_path: Path | None = None,
) -> None:
    """Run the daemon until SIGTERM/SIGINT (or end of console input when console-only).

    Under systemd (Type=notify): READY=1 once the store is open and the scheduler runs,
    WATCHDOG=1 while the loop is responsive, RELOADING=1 on SIGHUP, STOPPING=1 on the way out."""
    app = App(config, io=io or Io())
    notifier = Notifier()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP)
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, app.stopping.set)
        loop.add_signal_handler(
            signal.SIGUSR1, lambda: log.warning("log level now %s", toggle_debug())
        )
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload(app, notifier, config_path))
        await _serve(app, notifier, on_ready)
    finally:
        # A start-up failure must leave no handler that swallows SIGTERM behind.
        for sig in signals:
            loop.remove_signal_handler(sig)


async def _serve(app: App, notifier: Notifier, on_ready: Callable[[App], None] | None) -> None:
    control: ControlServer | None = None
    exporter = Exporter(app.config.metrics, app.metrics, app.scheduler)
    started = False
    try:
        try:
            # first: a busy port fails before any job or connector has started
            await exporter.start()
        except OSError as exc:
            m = app.config.metrics
            where = f"metrics.listen {m.listen}" if m.listen else f"metrics.textfile {m.textfile}"
            raise StartupError(f"{where}: {exc.strerror or exc}") from exc
        started = await _unless_stopped(app.start(), app.stopping)
        if started:
            control = await _start_control(app)
    except BaseException:
        if control is not None:
            await control.close()
        await exporter.close()
        await app.abort()
        raise
    if not started:
        log.warning("stopped during start-up")
        await exporter.close()
        await app.abort()
        return
    watchdog = Watchdog(notifier, status=app.status_line)
    watchdog.start()
    watchdog.ready()
    for supervisor in app.supervisors:
        # STATUS= follows each connector's state at once, not at the next 5-second tick
        supervisor.on_change = watchdog.push_status
    if on_ready is not None:
        on_ready(app)
    try:
        await app.stopping.wait()
    finally:
        log.info("stopping")
        notifier.stopping()
        await watchdog.stop()
        if control is not None:
            await control.close()
        await exporter.close()
        await app.stop()
        notifier.close()


async def _unless_stopped(start: Coroutine[Any, Any, None], stopping: asyncio.Event) -> bool:
    """Run start-up unless a stop signal comes first: True once it has finished, False when
    SIGTERM came first (start-up is then cancelled). Start-up can wait long on the outside
    (a database that accepts connections and never answers), and systemd's stop must not
    wait for that."""
    starting = asyncio.ensure_future(start)
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({starting, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not starting.done():
            starting.cancel()
            # whatever start-up raises while being cancelled is moot: we are stopping
            await asyncio.gather(starting, return_exceptions=True)
    if starting.cancelled():
        return False
    starting.result()  # start-up's own error, if it failed before the stop came
    return True


async def _start_control(app: App) -> ControlServer | None:
    cfg = app.config
    if not cfg.control.enabled:
        return None
    control = ControlServer(
        app.health(),
        cfg.control.socket_path(cfg.chatopsd.db_path()),
        cfg.control.allow_uids,
        outbox=app.outbox,
        broadcast=cfg.control.broadcast_channels,
    )
    try:
        await control.start()
    except OSError as exc:
        # The daemon is more useful running without `ctl` than not running at all.
        log.error("control socket %s: %s; `chatopsd ctl` will not work", control.path, exc)
        return None
    return control


def _reload(app: App, notifier: Notifier, path: Path | None) -> None:
    notifier.reloading()
    try:
        new = config_mod.load(path)
    except ConfigError as exc:
        log.error("reload failed, keeping the running config: %s", exc)
    else:
        later = app.reload(new)
        log.warning(
            "config reloaded (log level/format, roles, auth, pagerduty.users, rate limits, "
            "approval rules, commands)%s",
            f"; changed but needs a restart: {', '.join(later)}" if later else "",
        )
    notifier.ready(app.status_line())
