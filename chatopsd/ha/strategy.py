"""Single instance or several: chosen once, at start, from the database.

- `SingleInstance` (SQLite): one process owns the database. It always leads, nothing is
  fenced, its memory may be trusted, and what a previous run left started is reported once
  the connectors are up.
- `Shared` (PostgreSQL): several instances share the database. Singleton work runs on the
  lease holder only (ha/lease.py), its writes are fenced with the lease's token, chat events
  are claimed durably so a survivor can take a dead instance's command over (ha/takeover.py),
  and each instance keeps its own connector state.

Nothing outside ha/ and store/ asks which database it runs on: it asks the strategy what to do.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable

from chatopsd.core.errors import JobFailed
from chatopsd.core.ports import KeyValue
from chatopsd.ha.fence import Lease
from chatopsd.store.db import Database

Run = Callable[[], Awaitable[object]]


class Strategy:
    """What differs between one instance and several, for the app and the features."""

    lease: Lease
    # Chat events are claimed with their command until answered, so that another instance
    # can take the command over if this one dies first.
    durable_claims: bool = False
    # How often the leader looks for work other instances queued (None: nobody else queues).
    pickup_seconds: float | None = None
    # How often the leader sweeps for commands dead instances left (None: never).
    sweep_seconds: float | None = None
    # Report at start what the previous run of this one process left started.
    sweep_at_start: bool = False
    # Another process may change the database under us: what memory caches must be re-read.
    others_write: bool = False

    def singleton(self, run: Run, follower: Run | None = None) -> Callable[[], Awaitable[None]]:
        """A job that runs only on the lease holder; the others run `follower`, or nothing."""
        lease = self.lease

        async def job() -> None:
            if lease.leader:
                await run()
                return
            problem = lease.state().database_error
            if problem is not None:
                # Not leading because the database cannot be reached: the job's work is not
                # being done by anyone this instance can see, so it fails, it is not "ok".
                raise JobFailed(f"the database cannot be reached ({problem})")
            if follower is not None:
                await follower()

        job.__name__ = getattr(run, "__name__", "job")
        return job

    def connector_kv(self, kv: KeyValue) -> KeyValue:
        """Where connectors keep their state (session ids, cursors)."""
        return kv

    async def stop(self) -> None:
        await self.lease.stop()


class SingleInstance(Strategy):
    def __init__(self) -> None:
        from chatopsd.ha.lease import LocalLease

        self.lease = LocalLease()
        self.sweep_at_start = True


class Shared(Strategy):
    def __init__(self, lease: Lease, instance_name: str, lease_seconds: float) -> None:
        self.lease = lease
        self.instance_name = instance_name
        self.durable_claims = True
        self.pickup_seconds = lease_seconds / 5
        self.sweep_seconds = lease_seconds / 5
        self.others_write = True

    def connector_kv(self, kv: KeyValue) -> KeyValue:
        """This instance's own keys: a connector's session id and cursor belong to its
        connection, and two instances sharing them would resume each other's."""
        from chatopsd.store.kv import ScopedKeyValue

        return ScopedKeyValue(kv, self.instance_name)


async def choose(db: Database, *, instance: str | None, lease_seconds: float) -> Strategy:
    """The strategy for this database; on a shared one, the lease is taken (or waited for)."""
    if not db.shared:
        return SingleInstance()
    name = instance or socket.gethostname()
    from chatopsd.ha.lease import PgLease

    lease = PgLease(
        db,  # type: ignore[arg-type]  # a shared database is PostgreSQL's
        lease_seconds=lease_seconds,
        instance=f"{name}:{os.getpid()}",
    )
    await lease.start()
    return Shared(lease, name, lease_seconds)
