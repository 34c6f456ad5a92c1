"""Escalation policy: the rules file and the pure decisions made from it.

Nothing here touches the database, the broker or the clock: every function takes ``now`` and a
:class:`~control_center.domain.calendar.WorkingCalendar`, so the rules are tested directly
(weekends, Tết, make-up Saturdays) and the engine only gathers facts and stores decisions.

Thresholds are written the way a province writes them: ``1 working day``, ``4 working hours``,
``30 working minutes`` (working time: a weekend or Tết does not count), ``60 minutes`` (clock
time, for queues) or ``25%`` (share of the dossier's legal processing time).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from control_center.domain.calendar import LOCAL_TZ, WorkingCalendar

# Alert kinds of the default policy (CONTRACT.md leaves the set open; these are documented).
DUE_SOON, DUE_TODAY, OVERDUE, OVERDUE_2D = "due_soon", "due_today", "overdue", "overdue_2d"
APOLOGY_MISSING, OVERDUE_JUMP, FEED_OFFLINE = "apology_missing", "overdue_jump", "feed_offline"
QUEUE_WAIT, AT_RISK = "queue_wait", "at_risk"

LEVEL_COMMUNE_CENTRE, LEVEL_COMMUNE_LEADERSHIP, LEVEL_PROVINCE = 1, 2, 3
MAX_LEVEL = LEVEL_PROVINCE

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
ACTIVE_STATES = (OPEN, ACKNOWLEDGED)

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent.parent / "config" / "policy.yaml"

FORM_04_REMINDER = (
    "Nếu không kịp trả đúng hạn, phải ban hành Phiếu xin lỗi và hẹn lại ngày trả kết quả "
    "(Mẫu số 04) chậm nhất 01 ngày làm việc trước hạn."
)


class PolicyError(ValueError):
    """The policy file is wrong; the message names the file and the rule."""


# --- durations ------------------------------------------------------------------------------

_DURATION_RE = re.compile(
    r"^\s*(?P<amount>\d+(?:[.,]\d+)?)\s*"
    r"(?:(?P<pct>%)|(?P<working>working\s+)?(?P<unit>days?|hours?|minutes?|seconds?))?\s*$",
    re.IGNORECASE,
)


class Duration(BaseModel):
    """A threshold: working time, clock time, or a share of the legal processing time."""

    model_config = ConfigDict(frozen=True)

    amount: float = Field(ge=0)
    unit: Literal["day", "hour", "minute", "second", "share"]
    working: bool = True

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            # A bare number is working minutes: ``after_due: 0`` reads as "as soon as late".
            return {"amount": value, "unit": "minute", "working": True}
        if not isinstance(value, str):
            return value
        m = _DURATION_RE.match(value)
        if not m:
            raise ValueError(
                f"{value!r} is not a duration (e.g. '1 working day', '30 working minutes', "
                "'60 minutes', '25%')"
            )
        amount = float(m["amount"].replace(",", "."))
        if m["pct"]:
            return {"amount": amount / 100.0, "unit": "share", "working": True}
        unit = (m["unit"] or "minute").lower().rstrip("s")
        if unit == "day" and not m["working"]:
            raise ValueError(f"{value!r}: days are always working days here; write 'working day'")
        return {"amount": amount, "unit": unit, "working": bool(m["working"]) or unit == "day"}

    @property
    def is_share(self) -> bool:
        return self.unit == "share"

    def seconds(self, calendar: WorkingCalendar, processing_seconds: float | None = None) -> float:
        """Length in seconds (working seconds when ``working``); a share needs the processing time."""
        if self.unit == "share":
            if processing_seconds is None:
                raise ValueError("a share threshold needs the legal processing time")
            return self.amount * processing_seconds
        if self.unit == "day":
            return self.amount * calendar.seconds_per_day
        return self.amount * {"hour": 3600.0, "minute": 60.0, "second": 1.0}[self.unit]

    def __str__(self) -> str:
        if self.unit == "share":
            return f"{self.amount * 100:g}%"
        return f"{self.amount:g} {'working ' if self.working else ''}{self.unit}s"


# --- the policy file ------------------------------------------------------------------------


class QuietHours(BaseModel):
    """A local-time window in which a level's notifications wait (the alert is still raised)."""

    model_config = ConfigDict(frozen=True)

    start: time
    end: time

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                start, end = (part.strip() for part in value.split("-"))
                return {"start": time.fromisoformat(start), "end": time.fromisoformat(end)}
            except ValueError as exc:
                raise ValueError(f"quiet hours {value!r} must look like 21:00-06:30") from exc
        return value

    def until(self, now: datetime) -> datetime | None:
        """End of the window when ``now`` falls inside it, else None (windows may span midnight)."""
        local = now.astimezone(LOCAL_TZ)
        t = local.time()
        if self.start <= self.end:
            inside = self.start <= t < self.end
            end_day = local.date()
        else:
            inside = t >= self.start or t < self.end
            end_day = local.date() + timedelta(days=1) if t >= self.start else local.date()
        if not inside:
            return None
        return datetime.combine(end_day, self.end, tzinfo=LOCAL_TZ)


class LevelPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    escalate_after: Duration | None = None
    quiet_hours: tuple[QuietHours, ...] = ()
    channels: tuple[Literal["mqtt", "webhook", "email"], ...] = ("mqtt",)
    email_to: tuple[str, ...] = ()

    def quiet_until(self, now: datetime) -> datetime | None:
        ends = [end for q in self.quiet_hours if (end := q.until(now)) is not None]
        return max(ends) if ends else None


class DossierRule(BaseModel):
    """One rule on a single dossier's deadline: exactly one of before_due / on_due_day / after_due."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    level: int = Field(ge=1, le=MAX_LEVEL)
    before_due: Duration | None = None
    on_due_day: bool = False
    after_due: Duration | None = None
    # Caps a share threshold; also bounds how far ahead the engine looks for due dates.
    at_most: Duration | None = None
    only_without_apology: bool = False
    enabled: bool = True

    @functools.cached_property
    def uses_share(self) -> bool:
        """Whether the rule needs the dossier's legal processing time."""
        return any(d is not None and d.is_share for d in (self.before_due, self.after_due))

    @model_validator(mode="after")
    def _one_trigger(self) -> DossierRule:
        given = sum([self.before_due is not None, self.on_due_day, self.after_due is not None])
        if given != 1:
            raise ValueError(
                f"rule {self.kind}: give exactly one of before_due, on_due_day, after_due"
            )
        for d in (self.before_due, self.after_due, self.at_most):
            if d is not None and not d.working and not d.is_share:
                raise ValueError(f"rule {self.kind}: deadlines are measured in working time")
        if self.before_due is not None and self.before_due.is_share and self.at_most is None:
            raise ValueError(
                f"rule {self.kind}: a share threshold before the due date needs at_most"
            )
        return self


class OverdueJumpRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    level: int = Field(default=LEVEL_PROVINCE, ge=1, le=MAX_LEVEL)
    min_new_overdue: int = Field(default=5, ge=1)
    window: Duration = Duration.model_validate("1 working day")
    enabled: bool = True


class FeedOfflineRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    level: int = Field(default=LEVEL_PROVINCE, ge=1, le=MAX_LEVEL)
    silent_for: Duration = Duration.model_validate("30 working minutes")
    enabled: bool = True


class QueueWaitRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    level: int = Field(default=LEVEL_PROVINCE, ge=1, le=MAX_LEVEL)
    longest_wait: Duration = Duration.model_validate("60 minutes")
    enabled: bool = True


class AtRiskRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    level: int = Field(default=LEVEL_COMMUNE_LEADERSHIP, ge=1, le=MAX_LEVEL)
    horizon_working_days: int = Field(default=3, ge=1, le=30)
    history_days: int = Field(default=14, ge=1, le=120)
    min_at_risk: int = Field(default=3, ge=1)
    enabled: bool = True


class CommuneRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    overdue_jump: OverdueJumpRule = OverdueJumpRule()
    feed_offline: FeedOfflineRule = FeedOfflineRule()
    queue_wait: QueueWaitRule = QueueWaitRule()
    at_risk: AtRiskRule = AtRiskRule()


class DeliveryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # A commune's topic gets at most this many messages per cycle; the rest wait a cycle.
    mqtt_per_topic_per_cycle: int = Field(default=50, ge=1)
    # More new province-level alerts than this about one commune in one cycle: the province
    # topic gets one digest for the commune, the alerts themselves go to the commune's topic.
    province_digest_after: int = Field(default=3, ge=0)
    publish_timeout_s: float = Field(default=5.0, gt=0)
    retry_initial_s: float = Field(default=2.0, gt=0)
    retry_max_s: float = Field(default=300.0, gt=0)
    announce_resolution: bool = True


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    levels: dict[int, LevelPolicy]
    dossier_rules: tuple[DossierRule, ...]
    commune_rules: CommuneRules = CommuneRules()
    delivery: DeliveryPolicy = DeliveryPolicy()

    @field_validator("levels")
    @classmethod
    def _all_levels(cls, value: dict[int, LevelPolicy]) -> dict[int, LevelPolicy]:
        missing = {1, 2, 3} - set(value)
        if missing or set(value) - {1, 2, 3}:
            raise ValueError("levels must be exactly 1, 2 and 3")
        return value

    @model_validator(mode="after")
    def _unique_kinds(self) -> Policy:
        kinds = [r.kind for r in self.dossier_rules]
        dup = {k for k in kinds if kinds.count(k) > 1}
        if dup:
            raise ValueError(f"dossier rule kinds must be unique: {sorted(dup)}")
        return self

    def level(self, level: int) -> LevelPolicy:
        return self.levels[min(max(level, 1), MAX_LEVEL)]

    def lookahead_seconds(self, calendar: WorkingCalendar) -> float:
        """How far ahead of ``now`` (working seconds) any before-due rule can fire."""
        out = 0.0
        for rule in self.dossier_rules:
            if not rule.enabled:
                continue
            if rule.before_due is not None:
                cap = rule.at_most or rule.before_due
                out = max(out, cap.seconds(calendar))
            if rule.on_due_day:
                out = max(out, calendar.seconds_per_day)
        return out


def load_policy(path: str | Path | None = None) -> Policy:
    """Read and validate a policy file (the shipped ``config/policy.yaml`` by default)."""
    path = Path(path) if path else DEFAULT_POLICY_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"policy file {path} cannot be read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {path} is not valid YAML: {exc}") from exc
    return parse_policy(raw, source=str(path))


def parse_policy(raw: Any, source: str = "policy") -> Policy:
    from pydantic import ValidationError

    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "policy"
        msg = first.get("msg", "invalid").removeprefix("Value error, ")
        raise PolicyError(f"{source}: {where}: {msg}") from None


# --- decisions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """An alert that should exist now. ``cause_key`` names the cause and its episode."""

    cause_key: str
    kind: str
    level: int
    commune_code: str | None
    message: str
    dossier_code: str | None = None
    due_at: datetime | None = None


@dataclass(frozen=True)
class DossierFacts:
    dossier_code: str
    commune_code: str
    due_at: datetime | None
    is_paused: bool = False
    procedure_name: str | None = None
    apology_issued_at: datetime | None = None
    clock_start_at: datetime | None = None
    original_due_at: datetime | None = None
    # Set when only whether an apology slip exists is known (the engine reads no more).
    has_apology: bool | None = None

    @property
    def apology_issued(self) -> bool:
        if self.has_apology is not None:
            return self.has_apology
        return self.apology_issued_at is not None


def dossier_cause_key(dossier_code: str, kind: str, due_at: datetime, commune_code: str) -> str:
    # The due minute is part of the cause: an extension or a new appointment is a new episode,
    # so the old alert resolves and the new deadline is watched afresh. So is the handling
    # commune: a dossier transferred to another commune resolves the first commune's alerts
    # and the new handler is warned on its own topic.
    return stamped_cause_key(dossier_code, kind, _due_stamp(due_at), commune_code)


def stamped_cause_key(dossier_code: str, kind: str, due_stamp: str, commune_code: str) -> str:
    """:func:`dossier_cause_key` with the due minute already written (``DueClock.stamp``)."""
    return f"dossier:{dossier_code}:{kind}:{due_stamp}:{commune_code}"


