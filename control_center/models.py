"""Database model (SQLAlchemy 2 typed ORM).

Timestamps are stored UTC-aware (``DateTime(timezone=True)``); SQLite drops the offset, so
:class:`UTCDateTime` puts UTC back on read. Dossier and ticket state is *derived* from the
append-only event tables; the aggregate tables (``commune_due_buckets``, ``commune_days``)
are maintained by the collector in the same transaction so that the wall never scans dossiers.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetime that always comes back in UTC, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # SQLite stores text; store it without offset so text order is time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType}


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- reference data -------------------------------------------------------------------------


class Commune(Base):
    __tablename__ = "communes"

    code: Mapped[str] = mapped_column(String(5), primary_key=True)
    province_code: Mapped[str] = mapped_column(String(2), index=True)
    name: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str | None] = mapped_column(String(120))
    division_type: Mapped[str] = mapped_column(String(20))  # xã / phường / đặc khu
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    area_km2: Mapped[float | None] = mapped_column(Float)


class Procedure(Base):
    __tablename__ = "procedures"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(500))
    sector: Mapped[str | None] = mapped_column(String(120))
    processing_days: Mapped[float | None] = mapped_column(Float)
    processing_hours: Mapped[float | None] = mapped_column(Float)
    full_online: Mapped[bool] = mapped_column(Boolean, default=False)
    # False for a code first seen in an event: catalogues lag behind centres (CONTRACT.md).
    catalogued: Mapped[bool] = mapped_column(Boolean, default=True)


# --- dossiers -------------------------------------------------------------------------------


class Dossier(Base):
    """Current state of one dossier, derived from its events in ``occurred_at`` order."""

    __tablename__ = "dossiers"

    dossier_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    commune_code: Mapped[str] = mapped_column(String(5))  # current handler (after transfers)
    received_commune_code: Mapped[str] = mapped_column(String(5))
    procedure_code: Mapped[str] = mapped_column(String(64))
    procedure_name: Mapped[str | None] = mapped_column(String(500))
    sector: Mapped[str | None] = mapped_column(String(120))
    channel: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[int] = mapped_column(Integer)  # 1..10, DOMAIN.md
    is_open: Mapped[bool] = mapped_column(Boolean)  # not finished (paused counts as open)
    is_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime]
    clock_start_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]
    original_due_at: Mapped[datetime | None]
    paused_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # working seconds
    paused_since: Mapped[datetime | None]  # set while paused; needed to rebuild the state
    extension_count: Mapped[int] = mapped_column(Integer, default=0)
    apology_issued_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    returned_at: Mapped[datetime | None]  # result handed back (status 10)
    closed_at: Mapped[datetime | None]  # stopped being open (3, 7, 9, 10)
    outcome: Mapped[str | None] = mapped_column(String(16))  # early/on_time/overdue when finished
    officer: Mapped[str | None] = mapped_column(String(200))
    # Highest level among the dossier's unresolved alerts, 0 for none. Written by the alert
    # engine in the transaction that raises, escalates or resolves them (``alerts.levels``), so
    # the review can filter and sort by it through an index instead of reading the alerts.
    escalation_level: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    department: Mapped[str | None] = mapped_column(String(200))
    applicant_name: Mapped[str | None] = mapped_column(String(200))  # personal data
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    event_count: Mapped[int] = mapped_column(Integer, default=0)
    last_event_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        # Open backlog per commune by due date: overdue / due soon without touching closed rows.
        Index(
            "ix_dossiers_open_commune_due",
            "commune_code",
            "due_at",
            sqlite_where=text("is_open = 1"),
            postgresql_where=text("is_open"),
        ),
        # The open dossiers by due date, the review's default order. Covering: it also holds
        # what the review filters on most (commune, channel, extension, escalation level) and
        # the pause (a dossier paused in time is neither overdue nor due soon), so counting a
        # filtered list and skipping to a deep page read the index alone.
        Index(
            "ix_dossiers_open_due",
            "due_at",
            "dossier_code",
            "commune_code",
            "channel",
            "extension_count",
            "escalation_level",
            "is_paused",
            "paused_since",
            sqlite_where=text("is_open = 1"),
            postgresql_where=text("is_open"),
        ),
        # The review filtered or sorted by escalation level, index-only. Ascending
        # (autogenerate cannot compare a DESC index on SQLite): "most escalated first, then by
        # due date" reads it backwards, and PostgreSQL sorts each level's rows by due date as
        # it goes (incremental sort), stopping once the page is full.
        Index(
            "ix_dossiers_open_level",
            "escalation_level",
            "due_at",
            "dossier_code",
            "commune_code",
            "is_paused",
            "paused_since",
            sqlite_where=text("is_open = 1"),
            postgresql_where=text("is_open"),
        ),
        # Handler-name search: the matching names are found first (one seek per distinct
        # name), then their open dossiers read here, index-only (queries._officer_names).
        Index(
            "ix_dossiers_open_officer",
            "officer",
            "due_at",
            "dossier_code",
            "commune_code",
            "is_paused",
            "paused_since",
            sqlite_where=text("is_open = 1"),
            postgresql_where=text("is_open"),
        ),
        # "Received / finished / returned by this time yesterday" on the wall: ranges on the
        # three times, covering what each count filters on (channel, status), so every wall
        # refresh reads these indexes alone instead of a table row per dossier counted.
        Index("ix_dossiers_commune_received", "commune_code", "received_at", "channel"),
        Index("ix_dossiers_commune_finished", "commune_code", "finished_at", "status"),
        # A range on returned_at, which a finished_at range cannot bound (results are
        # collected days after they are ready).
        Index(
            "ix_dossiers_commune_returned",
            "commune_code",
            "returned_at",
            "status",
            sqlite_where=text("returned_at IS NOT NULL"),
            postgresql_where=text("returned_at IS NOT NULL"),
        ),
    )


class DossierEvent(Base):
    """Append-only; ``event_id`` is the idempotency key."""

    __tablename__ = "dossier_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dossier_code: Mapped[str] = mapped_column(String(64))
    commune_code: Mapped[str] = mapped_column(String(5))
    type: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime]
    arrived_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]]

    __table_args__ = (Index("ix_dossier_events_dossier_time", "dossier_code", "occurred_at"),)


# --- maintained aggregates ------------------------------------------------------------------


class CommuneDueBucket(Base):
    """Open dossiers per commune per due minute; ``due_minute`` NULL = no due date.

    ``paused``: dossiers whose clock stopped before their due date (waiting for the citizen's
    supplement or fee). Their due date moves with the pause, so they count in the open backlog
    but are never overdue or due soon while paused (``domain.dossier.due_bucket_key``)."""

    __tablename__ = "commune_due_buckets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    commune_code: Mapped[str] = mapped_column(String(5))
    due_minute: Mapped[datetime | None]
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    open_count: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        Index("uq_commune_due_buckets_key", "commune_code", "due_minute", "paused", unique=True),
        Index("ix_commune_due_buckets_due", "due_minute"),
        # Covering: every wall refresh sums open_count per commune over all buckets (about one
        # per open dossier); an index-only scan makes that 5x cheaper at a million dossiers.
        Index("ix_commune_due_buckets_cover", "commune_code", "due_minute", "paused", "open_count"),
    )


class CommuneBacklog(Base):
    """Open dossiers per commune: the sum of its ``commune_due_buckets``, kept with them in the
    collector's transaction. The wall reads the backlog total on every refresh; summing the
    buckets (about one per open dossier) was a third of that refresh at a million dossiers."""

    __tablename__ = "commune_backlog"

    commune_code: Mapped[str] = mapped_column(String(5), primary_key=True)
    open_count: Mapped[int] = mapped_column(Integer, default=0)


class CommuneDay(Base):
    """Per commune per local day counters (``domain.dossier.daily_contributions``): one row per
    commune and day, one column per metric of ``DAILY_METRICS``.

    One row carries the day's every metric, so the wall's 30-day window is 30 rows per commune
    (not 30 per metric) and today / yesterday one row each. SQLite keeps the rows in primary
    key order (WITHOUT ROWID): a commune's days are contiguous, read without a lookup."""

    __tablename__ = "commune_days"

    commune_code: Mapped[str] = mapped_column(String(5), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    received: Mapped[int] = mapped_column(Integer, default=0)
    received_online: Mapped[int] = mapped_column(Integer, default=0)
    finished: Mapped[int] = mapped_column(Integer, default=0)
    finished_early: Mapped[int] = mapped_column(Integer, default=0)
    finished_on_time: Mapped[int] = mapped_column(Integer, default=0)
    finished_overdue: Mapped[int] = mapped_column(Integer, default=0)
    finished_no_due: Mapped[int] = mapped_column(Integer, default=0)
    returned: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    withdrawn: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        # The days of every commune (today, yesterday; the window on PostgreSQL, which has no
        # skip scan over the primary key's leading commune).
        Index("ix_commune_days_day", "day"),
        {"sqlite_with_rowid": False},
    )


