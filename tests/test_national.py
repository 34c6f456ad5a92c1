"""National mode (CC_SCOPE=national): settings, the country's figures and the API, on both backends.

The country's summary must be the sum of its provinces', and a province's the sum of its
communes': the national wall and the API read the same per-commune aggregates, grouped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from control_center.app import create_app
from control_center.db import make_engine
from control_center.domain.calendar import WorkingCalendar
from control_center.settings import SettingsError, load_settings
from layouts import ids
from layouts.map import NATIONAL_MEASURES, measure_value, province_hover_text
from layouts.national import clicked_province, with_province_names, worst_provinces
from layouts.scope import country_href, page_settings, province_from_search, province_href
from tests.national_seed import (
    BUCKETS,
    HANOI,
    HANOI_A,
    HANOI_B,
    HCMC,
    HCMC_A,
    SEEDED,
    TUYEN_QUANG,
    seed_country,
)
from tests.wall_seed import NOW

SUMMED = ("open", "overdue", "due_soon", "queue_waiting", "received_today", "returned_today")

# --- settings and URLs ----------------------------------------------------------------------


def test_scope_is_provincial_unless_set_national() -> None:
    assert load_settings().national is False
    national = load_settings(scope="national")
    assert national.national is True
    narrowed = national.for_province("1")
    assert (narrowed.province, narrowed.national) == ("01", False)
    with pytest.raises(SettingsError, match="scope"):
        load_settings(scope="country")
    with pytest.raises(ValueError, match="'99'"):
        national.for_province("99")


def test_the_url_picks_the_province_only_in_national_mode() -> None:
    national, provincial = load_settings(scope="national"), load_settings()
    assert province_from_search("?province=79&lang=en") == "79"
    assert province_from_search("?province=7") is None
    assert page_settings(national, "?province=79").province == "79"
    assert page_settings(national, "?province=79").national is False
    assert page_settings(national, "?province=99").national is True  # not a province: country
    assert page_settings(national, "").national is True
    assert page_settings(provincial, "?province=79") is provincial  # only its own data
    assert province_href("79", "en", "?lang=en") == "/?lang=en&province=79"
    assert country_href("vi", "?province=79") == "/"


def test_provinces_are_ranked_and_named_one_level_up() -> None:
    rows = [
        {"code": "01", "name": "Hà Nội", "overdue": 3, "due_soon": 0},
        {"code": "79", "name": "Hồ Chí Minh", "overdue": 3, "due_soon": 5},
        {"code": "08", "name": "Tuyên Quang", "overdue": 0, "due_soon": 0},
    ]
    assert [r["code"] for r in worst_provinces(rows)] == ["79", "01"]
    named = with_province_names(
        [{"code": "00004", "name": "Phường Ba Đình", "province_code": "01"}], rows
    )
    assert named[0]["name"] == "Phường Ba Đình · Hà Nội"
    assert clicked_province({"points": [{"location": "79"}]}) == "79"
    assert clicked_province({"points": [{"location": "02269"}]}) is None
    silent = {"centres_stale": 2, "centres_offline": 3, "centres_online": 5, "centres_total": 10}
    assert measure_value(silent, "centres_silent") == 5.0
    assert "5/10" in province_hover_text({**silent, "name": "Hà Nội", "code": "01"}, "vi")
    assert set(NATIONAL_MEASURES) >= {"overdue", "centres_silent"}


# --- the country's figures through the API --------------------------------------------------


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[FlaskClient]:
    engine = make_engine(db_url)
    seed_country(engine)
    engine.dispose()
    settings = load_settings(database_url=db_url, scope="national", cache_dir=tmp_path)
    app = create_app(settings, clock=lambda: NOW)
    yield app.server.test_client()


def get(client: FlaskClient, path: str) -> Any:
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_json()


def test_the_national_summary_is_the_sum_of_the_provinces(client: FlaskClient) -> None:
    country = get(client, "/api/v1/summary")
    provinces = get(client, "/api/v1/provinces")

    assert [p["code"] for p in provinces][:3] == ["01", "04", "08"]
    assert len(provinces) == 34
    assert sum(p["communes"] for p in provinces) == country["centres_total"] == 3321
    for key in SUMMED:
        assert country[key] == sum(p[key] for p in provinces), key
    assert country["open"] == sum(n for _, _, n in BUCKETS) > 0
    for key in ("centres_online", "centres_stale", "centres_offline"):
        assert country[key] == sum(p[key] for p in provinces), key
    assert country["centres_offline"] == 1


def test_each_province_is_the_sum_of_its_communes_and_its_own_summary(
    client: FlaskClient,
) -> None:
    by_code = {p["code"]: p for p in get(client, "/api/v1/provinces")}
    for code in (TUYEN_QUANG, HANOI, HCMC):
        summary = get(client, f"/api/v1/summary?province={code}")
        communes = get(client, f"/api/v1/communes?province={code}")
        assert {c["province_code"] for c in communes} == {code}
        assert len(communes) == by_code[code]["communes"] == summary["centres_total"]
        for key in SUMMED:
            assert summary[key] == by_code[code][key] == sum(c[key] for c in communes), key
        assert summary["on_time_rate"] == by_code[code]["on_time_rate"]
        assert summary["online_rate"] == by_code[code]["online_rate"]
    assert by_code[HANOI]["overdue"] == 39  # the worst province
    assert by_code[HANOI]["centres_offline"] == 1
    assert by_code["04"]["open"] == 0  # a province without data is there, with zeros


def test_a_provinces_wall_in_the_country_shows_its_own_figures_and_alerts_only(
    db_url: str, tmp_path: Path
) -> None:
    from sqlalchemy.orm import Session

    from control_center import models as m
    from control_center.national import cached_province_view, province_view
    from tests.test_wall_callbacks import wall_tick

    engine = make_engine(db_url)
    seed_country(engine)
    with Session(engine) as session, session.begin():
        for commune in (HANOI_A, HCMC_A):
            session.add(
                m.Alert(
                    cause_key=f"overdue:{commune}-X",
                    kind="overdue",
                    level=2,
                    commune_code=commune,
                    dossier_code=f"DOSSIER-{commune}",
                    raised_at=NOW,
                    state="open",
                    message=f"Hồ sơ DOSSIER-{commune} đã quá hạn",
                )
            )
    settings = load_settings(database_url=db_url, scope="national", cache_dir=tmp_path)
    client = create_app(settings, clock=lambda: NOW).server.test_client()
    out = wall_tick(client, tick=1, measure="overdue", built=None, search="?province=79")
    ticker = json.dumps(out.get_json()["response"][ids.WALL_TICKER], ensure_ascii=False)
    assert f"DOSSIER-{HCMC_A}" in ticker and f"DOSSIER-{HANOI_A}" not in ticker

    # The reading is shared for the period (CC_NATIONAL_CACHE_S) and is the live one.
    hcmc = settings.for_province(HCMC)
    with Session(engine) as session:
        live = province_view(session, hcmc, WorkingCalendar(), NOW)
        shared = cached_province_view(session, hcmc, WorkingCalendar(), NOW)
    assert shared["summary"]["overdue"] == live["summary"]["overdue"] > 0
    assert [c["code"] for c in shared["communes"]] == [c["code"] for c in live["communes"]]
    assert get(client, "/api/v1/summary?province=79")["open"] == live["summary"]["open"]
    engine.dispose()


def route(client: FlaskClient, pathname: str, search: str = "") -> str:
    """The page the router renders for a URL, as the JSON text the browser receives."""
    body = {
        "output": "page.children",
        "outputs": {"id": ids.PAGE, "property": "children"},
        "inputs": [
            {"id": ids.URL, "property": "pathname", "value": pathname},
            {"id": ids.URL, "property": "search", "value": search},
        ],
        "changedPropIds": [f"{ids.URL}.pathname"],
    }
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 200
    return json.dumps(response.get_json(), ensure_ascii=False)


def test_ranking_periods_and_the_report_cover_the_chosen_province_or_the_country(
    client: FlaskClient,
) -> None:
    hcmc = {c["code"] for c in get(client, f"/api/v1/communes?province={HCMC}")}
    ranked = get(client, f"/api/v1/ranking?province={HCMC}&period=month")
    assert {r["code"] for r in ranked["rows"]} == hcmc
    assert len(get(client, "/api/v1/ranking?period=month")["rows"]) == 3321
    by_commune = get(client, f"/api/v1/periods?province={HANOI}&group=commune&period=month")
    assert HANOI_A in {r["key"] for r in by_commune["rows"]}
    assert not {r["key"] for r in by_commune["rows"]} & hcmc
    assert client.get("/api/v1/ranking?province=99").status_code == 404

    # The pages say what they cover; "/" in the navigation is the country.
    country_report = route(client, "/report/daily")
    assert "Toàn quốc" in country_report
    assert "Hồ Chí Minh" in route(client, "/report/daily", f"?province={HCMC}")
    ranking_page = route(client, "/ranking", f"?province={HCMC}")
    assert "Hồ Chí Minh" in ranking_page and f"province={HCMC}" in ranking_page
    queue_page = route(client, "/queue")
    assert "Toàn tỉnh" not in queue_page and "Tuyên Quang" not in queue_page
    assert "Tuyên Quang" not in route(client, "/wall/overdue")


def test_the_country_lists_every_commune_and_opens_any_of_them(client: FlaskClient) -> None:
    communes = get(client, "/api/v1/communes")
    assert len(communes) == 3321
    assert get(client, f"/api/v1/communes/{HANOI_B}")["province_code"] == HANOI


def test_an_unknown_province_is_a_404(client: FlaskClient) -> None:
    for bad in ("99", "8", "abc"):
        assert client.get(f"/api/v1/summary?province={bad}").status_code == 404


def test_a_provincial_deployment_answers_only_for_its_own_province(db_url: str) -> None:
    engine = make_engine(db_url)
    seed_country(engine)
    engine.dispose()
    app = create_app(load_settings(database_url=db_url), clock=lambda: NOW)
    client = app.server.test_client()
    provinces = get(client, "/api/v1/provinces")
    assert [p["code"] for p in provinces] == [TUYEN_QUANG]
    assert get(client, "/api/v1/summary?province=08") == get(client, "/api/v1/summary")
    assert client.get("/api/v1/summary?province=01").status_code == 404
    assert len(get(client, "/api/v1/communes")) == 124
    assert len(SEEDED[TUYEN_QUANG]) == 2


def test_the_collector_listens_to_every_province_in_national_mode() -> None:
    from collectors.service import subscriptions
    from collectors.validation import WRONG_PROVINCE, Rejection, validate_message

    assert subscriptions(load_settings()) == [
        "dvc/v1/08/+/dossier", "dvc/v1/08/+/queue", "dvc/v1/08/+/status"
    ]  # fmt: skip
    assert subscriptions(load_settings(scope="national", mqtt_shared_group="cc")) == [
        "$share/cc/dvc/v1/+/+/dossier", "$share/cc/dvc/v1/+/+/queue", "$share/cc/dvc/v1/+/+/status"
    ]  # fmt: skip
    topic, payload = f"dvc/v1/{HANOI}/{HANOI_B}/status", b"{}"
    provincial = validate_message(topic, payload, NOW, province="08", known_communes={HANOI_B})
    assert isinstance(provincial, Rejection) and provincial.reason == WRONG_PROVINCE
    national = validate_message(topic, payload, NOW, province=None, known_communes={HANOI_B})
    assert not (isinstance(national, Rejection) and national.reason == WRONG_PROVINCE)
