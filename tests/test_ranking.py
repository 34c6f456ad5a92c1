"""Ranking by the computable parts of Decision 766, with apology compliance beside it.

Same province as tests/test_periods.py (Fri 20/11 - Wed 25/11/2026, across a weekend and the
24/11 holiday); the birth-registration procedure is eligible for full online service.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from control_center.app import render_page
from control_center.db import Database, make_engine, session_factory
from control_center.domain.calendar import WorkingCalendar, load_calendar
from control_center.migrate import upgrade_schema
from control_center.models import Dossier, Procedure
from control_center.ranking import (
    NOT_COMPUTED,
    commune_ranking,
    competition_ranks,
    online_score,
    progress_score,
    rank_rows,
)
from control_center.settings import Settings, load_settings
from layouts.context import WallContext
from tests.test_api import NOW, assert_error, make_client
from tests.test_periods import FROM, TO, seed
from tests.test_queries import HA_GIANG_2, THUONG_LAM, seed_communes, vn
from tests.test_review_dossier import text_of, walk


@pytest.fixture
def calendar() -> WorkingCalendar:
    return load_calendar()


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings(database_url=db_url, province="08")


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    engine = make_engine(db_url)
    upgrade_schema(engine)
    with session_factory(engine)() as s:
        seed_communes(s)
        s.add(Procedure(code="1.001193", name="Đăng ký khai sinh", sector="Hộ tịch",
                        processing_days=3, full_online=True))  # fmt: skip
        s.commit()
        seed(s)
        yield s
    engine.dispose()


# --- plain functions ------------------------------------------------------------------------


def test_ties_share_a_rank_and_no_score_has_none() -> None:
    assert competition_ranks([25.0, 22.0, 22.0, 10.0, None]) == [1, 2, 2, 4, None]


def test_scores_and_their_inputs() -> None:
    figures = {"finished_early": 1, "finished_on_time": 1, "finished_late": 0,
               "in_progress_in_time": 2, "in_progress_overdue": 1}  # fmt: skip
    assert progress_score(figures) == (16.0, 4, 5)
    assert progress_score(dict.fromkeys(figures, 0)) == (None, 0, 0)
    assert online_score(3, 4) == 9.0
    assert online_score(0, 0) is None


def test_rank_rows_orders_by_score_then_progress_then_name() -> None:
    def row(name: str, score: float | None, progress: float | None) -> dict[str, Any]:
        return {"name": name, "score": score, "progress": {"score": progress}}

    ranked = rank_rows([row("B", 20, 10), row("A", 20, 10), row("C", 20, 12), row("D", None, None)])
    assert [(r["name"], r["rank"]) for r in ranked] == [("C", 1), ("A", 1), ("B", 1), ("D", None)]


# --- from the database ----------------------------------------------------------------------


def test_communes_ranked_with_formula_inputs(
    session: Session, settings: Settings, calendar: WorkingCalendar
) -> None:
    result = commune_ranking(session, settings, calendar, NOW, FROM, TO)
    assert result["max_score"] == 32
    assert {g["group"] for g in result["not_computed"]} == {g for g, _ in NOT_COMPUTED}
    assert len(result["rows"]) == 124
    first, second, third = result["rows"][:3]
    # Thượng Lâm: progress 20 x (1 early + 1 on time + 2 in time) / (2 finished + 3 open) = 16;
    # online 12 x 3 / 4 eligible = 9.
    assert first["code"] == THUONG_LAM and first["rank"] == 1
    assert first["progress"] == {"score": 16.0, "numerator": 4, "denominator": 5}
    assert first["online"] == {"score": 9.0, "online": 3, "eligible": 4}
    assert first["score"] == 25.0
    # Hà Giang 2: progress 20 x 1 / 2 = 10; online 12 x 3 / 3 = 12.
    assert (second["code"], second["rank"], second["score"]) == (HA_GIANG_2, 2, 22.0)
    assert third["score"] is None and third["rank"] is None, "no dossiers, no rank"
    assert first["apology"] == {"late": 1, "without_apology": 1, "rate": 0.0}


def test_apology_compliance_counts_apologies_issued_by_the_period_end(
    session: Session, settings: Settings, calendar: WorkingCalendar
) -> None:
    # Thượng Lâm's late dossier: received before the period, open and overdue at its end.
    late_open = session.scalars(
        select(Dossier.dossier_code).where(
            Dossier.commune_code == THUONG_LAM, Dossier.received_at < vn(11, 20)
        )
    ).one()
    session.execute(
        update(Dossier)
        .where(Dossier.dossier_code == late_open)
        .values(apology_issued_at=vn(11, 24, 9))
    )
    session.commit()
    rows = {
        r["code"]: r for r in commune_ranking(session, settings, calendar, NOW, FROM, TO)["rows"]
    }
    assert rows[THUONG_LAM]["apology"] == {"late": 1, "without_apology": 0, "rate": 1.0}
    # An apology issued after the period's end does not make it compliant within the period.
    session.execute(
        update(Dossier)
        .where(Dossier.dossier_code == late_open)
        .values(apology_issued_at=vn(11, 26, 9))
    )
    session.commit()
    rows = {
        r["code"]: r for r in commune_ranking(session, settings, calendar, NOW, FROM, TO)["rows"]
    }
    assert rows[THUONG_LAM]["apology"]["rate"] == 0.0


# --- HTTP and the page ----------------------------------------------------------------------


@pytest.fixture
def client(settings: Settings, session: Session) -> FlaskClient:
    return make_client(settings)


def test_ranking_endpoint(client: FlaskClient) -> None:
    body = client.get("/api/v1/ranking?from=2026-11-20&to=2026-11-25").get_json()
    assert body["period"] == "custom" and body["rows"][0]["code"] == THUONG_LAM
    assert set(body["rows"][0]) == {
        "code",
        "name",
        "rank",
        "score",
        "progress",
        "online",
        "apology",
    }
    assert_error(client.get("/api/v1/ranking?period=decade"), 400)


def test_ranking_page_shows_the_apis_scores_with_formulas(
    client: FlaskClient, settings: Settings, db_url: str, calendar: WorkingCalendar
) -> None:
    api = client.get("/api/v1/ranking?period=month").get_json()
    context = WallContext(settings=settings, db=Database(db_url), clock=lambda: NOW,
                          calendar=calendar)  # fmt: skip
    page = render_page(context, "/ranking", "?period=month")
    rows = [c for c in walk(page) if getattr(c, "data-commune", None)]
    assert [getattr(r, "data-commune") for r in rows[:2]] == [r["code"] for r in api["rows"][:2]]
    top = api["rows"][0]
    first = text_of(rows[0])
    assert first.startswith(f"1 {top['name']}")
    p = top["progress"]
    assert f"= 20 × {p['numerator']} / {p['denominator']}" in first
    o = top["online"]
    assert f"= 12 × {o['online']} / {o['eligible']}" in first
    text = text_of(page)
    assert "Từ 01/11/2026 đến 27/11/2026" in text
    assert "Thanh toán trực tuyến (10)" in text and "32/100" in text
