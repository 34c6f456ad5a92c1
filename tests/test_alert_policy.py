"""Escalation rules as pure functions: which alert applies at which working-time moment."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from alerts.policy import (
    ACKNOWLEDGED,
    APOLOGY_MISSING,
    DUE_SOON,
    DUE_TODAY,
    FEED_OFFLINE,
    OPEN,
    OVERDUE,
    OVERDUE_2D,
    QUEUE_WAIT,
    CommuneBacklog,
    DossierFacts,
    Duration,
    FeedFacts,
    PolicyError,
    QueueFacts,
    at_risk_decision,
    completion_rate,
    dossier_decisions,
    feed_decision,
    forecast_overdue,
    format_working,
    load_policy,
    parse_policy,
    queue_decision,
    should_escalate,
)
from control_center.domain.calendar import LOCAL_TZ, load_calendar

CAL = load_calendar()
POLICY = load_policy()


def local(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=LOCAL_TZ)


def facts(due: datetime, **kw: object) -> DossierFacts:
    base: dict[str, object] = {
        "dossier_code": "000.00.22.H56-251123-0001",
        "commune_code": "02269",
        "due_at": due,
        "procedure_name": "Đăng ký khai sinh",
    }
    base.update(kw)
    return DossierFacts(**base)  # type: ignore[arg-type]


def kinds(f: DossierFacts, now: datetime) -> set[str]:
    return {d.kind for d in dossier_decisions(f, now, CAL, POLICY)}


# --- the shipped policy ---------------------------------------------------------------------


def test_shipped_policy_has_the_default_rules_at_their_levels() -> None:
    levels = {r.kind: r.level for r in POLICY.dossier_rules}
    assert levels == {
        DUE_SOON: 1,
        DUE_TODAY: 2,
        OVERDUE: 2,
        APOLOGY_MISSING: 2,
        OVERDUE_2D: 3,
    }
    assert POLICY.commune_rules.feed_offline.level == 3
    assert POLICY.commune_rules.queue_wait.level == 3
    assert POLICY.commune_rules.overdue_jump.level == 3
    assert POLICY.commune_rules.at_risk.level == 2


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1 working day", 8 * 3600),
        ("2 working days", 16 * 3600),
        ("4 working hours", 4 * 3600),
        ("30 working minutes", 1800),
        ("60 minutes", 3600),
        (0, 0),
    ],
)
def test_durations_read_as_a_province_writes_them(text: object, seconds: float) -> None:
    assert Duration.model_validate(text).seconds(CAL) == seconds


def test_a_share_of_the_processing_time_is_measured_against_it() -> None:
    d = Duration.model_validate("25%")
    assert d.is_share
    assert d.seconds(CAL, processing_seconds=4 * 8 * 3600) == 8 * 3600


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ({"kind": "x", "level": 1, "before_due": "1 working day", "after_due": 0}, "exactly one"),
        ({"kind": "x", "level": 1, "before_due": "soon"}, "not a duration"),
        ({"kind": "x", "level": 4, "after_due": 0}, "less than or equal to 3"),
        ({"kind": "x", "level": 1, "before_due": "20%"}, "needs at_most"),
    ],
)
def test_a_wrong_rule_is_refused_with_a_readable_reason(raw: dict, complaint: str) -> None:
    doc = {"levels": {1: {"target": "a"}, 2: {"target": "b"}, 3: {"target": "c"}}}
    doc["dossier_rules"] = [raw]
    with pytest.raises(PolicyError, match=complaint):
        parse_policy(doc, source="policy.yaml")


def test_a_missing_policy_file_is_reported_by_name(tmp_path) -> None:
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policy(tmp_path / "nope.yaml")


# --- dossier rules at working-time moments --------------------------------------------------


def test_due_soon_across_tet_2026_counts_only_working_days() -> None:
    # Due Monday 23 Feb 2026 17:00. 16-20 Feb is Tết: one working day before is Friday 13 Feb
    # at 17:00, ten calendar days earlier.
    f = facts(local(2026, 2, 23, 17))
    assert kinds(f, local(2026, 2, 13, 16, 59)) == set()
    assert kinds(f, local(2026, 2, 13, 17)) == {DUE_SOON}
    assert kinds(f, local(2026, 2, 18, 10)) == {DUE_SOON}  # during Tết: still 1 day left
    [d] = dossier_decisions(f, local(2026, 2, 14, 9), CAL, POLICY)
    assert d.level == 1
    assert d.message.startswith(
        "Hồ sơ 000.00.22.H56-251123-0001 (Đăng ký khai sinh) sẽ đến hạn trả lúc "
        "17:00 23/02/2026 — còn 1 ngày làm việc."
    )
    assert "Mẫu số 04" in d.message


def test_due_soon_skips_a_public_holiday_and_the_weekend() -> None:
    # Tuesday 24 Nov 2026 is Vietnam Cultural Day: due Wednesday 25 Nov 17:00 is one working
    # day away from Monday 23 Nov 17:00; due Monday 30 Nov 11:00 from Friday 27 Nov 11:00.
    wed = facts(local(2026, 11, 25, 17))
    assert DUE_SOON not in kinds(wed, local(2026, 11, 23, 16, 59))
    assert DUE_SOON in kinds(wed, local(2026, 11, 23, 17))
    mon = facts(local(2026, 11, 30, 11))
    assert DUE_SOON not in kinds(mon, local(2026, 11, 27, 10, 59))
    assert DUE_SOON in kinds(mon, local(2026, 11, 27, 11))


def test_due_day_then_overdue_then_two_working_days_late_after_tet() -> None:
    f = facts(local(2026, 2, 23, 17))
    assert kinds(f, local(2026, 2, 23, 7, 30)) == {DUE_SOON, DUE_TODAY}
    assert kinds(f, local(2026, 2, 23, 17)) == {OVERDUE, APOLOGY_MISSING}
    assert OVERDUE_2D not in kinds(f, local(2026, 2, 25, 16, 59))
    late = {d.kind: d for d in dossier_decisions(f, local(2026, 2, 25, 17), CAL, POLICY)}
    assert set(late) == {OVERDUE, APOLOGY_MISSING, OVERDUE_2D}
    assert late[OVERDUE_2D].level == 3
    assert "trễ 2 ngày làm việc" in late[OVERDUE_2D].message


def test_two_working_days_late_over_a_weekend() -> None:
    f = facts(local(2026, 11, 27, 17))  # Friday
    assert OVERDUE_2D not in kinds(f, local(2026, 11, 30, 17))  # Monday: 1 working day
    assert OVERDUE_2D in kinds(f, local(2026, 12, 1, 17))


def test_an_apology_slip_silences_only_the_apology_rule() -> None:
    f = facts(local(2026, 2, 23, 17), apology_issued_at=local(2026, 2, 12, 9))
    assert kinds(f, local(2026, 2, 24, 9)) == {OVERDUE}


def test_a_paused_dossier_raises_no_deadline_warning_but_stays_late() -> None:
    soon = facts(local(2026, 11, 30, 11), is_paused=True)
    assert kinds(soon, local(2026, 11, 30, 8)) == set()
    late = facts(local(2026, 11, 20, 17), is_paused=True)
    assert OVERDUE in kinds(late, local(2026, 11, 23, 9))


def test_a_dossier_without_due_date_raises_nothing() -> None:
    assert kinds(facts(None), local(2026, 11, 23, 9)) == set()  # type: ignore[arg-type]


def test_cause_key_changes_with_the_due_date_so_an_extension_is_a_new_episode() -> None:
    now = local(2026, 11, 26, 9)
    [a] = dossier_decisions(facts(local(2026, 11, 27, 8)), now, CAL, POLICY)
    [b] = dossier_decisions(facts(local(2026, 11, 27, 9)), now, CAL, POLICY)
    assert a.cause_key != b.cause_key
    assert a.cause_key.startswith("dossier:000.00.22.H56-251123-0001:due_soon:")


def test_a_share_rule_fires_at_its_share_of_the_processing_time() -> None:
    doc = POLICY.model_dump(mode="python")
    doc["dossier_rules"] = [
        {"kind": "quarter_left", "level": 1, "before_due": "25%", "at_most": "2 working days"}
    ]
    policy = parse_policy(doc)
    # 4 working days of processing (Mon 07:00 - Thu 17:00): 25% = 1 working day.
    f = facts(local(2026, 12, 3, 17), clock_start_at=local(2026, 11, 30, 7), original_due_at=None)
    assert not dossier_decisions(f, local(2026, 12, 2, 16, 59), CAL, policy)
    assert dossier_decisions(f, local(2026, 12, 2, 17), CAL, policy)[0].kind == "quarter_left"
    # 20 working days: 25% would be 5 days, capped at 2.
    long = facts(
        local(2026, 12, 3, 17),
        clock_start_at=local(2026, 11, 5, 7),
        original_due_at=local(2026, 12, 3, 17),
    )
    assert not dossier_decisions(long, local(2026, 12, 1, 16, 59), CAL, policy)
    assert dossier_decisions(long, local(2026, 12, 1, 17), CAL, policy)


# --- escalation -----------------------------------------------------------------------------


def test_an_unacknowledged_alert_escalates_after_working_hours_not_clock_hours() -> None:
    raised = local(2026, 11, 27, 15)  # Friday 15:00; level 1 escalates after 4 working hours
    kw = {"level": 1, "raised_at": raised, "escalated_at": None, "calendar": CAL, "policy": POLICY}
    assert not should_escalate(state=OPEN, now=local(2026, 11, 30, 8, 59), **kw)
    assert should_escalate(state=OPEN, now=local(2026, 11, 30, 9), **kw)
    assert not should_escalate(state=ACKNOWLEDGED, now=local(2026, 11, 30, 12), **kw)


def test_province_level_never_escalates_and_escalation_happens_once() -> None:
    raised = local(2026, 11, 2, 8)
    late = local(2026, 11, 30, 9)
    assert not should_escalate(
        state=OPEN,
        level=3,
        raised_at=raised,
        escalated_at=None,
        now=late,
        calendar=CAL,
        policy=POLICY,
    )
    assert not should_escalate(
        state=OPEN,
        level=1,
        raised_at=raised,
        escalated_at=raised + timedelta(hours=4),
        now=late,
        calendar=CAL,
        policy=POLICY,
    )


def test_quiet_hours_hold_a_level_until_morning() -> None:
    level2 = POLICY.level(2)
    assert level2.quiet_until(local(2026, 11, 26, 22)) == local(2026, 11, 27, 6, 30)
    assert level2.quiet_until(local(2026, 11, 27, 5)) == local(2026, 11, 27, 6, 30)
    assert level2.quiet_until(local(2026, 11, 27, 9)) is None
    assert POLICY.level(1).quiet_until(local(2026, 11, 26, 22)) is None


# --- commune-wide rules ---------------------------------------------------------------------


def test_a_silent_centre_is_offline_after_30_working_minutes_not_overnight() -> None:
    f = FeedFacts("02269", "online", local(2026, 11, 26, 9), local(2026, 11, 26, 9, 5))
    assert feed_decision(f, local(2026, 11, 26, 9, 34), CAL, POLICY) is None
    d = feed_decision(f, local(2026, 11, 26, 9, 35), CAL, POLICY)
    assert d is not None and d.kind == FEED_OFFLINE and d.level == 3
    evening = FeedFacts("02269", "offline", local(2026, 11, 26, 16, 55), None)
    assert feed_decision(evening, local(2026, 11, 27, 6, 0), CAL, POLICY) is None
    assert feed_decision(evening, local(2026, 11, 27, 7, 25), CAL, POLICY) is not None


def test_a_centre_never_heard_from_is_not_alerted() -> None:
    assert (
        feed_decision(FeedFacts("02269", None, None, None), local(2026, 11, 26, 9), CAL, POLICY)
        is None
    )


def test_queue_wait_fires_when_the_longest_wait_passes_an_hour() -> None:
    issued = local(2026, 11, 26, 8)
    f = QueueFacts("02269", date(2026, 11, 26), 7, issued, "A012", "Xã Thượng Lâm")
    assert queue_decision(f, issued + timedelta(minutes=59), POLICY) is None
    d = queue_decision(f, issued + timedelta(minutes=61), POLICY)
    assert d is not None and d.kind == QUEUE_WAIT
    assert "61 phút" in d.message and "A012" in d.message and "7 người" in d.message


# --- forecast -------------------------------------------------------------------------------


def test_forecast_counts_dossiers_the_pace_cannot_reach_in_time() -> None:
    # 10 already late are worked first at 2 a day: the 3 due tomorrow cannot be reached.
    assert forecast_overdue(10, [(1.0, 3)], 2.0) == 3
    # At 10 a day everything due in the next days is reached.
    assert forecast_overdue(0, [(1.0, 3), (2.0, 4), (3.0, 5)], 10.0) == 0
    # 2 a day, 5 due tomorrow: 2 make it, 3 do not; then 2 due the day after also fail.
    assert forecast_overdue(0, [(1.0, 5), (2.0, 2)], 2.0) == 5
    # Nobody finishing anything: all of them.
    assert forecast_overdue(0, [(0.5, 1), (2.0, 2)], 0.0) == 3


def test_completion_rate_is_per_working_day() -> None:
    # 2-15 Feb 2026: weekdays only (Tết starts the 16th): 10 working days.
    finished = {date(2026, 2, 2) + timedelta(days=i): 3 for i in range(14)}
    assert completion_rate(finished, date(2026, 2, 2), date(2026, 2, 16), CAL) == pytest.approx(4.2)


def test_at_risk_warns_the_commune_before_any_dossier_is_late() -> None:
    now = local(2026, 11, 26, 9)
    # 2 a day: of 6 due tomorrow 4 fail, and the 4 due the day after are all beyond reach.
    backlog = CommuneBacklog("02269", 0, ((1.0, 6), (2.0, 4)), 2.0, "Xã Thượng Lâm")
    d = at_risk_decision(backlog, now, POLICY)
    assert d is not None and d.level == 2
    assert d.message.startswith("Xã Thượng Lâm: dự báo 8 hồ sơ sẽ quá hạn trong 3 ngày làm việc")
    calm = CommuneBacklog("02269", 0, ((1.0, 2), (2.0, 2)), 3.0)
    assert at_risk_decision(calm, now, POLICY) is None


def test_working_time_reads_naturally_in_vietnamese() -> None:
    assert format_working(8 * 3600, CAL) == "1 ngày làm việc"
    assert format_working(8 * 3600 - 20, CAL) == "1 ngày làm việc"
    assert format_working(12 * 3600, CAL) == "1,5 ngày làm việc"
    assert format_working(3 * 3600 + 20 * 60, CAL) == "3 giờ 20 phút làm việc"
    assert format_working(45 * 60, CAL) == "45 phút làm việc"


def test_times_in_messages_are_vietnam_time() -> None:
    due_utc = datetime(2026, 2, 23, 10, 0, tzinfo=UTC)  # 17:00 in Hà Nội
    [d] = dossier_decisions(facts(due_utc), local(2026, 2, 20, 9), CAL, POLICY)
    assert "17:00 23/02/2026" in d.message