# --- queue ----------------------------------------------------------------------------------


class QueueTicket(Base):
    __tablename__ = "queue_tickets"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    commune_code: Mapped[str] = mapped_column(String(5))
    service_day: Mapped[date] = mapped_column(Date)  # local day: ticket numbers restart daily
    ticket_no: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))  # waiting/called/serving/completed/cancelled
    channel: Mapped[str | None] = mapped_column(String(16))
    service: Mapped[str | None] = mapped_column(String(200))
    priority: Mapped[str | None] = mapped_column(String(16))
    counter: Mapped[str | None] = mapped_column(String(32))
    issued_at: Mapped[datetime | None]
    called_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(String(64))
    last_event_at: Mapped[datetime]

    __table_args__ = (
        Index("uq_queue_tickets_key", "commune_code", "service_day", "ticket_no", unique=True),
        Index("ix_queue_tickets_commune_state", "commune_code", "state"),
    )


class QueueEvent(Base):
    __tablename__ = "queue_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    commune_code: Mapped[str] = mapped_column(String(5))
    ticket_no: Mapped[str | None] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime]
    arrived_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]]

    __table_args__ = (
        Index("ix_queue_events_commune_time", "commune_code", "occurred_at"),
        # The collector re-reads a ticket's events on every batch that touches it.
        Index("ix_queue_events_ticket", "commune_code", "ticket_no", "occurred_at"),
    )