def _due_stamp(due_at: datetime) -> str:
    return f"{due_at.astimezone(LOCAL_TZ):%Y%m%d%H%M}"


class DueClock:
    """Working time between one ``now`` and due dates, worked out once per distinct due date.

    Thousands of dossiers share a due minute (most are due at the end of a working day), so an
    evaluation cycle over a big backlog does a handful of calendar computations, not one per
    dossier.
    """

    def __init__(self, now: datetime, calendar: WorkingCalendar) -> None:
        self.now = now
        self.calendar = calendar
        self.local_day = _local_date(now)
        self._seconds: dict[datetime, float] = {}
        self._stamps: dict[datetime, str] = {}
        self._days: dict[datetime, date] = {}

    def seconds(self, due: datetime) -> float:
        """Working seconds late (``now >= due``) or remaining (before the due date)."""
        value = self._seconds.get(due)
        if value is None:
            if self.now >= due:
                value = self.calendar.working_seconds_between(due, self.now)
            else:
                value = self.calendar.working_seconds_between(self.now, due)
            self._seconds[due] = value
        return value

    def stamp(self, due: datetime) -> str:
        value = self._stamps.get(due)
        if value is None:
            value = self._stamps[due] = _due_stamp(due)
        return value

    def is_due_day(self, due: datetime) -> bool:
        day = self._days.get(due)
        if day is None:
            day = self._days[due] = _local_date(due)
        return day == self.local_day


@dataclass(frozen=True)
class DossierHit:
    """A dossier rule that applies now; its message is written only when an alert is raised."""

    rule: DossierRule
    facts: DossierFacts
    seconds: float  # working seconds late (after the due date) or remaining (before it)
    cause_key: str

    @property
    def level(self) -> int:
        return self.rule.level

    def decision(self, calendar: WorkingCalendar) -> Decision:
        facts, rule = self.facts, self.rule
        assert facts.due_at is not None
        if rule.after_due is not None:
            message = _late_message(rule.kind, facts, self.seconds, calendar)
        elif rule.before_due is not None:
            message = due_soon_message(facts, self.seconds, calendar)
        else:
            message = (
                f"Hồ sơ {_dossier_label(facts)} đến hạn trả hôm nay lúc "
                f"{format_local(facts.due_at)}."
            )
            if not facts.apology_issued:
                message += f" {FORM_04_REMINDER}"
        return Decision(
            cause_key=self.cause_key,
            kind=rule.kind,
            level=rule.level,
            commune_code=facts.commune_code,
            dossier_code=facts.dossier_code,
            due_at=facts.due_at,
            message=message,
        )


def dossier_decisions(
    facts: DossierFacts, now: datetime, calendar: WorkingCalendar, policy: Policy
) -> list[Decision]:
    """Which dossier rules apply to this dossier at ``now``.

    A paused dossier (waiting for the applicant's supplement, a fee, or stopped) raises no
    before-due or due-day alerts: its legal clock is stopped and its due date moves when it
    resumes. Once past its due date it stays late, paused or not, as on the wall.
    """
    hits = dossier_hits(facts, DueClock(now, calendar), policy)
    return [hit.decision(calendar) for hit in hits]


def dossier_hits(facts: DossierFacts, clock: DueClock, policy: Policy) -> list[DossierHit]:
    """The rules of :func:`dossier_decisions` that apply, without writing any message."""
    due = facts.due_at
    if due is None:
        return []
    calendar = clock.calendar
    late = clock.now >= due
    seconds = clock.seconds(due)
    processing: float | None = None
    out: list[DossierHit] = []
    for rule in policy.dossier_rules:
        if not rule.enabled:
            continue
        if rule.only_without_apology and facts.apology_issued:
            continue
        if rule.uses_share and processing is None:
            processing = _processing_seconds(facts, calendar)
        if rule.after_due is not None:
            if not late:
                continue
            threshold = _threshold(rule.after_due, rule.at_most, calendar, processing)
            if threshold is None or (threshold > 0 and seconds < threshold):
                continue
        elif rule.before_due is not None:
            if late or facts.is_paused:
                continue
            threshold = _threshold(rule.before_due, rule.at_most, calendar, processing)
            if threshold is None or seconds > threshold:
                continue
        elif late or facts.is_paused or not clock.is_due_day(due):  # on the due day
            continue
        key = stamped_cause_key(facts.dossier_code, rule.kind, clock.stamp(due), facts.commune_code)
        out.append(DossierHit(rule, facts, seconds, key))
    return out


