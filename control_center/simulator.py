"""Simulated commune centres: realistic traffic for every commune of the province.

Three layers, so that the same traffic model serves tests, the demo backfill and live mode:

- :class:`TrafficModel` plans traffic as :class:`PlannedEvent` objects (pure, seeded and
  deterministic: the same seed, day and commune always give the same dossiers, whatever
  subset of communes or days is asked for);
- :func:`encode` turns a planned event into the bytes a centre publishes (:class:`CentreMessage`),
  and :func:`corrupt` makes the malformed copies that older centre software sends;
- :func:`backfill` feeds weeks of history straight into the collector's ``Ingestor`` (same
  validation and state code as MQTT, much faster), and :func:`run` publishes live traffic to the
  broker, one MQTT connection per centre so that each centre has its own Last Will.

Live mode knows the backfill's open dossiers without being handed them: plans depend only on
(seed, scale, commune, day), so with ``resume_days`` it re-plans the same history and carries
on with the steps still to come, even in another process started later (``control-center demo``
backfills, then starts ``control-center simulate --resume-days N``).

Volumes follow what provinces reported in 2025 (DOMAIN.md): about 1,000 dossiers a working day
across Tuyên Quang's 124 communes, wards about three times busier than rural communes, 95%
online, a few percent finished late.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import json
import logging
import math
import random
import socket
import threading
import time as _time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from control_center.domain.calendar import LOCAL_TZ, WorkingCalendar

if TYPE_CHECKING:
    from paho.mqtt.client import Client, MQTTMessageInfo

    from control_center.settings import Settings

log = logging.getLogger(__name__)

TOPIC_PREFIX = "dvc/v1"
SOFTWARE = "mot-cua-sim/1.0"

# Shares seen in 2025 reporting (DOMAIN.md) or chosen so the wall has something to show.
ONLINE_SHARE = 0.95
POST_SHARE = 0.01
WARD_FACTOR = 3.0  # a phường centre receives about three times a rural xã's dossiers
PROVINCE_DAILY_DOSSIERS_PER_COMMUNE = 1000 / 124
# Dossiers that miss their original return date. Most get an apology slip or an extension that
# re-dates them, and more than half of those miss the new date too; 15% get nothing, so
# apology compliance stays below 100%. About 5% of finished dossiers end up overdue.
LATE_SHARE = 0.08
APOLOGY_SHARE_OF_LATE = 0.75
EXTENSION_SHARE_OF_LATE = 0.1
MISSES_NEW_DATE_SHARE = 0.6
SUPPLEMENT_SHARE = 0.08
SUPPLEMENT_NEVER_SHARE = 0.1  # applicants who never come back: stays waiting
PAYMENT_SHARE = 0.12
REJECT_SHARE = 0.02
WITHDRAW_SHARE = 0.01
TRANSFER_SHARE = 0.01
RETURNED_SHARE = 0.85
GIVEN_DUE_SHARE = 0.1  # centres that compute and send due_at themselves
UNCATALOGUED_SHARE = 0.003  # procedure codes the provincial catalogue does not have yet
TICKETS_PER_DOSSIER = 0.9  # queue visits (collections, advice) per dossier received

# Live mode re-sends what the centres sent in this span before it started: the collector drops
# what it already has, and nothing sent between a backfill and the start of live mode is lost.
RECENT = timedelta(minutes=15)

DEFECT_KINDS = ("invalid_json", "missing_field", "commune_mismatch", "future_timestamp")

SUPPLEMENT_REASONS = (
    "Thiếu bản sao giấy khai sinh",
    "Thiếu chữ ký của người yêu cầu",
    "Giấy tờ tùy thân hết hạn",
    "Thông tin tờ khai chưa khớp với CSDL dân cư",
)
REJECT_REASONS = (
    "Không thuộc thẩm quyền giải quyết",
    "Hồ sơ không hợp lệ",
    "Người yêu cầu không đủ điều kiện",
)
LATE_REASONS = (
    "Chờ xác minh của cơ quan liên quan",
    "Hệ thống liên thông quá tải",
    "Cần thẩm định thực địa",
)
DEPARTMENTS = ("Văn phòng HĐND và UBND", "Phòng Kinh tế", "Phòng Văn hóa - Xã hội")
SURNAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Hà", "Ma", "Nông")
MIDDLE = ("Văn", "Thị", "Đức", "Minh", "Thu", "Quang", "Ngọc", "Hữu")
GIVEN = ("An", "Bình", "Chi", "Dũng", "Hà", "Hùng", "Lan", "Mai", "Nam", "Phương", "Sơn", "Tuấn")
TICKET_SERVICES = ("Hộ tịch", "Chứng thực", "Đất đai", "Cư trú", "Trả kết quả", "Tư vấn")


# --- model inputs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Centre:
    """One commune's service centre as the simulator sees it."""

    code: str
    name: str
    division_type: str  # xã / phường / đặc khu
    daily_dossiers: float  # mean dossiers received on a working day
    counters: int


@dataclass(frozen=True)
class Procedure:
    code: str
    name: str
    sector: str | None
    processing_days: float | None
    processing_hours: float | None
    weight: float


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """An event a centre will send, before it is encoded.

    ``body`` holds ``type`` and the type's fields; ``occurred_at`` and ``commune_code`` are added
    by :func:`encode` (live mode stamps the wall-clock time of sending).
    """

    at: datetime
    commune_code: str
    stream: str  # dossier / queue
    event_id: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CentreMessage:
    """What a centre publishes: a topic and the payload bytes."""

    topic: str
    payload: bytes
    commune_code: str
    stream: str  # dossier / queue / status
    occurred_at: datetime
    retain: bool = False
    defect: str | None = None  # one of DEFECT_KINDS when deliberately malformed
    duplicate: bool = False


def topic_for(province: str, commune_code: str, stream: str) -> str:
    return f"{TOPIC_PREFIX}/{province}/{commune_code}/{stream}"


def rfc3339(instant: datetime) -> str:
    """Local time with its +07:00 offset, as centres send it."""
    return instant.astimezone(LOCAL_TZ).isoformat(timespec="seconds")


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def encode(
    province: str, event: PlannedEvent, occurred_at: datetime | None = None
) -> CentreMessage:
    """The message a centre publishes for ``event`` (``occurred_at`` overrides the planned time)."""
    when = occurred_at or event.at
    payload = {
        "event_id": event.event_id,
        "type": event.body["type"],
        "occurred_at": rfc3339(when),
        "commune_code": event.commune_code,
        **{k: v for k, v in event.body.items() if k != "type"},
    }
    return CentreMessage(
        topic=topic_for(province, event.commune_code, event.stream),
        payload=_dumps(payload),
        commune_code=event.commune_code,
        stream=event.stream,
        occurred_at=when,
    )