class CounterState(Base):
    __tablename__ = "queue_counters"

    commune_code: Mapped[str] = mapped_column(String(5), primary_key=True)
    counter: Mapped[str] = mapped_column(String(32), primary_key=True)
    is_open: Mapped[bool] = mapped_column(Boolean)
    last_event_at: Mapped[datetime]


# --- feed health ----------------------------------------------------------------------------


class CentreFeed(Base):
    """How fresh each centre's data is (heartbeats, events, Last Will)."""

    __tablename__ = "centre_feeds"

    commune_code: Mapped[str] = mapped_column(String(5), primary_key=True)
    reported_state: Mapped[str | None] = mapped_column(String(16))  # online/offline (heartbeat)
    reported_at: Mapped[datetime | None]  # occurred_at of that heartbeat
    last_heartbeat_arrived_at: Mapped[datetime | None]
    last_event_at: Mapped[datetime | None]  # newest occurred_at of any event
    last_arrival_at: Mapped[datetime | None]  # when we last received anything
    last_lag_seconds: Mapped[float | None] = mapped_column(Float)
    software: Mapped[str | None] = mapped_column(String(120))
    queue_waiting: Mapped[int | None] = mapped_column(Integer)
    events_total: Mapped[int] = mapped_column(Integer, default=0)
    dead_letters_total: Mapped[int] = mapped_column(Integer, default=0)


# --- alerts and outbox ----------------------------------------------------------------------


class Alert(Base):
    __tablename__ = "alerts"

    alert_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # One alert per cause and level: the dedupe key survives restarts.
    cause_key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    level: Mapped[int] = mapped_column(Integer)
    commune_code: Mapped[str | None] = mapped_column(String(5))
    dossier_code: Mapped[str | None] = mapped_column(String(64))
    due_at: Mapped[datetime | None]
    raised_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default="open")
    message: Mapped[str] = mapped_column(Text)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    resolved_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]

    __table_args__ = (
        Index("uq_alerts_cause_level", "cause_key", "level", unique=True),
        Index("ix_alerts_state_raised", "state", "raised_at"),
        Index("ix_alerts_commune", "commune_code", "state"),
        Index("ix_alerts_dossier", "dossier_code"),  # a dossier's alert history
    )