def _threshold(
    d: Duration, cap: Duration | None, calendar: WorkingCalendar, processing: float | None
) -> float | None:
    if d.is_share and processing is None:
        return None  # no legal processing time known: a share cannot be measured
    seconds = d.seconds(calendar, processing)
    if cap is not None:
        seconds = min(seconds, cap.seconds(calendar))
    return seconds


def _processing_seconds(facts: DossierFacts, calendar: WorkingCalendar) -> float | None:
    legal_due = facts.original_due_at or facts.due_at
    if facts.clock_start_at is None or legal_due is None:
        return None
    return max(calendar.working_seconds_between(facts.clock_start_at, legal_due), 0.0)


def _dossier_label(facts: DossierFacts) -> str:
    return (
        f"{facts.dossier_code} ({facts.procedure_name})"
        if facts.procedure_name
        else facts.dossier_code
    )


def due_soon_message(facts: DossierFacts, remaining: float, calendar: WorkingCalendar) -> str:
    return (
        f"Hồ sơ {_dossier_label(facts)} sẽ đến hạn trả lúc {format_local(facts.due_at)} — "
        f"còn {format_working(remaining, calendar)}. {FORM_04_REMINDER}"
    )


def _late_message(
    kind: str, facts: DossierFacts, late_seconds: float, calendar: WorkingCalendar
) -> str:
    label, due = _dossier_label(facts), format_local(facts.due_at)
    late = format_working(late_seconds, calendar) if late_seconds > 0 else None
    if kind == APOLOGY_MISSING:
        return (
            f"Hồ sơ {label} đã quá hạn trả (hạn {due}) nhưng chưa có Phiếu xin lỗi và hẹn lại "
            "ngày trả kết quả (Mẫu số 04)."
        )
    text = f"Hồ sơ {label} đã quá hạn trả (hạn {due})"
    if late:
        text += f", trễ {late}"
    if not facts.apology_issued:
        text += "; chưa có Phiếu xin lỗi và hẹn lại (Mẫu số 04)"
    return text + "."


def escalation_message(
    original: str, level: int, waited_seconds: float, calendar: WorkingCalendar
) -> str:
    return (
        f"[Chuyển cấp {level}: chưa được xác nhận sau {format_working(waited_seconds, calendar)}] "
        f"{original}"
    )


# --- escalation -----------------------------------------------------------------------------


def should_escalate(
    *,
    state: str,
    level: int,
    raised_at: datetime,
    escalated_at: datetime | None,
    now: datetime,
    calendar: WorkingCalendar,
    policy: Policy,
) -> bool:
    """An open (unacknowledged) alert goes one level up after its level's ``escalate_after``."""
    if state != OPEN or escalated_at is not None or level >= MAX_LEVEL:
        return False
    after = policy.level(level).escalate_after
    if after is None:
        return False
    waited = (
        calendar.working_seconds_between(raised_at, now)
        if after.working
        else (now - raised_at).total_seconds()
    )
    return waited >= after.seconds(calendar)


# --- commune-wide rules ---------------------------------------------------------------------


@dataclass(frozen=True)
class FeedFacts:
    commune_code: str
    reported_state: str | None
    last_heartbeat_arrived_at: datetime | None
    last_arrival_at: datetime | None
    commune_name: str | None = None