def status_message(
    province: str, commune_code: str, state: str, at: datetime | None, queue_waiting: int = 0
) -> CentreMessage:
    """A heartbeat (retained). ``at`` None for a Last Will: set at connect time, it cannot know
    when it will fire, so it leaves occurred_at out and the collector uses the arrival time."""
    payload: dict[str, Any] = {"state": state}
    if at is not None:
        payload["occurred_at"] = rfc3339(at)
    payload |= {"commune_code": commune_code, "software": SOFTWARE, "queue_waiting": queue_waiting}
    return CentreMessage(
        topic=topic_for(province, commune_code, "status"),
        payload=_dumps(payload),
        commune_code=commune_code,
        stream="status",
        occurred_at=at or datetime.now(UTC),
        retain=True,
    )


def corrupt(
    message: CentreMessage, kind: str, rng: random.Random, other_commune: str
) -> CentreMessage:
    """A malformed copy of ``message`` of the given kind (see DEFECT_KINDS).

    The copy carries a fresh event id: it stands for a broken record from older software, not
    for a lost event, so the dossier's own events still arrive intact.
    """
    data = json.loads(message.payload)
    data["event_id"] = f"{rng.getrandbits(128):032x}"
    if kind == "invalid_json":
        text = json.dumps(data, ensure_ascii=False)
        payload = text[: max(1, len(text) * 2 // 3)].encode()  # cut off mid-record
    elif kind == "missing_field":
        required = ["event_id", "type", "occurred_at"]
        if message.stream == "dossier":
            required.append("dossier_code")
        del data[rng.choice(required)]
        payload = _dumps(data)
    elif kind == "commune_mismatch":
        data["commune_code"] = other_commune
        payload = _dumps(data)
    elif kind == "future_timestamp":
        # A centre whose clock is a day or more ahead.
        ahead = timedelta(days=rng.uniform(1, 30))
        data["occurred_at"] = rfc3339(message.occurred_at + ahead)
        payload = _dumps(data)
    else:
        raise ValueError(f"unknown defect kind {kind!r}")
    return replace(message, payload=payload, defect=kind, duplicate=False)


def _event_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


# --- the traffic model ----------------------------------------------------------------------


class TrafficModel:
    """Plans dossier and queue traffic for a set of centres (pure: no I/O, no clock).

    Every random draw comes from a generator seeded by (seed, commune, day, purpose), so the
    traffic of one commune on one day does not depend on which other communes or days are
    planned.
    """

    def __init__(
        self,
        province: str,
        centres: Sequence[Centre],
        procedures: Sequence[Procedure],
        calendar: WorkingCalendar,
        seed: int = 1,
    ) -> None:
        if not centres:
            raise ValueError("no centres to simulate")
        if not procedures:
            raise ValueError("no procedures in the catalogue")
        self.province = province
        self.centres = list(centres)
        self.by_code = {c.code: c for c in self.centres}
        self.procedures = list(procedures)
        self._proc_weights = list(itertools.accumulate(max(p.weight, 0.0) for p in self.procedures))
        self.calendar = calendar
        self.seed = seed
        self.seconds_per_day = calendar.seconds_per_day

    # random streams ---------------------------------------------------------------------

    def rng(self, *parts: object) -> random.Random:
        return random.Random(":".join(str(p) for p in (self.seed, *parts)))

    # working time helpers ---------------------------------------------------------------

    def random_working_instant(self, day: date, rng: random.Random) -> datetime:
        """An instant in the day's working sessions; mornings are busier than afternoons."""
        sessions = self.calendar.sessions
        weights = [1.5 if i == 0 else 1.0 for i in range(len(sessions))]
        start, end = rng.choices(sessions, weights=weights)[0]
        lo = datetime.combine(day, start, LOCAL_TZ)
        hi = datetime.combine(day, end, LOCAL_TZ)
        return lo + timedelta(seconds=rng.uniform(0, (hi - lo).total_seconds() - 1))

    # dossiers ---------------------------------------------------------------------------

    def dossier_arrivals(self, centre: Centre, day: date) -> list[datetime]:
        """Receipt instants of the dossiers the centre accepts on ``day`` (none on days off)."""
        if not self.calendar.is_working_day(day):
            return []
        rng = self.rng("arrivals", centre.code, day.isoformat())
        n = _poisson(rng, centre.daily_dossiers)
        return sorted(self.random_working_instant(day, rng) for _ in range(n))

    def pick_procedure(self, rng: random.Random) -> Procedure:
        return rng.choices(self.procedures, cum_weights=self._proc_weights)[0]

    def dossier_code(self, centre: Centre, day: date, seq: str) -> str:
        # Shaped like the national portal's codes (agency code - yymmdd - sequence).
        return f"000.{centre.code[:2]}.{centre.code[2:]}.H{self.province}-{day:%y%m%d}-{seq}"

    def plan_day(self, centre: Centre, day: date) -> list[list[PlannedEvent]]:
        """Every dossier received by the centre on ``day``, each as its whole lifecycle."""
        plans = []
        for i, received_at in enumerate(self.dossier_arrivals(centre, day), start=1):
            rng = self.rng("dossier", centre.code, day.isoformat(), i)
            code = self.dossier_code(centre, day, f"{i:04d}")
            plans.append(self.plan_dossier(centre, code, received_at, rng))
        return plans

    def plan_dossier(
        self, centre: Centre, dossier_code: str, received_at: datetime, rng: random.Random
    ) -> list[PlannedEvent]:
        """One dossier's lifecycle from receipt to return, in occurred_at order.

        Times are in working time: handlers act in office hours. Whether the dossier will be
        late is decided up front so that the late share is what the model says it is.
        """
        cal = self.calendar
        commune = centre.code
        events: list[PlannedEvent] = []

        def emit(at: datetime, type_: str, **fields: Any) -> None:
            events.append(
                PlannedEvent(
                    at=at,
                    commune_code=commune,
                    stream="dossier",
                    event_id=_event_id(rng),
                    body={"type": type_, "dossier_code": dossier_code, **fields},
                )
            )

        roll = rng.random()
        channel = (
            "online"
            if roll < ONLINE_SHARE
            else "post"
            if roll < ONLINE_SHARE + POST_SHARE
            else "counter"
        )
        if rng.random() < UNCATALOGUED_SHARE:
            proc = Procedure(
                code=f"9.{rng.randint(100000, 999999)}",
                name="Thủ tục chưa có trong danh mục",
                sector=None,
                processing_days=float(rng.choice((3, 5, 7))),
                processing_hours=None,
                weight=0,
            )
        else:
            proc = self.pick_procedure(rng)
        received_fields: dict[str, Any] = {
            "procedure_code": proc.code,
            "procedure_name": proc.name,
            "channel": channel,
            "applicant_name": f"{rng.choice(SURNAMES)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}",
        }
        if proc.sector:
            received_fields["sector"] = proc.sector
        if proc.weight == 0:  # uncatalogued: the centre says how long it takes
            received_fields["processing_days"] = proc.processing_days
        due = cal.due_at(
            received_at,
            processing_days=proc.processing_days,
            processing_hours=proc.processing_hours,
            channel=channel,
        )
        if due is not None and rng.random() < GIVEN_DUE_SHARE:
            received_fields["due_at"] = rfc3339(due)
        emit(received_at, "received", **received_fields)

        start = cal.clock_start(received_at, channel)
        if proc.processing_hours:
            budget = proc.processing_hours * 3600.0
        elif proc.processing_days:
            budget = proc.processing_days * self.seconds_per_day
        else:
            budget = 5 * self.seconds_per_day  # no legal time: handled in about a week
        spd = self.seconds_per_day

        t = cal.add_working_seconds(received_at, rng.uniform(300, min(2 * 3600, budget * 0.2)))
        emit(
            t,
            "assigned",
            officer=f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}",
            department=rng.choice(DEPARTMENTS),
        )

        ending = rng.random()
        if ending < REJECT_SHARE:
            t = cal.add_working_seconds(t, rng.uniform(0.05, 0.4) * budget)
            emit(t, "rejected", reason=rng.choice(REJECT_REASONS))
            return events
        if ending < REJECT_SHARE + WITHDRAW_SHARE:
            t = cal.add_working_seconds(t, rng.uniform(0.1, 0.6) * budget)
            emit(t, "withdrawn")
            return events
        if ending < REJECT_SHARE + WITHDRAW_SHARE + TRANSFER_SHARE and len(self.centres) > 1:
            t = cal.add_working_seconds(t, rng.uniform(0.02, 0.1) * budget)
            target = rng.choice([c for c in self.centres if c.code != commune])
            emit(t, "transferred", to_commune_code=target.code)
            commune = target.code  # from now on the receiving centre reports the dossier

        paused = 0.0  # working seconds the clock is stopped: the due date moves by this much
        if rng.random() < SUPPLEMENT_SHARE:
            t = cal.add_working_seconds(t, rng.uniform(0.05, 0.4) * budget)
            emit(t, "supplement_requested", reason=rng.choice(SUPPLEMENT_REASONS))
            if rng.random() < SUPPLEMENT_NEVER_SHARE:
                return events
            wait = rng.uniform(0.5, 5) * spd
            t = cal.add_working_seconds(t, wait)
            paused += wait
            emit(t, "supplement_received")
        if rng.random() < PAYMENT_SHARE:
            t = cal.add_working_seconds(t, rng.uniform(0.05, 0.3) * budget)
            emit(t, "payment_requested")
            wait = rng.uniform(0.05, 1.0) * spd
            t = cal.add_working_seconds(t, wait)
            paused += wait
            emit(t, "payment_received")

        deadline = cal.add_working_seconds(start, budget + paused)
        if rng.random() < LATE_SHARE:
            overrun = rng.uniform(0.3, 5) * spd
            done = cal.add_working_seconds(deadline, overrun)
            remedy = rng.random()
            if remedy < APOLOGY_SHARE_OF_LATE + EXTENSION_SHARE_OF_LATE:
                # The slip goes out at least one working day before the deadline when the
                # handler sees it coming; on a one-day procedure that is right after receipt.
                lead = rng.uniform(1.0, 2.0) * spd
                slip = cal.add_working_seconds(start, max(budget + paused - lead, 0.0))
                slip = max(slip, t)
                if rng.random() < MISSES_NEW_DATE_SHARE:
                    new_due = cal.add_working_seconds(deadline, rng.uniform(0.1, 0.6) * overrun)
                else:
                    new_due = cal.add_working_seconds(done, rng.uniform(0, 1) * spd)
                if remedy < APOLOGY_SHARE_OF_LATE:
                    emit(slip, "apology_issued", new_due_at=rfc3339(new_due))
                else:
                    reason = rng.choice(LATE_REASONS)
                    emit(slip, "extended", new_due_at=rfc3339(new_due), reason=reason)
            t = max(done, t + timedelta(minutes=5))
        else:
            t = max(
                cal.add_working_seconds(start, paused + rng.uniform(0.3, 0.97) * budget),
                t + timedelta(minutes=5),
            )
        emit(t, "completed")
        if rng.random() < RETURNED_SHARE:
            emit(cal.add_working_seconds(t, rng.uniform(0.02, 3) * spd), "returned")
        events.sort(key=lambda e: e.at)
        return events

    # queue ------------------------------------------------------------------------------

    def plan_queue_day(self, centre: Centre, day: date) -> list[PlannedEvent]:
        """Counters opening and closing with each session, and the day's tickets."""
        if not self.calendar.is_working_day(day):
            return []
        rng = self.rng("queue", centre.code, day.isoformat())
        events: list[PlannedEvent] = []
        counters = [f"Q{i}" for i in range(1, centre.counters + 1)]

        def emit(at: datetime, type_: str, **fields: Any) -> None:
            events.append(
                PlannedEvent(at, centre.code, "queue", _event_id(rng), {"type": type_, **fields})
            )

        for s_start, s_end in self.calendar.sessions:
            for c in counters:
                emit(datetime.combine(day, s_start, LOCAL_TZ), "counter_opened", counter=c)
                emit(datetime.combine(day, s_end, LOCAL_TZ), "counter_closed", counter=c)
        n = _poisson(rng, centre.daily_dossiers * TICKETS_PER_DOSSIER)
        issued = sorted(self.random_working_instant(day, rng) for _ in range(n))
        free_at = {c: datetime.combine(day, time(0), LOCAL_TZ) for c in counters}
        for i, at in enumerate(issued, start=1):
            events.extend(self.plan_ticket(centre, f"{i:03d}", at, rng, free_at))
        events.sort(key=lambda e: e.at)
        return events

    def plan_ticket(
        self,
        centre: Centre,
        number: str,
        issued_at: datetime,
        rng: random.Random,
        free_at: dict[str, datetime],
        minutes: float = 60.0,
    ) -> list[PlannedEvent]:
        """One ticket: issued, called by the first free counter, served, completed or cancelled.

        ``minutes`` is the length of a simulated minute in seconds / 60 (live mode compresses).
        """
        priority = rng.choices(("normal", "priority", "elderly"), weights=(85, 8, 7))[0]
        ticket_no = ("U" if priority != "normal" else "A") + number
        channel = rng.choices(("kiosk", "zalo", "web", "counter"), weights=(50, 30, 10, 10))[0]
        out: list[PlannedEvent] = []

        def emit(at: datetime, type_: str, **fields: Any) -> None:
            out.append(
                PlannedEvent(
                    at,
                    centre.code,
                    "queue",
                    _event_id(rng),
                    {"type": type_, "ticket_no": ticket_no, **fields},
                )
            )

        emit(
            issued_at,
            "ticket_issued",
            channel=channel,
            service=rng.choice(TICKET_SERVICES),
            priority=priority,
        )
        counter = min(free_at, key=lambda c: free_at[c])
        wait = rng.uniform(1, 8 if priority != "normal" else 25)
        called = max(issued_at, free_at[counter]) + timedelta(seconds=wait * minutes)
        emit(called, "ticket_called", counter=counter)
        roll = rng.random()
        if roll < 0.06:
            reason = "no_show" if roll < 0.04 else "document_missing"
            ends = called + timedelta(seconds=rng.uniform(1, 3) * minutes)
            emit(ends, "ticket_cancelled", counter=counter, reason=reason)
        else:
            started = called + timedelta(seconds=rng.uniform(0.5, 2) * minutes)
            emit(started, "service_started", counter=counter)
            ends = started + timedelta(seconds=rng.uniform(4, 20) * minutes)
            emit(ends, "ticket_completed", counter=counter)
        free_at[counter] = ends
        return out


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 50:  # normal approximation: Knuth's loop is slow and loses precision here
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


# --- building a model from the configured province -------------------------------------------


def centres_for(communes: Sequence[Any], seed: int = 1, scale: float = 1.0) -> list[Centre]:
    """Centres with volumes that differ by commune: wards busier, plus a seeded spread.

    ``communes`` are reference rows with ``code``, ``name`` and ``division_type``. The mean
    over the province stays at the reported ~1,000 dossiers a working day for 124 communes.
    """
    weights = []
    for c in communes:
        rng = random.Random(f"{seed}:size:{c.code}")
        base = WARD_FACTOR if _is_ward(c.division_type) else 1.0
        weights.append(base * rng.lognormvariate(0, 0.35))
    mean_weight = sum(weights) / len(weights)
    out = []
    for c, w in zip(communes, weights, strict=True):
        daily = PROVINCE_DAILY_DOSSIERS_PER_COMMUNE * scale * w / mean_weight
        counters = 4 + int(w > 4) if _is_ward(c.division_type) else 2 + int(w > 1.2)
        out.append(Centre(c.code, c.name, str(c.division_type), daily, counters))
    return out


def _is_ward(division_type: Any) -> bool:
    return str(getattr(division_type, "value", division_type)).lower() == "phường"


def model_from_settings(
    settings: Settings,
    seed: int = 1,
    scale: float = 1.0,
    communes: Sequence[str] | None = None,
) -> TrafficModel:
    """The traffic model of the configured province (communes and catalogue from reference)."""
    from control_center import reference
    from control_center.runtime import calendar_from_settings

    refs = reference.province_communes(settings.province)
    centres = centres_for(refs, seed=seed, scale=scale)
    if communes:
        wanted = set(communes)
        unknown = wanted - {c.code for c in centres}
        if unknown:
            raise ValueError(f"not communes of province {settings.province}: {sorted(unknown)}")
        centres = [c for c in centres if c.code in wanted]
    procedures = [
        Procedure(
            code=p.code,
            name=p.name,
            sector=p.sector,
            processing_days=p.processing_days,
            processing_hours=p.processing_hours,
            weight=float(p.weight or 1.0),
        )
        for p in reference.load_procedures(settings.config_dir / "procedures.yaml")
    ]
    return TrafficModel(
        settings.province, centres, procedures, calendar_from_settings(settings), seed
    )


# --- history (backfill) ---------------------------------------------------------------------


@dataclass
class History:
    """Planned history up to ``now``: messages with their arrival times, and what comes later."""

    deliveries: list[tuple[datetime, CentreMessage]]  # (arrived_at, message), arrival order
    pending: list[PlannedEvent]  # planned after now, or held by a centre that is offline now
    recent: list[PlannedEvent]  # delivered in the last RECENT minutes (live mode re-sends them)
    dossiers: int = 0
    communes: set[str] = field(default_factory=set)
    offline_centres: list[str] = field(default_factory=list)


def plan_history(
    model: TrafficModel,
    now: datetime,
    days: int = 30,
    *,
    bad_ratio: float = 0.005,
    dup_ratio: float = 0.005,
    outages: bool = True,
) -> History:
    """Everything the centres would have sent in the last ``days`` days, as of ``now``.

    Dossiers received in the window come with their lifecycle up to ``now`` (later steps go to
    ``pending``, so some dossiers are still open and some overdue). Queue tickets only for today.
    With ``outages``, one centre was offline for a few hours earlier in the window and flushed
    its backlog when it came back, and another is offline right now (its Last Will is the last
    status; what it holds is in ``pending``).
    """
    now = now.astimezone(LOCAL_TZ)
    today = now.date()
    first = today - timedelta(days=days - 1)

    events: list[PlannedEvent] = []
    pending: list[PlannedEvent] = []
    dossiers = 0
    for centre in model.centres:
        for offset in range(days):
            for plan in model.plan_day(centre, first + timedelta(days=offset)):
                dossiers += 1
                for ev in plan:
                    (events if ev.at <= now else pending).append(ev)
        issued: set[str] = set()
        for ev in model.plan_queue_day(centre, today):
            if ev.at <= now:
                events.append(ev)
                if ev.body["type"] == "ticket_issued":
                    issued.add(ev.body["ticket_no"])
            elif ev.body.get("ticket_no") in issued:
                # Tickets already issued are served later; live mode issues its own new ones.
                pending.append(ev)

    # Outages: commune -> (start, end); end None = still offline now. Drawn from the seed and
    # the day, not from ``now``, so that live mode started a little later (resume_days) finds
    # the same centre offline with the same backlog.
    outage_windows: dict[str, tuple[datetime, datetime | None]] = {}
    offline_now: list[str] = []
    if outages and len(model.centres) >= 2 and days >= 2:
        orng = model.rng("outages", today.isoformat(), days)
        past, current = orng.sample(model.centres, 2)
        # Signal is lost during office hours (when there is something to send) and comes
        # back a few hours later.
        opening = model.calendar.sessions[0][0]
        workdays = [
            d
            for d in (first + timedelta(days=i) for i in range(days - 1))
            if model.calendar.is_working_day(d)
        ]
        if workdays:
            start = datetime.combine(orng.choice(workdays), opening, LOCAL_TZ)
            start += timedelta(minutes=orng.uniform(30, 120))
            outage_windows[past.code] = (start, start + timedelta(hours=orng.uniform(2, 6)))
        start = datetime.combine(today, opening, LOCAL_TZ) + timedelta(hours=orng.uniform(1, 4))
        outage_windows[current.code] = (min(start, now - timedelta(minutes=30)), None)
        offline_now.append(current.code)

    rng = model.rng("history", now.isoformat(), days)
    deliveries: list[tuple[datetime, CentreMessage]] = []
    codes = [c.code for c in model.centres]
    for ev in events:
        msg = encode(model.province, ev)
        lag = rng.uniform(0.2, 5) if rng.random() > 0.02 else rng.uniform(60, 1800)
        arrived = ev.at + timedelta(seconds=lag)
        outage = outage_windows.get(ev.commune_code)
        if outage and outage[0] <= ev.at and (outage[1] is None or ev.at < outage[1]):
            if outage[1] is None:
                pending.append(ev)  # still in the offline centre's backlog
                continue
            # Flushed after reconnecting, original occurred_at, in the order the backlog drains.
            arrived = outage[1] + timedelta(seconds=rng.uniform(1, 120))
        arrived = min(arrived, now)
        deliveries.append((arrived, msg))
        if rng.random() < dup_ratio:
            later = min(arrived + timedelta(seconds=rng.uniform(1, 600)), now)
            deliveries.append((later, replace(msg, duplicate=True)))
        if rng.random() < bad_ratio:
            other = rng.choice([c for c in codes if c != ev.commune_code] or codes)
            deliveries.append((arrived, corrupt(msg, rng.choice(DEFECT_KINDS), rng, other)))

    for centre in model.centres:
        outage = outage_windows.get(centre.code)
        if outage and outage[1] is None:
            # The broker published the centre's Last Will when its link timed out.
            will = status_message(model.province, centre.code, "offline", None)
            deliveries.append((min(outage[0] + timedelta(seconds=45), now), will))
        else:
            at = now - timedelta(seconds=rng.uniform(0.5, 30))
            beat = status_message(model.province, centre.code, "online", at)
            deliveries.append((at + timedelta(seconds=0.5), beat))

    deliveries.sort(key=lambda d: d[0])
    pending.sort(key=lambda e: e.at)
    recent = [ev for ev in events if ev.at >= now - RECENT]
    return History(
        deliveries, pending, recent, dossiers, {c.code for c in model.centres}, offline_now
    )


def backfill(
    settings: Settings,
    days: int = 30,
    seed: int = 1,
    now: datetime | None = None,
    *,
    scale: float = 1.0,
    communes: Sequence[str] | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Load ``days`` days of simulated history into the configured database.

    Goes straight through the collector's ``Ingestor`` (validation, dead letters, state,
    aggregates), without MQTT. The schema and reference data must be in place
    (``control-center db upgrade``). Returns counts.

    Live mode carries on with these dossiers when started with the same seed, scale and
    communes and ``resume_days=days``: traffic plans do not depend on ``now``, so it re-derives
    the steps still to come instead of being handed them.
    """
    from collectors.ingest import InboundMessage, Ingestor
    from control_center import snapshots
    from control_center.db import make_engine
    from control_center.runtime import calendar_from_settings

    now = (now or datetime.now(UTC)).astimezone(LOCAL_TZ)
    started = _time.monotonic()
    model = model_from_settings(settings, seed=seed, scale=scale, communes=communes)
    history = plan_history(model, now, days)
    planned_s = _time.monotonic() - started

    engine = make_engine(settings.database_url)
    ingestor = Ingestor(engine, settings)
    # Larger batches than the live collector's: nobody waits for an ack, and each batch
    # costs a transaction and a reload of the dossiers it touches.
    size = batch_size or max(settings.collector_batch_size, 4000)
    kinds: Counter[str] = Counter()
    # The wall's summary snapshots over the last day, as the alert engine would have taken
    # them (less often): each is taken when everything that had arrived by then is stored,
    # so a fresh demo shows its figures against the same time yesterday.
    marks = snapshots.marks(now - timedelta(days=1, minutes=30), now, SNAPSHOT_BACKFILL_EVERY)
    calendar = calendar_from_settings(settings)
    taken = 0
    try:
        batch: list[Any] = []
        for arrived_at, msg in history.deliveries:
            while marks and arrived_at >= marks[0]:
                if batch:
                    ingestor.process(batch)
                    batch = []
                taken += _snapshot(engine, settings, calendar, marks.pop(0))
            kinds[msg.defect or ("duplicate" if msg.duplicate else msg.stream)] += 1
            batch.append(InboundMessage(msg.topic, msg.payload, arrived_at.astimezone(UTC)))
            if len(batch) >= size:
                ingestor.process(batch)
                batch = []
        if batch:
            ingestor.process(batch)
        for mark in marks:
            taken += _snapshot(engine, settings, calendar, mark)
    finally:
        engine.dispose()
    elapsed = _time.monotonic() - started
    log.info(
        "backfill: %d dossiers, %d messages in %.1fs (planning %.1fs)",
        history.dossiers,
        len(history.deliveries),
        elapsed,
        planned_s,
    )
    return {
        "days": days,
        "communes": len(history.communes),
        "dossiers": history.dossiers,
        "messages": len(history.deliveries),
        "dossier_events": kinds["dossier"],
        "queue_events": kinds["queue"],
        "status": kinds["status"],
        "duplicates": kinds["duplicate"],
        "malformed": sum(kinds[k] for k in DEFECT_KINDS),
        "offline_centres": history.offline_centres,
        "open_steps_pending": len(history.pending),
        "snapshots": taken,
        "seconds": round(elapsed, 2),
    }


# Each snapshot computes the province summary (about 0.1 s on the demo's database): every
# 15 minutes keeps the backfill's share of the demo's start to about 10 s, and the wall reads
# the nearest one within 30 minutes of 24 h ago.
SNAPSHOT_BACKFILL_EVERY = timedelta(minutes=15)


def _snapshot(engine: Any, settings: Settings, calendar: WorkingCalendar, at: datetime) -> int:
    from control_center import snapshots
    from control_center.db import session_factory, transaction

    with transaction(session_factory(engine)) as session:
        taken = snapshots.take(
            session, settings, calendar, at.astimezone(UTC), every=SNAPSHOT_BACKFILL_EVERY
        )
    return int(taken)


# --- live mode ------------------------------------------------------------------------------


@dataclass
class SimulatorOptions:
    speed: float = 1.0  # 60: an hour of traffic per minute (occurred_at stays wall-clock time)
    seed: int = 1
    communes: Sequence[str] | None = None  # None: every commune of the province
    duration_s: float | None = None  # None: until stopped
    bad_ratio: float = 0.005
    dup_ratio: float = 0.005
    offline_centre: bool = True  # one centre drops off (Last Will), then flushes its backlog
    offline_after_s: float = 60.0
    offline_for_s: float = 120.0
    heartbeat_s: float = 30.0
    # Live traffic at the working-hours rate around the clock, so a demo at night is not empty.
    office_hours_only: bool = False
    scale: float = 1.0
    # Carry on with the dossiers of a backfill of that many days (same seed, scale, communes):
    # their remaining steps, the backlog of the centre offline at backfill time, and what was
    # sent in the last minutes before the start (the collector drops what it already has).
    resume_days: int = 0
    resume: Sequence[PlannedEvent] = ()  # further events to carry on with (e.g. from a History)
    client_id_prefix: str = "sim-centre"
    connect_timeout_s: float = 15.0


class _CentreLink:
    """One centre's MQTT connection, with its Last Will on its status topic."""

    def __init__(self, settings: Settings, province: str, code: str, client_id: str) -> None:
        self.settings = settings
        self.province = province
        self.code = code
        self.client_id = client_id
        self.status_topic = topic_for(province, code, "status")
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.client: Client | None = None
        self.queue_waiting = 0
        self._last_publish: MQTTMessageInfo | None = None

    def open(self) -> None:
        from paho.mqtt.client import CallbackAPIVersion, Client, MQTTv311

        target = self.settings.mqtt_parts()
        client = Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=MQTTv311)
        if target.username:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set(**target.tls_options())
        will = status_message(self.province, self.code, "offline", None)
        client.will_set(self.status_topic, will.payload, qos=1, retain=True)
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self.client = client
        client.connect_async(target.host, target.port, keepalive=30)
        client.loop_start()

    def _on_connect(self, client: Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        try:
            if getattr(reason, "is_failure", False):
                log.warning("centre %s: broker refused connection: %s", self.code, reason)
                return
            hb = status_message(
                self.province, self.code, "online", datetime.now(UTC), self.queue_waiting
            )
            client.publish(hb.topic, hb.payload, qos=1, retain=True)
            self.connected.set()
        except Exception:  # an exception here would kill paho's network thread
            log.exception("centre %s: on_connect failed", self.code)

    def _on_disconnect(self, *_a: Any) -> None:
        self.connected.clear()
        self.disconnected.set()

    def publish(self, msg: CentreMessage) -> None:
        if self.client is not None:
            info = self.client.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)
            self._last_publish = info

    def close(self, timeout: float = 5.0) -> None:
        """Clean disconnect: the broker discards the Last Will.

        Waits for what was published to be acknowledged and for DISCONNECT to go out: stopping
        the network thread first would drop the link uncleanly and fire the Will.
        """
        if self.client is None:
            return
        client, self.client = self.client, None
        try:
            if self._last_publish is not None and self.connected.is_set():
                with contextlib.suppress(RuntimeError, ValueError):
                    self._last_publish.wait_for_publish(timeout)
            self.disconnected.clear()
            client.disconnect()
            self.disconnected.wait(timeout)
        finally:
            client.loop_stop()

    def drop(self) -> None:
        """Lose the link without DISCONNECT, like a centre losing signal.

        The broker then publishes the centre's Last Will."""
        if self.client is None:
            return
        client, self.client = self.client, None
        client.loop_stop()
        sock = client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if sock is not None:
            sock.close()
        self.connected.clear()