class OutboxMessage(Base):
    """Notifications to deliver at least once (MQTT, webhook, email)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("alerts.alert_id"))
    channel: Mapped[str] = mapped_column(String(16))  # mqtt / webhook / email
    target: Mapped[str] = mapped_column(String(500))  # topic, URL or address
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_outbox_pending", "sent_at", "next_attempt_at"),)


# --- dead letters ---------------------------------------------------------------------------


class DeadLetter(Base):
    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    arrived_at: Mapped[datetime]
    topic: Mapped[str] = mapped_column(String(300))
    commune_code: Mapped[str | None] = mapped_column(String(5))  # from the topic when it parses
    reason: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    event_id: Mapped[str | None] = mapped_column(String(64))
    payload_excerpt: Mapped[str] = mapped_column(Text)  # truncated, decoded with replacement
    payload_size: Mapped[int] = mapped_column(Integer)
    resolved_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_dead_letters_arrived", "arrived_at"),
        Index("ix_dead_letters_commune_reason", "commune_code", "reason"),
    )


class DeadLetterCount(Base):
    __tablename__ = "dead_letter_counts"

    commune_code: Mapped[str] = mapped_column(String(5), primary_key=True)  # "" when unknown
    reason: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class Heartbeat(Base):
    """Liveness of our own processes (collector, alerts), for the wall's stale-data banner."""

    __tablename__ = "process_heartbeats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    beat_at: Mapped[datetime]
    info: Mapped[dict[str, Any]]


class Lease(Base):
    """Who may act for a role that must run once (the alert engine), until ``expires_at``.

    ``token`` grows by one each time the lease changes hands: a fencing number that tells a
    holder paused past its expiry from the one that took over (``control_center.lease``).
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    token: Mapped[int] = mapped_column(Integer, default=1)
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class SummarySnapshot(Base):
    """The wall's figures of one scope (a province, later a commune or the country) at one
    moment, written every few minutes by the alert engine: "the same time yesterday" of
    figures that are states (open, overdue, centres live...) rather than day counters."""

    __tablename__ = "summary_snapshots"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)  # province code, ...
    taken_at: Mapped[datetime] = mapped_column(primary_key=True)
    figures: Mapped[dict[str, Any]]


class LiveView(Base):
    """A scope's wall reading (summary and commune rows) as of ``computed_at``: written every
    few seconds by the alert engine's leader, read by every wall refresh and API reader of the
    scope instead of each computing it (``control_center.liveview``)."""

    __tablename__ = "live_views"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)  # province code
    computed_at: Mapped[datetime]
    document: Mapped[str] = mapped_column(Text)  # control_center.readcache.dumps


# --- sign-in, API tokens, kiosk links and the audit log (docs/security.md) -------------------


class User(Base):
    """A person who signs in to the wall: a role, and for the ``commune`` role its commune."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id, never the password
    role: Mapped[str] = mapped_column(String(16))  # wall / commune / leader / admin
    commune_code: Mapped[str | None] = mapped_column(String(5))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Part of the session cookie's identity: a new password or a disabled account signs out
    # every browser of the user at its next request.
    session_nonce: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_sign_in_at: Mapped[datetime | None]


class ApiToken(Base):
    """A bearer token of a machine client; only the SHA-256 of the token is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    commune_code: Mapped[str | None] = mapped_column(String(5))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class KioskLink(Base):
    """A signed link that signs an unattended screen in with the ``wall`` role. The link carries
    only this row's id under the server's signature; revoking the row ends every screen's
    session at its next refresh."""

    __tablename__ = "kiosk_links"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    label: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(100))
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuditEvent(Base):
    """Who did what, when: sign-ins (and refusals), acknowledgements, exports, account changes."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))  # user name, "token:<name>", "kiosk:<label>"
    role: Mapped[str | None] = mapped_column(String(16))
    target: Mapped[str | None] = mapped_column(String(300))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]]

    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_action_at", "action", "at"),
    )