def feed_decision(
    facts: FeedFacts, now: datetime, calendar: WorkingCalendar, policy: Policy
) -> Decision | None:
    """A centre that sent nothing (event or heartbeat) for ``silent_for``, Last Will or not.

    Judged on our arrival clock (centre clocks are minutes off), and counted in working time:
    a centre that closes at 17:00 is not "offline" at night. A centre never heard from is not
    alerted: it has not been connected yet.
    """
    rule = policy.commune_rules.feed_offline
    if not rule.enabled:
        return None
    seen = [t for t in (facts.last_arrival_at, facts.last_heartbeat_arrived_at) if t is not None]
    if not seen:
        return None
    since = max(seen)
    silent = (
        calendar.working_seconds_between(since, now)
        if rule.silent_for.working
        else (now - since).total_seconds()
    )
    threshold = rule.silent_for.seconds(calendar)
    if silent < threshold:
        return None
    name = facts.commune_name or facts.commune_code
    minutes = silent / 60.0
    return Decision(
        cause_key=f"feed:{facts.commune_code}:{FEED_OFFLINE}:{since.astimezone(LOCAL_TZ):%Y%m%d%H%M}",
        kind=FEED_OFFLINE,
        level=rule.level,
        commune_code=facts.commune_code,
        message=(
            f"Trung tâm Phục vụ hành chính công {name} "
            f"{'báo ngoại tuyến' if facts.reported_state == 'offline' else 'không gửi dữ liệu'} "
            f"từ {format_local(since)} "
            f"(đã {_fmt_number(minutes)} phút{' làm việc' if rule.silent_for.working else ''}); "
            "số liệu của xã trên màn hình không còn cập nhật."
        ),
    )


@dataclass(frozen=True)
class QueueFacts:
    commune_code: str
    service_day: date
    waiting: int
    oldest_issued_at: datetime | None
    oldest_ticket_no: str | None = None
    commune_name: str | None = None


def queue_decision(facts: QueueFacts, now: datetime, policy: Policy) -> Decision | None:
    """Longest current wait at the desk (clock time: people wait in minutes, not working time)."""
    rule = policy.commune_rules.queue_wait
    if not rule.enabled or facts.waiting <= 0 or facts.oldest_issued_at is None:
        return None
    wait_s = (now - facts.oldest_issued_at).total_seconds()
    if wait_s < rule.longest_wait.seconds(_NO_CALENDAR):
        return None
    name = facts.commune_name or facts.commune_code
    ticket = f" (số {facts.oldest_ticket_no})" if facts.oldest_ticket_no else ""
    return Decision(
        # One episode per commune per day: a queue that drains and refills within minutes
        # does not ring again the same day.
        cause_key=f"queue:{facts.commune_code}:{QUEUE_WAIT}:{facts.service_day:%Y%m%d}",
        kind=QUEUE_WAIT,
        level=rule.level,
        commune_code=facts.commune_code,
        message=(
            f"{name}: người dân chờ lâu nhất {int(wait_s // 60)} phút{ticket}; "
            f"{facts.waiting} người đang chờ tại bộ phận một cửa."
        ),
    )


class _NoCalendar:
    """Clock-time thresholds do not consult a calendar."""

    seconds_per_day = 8 * 3600.0


_NO_CALENDAR: Any = _NoCalendar()


def overdue_jump_decision(
    commune_code: str,
    newly_overdue: int,
    now: datetime,
    policy: Policy,
    commune_name: str | None = None,
) -> Decision | None:
    """``newly_overdue``: open dossiers whose due date fell inside the rule's window before now."""
    rule = policy.commune_rules.overdue_jump
    if not rule.enabled or newly_overdue < rule.min_new_overdue:
        return None
    return Decision(
        cause_key=f"commune:{commune_code}:{OVERDUE_JUMP}:{_local_date(now):%Y%m%d}",
        kind=OVERDUE_JUMP,
        level=rule.level,
        commune_code=commune_code,
        message=(
            f"{commune_name or commune_code}: {newly_overdue} hồ sơ mới quá hạn trong "
            f"{_duration_vi(rule.window)} qua."
        ),
    )


# --- forecast -------------------------------------------------------------------------------


def completion_rate(
    finished_per_day: dict[date, int], start: date, end: date, calendar: WorkingCalendar
) -> float:
    """Dossiers finished per working day over the local days [start, end)."""
    working_days = 0
    day = start
    while day < end:
        if calendar.is_working_day(day):
            working_days += 1
        day += timedelta(days=1)
    if working_days == 0:
        return 0.0
    finished = sum(v for d, v in finished_per_day.items() if start <= d < end)
    return max(finished, 0) / working_days


