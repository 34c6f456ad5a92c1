"""A leadership lease in the database: several instances run, exactly one acts.

The alert engine must never send an alert twice, yet an operator wants a second instance ready
to take over when the first dies. One row of ``leases`` says who holds the role and until when;
it works the same on SQLite and PostgreSQL (no advisory locks), so tests, the demo and a
province's PostgreSQL cluster behave alike.

- :meth:`Lease.acquire` takes the lease when it is free or expired, or renews it when it is
  ours, in one conditional ``UPDATE`` (an ``INSERT`` the very first time). The holder renews it
  every ``ttl / 3``; a standby that tries meanwhile changes nothing.
- :meth:`Lease.hold` is the first statement of every unit of work that sends (and of every one
  that decides, on PostgreSQL): ``UPDATE ... WHERE holder = me AND token = mine AND expires_at
  > now``. It renews the lease and, until the transaction ends, holds the row's write lock
  (PostgreSQL: the row lock; SQLite: the database's write lock). A standby's takeover is an
  ``UPDATE`` of the same row, so it waits for that transaction to end and then sees what it
  committed: rows marked sent are not sent again.
- :meth:`Lease.confirm` is the last statement of every such unit: still our token, renewed.
  When either check finds the lease gone, :class:`LeaseLost` is raised and the transaction
  rolls back.
- :meth:`Lease.valid` is the local half of the fence: a holder frozen past its expiry (``kill
  -STOP``, a VM pause) learns on waking, from the monotonic clock and before it publishes
  anything, that it may no longer act; nothing it prepared before the pause goes out.

Clocks: ``expires_at`` is written and compared with the holders' own UTC clocks, so the hosts
must keep NTP time (a skew of a second against a 15 s lease is harmless).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import typing
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, case, literal, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from control_center.db import insert_for
from control_center.models import Lease as LeaseRow
from control_center.models import utcnow

log = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """The lease belongs to someone else now (or expired): stop acting at once."""


def holder_id() -> str:
    """``host:pid:random``: unique for the life of this process, readable in the table."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Lease:
    """One process's view of the lease ``name``; not thread-safe (one loop uses it)."""

    def __init__(
        self,
        name: str,
        ttl_s: float,
        holder: str | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("a lease needs a positive duration")
        self.name = name
        self.ttl = timedelta(seconds=ttl_s)
        self.holder = holder or holder_id()
        self.token: int | None = None  # set while we hold it
        self._clock = clock
        self._monotonic = monotonic
        self._valid_until = 0.0  # monotonic instant our last renewal is good until
        self._renewed_mono = float("-inf")
        self._attempted = float("-inf")  # last acquire, successful or not

    # --- state as this process sees it ---------------------------------------------------

    @property
    def held(self) -> bool:
        return self.token is not None

    def valid(self) -> bool:
        """Held, and the last renewal has not run out by our own monotonic clock."""
        return self.token is not None and self._monotonic() < self._valid_until

    def renewal_due(self) -> bool:
        """Time for :meth:`acquire`: a third of the lease since the last renewal (holder) or the
        last attempt (standby), so a standby asks the database a few times per lease, not in a
        busy loop, and takes over within ``ttl * 4 / 3`` of the holder's last renewal."""
        last = max(self._renewed_mono, self._attempted)
        return self._monotonic() - last >= self.ttl.total_seconds() / 3

    # --- statements ----------------------------------------------------------------------

    def acquire(self, factory: sessionmaker[Session]) -> bool:
        """Take the lease if it is free or expired, renew it if ours, in a transaction of its own.

        Returns whether we hold it afterwards. A changed token means we took it over.
        """
        started, now = self._monotonic(), self._clock()
        self._attempted = started
        table = typing.cast(Table, LeaseRow.__table__)
        ours = (table.c.holder == self.holder) & (table.c.token == (self.token or -1))
        at = literal(now, type_=table.c.acquired_at.type)
        try:
            with factory() as session, session.begin():
                _lock_wait_limit(session)
                row = session.execute(
                    update(table)
                    .where(table.c.name == self.name, ours | (table.c.expires_at <= now))
                    .values(
                        holder=self.holder,
                        token=case((ours, table.c.token), else_=table.c.token + 1),
                        acquired_at=case((ours, table.c.acquired_at), else_=at),
                        renewed_at=now,
                        expires_at=now + self.ttl,
                    )
                    .returning(table.c.token)
                ).first()
                if row is None:
                    first = session.execute(
                        insert_for(session, table)
                        .values(
                            name=self.name,
                            holder=self.holder,
                            token=1,
                            acquired_at=now,
                            renewed_at=now,
                            expires_at=now + self.ttl,
                        )
                        .on_conflict_do_nothing(index_elements=["name"])
                        .returning(table.c.token)
                    ).first()
                    if first is None:
                        return self._lost()  # held by someone else, and not expired
                    row = first
        except OperationalError as exc:
            if not _is_lock_timeout(exc):
                raise
            # The holder is inside a unit of work right now: alive, so we stay standby.
            return self._lost()
        token = int(row[0])
        if token != self.token:
            log.info("lease %s taken by %s (token %d)", self.name, self.holder, token)
        self.token = token
        self._renewed(started)
        return True

    def hold(self, session: Session) -> None:
        """Renew-if-ours as part of the caller's transaction, or raise :class:`LeaseLost`.

        The row stays write-locked until the caller's transaction ends, so nobody takes the
        lease over while this unit of work is deciding or sending.
        """
        if not self.valid():
            raise self._lost_error("ran out before this unit of work")
        self._renew_ours(session, unexpired=True, lost="taken over or expired")

    def confirm(self, session: Session) -> None:
        """The last statement of a unit of work: still ours (same holder, same token), renewed.

        No expiry condition: a unit that started with :meth:`hold` kept the row locked, and
        one that did not (deciding on SQLite) is still the only one that acted unless a
        standby took the lease over, which changed the token. Raises :class:`LeaseLost` then,
        and the caller's transaction rolls back.
        """
        if self.token is None:
            raise self._lost_error("not held")
        self._renew_ours(session, unexpired=False, lost="taken over")

    def _renew_ours(self, session: Session, *, unexpired: bool, lost: str) -> None:
        """Extend the row if it is still ours (same holder and token, and with ``unexpired``
        not yet run out), inside the caller's transaction; else raise :class:`LeaseLost`."""
        started, now = self._monotonic(), self._clock()
        table = typing.cast(Table, LeaseRow.__table__)
        ours = [
            table.c.name == self.name,
            table.c.holder == self.holder,
            table.c.token == self.token,
        ]
        if unexpired:
            ours.append(table.c.expires_at > now)
        result: Any = session.execute(
            update(table).where(*ours).values(renewed_at=now, expires_at=now + self.ttl)
        )
        if result.rowcount != 1:
            raise self._lost_error(lost)
        self._renewed(started)

    def release(self, session: Session) -> None:
        """Hand the lease back at a clean stop, so a standby takes over without waiting."""
        if self.token is None:
            return
        table = typing.cast(Table, LeaseRow.__table__)
        session.execute(
            update(table)
            .where(
                table.c.name == self.name,
                table.c.holder == self.holder,
                table.c.token == self.token,
            )
            .values(expires_at=self._clock())
        )
        self.token = None

    # --- helpers -------------------------------------------------------------------------

    def _renewed(self, started: float) -> None:
        # Counted from before the statement: the database may have waited on a lock first.
        self._renewed_mono = started
        self._valid_until = started + self.ttl.total_seconds()

    def _lost(self) -> bool:
        if self.token is not None:
            log.warning("lease %s lost by %s", self.name, self.holder)
        self.token = None
        self._valid_until = 0.0
        self._renewed_mono = float("-inf")
        return False

    def _lost_error(self, why: str) -> LeaseLost:
        held = self.token
        self._lost()
        return LeaseLost(f"lease {self.name} (token {held}) {why}")


def _lock_wait_limit(session: Session) -> None:
    """A standby does not queue behind the holder's unit of work for long (PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL lock_timeout = '1s'"))


def _is_lock_timeout(exc: OperationalError) -> bool:
    code = getattr(exc.orig, "sqlstate", None)
    # 55P03 lock_not_available (PostgreSQL); SQLite's "database is locked" after busy_timeout.
    return code == "55P03" or "database is locked" in str(exc.orig)