class LiveSimulator:
    """Publishes live traffic. One scheduler thread (the caller's) and one link per centre."""

    def __init__(
        self,
        settings: Settings,
        options: SimulatorOptions,
        model: TrafficModel | None = None,
        clock: Callable[[], float] = _time.time,
    ) -> None:
        self.settings = settings
        self.options = options
        self.model = model or model_from_settings(
            settings, seed=options.seed, scale=options.scale, communes=options.communes
        )
        self.province = self.model.province
        self.clock = clock
        # The start time is mixed in so that a second run never repeats the first run's event
        # ids (the collector would drop them as duplicates).
        self.rng = random.Random(f"{options.seed}:live:{clock()}")
        self.links: dict[str, _CentreLink] = {}
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._offline: dict[str, list[CentreMessage]] = {}  # held by centres that are offline
        self._waiting: dict[str, set[str]] = {}  # tickets waiting per centre, for heartbeats
        self.counts: Counter[str] = Counter()
        self._second_seq: dict[str, tuple[str, int]] = {}

    # scheduling --------------------------------------------------------------------------

    def at(self, when: float, action: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, action, args))

    def now_local(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), LOCAL_TZ)

    def sim_delay(self, planned_from: datetime, planned_at: datetime) -> float:
        """Wall-clock seconds until a dossier step planned for ``planned_at`` happens.

        Steps are planned in office hours. Around the clock, only the working time between
        two steps is compressed by ``speed`` (nights and weekends collapse), so a dossier
        received at night still moves on at once instead of after a compressed night.
        """
        if self.options.office_hours_only:
            span = (planned_at - planned_from).total_seconds()
        else:
            span = self.model.calendar.working_seconds_between(planned_from, planned_at)
        return max(span, 0.0) / self.options.speed

    # sending -----------------------------------------------------------------------------

    def send(self, msg: CentreMessage) -> None:
        held = self._offline.get(msg.commune_code)
        if held is not None:
            held.append(msg)
            return
        link = self.links.get(msg.commune_code)
        if link is None:
            return
        link.publish(msg)
        self.counts[msg.defect or ("duplicate" if msg.duplicate else msg.stream)] += 1

    def send_event(self, ev: PlannedEvent) -> None:
        """Publish a planned event stamped with the current wall-clock time."""
        msg = encode(self.province, ev, self.now_local())
        self.send(msg)
        if self.rng.random() < self.options.dup_ratio:
            self.at(
                self.clock() + self.rng.uniform(0.5, 10),
                self.send,
                replace(msg, duplicate=True),
            )
        if self.rng.random() < self.options.bad_ratio:
            others = [c for c in self.model.by_code if c != ev.commune_code] or [ev.commune_code]
            bad = corrupt(msg, self.rng.choice(DEFECT_KINDS), self.rng, self.rng.choice(others))
            self.send(bad)
        if ev.stream == "queue":
            self._track_queue(ev)

    def _track_queue(self, ev: PlannedEvent) -> None:
        waiting = self._waiting.setdefault(ev.commune_code, set())
        kind = ev.body["type"]
        if kind == "ticket_issued":
            waiting.add(ev.body["ticket_no"])
        elif kind in ("ticket_called", "ticket_cancelled"):
            waiting.discard(ev.body["ticket_no"])
        link = self.links.get(ev.commune_code)
        if link is not None:
            link.queue_waiting = len(waiting)

    def schedule_plan(
        self,
        plan: Sequence[PlannedEvent],
        planned_from: datetime,
        wall_from: float,
        *,
        compressed: bool = False,
    ) -> None:
        """Schedule the steps of a plan; ``compressed`` when its times are wall-clock already."""
        for ev in plan:
            if compressed:
                delay = max((ev.at - planned_from).total_seconds(), 0.0)
            else:
                delay = self.sim_delay(planned_from, ev.at)
            self.at(wall_from + delay, self.send_event, ev)

    # traffic sources ---------------------------------------------------------------------

    def _open_now(self) -> bool:
        return not self.options.office_hours_only or self.model.calendar.is_working_time(
            self.now_local()
        )

    def _rate_per_wall_second(self, per_working_day: float) -> float:
        return per_working_day / self.model.seconds_per_day * self.options.speed

    def _next_dossier(self, centre: Centre) -> None:
        now_wall = self.clock()
        if self._open_now():
            received = self.now_local()
            key = received.strftime("%H%M%S")
            n = self._seq_in_second(centre.code, key)
            # Live codes carry the time of day, so they never collide with the backfill's
            # four-digit sequence numbers of the same day.
            code = self.model.dossier_code(centre, received.date(), f"{key}{n}")
            rng = self.model.rng("live-dossier", centre.code, code, self.rng.random())
            plan = self.model.plan_dossier(centre, code, received, rng)
            self.send_event(plan[0])
            self.schedule_plan(plan[1:], received, now_wall)
            self.counts["dossiers"] += 1
        rate = self._rate_per_wall_second(centre.daily_dossiers)
        self.at(now_wall + self.rng.expovariate(rate), self._next_dossier, centre)

    def _seq_in_second(self, series: str, key: str) -> int:
        """1, 2, ... for successive numbers of one series within the same second ``key``."""
        last_key, n = self._second_seq.get(series, ("", 0))
        n = n + 1 if last_key == key else 1
        self._second_seq[series] = (key, n)
        return n

    def _next_ticket(self, centre: Centre, free_at: dict[str, datetime]) -> None:
        now_wall = self.clock()
        if self._open_now():
            issued = self.now_local()
            # Like live dossier codes: time of day, so a restarted run never reuses a number.
            key = issued.strftime("%H%M%S")
            number = f"{key}{self._seq_in_second('ticket' + centre.code, key)}"
            minutes = 60.0 / self.options.speed
            # Ticket steps are planned in wall-clock time already (minutes compressed).
            wall_free = {c: max(v, issued) for c, v in free_at.items()}
            plan = self.model.plan_ticket(centre, number, issued, self.rng, wall_free, minutes)
            free_at.update(wall_free)
            self.send_event(plan[0])
            self.schedule_plan(plan[1:], issued, now_wall, compressed=True)
        rate = self._rate_per_wall_second(centre.daily_dossiers * TICKETS_PER_DOSSIER)
        self.at(now_wall + self.rng.expovariate(rate), self._next_ticket, centre, free_at)

    def _heartbeat(self, code: str) -> None:
        link = self.links[code]
        if code not in self._offline and link.client is not None:
            msg = status_message(
                self.province, code, "online", self.now_local(), link.queue_waiting
            )
            link.publish(msg)
            self.counts["status"] += 1
        self.at(self.clock() + self.options.heartbeat_s, self._heartbeat, code)

    def _go_offline(self, code: str) -> None:
        log.info("centre %s: simulating loss of signal", code)
        self._offline[code] = []
        self.links[code].drop()
        self.counts["outages"] += 1
        self.at(self.clock() + self.options.offline_for_s, self._come_back, code)

    def _come_back(self, code: str) -> None:
        backlog = self._offline.pop(code, [])
        link = _CentreLink(self.settings, self.province, code, self._client_id(code))
        self.links[code] = link
        link.open()
        link.connected.wait(self.options.connect_timeout_s)
        log.info("centre %s: back online, flushing %d held messages", code, len(backlog))
        for msg in backlog:  # original occurred_at: late for the collector, never rewritten
            self.send(msg)

    def _client_id(self, code: str) -> str:
        return f"{self.options.client_id_prefix}-{self.province}-{code}"

    # main loop ---------------------------------------------------------------------------

    def connect(self) -> None:
        for centre in self.model.centres:
            link = _CentreLink(
                self.settings, self.province, centre.code, self._client_id(centre.code)
            )
            self.links[centre.code] = link
            link.open()
        deadline = _time.monotonic() + self.options.connect_timeout_s
        for link in self.links.values():
            if not link.connected.wait(max(0.0, deadline - _time.monotonic())):
                log.warning(
                    "centre %s: not connected yet; its messages wait in the client", link.code
                )

    def start_sources(self) -> None:
        now_wall = self.clock()
        now = self.now_local()
        for centre in self.model.centres:
            spread = self.rng.uniform(0, 1)
            self.at(
                now_wall + spread * self.options.heartbeat_s,
                self._heartbeat,
                centre.code,
            )
            rate = self._rate_per_wall_second(centre.daily_dossiers)
            self.at(now_wall + self.rng.expovariate(rate), self._next_dossier, centre)
            counters = [f"Q{i}" for i in range(1, centre.counters + 1)]
            for counter in counters:
                self.send_event(
                    PlannedEvent(
                        now,
                        centre.code,
                        "queue",
                        _event_id(self.rng),
                        {"type": "counter_opened", "counter": counter},
                    )
                )
            free_at = {c: now for c in counters}
            t_rate = self._rate_per_wall_second(centre.daily_dossiers * TICKETS_PER_DOSSIER)
            self.at(
                now_wall + self.rng.expovariate(t_rate),
                self._next_ticket,
                centre,
                free_at,
            )
        # Carry on with earlier dossiers: past steps at once with their own time (a backlog),
        # the rest compressed like live dossiers.
        for ev in self._resumed(now):
            if ev.commune_code not in self.links:
                continue
            if ev.at <= now:
                self.at(now_wall, self.send, encode(self.province, ev))
            else:
                self.at(now_wall + self.sim_delay(now, ev.at), self.send_event, ev)
        if self.options.offline_centre and len(self.links) >= 2:
            code = self.rng.choice(sorted(self.links))
            self.at(now_wall + self.options.offline_after_s, self._go_offline, code)

    def _resumed(self, now: datetime) -> list[PlannedEvent]:
        events = list(self.options.resume)
        if self.options.resume_days > 0:
            history = plan_history(self.model, now, self.options.resume_days)
            events += history.recent + history.pending
            log.info(
                "resuming %d steps of the last %d days' dossiers",
                len(history.pending),
                self.options.resume_days,
            )
        return events

    def close(self) -> None:
        now = self.now_local()
        for centre in self.model.centres:
            if centre.code in self._offline:
                continue
            for i in range(1, centre.counters + 1):
                ev = PlannedEvent(
                    now,
                    centre.code,
                    "queue",
                    _event_id(self.rng),
                    {"type": "counter_closed", "counter": f"Q{i}"},
                )
                self.send(encode(self.province, ev))
        for link in self.links.values():
            link.close()

    def run(self, stop_event: threading.Event) -> Counter[str]:
        ends = self.clock() + self.options.duration_s if self.options.duration_s else None
        self.connect()
        try:
            self.start_sources()
            while not stop_event.is_set():
                now_wall = self.clock()
                if ends is not None and now_wall >= ends:
                    break
                while self._heap and self._heap[0][0] <= now_wall:
                    _, _, action, args = heapq.heappop(self._heap)
                    try:
                        action(*args)
                    except Exception:
                        log.exception("simulator step failed")
                next_at = self._heap[0][0] if self._heap else now_wall + 1.0
                if ends is not None:
                    next_at = min(next_at, ends)
                stop_event.wait(min(max(next_at - self.clock(), 0.0), 1.0))
        finally:
            self.close()
        return self.counts


