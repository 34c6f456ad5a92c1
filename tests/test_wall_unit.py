"""The wall's builders and formatters as plain Python: what the operator reads, without a browser."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dash
import plotly
import plotly.graph_objects as go
import pytest

from control_center.app import create_app, render_page
from control_center.settings import CONFIG_DIR, load_settings
from layouts import commune, kiosk, queue, wall, wall_overdue
from layouts.context import WallContext
from layouts.format import (
    fmt_datetime,
    fmt_int,
    fmt_lag,
    fmt_minutes,
    fmt_number,
    fmt_pct,
    trend,
)
from layouts.i18n import STRINGS, lang_from_search, t, with_lang
from layouts.map import (
    FEED_STATES,
    MEASURE_TRACE,
    MEASURES,
    build_map_figure,
    clicked_commune,
    feature_codes,
    map_patch,
    map_values,
    measure_value,
    province_geojson,
)

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)  # 10:00 in Tuyên Quang


def row(code: str, name: str, **values: Any) -> dict[str, Any]:
    base = {
        "code": code,
        "name": name,
        "open": 0,
        "overdue": 0,
        "due_soon": 0,
        "queue_waiting": 0,
        "avg_wait_minutes": None,
        "on_time_rate": None,
        "feed_state": "live",
        "last_seen_at": NOW,
        "lag_seconds": 1.0,
    }
    return base | values


def text_of(component: Any) -> str:
    """All text a person would read inside a Dash component tree."""
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(text_of(c) for c in component)
    return text_of(getattr(component, "children", None))


@pytest.fixture(scope="module")
def geojson() -> dict[str, Any]:
    return province_geojson("08", CONFIG_DIR)


# --- formatting -----------------------------------------------------------------------------


def test_numbers_use_the_languages_separators() -> None:
    assert fmt_int(29500, "vi") == "29.500"
    assert fmt_int(29500, "en") == "29,500"
    assert fmt_pct(0.913, "vi") == "91,3%"
    assert fmt_pct(0.913, "en") == "91.3%"
    assert fmt_minutes(12.4, "vi") == "12 phút"


def test_unknown_values_show_a_dash_never_zero() -> None:
    assert fmt_int(None) == "—"
    assert fmt_pct(None) == "—"
    assert fmt_datetime(None) == "—"


def test_times_are_shown_in_the_provinces_clock() -> None:
    assert fmt_datetime(NOW, NOW) == "10:00"
    assert fmt_datetime(NOW - timedelta(days=1), NOW) == "24/11/2026 10:00"


def test_feed_lag_picks_a_readable_unit() -> None:
    assert fmt_lag(45, "en") == "45 s"
    assert fmt_lag(600, "vi") == "10 phút"
    assert fmt_lag(3 * 3600 + 1800, "vi") == "3,5 giờ"


def test_trend_tone_follows_whether_up_is_good() -> None:
    assert trend(10, 7) == ("▲ 3", "good")
    assert trend(10, 7, higher_is_better=False) == ("▲ 3", "bad")
    assert trend(5, 5) == ("→ 0", "flat")
    assert trend(5, None) is None
    # A rate 0.04 points lower shows as 0,0 at one decimal: flat, not "▼ 0,0".
    assert trend(96.00, 96.04, fmt=fmt_number) == ("→ 0", "flat")
    assert trend(96.00, 96.06, fmt=fmt_number) == ("▼ 0,1", "bad")


# --- language -------------------------------------------------------------------------------


def test_every_label_exists_in_vietnamese_and_english() -> None:
    missing = [k for k, v in STRINGS.items() if not v.get("vi") or not v.get("en")]
    assert missing == []


def test_vietnamese_is_the_default_and_english_a_switch() -> None:
    assert lang_from_search(None) == "vi"
    assert lang_from_search("?lang=fr") == "vi"
    assert lang_from_search("?rotate=30&lang=en") == "en"
    assert t("kpi_overdue") == "Quá hạn"
    assert t("kpi_overdue", "en") == "Overdue"


def test_language_links_keep_the_other_parameters() -> None:
    assert with_lang("/kiosk", "en", "?rotate=30") == "/kiosk?rotate=30&lang=en"
    assert with_lang("/", "vi", "?lang=en") == "/"


# --- map ------------------------------------------------------------------------------------


def test_map_draws_every_commune_with_maplibre_not_geo(geojson: dict[str, Any]) -> None:
    rows = [row("02269", "Xã Thượng Lâm", overdue=7)]
    fig = build_map_figure(geojson, rows, "overdue", "vi")
    assert all(isinstance(trace, go.Choroplethmap) for trace in fig.data)
    assert len(fig.data[0].locations) == 124  # grey base: communes without data still show
    assert fig.layout.map.style == "white-bg"  # built-in style: no tiles, no network
    assert fig.layout.uirevision  # zoom and hover survive refreshes
    measure = fig.data[MEASURE_TRACE]
    z = dict(zip(measure.locations, measure.z, strict=True))
    assert z["02269"] == 7
    assert z["00691"] is None  # no row for it: drawn grey, not as zero


def test_map_colour_scale_is_colour_blind_safe_with_a_legend(geojson: dict[str, Any]) -> None:
    fig = build_map_figure(geojson, [], "open", "en")
    trace = fig.data[MEASURE_TRACE]
    assert [c[1] for c in trace.colorscale] == [
        c[1] for c in go.Choroplethmap(colorscale="Cividis").colorscale
    ]
    assert trace.colorbar.title.text == "Open backlog"


def test_on_time_rate_is_coloured_in_percent_and_reversed(geojson: dict[str, Any]) -> None:
    assert measure_value(row("1", "x", on_time_rate=0.75), "on_time_rate") == 75.0
    trace = build_map_figure(geojson, [], "on_time_rate", "vi").data[MEASURE_TRACE]
    assert trace.reversescale  # low on-time rate is the bright, alarming end
    assert (trace.zmin, trace.zmax) == (0, 100)


def test_feed_state_map_has_one_labelled_colour_per_state(geojson: dict[str, Any]) -> None:
    rows = [row("02269", "Xã Thượng Lâm", feed_state="offline")]
    trace = build_map_figure(geojson, rows, "feed_state", "vi").data[MEASURE_TRACE]
    assert list(trace.colorbar.ticktext) == [t("feed_" + s, "vi") for s in FEED_STATES]
    z = dict(zip(trace.locations, trace.z, strict=True))
    assert FEED_STATES[int(z["02269"])] == "offline"
    assert FEED_STATES[int(z["00691"])] == "unknown"


def test_hover_gives_the_communes_figures(geojson: dict[str, Any]) -> None:
    rows = [row("02269", "Xã Thượng Lâm", overdue=7, due_soon=2, open=29, on_time_rate=0.8)]
    values = map_values(feature_codes(geojson), rows, "overdue", "vi")
    hover = values["text"][feature_codes(geojson).index("02269")]
    assert "Xã Thượng Lâm" in hover
    assert "Quá hạn: 7" in hover
    assert "80,0%" in hover


def test_refresh_patch_sends_values_not_polygons(geojson: dict[str, Any]) -> None:
    rows = [row("02269", "Xã Thượng Lâm", overdue=3)]
    patch = map_patch(map_values(feature_codes(geojson), rows, "overdue", "vi"))
    operations = patch.to_plotly_json()["operations"]
    touched = {tuple(op["location"]) for op in operations}
    assert touched == {("data", MEASURE_TRACE, key) for key in ("z", "text", "zmin", "zmax")}
    assert "coordinates" not in str(operations)


def test_measure_change_patches_the_colour_scale(geojson: dict[str, Any]) -> None:
    figure, built = wall.map_update(geojson, [], "on_time_rate", "en", ["overdue", "en"])
    operations = figure.to_plotly_json()["operations"]
    changed = {op["location"][-1]: op["params"]["value"] for op in operations}
    assert built == ["on_time_rate", "en"]
    assert changed["reversescale"] is True
    assert changed["colorbar"]["title"]["text"] == "On-time rate"
    assert "geojson" not in changed


def test_map_is_built_whole_only_without_one_in_this_language(geojson: dict[str, Any]) -> None:
    assert isinstance(wall.map_update(geojson, [], "open", "vi", None)[0], go.Figure)
    assert isinstance(wall.map_update(geojson, [], "open", "vi", ["open", "en"])[0], go.Figure)
    _, built = wall.map_update(geojson, [], "open", "vi", ["open", "vi"])
    assert built is dash.no_update


def test_a_click_on_a_commune_names_it() -> None:
    assert clicked_commune({"points": [{"location": "02269", "z": 3}]}) == "02269"
    assert clicked_commune({"points": []}) is None
    assert clicked_commune(None) is None


def test_every_measure_builds(geojson: dict[str, Any]) -> None:
    for measure in MEASURES:
        assert len(build_map_figure(geojson, [], measure, "en").data) == 2


# --- wall panels ----------------------------------------------------------------------------


def test_worst_communes_rank_by_overdue_then_due_soon_and_skip_calm_ones() -> None:
    rows = [row(f"{i:05d}", f"Xã {i}", overdue=i % 4, due_soon=i % 3) for i in range(1, 30)]
    rows.append(row("99999", "Xã Bình Yên"))
    worst = wall.worst_communes(rows)
    assert len(worst) == 10
    keys = [(r["overdue"], r["due_soon"]) for r in worst]
    assert keys == sorted(keys, reverse=True)
    assert all(r["code"] != "99999" for r in worst)


def test_feed_strip_names_offline_centres_before_stale_ones() -> None:
    rows = [
        row("1", "Xã Chậm", feed_state="stale", last_seen_at=NOW - timedelta(minutes=10)),
        row("2", "Xã Sống", feed_state="live"),
        row("3", "Xã Mất Gần", feed_state="offline", last_seen_at=NOW - timedelta(hours=1)),
        row("4", "Xã Mất Lâu", feed_state="offline", last_seen_at=NOW - timedelta(hours=5)),
    ]
    assert [r["name"] for r in wall.feed_problems(rows)] == ["Xã Mất Lâu", "Xã Mất Gần", "Xã Chậm"]
    strip = text_of(wall.feed_strip(rows, "vi", NOW))
    assert "Xã Sống" not in strip
    assert "Xã Mất Lâu · mất kết nối · 5,0 giờ" in strip
    assert t("feeds_all_live", "en") in text_of(wall.feed_strip(rows[1:2], "en", NOW))


def test_feed_strip_stays_one_line_in_a_province_wide_outage() -> None:
    rows = [row(f"{i:05d}", f"Xã {i}", feed_state="offline") for i in range(124)]
    strip = wall.feed_strip(rows, "en", NOW)
    assert len(strip) == 1 + wall.FEED_STRIP_MAX + 1
    assert "and 119 more" in text_of(strip)


def test_stale_banner_only_when_data_is_stale() -> None:
    text, cls = wall.stale_banner({"data_stale": True, "data_as_of": NOW}, "vi", NOW)
    assert "CẢNH BÁO" in text and "10:00" in text and "hidden" not in cls
    _, cls = wall.stale_banner({"data_stale": False, "data_as_of": NOW}, "vi", NOW)
    assert "hidden" in cls


def test_kpi_tiles_show_the_summary_figures() -> None:
    summary = {
        "open": 12345,
        "overdue": 9,
        "due_soon": 7,
        "received_today": 200,
        "received_online_today": 190,
        "returned_today": 45,
        "on_time_rate": 0.912,
        "online_rate": 0.95,
        "queue_waiting": 4,
        "avg_wait_minutes": 20.0,
        "centres_online": 122,
        "centres_stale": 1,
        "centres_offline": 1,
        "centres_total": 124,
        "progress_score": 17.54,
        "trend": {"received_today": 180, "on_time_rate": 0.9},
    }
    tiles = {
        tile.to_plotly_json()["props"]["data-kpi"]: tile for tile in wall.kpi_tiles(summary, "vi")
    }
    assert "12.345" in text_of(tiles["open"])
    assert "alarm" in tiles["overdue"].className
    assert "95% trực tuyến" in text_of(tiles["received_today"])
    assert "Hôm qua cả ngày: 180" in text_of(tiles["received_today"])
    assert "91,2%" in text_of(tiles["on_time_rate"])
    assert "▲ 1,2 điểm %" in text_of(tiles["on_time_rate"])
    assert "122 /124" in text_of(tiles["centres"])  # live centres, then the total in small type
    assert "17,54" in text_of(tiles["progress_score"])


def _tile(summary: dict[str, Any], key: str, lang: str) -> Any:
    return next(
        tile
        for tile in wall.kpi_tiles(summary, lang)
        if tile.to_plotly_json()["props"]["data-kpi"] == key
    )


def test_day_tiles_compare_with_the_same_time_yesterday() -> None:
    summary = {
        "received_today": 1212,
        "received_online_today": 1100,
        "returned_today": 40,
        "trend": {
            "received_today": 2500,  # all of yesterday: not what the arrow compares with
            "returned_today": 90,
            "same_time_yesterday": {"received_today": 1200, "returned_today": 45},
        },
    }
    received = _tile(summary, "received_today", "vi")
    assert "▲ 12 so với cùng giờ hôm qua" in text_of(received)
    assert "2.500" not in text_of(received)
    # More dossiers received is neither good nor bad news: a neutral arrow.
    assert "trend-flat" in repr(received)
    returned = _tile(summary, "returned_today", "vi")
    assert "▼ 5 so với cùng giờ hôm qua" in text_of(returned)
    assert "trend-bad" in repr(returned)  # fewer results handed back than by now yesterday

    en = _tile(summary, "received_today", "en")
    assert "▲ 12 vs same time yesterday" in text_of(en)
    summary["trend"]["same_time_yesterday"]["returned_today"] = 40
    assert "→ 0 vs same time yesterday" in text_of(_tile(summary, "returned_today", "en"))
    # Thousands follow the language's separators.
    summary["trend"]["same_time_yesterday"]["received_today"] = 12
    assert "▲ 1.200 so với cùng giờ hôm qua" in text_of(_tile(summary, "received_today", "vi"))


def test_day_tiles_without_the_same_time_figures_fall_back_to_yesterdays_total() -> None:
    summary = {"received_today": 5, "returned_today": 1, "trend": {"received_today": 180}}
    received = _tile(summary, "received_today", "vi")
    assert "Hôm qua cả ngày: 180" in text_of(received)
    assert "cùng giờ" not in text_of(received)
    # No figure for yesterday at all: no arrow rather than a made-up one.
    assert "▲" not in text_of(_tile({"received_today": 5}, "received_today", "vi"))


def test_ticker_shows_newest_escalation_first_with_its_level() -> None:
    alerts = [
        {
            "level": 1,
            "commune_code": "02269",
            "raised_at": NOW - timedelta(hours=1),
            "message": "cũ",
        },
        {"level": 3, "commune_code": "02269", "raised_at": NOW, "message": "mới"},
    ]
    items = wall.ticker_items(alerts, {"02269": "Xã Thượng Lâm"}, "vi", NOW)
    assert "mới" in text_of(items[0]) and "Cấp 3" in text_of(items[0])
    assert "cũ" in text_of(items[1])
    assert t("ticker_empty", "en") in text_of(wall.ticker_items([], {}, "en", NOW))


# --- commune page ---------------------------------------------------------------------------


def test_daily_chart_compares_received_and_returned() -> None:
    days = [
        {"day": (NOW - timedelta(days=i)).date(), "received": 10 + i, "returned": 5}
        for i in range(3)
    ]
    fig = commune.daily_figure(commune.daily_with_days(days), "en")
    names = [trace.name for trace in fig.data]
    assert names[:2] == ["Received", "Returned"]
    assert list(fig.data[0].x) == sorted(fig.data[0].x, key=lambda d: d[::-1].replace("/", ""))
    assert list(fig.data[0].y) == [12, 11, 10]


def test_overdue_list_says_whether_the_apology_was_issued() -> None:
    table = commune.overdue_table(
        [{"dossier_code": "D1", "procedure_name": "Khai sinh", "apology_issued": False}], "vi"
    )
    assert "D1" in text_of(table) and "Chưa" in text_of(table)
    assert t("overdue_none", "vi") in text_of(commune.overdue_table([], "vi"))


# --- kiosk and app --------------------------------------------------------------------------


def test_kiosk_rotation_seconds_are_bounded() -> None:
    assert kiosk.rotate_seconds("?rotate=30") == 30
    assert kiosk.rotate_seconds("?rotate=1") == kiosk.MIN_ROTATE_S
    assert kiosk.rotate_seconds("?rotate=abc") == kiosk.DEFAULT_ROTATE_S


def test_kiosk_playlist_cycles_wall_overdue_queue() -> None:
    assert [kiosk.page_at("?rotate=30", tick)[1] for tick in range(5)] == [
        "wall",
        "overdue",
        "queue",
        "wall",
        "overdue",
    ]
    assert kiosk.step_label("?rotate=30", 2, "vi") == "Trang 3/3"
    assert kiosk.step_label("?rotate=30", 0, "en") == "Page 1 of 3"


def test_kiosk_playlist_can_be_chosen_and_ignores_unknown_pages() -> None:
    assert kiosk.kiosk_pages("?pages=queue,wall") == ["queue", "wall"]
    assert kiosk.kiosk_pages("?pages=queue,nope") == ["queue"]
    assert kiosk.kiosk_pages("?pages=nope") == ["wall", "overdue", "queue"]
    assert kiosk.page_at("?pages=queue", 7) == (0, "queue")


# --- queue view -----------------------------------------------------------------------------


def test_queue_view_puts_the_longest_waits_first_and_drops_idle_centres() -> None:
    rows = [
        row("1", "A", queue_waiting=3, longest_wait_minutes=12.0, counters_open=2),
        row("2", "B", queue_waiting=9, longest_wait_minutes=75.0, counters_open=1),
        row("3", "C"),  # no queue today at all
        row("4", "D", avg_wait_minutes=8.0, counters_open=1),  # served people, none waiting
        row("5", "E", queue_waiting=9, longest_wait_minutes=75.0, counters_open=3),
    ]
    assert [r["code"] for r in queue.worst_waits(rows)] == ["2", "5", "1", "4"]


def test_queue_totals_sum_the_centres_and_take_the_province_average() -> None:
    rows = [
        row("1", "A", queue_waiting=3, longest_wait_minutes=12.0, counters_open=2),
        row("2", "B", queue_waiting=9, longest_wait_minutes=75.0, counters_open=1),
        row("3", "C"),
    ]
    totals = queue.queue_totals(rows, {"avg_wait_minutes": 17.5})
    assert totals == {
        "waiting": 12,
        "longest_wait_minutes": 75.0,
        "avg_wait_minutes": 17.5,
        "counters_open": 3,
        "centres_waiting": 2,
        "centres_total": 3,
    }
    tiles = text_of(queue.total_tiles(totals, "vi"))
    assert "12" in tiles and "75 phút" in tiles and "tại 2/3 trung tâm" in tiles


def test_queue_table_flags_long_waits_and_counts_what_is_not_shown() -> None:
    rows = [
        row(f"{i:05d}", f"Xã {i}", queue_waiting=1, longest_wait_minutes=float(90 - i))
        for i in range(queue.QUEUE_ROWS_SHOWN + 4)
    ]
    table = queue.queue_table(rows, "vi", None)
    body = table.children[0].children[1].children
    assert len(body) == queue.QUEUE_ROWS_SHOWN
    assert "alarm-text" in body[0].children[3].className  # 90 min: past the 60 min policy
    assert "và 4 trung tâm khác" in text_of(table)
    assert t("queue_none", "en") in text_of(queue.queue_table([], "en", None))


# --- overdue view ---------------------------------------------------------------------------


def dossier(code: str, **values: Any) -> dict[str, Any]:
    base = {
        "dossier_code": code,
        "commune_code": "02269",
        "commune_name": "Xã Thượng Lâm",
        "procedure_code": "1.001193",
        "procedure_name": "Đăng ký khai sinh",
        "due_at": NOW - timedelta(days=2),
        "working_days_overdue": 2.0,
        "apology_issued": False,
    }
    return base | values


def test_overdue_view_lists_late_dossiers_with_their_apology_and_the_rest_as_a_count() -> None:
    items = [dossier("D1", working_days_overdue=3.5), dossier("D2", apology_issued=True)]
    table = wall_overdue.dossier_table(items, 40, "vi", NOW, overdue=True)
    shown = text_of(table)
    assert "D1" in shown and "3,5" in shown and "Chưa" in shown and "Có" in shown
    assert "và 38 hồ sơ khác" in shown
    soon = wall_overdue.dossier_table(
        [dossier("D3", due_at=NOW + timedelta(hours=2))], 1, "en", NOW, overdue=False
    )
    assert "12:00" in text_of(soon) and "more" not in text_of(soon)
    assert t("due_soon_none", "vi") in text_of(
        wall_overdue.dossier_table([], 0, "vi", NOW, overdue=False)
    )


def test_create_app_connects_to_nothing(tmp_path: Any) -> None:
    # A database path that cannot exist: building the app must not touch it.
    url = f"sqlite:///{tmp_path / 'missing' / 'nowhere' / 'cc.db'}"
    app = create_app(load_settings(database_url=url))
    assert not (tmp_path / "missing").exists()
    assert app.config.update_title is None
    assert app.server.url_map is not None


def test_pages_are_routed_by_path(tmp_path: Any) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'cc.db'}")
    from control_center.db import Database

    context = WallContext(settings=settings, db=Database(settings.database_url))
    page = render_page(context, "/", None)
    assert "wall-page" in page.className
    # The page's map names its polygons' file and says it has a figure, so the first refresh
    # is already a Patch; the polygons themselves come once from that file.
    layout = json.dumps(page.to_plotly_json(), cls=plotly.utils.PlotlyJSONEncoder)
    assert layout.count('"geojson": "/geo/province-08.geojson?v=') == 2
    assert "FeatureCollection" not in layout
    assert '"data": ["overdue", "vi"]' in layout
    assert "commune-page" in render_page(context, "/commune/02269", "?lang=en").className
    assert "kiosk-root" in render_page(context, "/kiosk", "?rotate=30").className
    assert "queue-page" in render_page(context, "/queue", None).className
    assert "overdue-page" in render_page(context, "/wall/overdue", "?lang=en").className
    assert "not-found" in render_page(context, "/nope", None).className


def test_a_configured_tile_source_goes_under_the_communes_and_none_needs_no_network() -> None:
    geojson = province_geojson("08", CONFIG_DIR)
    offline = build_map_figure(geojson, [], "overdue", "vi").layout.map
    assert offline.style == "white-bg"
    assert [layer.sourcetype for layer in offline.layers] == ["geojson"]
    url = "https://tiles.province.example/{z}/{x}/{y}.png"
    tiled = build_map_figure(geojson, [], "overdue", "vi", tiles=url).layout.map
    assert [(layer.sourcetype, list(layer.source)) for layer in tiled.layers] == [("raster", [url])]
    assert tiled.layers[0].below == "traces"