def forecast_overdue(
    overdue_now: int, upcoming: Sequence[tuple[float, int]], rate_per_working_day: float
) -> int:
    """How many of the ``upcoming`` dossiers will miss their due date at the current pace.

    ``upcoming``: (working days from now until due, open dossiers due then). Handlers work the
    backlog in due-date order (the overdue ones first) at ``rate_per_working_day``; a dossier
    in position p (1-based) is finished after p / rate working days, so it is late when
    p > rate x its working days until due. Counts the positions that fail, bucket by bucket.
    """
    rate = max(rate_per_working_day, 0.0)
    position = max(overdue_now, 0)
    late = 0
    for days_until_due, count in sorted(upcoming):
        if count <= 0:
            continue
        capacity = math.floor(rate * max(days_until_due, 0.0) + 1e-9)
        # positions position+1 .. position+count; late are those above capacity
        late += max(0, min(count, position + count - capacity))
        position += count
    return late


@dataclass(frozen=True)
class CommuneBacklog:
    commune_code: str
    overdue_now: int
    upcoming: tuple[tuple[float, int], ...]  # (working days until due, count)
    rate_per_working_day: float
    commune_name: str | None = None


def at_risk_decision(backlog: CommuneBacklog, now: datetime, policy: Policy) -> Decision | None:
    rule = policy.commune_rules.at_risk
    if not rule.enabled:
        return None
    at_risk = forecast_overdue(backlog.overdue_now, backlog.upcoming, backlog.rate_per_working_day)
    if at_risk < rule.min_at_risk:
        return None
    due_in_horizon = sum(c for _, c in backlog.upcoming)
    return Decision(
        cause_key=f"commune:{backlog.commune_code}:{AT_RISK}:{_local_date(now):%Y%m%d}",
        kind=AT_RISK,
        level=rule.level,
        commune_code=backlog.commune_code,
        message=(
            f"{backlog.commune_name or backlog.commune_code}: dự báo {at_risk} hồ sơ sẽ quá hạn "
            f"trong {rule.horizon_working_days} ngày làm việc tới ({due_in_horizon} hồ sơ đến hạn, "
            f"{backlog.overdue_now} đã quá hạn, tốc độ giải quyết "
            f"{_fmt_number(backlog.rate_per_working_day)} hồ sơ/ngày làm việc). "
            "Đề nghị bố trí thêm người xử lý hoặc ban hành phiếu xin lỗi, hẹn lại kịp thời."
        ),
    )


# --- formatting -----------------------------------------------------------------------------


def format_local(instant: datetime | None) -> str:
    """'17:00 27/11/2026' in Vietnam time, as on the apology slip."""
    if instant is None:
        return "—"
    return instant.astimezone(LOCAL_TZ).strftime("%H:%M %d/%m/%Y")


def format_working(seconds: float, calendar: WorkingCalendar) -> str:
    """Working time in words: '1 ngày làm việc', '1,5 ngày làm việc', '3 giờ 20 phút làm việc'."""
    seconds = max(seconds, 0.0)
    per_day = calendar.seconds_per_day
    # Within a minute of whole days counts as whole days: a cycle runs a few seconds late.
    if seconds + 60 >= per_day:
        days = seconds / per_day
        rounded = round(days * 2) / 2 if abs(days - round(days)) > 60 / per_day else round(days)
        return f"{_fmt_number(rounded)} ngày làm việc"
    minutes = round(seconds / 60.0)
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} giờ {minutes} phút làm việc"
    if hours:
        return f"{hours} giờ làm việc"
    return f"{minutes} phút làm việc"


def _duration_vi(d: Duration) -> str:
    unit = {"day": "ngày", "hour": "giờ", "minute": "phút", "second": "giây", "share": "%"}[d.unit]
    return f"{_fmt_number(d.amount)} {unit}{' làm việc' if d.working else ''}"


def _fmt_number(x: float) -> str:
    if abs(x - round(x)) < 1e-9:
        return str(round(x))
    return f"{x:.1f}".replace(".", ",")


def _local_date(instant: datetime) -> date:
    return instant.astimezone(LOCAL_TZ).date()


def kinds_in(decisions: Iterable[Decision]) -> set[str]:
    return {d.kind for d in decisions}