def run(
    settings: Settings, options: SimulatorOptions, stop_event: threading.Event | None = None
) -> dict[str, int]:
    """Publish live centre traffic until ``stop_event`` is set or ``options.duration_s`` passes.

    Disconnects cleanly at the end, so the broker does not publish the centres' Last Wills.
    Returns counts of what was published.
    """
    if options.speed <= 0:
        raise ValueError("speed must be positive")
    sim = LiveSimulator(settings, options)
    counts = sim.run(stop_event or threading.Event())
    return dict(counts)


# --- command line ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--speed", type=float, default=1.0, help="time acceleration (60: an hour per minute)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--duration", type=float, default=None, metavar="S", help="stop after S seconds"
    )
    parser.add_argument(
        "--backfill-days",
        type=int,
        default=0,
        metavar="N",
        help="first load N days of history into the database",
    )
    parser.add_argument(
        "--resume-days",
        type=int,
        default=0,
        metavar="N",
        help="carry on with the dossiers of an N-day backfill made with the same seed and scale",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="volume factor (1: ~1,000 dossiers a working day for 124 communes)",
    )
    parser.add_argument(
        "--communes", default=None, help="comma-separated commune codes (default: all)"
    )
    parser.add_argument(
        "--bad-ratio", type=float, default=0.005, help="share of malformed messages"
    )
    parser.add_argument(
        "--dup-ratio", type=float, default=0.005, help="share of re-sent duplicates"
    )
    parser.add_argument(
        "--no-offline-centre", action="store_true", help="no centre drops off the network"
    )
    parser.add_argument(
        "--office-hours-only", action="store_true", help="traffic only in working hours"
    )


