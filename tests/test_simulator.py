"""The commune-centre simulator: realistic, contract-conforming traffic, backfill and live MQTT."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from paho.mqtt.client import CallbackAPIVersion, Client, MQTTMessage
from sqlalchemy import func, select

from collectors import validation as v
from control_center import queries
from control_center import simulator as sim
from control_center.db import make_engine, session_factory
from control_center.domain.calendar import LOCAL_TZ, load_calendar
from control_center.models import CentreFeed, DeadLetter, Dossier, SummarySnapshot
from control_center.reference import db_upgrade, province_communes
from control_center.settings import load_settings

# A Thursday afternoon; the window covers the 24/11 Culture Day holiday (from 2026) and weekends.
NOW = datetime(2026, 11, 26, 14, 0, tzinfo=LOCAL_TZ)
COMMUNES = frozenset(c.code for c in province_communes("08"))
EXPECTED_REASON = {
    "invalid_json": v.NOT_JSON,
    "missing_field": v.MISSING_FIELD,
    "commune_mismatch": v.COMMUNE_MISMATCH,
    "future_timestamp": v.FUTURE_TIMESTAMP,
}


@pytest.fixture(scope="module")
def model() -> sim.TrafficModel:
    return sim.model_from_settings(load_settings(), seed=7)


@pytest.fixture(scope="module")
def history(model: sim.TrafficModel) -> sim.History:
    return sim.plan_history(model, NOW, days=14)


def well_formed(
    history: sim.History,
) -> Iterator[tuple[datetime, sim.CentreMessage, dict[str, Any]]]:
    for arrived, msg in history.deliveries:
        if msg.defect is None:
            yield arrived, msg, json.loads(msg.payload)


def validate(msg: sim.CentreMessage, arrived: datetime) -> v.ValidEvent | v.Rejection:
    return v.validate_message(
        msg.topic, msg.payload, arrived, province="08", known_communes=COMMUNES
    )


# --- generation (no I/O) --------------------------------------------------------------------


def test_same_seed_same_traffic_other_seed_other_traffic(model: sim.TrafficModel) -> None:
    first = sim.plan_history(model, NOW, days=3)
    again = sim.plan_history(sim.model_from_settings(load_settings(), seed=7), NOW, days=3)
    other = sim.plan_history(sim.model_from_settings(load_settings(), seed=8), NOW, days=3)

    assert [(a, m.topic, m.payload) for a, m in first.deliveries] == [
        (a, m.topic, m.payload) for a, m in again.deliveries
    ]
    assert first.pending == again.pending
    assert [m.payload for _, m in first.deliveries] != [m.payload for _, m in other.deliveries]


def test_a_commune_plans_the_same_dossiers_whatever_else_is_simulated(
    model: sim.TrafficModel,
) -> None:
    # Live mode on a subset of communes must not reshuffle the traffic of the others.
    small = sim.model_from_settings(load_settings(), seed=7, communes=["02269", "02266"])
    day = NOW.date() - timedelta(days=1)
    centre = model.by_code["02269"]

    full_plan = model.plan_day(centre, day)
    small_plan = small.plan_day(small.by_code["02269"], day)
    assert full_plan
    assert [p[0] for p in small_plan] == [p[0] for p in full_plan]


def test_every_well_formed_message_meets_the_contract(history: sim.History) -> None:
    seen_types: Counter[str] = Counter()
    for arrived, msg, data in well_formed(history):
        assert len(msg.payload) <= 64 * 1024
        result = validate(msg, arrived)
        assert isinstance(result, v.ValidEvent), (result, msg.payload)
        _, _, province, commune, stream = msg.topic.split("/")
        assert (province, commune, stream) == ("08", msg.commune_code, msg.stream)
        assert data.get("commune_code", commune) == commune
        if data.get("state") != "offline":  # a Last Will cannot know when it fires
            assert data["occurred_at"].endswith("+07:00")
        if stream != "status":
            assert 1 <= len(data["event_id"]) <= 64
        seen_types[data.get("type", "status")] += 1

    # The whole lifecycle vocabulary of CONTRACT.md shows up in two weeks of a province.
    assert set(seen_types) >= {
        *("received", "assigned", "supplement_requested", "supplement_received"),
        *("payment_requested", "payment_received", "extended", "apology_issued"),
        *("completed", "returned", "rejected", "withdrawn", "transferred"),
        *("ticket_issued", "ticket_called", "service_started", "ticket_completed"),
        *("ticket_cancelled", "counter_opened", "counter_closed", "status"),
    }


def test_dossiers_arrive_only_in_working_hours_of_working_days(
    model: sim.TrafficModel, history: sim.History
) -> None:
    received = [
        v.parse_rfc3339(d["occurred_at"])
        for _, _, d in well_formed(history)
        if d.get("type") == "received"
    ]
    assert len(received) > 5000
    assert all(model.calendar.is_working_time(t) for t in received)
    days = {t.date() for t in received}
    assert all(d.weekday() < 5 for d in days)
    assert datetime(2026, 11, 24).date() not in days  # Vietnamese Culture Day, a holiday from 2026


def test_realistic_volumes_channels_and_busier_wards(history: sim.History) -> None:
    received = [d for _, _, d in well_formed(history) if d.get("type") == "received"]
    working_days = len({d["occurred_at"][:10] for d in received})
    per_day = len(received) / working_days
    assert 700 < per_day < 1300  # ~1,000 a working day across Tuyên Quang (2025 reports)

    channels = Counter(d["channel"] for d in received)
    assert 0.93 < channels["online"] / len(received) < 0.97
    assert channels["counter"] and channels["post"]

    kinds = {c.code: c.division_type for c in province_communes("08")}
    per_commune = Counter(d["commune_code"] for d in received)
    assert set(per_commune) == COMMUNES
    ward = [n for code, n in per_commune.items() if kinds[code] == "phường"]
    rural = [n for code, n in per_commune.items() if kinds[code] == "xã"]
    assert sum(ward) / len(ward) > 2 * sum(rural) / len(rural)

    # due_at usually left to the collector, sometimes sent by the centre
    given = sum("due_at" in d for d in received) / len(received)
    assert 0.03 < given < 0.2


def test_late_dossiers_mostly_carry_an_apology_a_working_day_ahead_of_the_deadline(
    model: sim.TrafficModel, history: sim.History
) -> None:
    by_dossier: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, _, d in well_formed(history):
        if "dossier_code" in d:
            by_dossier[d["dossier_code"]].append(d)
    for evs in by_dossier.values():
        evs.sort(key=lambda e: v.parse_rfc3339(e["occurred_at"]))
    terms = {p.code: p for p in model.procedures}
    cal = model.calendar

    redated = [
        evs for evs in by_dossier.values() if any(e["type"] == "apology_issued" for e in evs)
    ]
    assert 0.02 < len(redated) / len(by_dossier) < 0.1
    checked = 0
    for evs in redated:
        received, apology = evs[0], next(e for e in evs if e["type"] == "apology_issued")
        issued_at = v.parse_rfc3339(apology["occurred_at"])
        assert v.parse_rfc3339(apology["new_due_at"]) > issued_at
        proc = terms.get(received["procedure_code"])
        paused = {"supplement_requested", "payment_requested"} & {e["type"] for e in evs}
        if proc and (proc.processing_days or 0) >= 3 and not paused:
            due = cal.due_at(
                v.parse_rfc3339(received["occurred_at"]),
                processing_days=proc.processing_days,
                channel=received["channel"],
            )
            assert due is not None
            assert cal.working_seconds_between(issued_at, due) >= cal.seconds_per_day
            checked += 1
    assert checked > 20

    # Every dossier starts with its receipt; a transferred one continues at the receiving
    # commune's centre.
    for evs in by_dossier.values():
        assert evs[0]["type"] == "received"
        transfer = next((e for e in evs if e["type"] == "transferred"), None)
        if transfer:
            after = evs[evs.index(transfer) + 1 :]
            assert all(e["commune_code"] == transfer["to_commune_code"] for e in after)


def test_malformed_messages_and_duplicates_are_present_and_rejected_for_the_right_reason(
    history: sim.History,
) -> None:
    defects = [(a, m) for a, m in history.deliveries if m.defect]
    share = len(defects) / len(history.deliveries)
    assert 0.002 < share < 0.01
    assert {m.defect for _, m in defects} == set(sim.DEFECT_KINDS)
    for arrived, msg in defects:
        result = validate(msg, arrived)
        assert isinstance(result, v.Rejection)
        assert result.reason == EXPECTED_REASON[str(msg.defect)], (msg.defect, result)

    first_seen: dict[bytes, datetime] = {}
    dups = 0
    for arrived, msg in history.deliveries:
        if msg.duplicate:
            dups += 1
            assert msg.payload in first_seen and first_seen[msg.payload] <= arrived
        first_seen.setdefault(msg.payload, arrived)
    assert 0.002 < dups / len(history.deliveries) < 0.01


def test_a_centre_back_from_an_outage_flushes_old_events_and_one_is_offline_now(
    history: sim.History,
) -> None:
    lags = [
        (arrived - msg.occurred_at).total_seconds()
        for arrived, msg in history.deliveries
        if msg.stream == "dossier" and msg.defect is None
    ]
    assert max(lags) > 3600  # backlog delivered hours late, with its original occurred_at
    assert sorted(lags)[len(lags) // 2] < 10  # while most arrive within seconds

    (offline,) = history.offline_centres
    last_status = [
        m for _, m in history.deliveries if m.stream == "status" and m.commune_code == offline
    ]
    assert [json.loads(m.payload)["state"] for m in last_status] == ["offline"]
    # What it holds waits in `pending`, to be flushed when live mode brings it back.
    assert any(e.commune_code == offline and e.at <= NOW for e in history.pending)
    assert all(arrived <= NOW for arrived, _ in history.deliveries)


# --- backfill through the collector's ingestor ----------------------------------------------


def test_backfill_fills_every_commune_with_open_and_overdue_dossiers(sqlite_url: str) -> None:
    settings = load_settings(database_url=sqlite_url)
    db_upgrade(settings)

    result = sim.backfill(settings, days=10, seed=3, now=NOW, scale=0.5)

    assert result["communes"] == 124
    assert result["dossiers"] > 2000
    assert result["malformed"] > 0 and result["duplicates"] > 0
    engine = make_engine(sqlite_url)
    with session_factory(engine)() as s:
        communes = s.scalar(select(func.count(func.distinct(Dossier.received_commune_code))))
        assert communes == 124
        total = s.scalar(select(func.count()).select_from(Dossier))
        open_ = s.scalar(select(func.count()).where(Dossier.is_open))
        overdue = s.scalar(select(func.count()).where(Dossier.is_open, Dossier.due_at < NOW))
        finished_late = s.scalar(select(func.count()).where(Dossier.outcome == "overdue"))
        assert 0 < open_ < total
        assert overdue > 0 and finished_late > 0
        reasons = set(s.scalars(select(DeadLetter.reason)))
        assert reasons == set(EXPECTED_REASON.values())
        feeds = dict(s.execute(select(CentreFeed.commune_code, CentreFeed.reported_state)).all())
        assert len(feeds) == 124
        assert [c for c, state in feeds.items() if state == "offline"] == result["offline_centres"]
        # Snapshots every 15 minutes over the last day: the wall shows trends at once.
        assert result["snapshots"] == s.scalar(select(func.count()).select_from(SummarySnapshot))
        assert result["snapshots"] >= 24 * 4
        same_time = queries.province_summary(s, settings, load_calendar(), NOW)["trend"][
            "same_time_yesterday"
        ]
        assert abs(same_time["snapshot_at"] - (NOW - timedelta(days=1))) <= timedelta(minutes=8)
        assert same_time["open"] > 0 and same_time["centres_online"] is not None
    engine.dispose()
    assert result["open_steps_pending"] > 0


def test_live_mode_started_after_a_backfill_finds_the_same_open_dossiers_and_backlog(
    model: sim.TrafficModel,
) -> None:
    # The demo backfills in one process and starts the simulator in another a little later:
    # live mode re-derives what is still to come (resume_days) instead of being handed it.
    at_backfill = sim.plan_history(model, NOW, days=5)
    at_live_start = sim.plan_history(model, NOW + timedelta(seconds=40), days=5)

    assert at_live_start.offline_centres == at_backfill.offline_centres
    resent = {e.event_id for e in at_live_start.recent + at_live_start.pending}
    not_delivered = {e.event_id for e in at_backfill.pending}
    # Nothing the backfill held back or left for later goes missing, the offline centre's
    # backlog included; what the backfill delivered may be re-sent (a duplicate is harmless).
    assert not_delivered <= resent


# --- live mode against a real Mosquitto ------------------------------------------------------


class Subscriber:
    """A plain paho subscriber recording what the centres publish."""

    def __init__(self, port: int, topic: str = "dvc/v1/08/#") -> None:
        self.messages: list[tuple[float, MQTTMessage]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{time.time_ns()}")
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def _on_message(self, _c: Any, _u: Any, msg: MQTTMessage) -> None:
        with self.lock:
            self.messages.append((time.time(), msg))

    def payloads(self, stream: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                json.loads(m.payload)
                for _, m in self.messages
                if m.topic.endswith("/" + stream) and _parses(m.payload)
            ]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _parses(payload: bytes) -> bool:
    try:
        return isinstance(json.loads(payload), dict)
    except ValueError:
        return False


LIVE_COMMUNES = ["02269", "02266", "02215", "00691"]


def live_settings(mosquitto: Any) -> Any:
    return load_settings(mqtt_url=mosquitto.url)


@pytest.mark.broker
def test_live_mode_publishes_traffic_heartbeats_and_stops_without_last_will(mosquitto: Any) -> None:
    sub = Subscriber(mosquitto.port)
    options = sim.SimulatorOptions(
        speed=3000,
        seed=2,
        communes=LIVE_COMMUNES,
        duration_s=4,
        offline_centre=False,
        heartbeat_s=1,
        bad_ratio=0,
    )
    started = datetime.now(LOCAL_TZ)
    counts = sim.run(live_settings(mosquitto), options)
    time.sleep(1.5)  # a Last Will would arrive now if the centres had not disconnected cleanly
    sub.close()

    dossier, queue, status = sub.payloads("dossier"), sub.payloads("queue"), sub.payloads("status")
    assert counts["dossiers"] > 0 and any(d["type"] == "received" for d in dossier)
    assert {d["type"] for d in dossier} - {"received"}  # open dossiers advance too
    assert {"counter_opened", "ticket_issued"} <= {q["type"] for q in queue}
    assert {s["commune_code"] for s in status} == set(LIVE_COMMUNES)
    assert all(s["state"] == "online" for s in status)
    # occurred_at is wall-clock time, never in the future, even at speed 3000
    for d in dossier + queue:
        at = v.parse_rfc3339(d["occurred_at"])
        assert started - timedelta(seconds=1) <= at <= datetime.now(LOCAL_TZ)
        assert d["occurred_at"].endswith("+07:00")

    # Heartbeats are retained: a newcomer sees every centre online at once.
    late = Subscriber(mosquitto.port, "dvc/v1/08/+/status")
    time.sleep(0.5)
    retained = late.payloads("status")
    late.close()
    assert sorted(s["commune_code"] for s in retained) == sorted(LIVE_COMMUNES)
    assert all(s["state"] == "online" for s in retained)


@pytest.mark.broker
def test_a_centre_that_loses_its_link_is_reported_offline_then_flushes_its_backlog(
    mosquitto: Any,
) -> None:
    sub = Subscriber(mosquitto.port)
    options = sim.SimulatorOptions(
        speed=5000,
        seed=4,
        communes=LIVE_COMMUNES,
        duration_s=7,
        offline_after_s=1.5,
        offline_for_s=2.5,
        bad_ratio=0,
        dup_ratio=0,
    )
    sim.run(live_settings(mosquitto), options)
    time.sleep(0.5)
    sub.close()

    with sub.lock:
        timeline = [
            (t, m.topic.split("/")[3], m.topic.split("/")[4], json.loads(m.payload))
            for t, m in sub.messages
        ]
    offline = [
        (t, c) for t, c, stream, p in timeline if stream == "status" and p["state"] == "offline"
    ]
    assert len(offline) == 1, offline  # the broker published that centre's Last Will
    went_offline, centre = offline[0]
    back = [
        t
        for t, c, stream, p in timeline
        if c == centre and stream == "status" and p["state"] == "online" and t > went_offline
    ]
    assert back, "the centre did not come back online"
    # Events that happened while it was offline arrive after it is back, with their original time.
    flushed = [
        p
        for t, c, stream, p in timeline
        if c == centre
        and stream != "status"
        and t >= back[0]
        and v.parse_rfc3339(p["occurred_at"]).timestamp() < back[0] - 0.5
    ]
    assert flushed


@pytest.mark.broker
def test_live_mode_carries_on_with_backfilled_dossiers_until_stopped(mosquitto: Any) -> None:
    model = sim.model_from_settings(load_settings(), seed=5, communes=LIVE_COMMUNES)
    centre = model.by_code["02215"]
    now = datetime.now(LOCAL_TZ)
    # What backfill hands over: a backlog held by a centre that was offline, and open dossiers.
    backlog = [e for plan in model.plan_day(centre, date(2026, 11, 25)) for e in plan]
    backlog = [e for e in backlog if e.at <= now][:40]
    open_dossier = model.plan_dossier(centre, "000.02.215.H08-TEST-0001", now, model.rng("t"))
    assert backlog and len(open_dossier) > 2

    sub = Subscriber(mosquitto.port)
    stop = threading.Event()
    options = sim.SimulatorOptions(
        speed=20000,
        seed=5,
        communes=LIVE_COMMUNES,
        offline_centre=False,
        bad_ratio=0.0,  # every payload parses: this test is about the backlog, not defects
        resume=[*backlog, *open_dossier[1:]],
    )
    threading.Timer(3, stop.set).start()
    begun = time.monotonic()
    sim.run(live_settings(mosquitto), options, stop)
    assert time.monotonic() - begun < 10  # stop_event ends it (duration_s is None)
    time.sleep(0.5)
    sub.close()

    sent = {p["event_id"]: p for p in sub.payloads("dossier")}
    for ev in backlog:  # flushed with the time they happened, not the time of sending
        assert sent[ev.event_id]["occurred_at"] == sim.rfc3339(ev.at)
    assigned = open_dossier[1]
    assert assigned.body["type"] == "assigned"
    assert assigned.event_id in sent  # the open dossier moved on, in compressed time
    assert v.parse_rfc3339(sent[assigned.event_id]["occurred_at"]) >= now - timedelta(seconds=1)


@pytest.mark.broker
def test_command_line_runs_for_the_given_duration_with_malformed_traffic(mosquitto: Any) -> None:
    parser = argparse.ArgumentParser()
    sim.add_arguments(parser)
    args = parser.parse_args(
        [
            *("--speed", "2000", "--duration", "2", "--communes", "02269,00691"),
            *("--bad-ratio", "0.3", "--no-offline-centre"),
        ]
    )
    sub = Subscriber(mosquitto.port)
    assert sim.main_from_args(live_settings(mosquitto), args) == 0
    time.sleep(0.5)
    sub.close()

    with sub.lock:
        received = [(m.topic, m.payload, arrived) for arrived, m in sub.messages]
    assert {topic.split("/")[3] for topic, _, _ in received} == {"02269", "00691"}
    verdicts = Counter(
        type(
            v.validate_message(
                topic,
                payload,
                datetime.fromtimestamp(arrived, LOCAL_TZ),
                province="08",
                known_communes=COMMUNES,
            )
        ).__name__
        for topic, payload, arrived in received
    )
    assert verdicts["ValidEvent"] > verdicts["Rejection"] > 0