def main_from_args(
    settings: Settings, args: argparse.Namespace, stop_event: threading.Event | None = None
) -> int:
    communes = [c.strip() for c in args.communes.split(",") if c.strip()] if args.communes else None
    if args.backfill_days:
        from control_center.reference import db_upgrade

        db_upgrade(settings)
        result = backfill(
            settings, days=args.backfill_days, seed=args.seed, scale=args.scale, communes=communes
        )
        print(json.dumps(result, ensure_ascii=False), flush=True)
    options = SimulatorOptions(
        speed=args.speed,
        seed=args.seed,
        communes=communes,
        duration_s=args.duration,
        bad_ratio=args.bad_ratio,
        dup_ratio=args.dup_ratio,
        offline_centre=not args.no_offline_centre,
        office_hours_only=args.office_hours_only,
        scale=args.scale,
        resume_days=args.resume_days or args.backfill_days,
    )
    stop = stop_event or threading.Event()
    try:
        counts = run(settings, options, stop)
    except KeyboardInterrupt:
        stop.set()
        return 0
    print(json.dumps(counts, ensure_ascii=False))
    return 0


__all__ = [
    "DEFECT_KINDS",
    "Centre",
    "CentreMessage",
    "History",
    "LiveSimulator",
    "PlannedEvent",
    "Procedure",
    "SimulatorOptions",
    "TrafficModel",
    "add_arguments",
    "backfill",
    "centres_for",
    "corrupt",
    "encode",
    "main_from_args",
    "model_from_settings",
    "plan_history",
    "rfc3339",
    "run",
    "status_message",
]
