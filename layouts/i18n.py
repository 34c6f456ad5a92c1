"""All wall labels, Vietnamese first (the operators' language), English as a switch.

The language travels in the URL (``?lang=en``) rather than in server memory, so every gunicorn
worker renders the same page for the same address and a kiosk URL can pin its language.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode

DEFAULT_LANG = "vi"
LANGS = ("vi", "en")

STRINGS: dict[str, dict[str, str]] = {
    "app_title": {
        "vi": "Trung tâm điều hành - Phục vụ hành chính công cấp xã",
        "en": "Control centre - commune public administration service",
    },
    "province": {"vi": "Tỉnh", "en": "Province"},
    "wall": {"vi": "Toàn tỉnh", "en": "Province wall"},
    "back_to_wall": {"vi": "← Về màn hình toàn tỉnh", "en": "← Back to province wall"},
    "switch_lang": {"vi": "English", "en": "Tiếng Việt"},
    "clock": {"vi": "Giờ", "en": "Time"},
    "data_as_of": {"vi": "Dữ liệu lúc", "en": "Data as of"},
    "stale_banner": {
        "vi": "CẢNH BÁO: dữ liệu không được cập nhật từ {since} - số liệu có thể đã cũ",
        "en": "WARNING: no fresh data since {since} - figures may be out of date",
    },
    "stale_never": {"vi": "chưa từng nhận", "en": "never received"},
    "database_down": {
        "vi": "CẢNH BÁO: không đọc được cơ sở dữ liệu lúc {at} - số liệu đang hiển thị đã cũ",
        "en": "WARNING: the database could not be read at {at} - the figures shown are old",
    },
    # KPI tiles
    "kpi_open": {"vi": "Hồ sơ đang giải quyết", "en": "Open dossiers"},
    "kpi_overdue": {"vi": "Quá hạn", "en": "Overdue"},
    "kpi_due_soon": {"vi": "Đến hạn trong 1 ngày làm việc", "en": "Due within 1 working day"},
    "kpi_received_today": {"vi": "Tiếp nhận hôm nay", "en": "Received today"},
    "kpi_online_share": {"vi": "trực tuyến", "en": "online"},
    "kpi_returned_today": {"vi": "Trả kết quả hôm nay", "en": "Returned today"},
    "kpi_on_time_rate": {"vi": "Đúng hạn (30 ngày)", "en": "On time (30 days)"},
    "kpi_queue_waiting": {"vi": "Đang chờ tại quầy", "en": "Waiting at counters"},
    "kpi_avg_wait": {"vi": "chờ TB", "en": "avg wait"},
    "kpi_centres": {"vi": "Trung tâm trực tuyến", "en": "Centres live"},
    "kpi_centres_detail": {
        "vi": "{stale} chậm · {offline} mất kết nối / {total}",
        "en": "{stale} stale · {offline} offline / {total}",
    },
    "kpi_progress": {"vi": "Điểm tiến độ giải quyết (QĐ 766)", "en": "Settlement progress (766)"},
    "kpi_progress_unit": {"vi": "/ 20 điểm", "en": "/ 20 points"},
    "trend_vs_yesterday": {"vi": "so với hôm qua", "en": "vs yesterday"},
    "yesterday_value": {"vi": "Hôm qua cả ngày: {value}", "en": "All of yesterday: {value}"},
    "percentage_points": {"vi": "điểm %", "en": "pts"},
    # Map
    "map_title": {"vi": "Bản đồ {n} xã, phường", "en": "Map of the {n} communes"},
    "measure": {"vi": "Tô màu theo", "en": "Colour by"},
    "measure_overdue": {"vi": "Quá hạn", "en": "Overdue"},
    "measure_due_soon": {"vi": "Sắp đến hạn", "en": "Due soon"},
    "measure_open": {"vi": "Tồn đọng", "en": "Open backlog"},
    "measure_on_time_rate": {"vi": "Tỉ lệ đúng hạn", "en": "On-time rate"},
    "measure_queue_waiting": {"vi": "Đang chờ", "en": "Queue waiting"},
    "measure_feed_state": {"vi": "Kết nối", "en": "Feed state"},
    "no_data": {"vi": "chưa có dữ liệu", "en": "no data"},
    # Feed states
    "feed_live": {"vi": "trực tuyến", "en": "live"},
    "feed_stale": {"vi": "chậm", "en": "stale"},
    "feed_offline": {"vi": "mất kết nối", "en": "offline"},
    "feed_catching_up": {"vi": "đang đồng bộ", "en": "catching up"},
    "feed_unknown": {"vi": "chưa kết nối", "en": "never seen"},
    "feeds_title": {"vi": "Trung tâm chậm / mất kết nối", "en": "Stale / offline centres"},
    "feeds_all_live": {"vi": "Tất cả trung tâm đang trực tuyến", "en": "All centres are live"},
    "feeds_more": {"vi": "và {n} trung tâm khác", "en": "and {n} more"},
    # Worst communes table
    "worst_title": {"vi": "10 xã cần chú ý", "en": "Top 10 communes to watch"},
    "col_commune": {"vi": "Xã, phường", "en": "Commune"},
    "col_overdue": {"vi": "Quá hạn", "en": "Overdue"},
    "col_due_soon": {"vi": "Sắp hạn", "en": "Due soon"},
    "col_open": {"vi": "Tồn", "en": "Open"},
    "col_queue": {"vi": "Chờ", "en": "Queue"},
    "col_feed": {"vi": "Kết nối", "en": "Feed"},
    "worst_none": {"vi": "Không có hồ sơ quá hạn", "en": "No overdue dossiers"},
    # Ticker
    "ticker_title": {"vi": "Cảnh báo, kiến nghị xử lý", "en": "Escalations"},
    "ticker_empty": {"vi": "Không có cảnh báo đang mở", "en": "No open escalations"},
    "level_1": {"vi": "Cấp 1 · Trung tâm", "en": "L1 · Centre"},
    "level_2": {"vi": "Cấp 2 · Lãnh đạo xã", "en": "L2 · Commune leaders"},
    "level_3": {"vi": "Cấp 3 · Tỉnh", "en": "L3 · Province"},
    # Commune page
    "commune_not_found": {"vi": "Không tìm thấy xã, phường {code}", "en": "No commune {code}"},
    "daily_title": {
        "vi": "Tiếp nhận và trả kết quả theo ngày (30 ngày)",
        "en": "Received vs returned per day (30 days)",
    },
    "series_received": {"vi": "Tiếp nhận", "en": "Received"},
    "series_returned": {"vi": "Trả kết quả", "en": "Returned"},
    "series_on_time": {"vi": "Xong đúng hạn", "en": "Finished on time"},
    "series_overdue": {"vi": "Xong quá hạn", "en": "Finished late"},
    "queue_title": {
        "vi": "Thời gian chờ TB theo giờ (hôm nay)",
        "en": "Average wait by hour (today)",
    },
    "axis_minutes": {"vi": "phút", "en": "minutes"},
    "axis_hour": {"vi": "giờ", "en": "hour"},
    "axis_dossiers": {"vi": "hồ sơ", "en": "dossiers"},
    "overdue_title": {"vi": "Hồ sơ quá hạn", "en": "Overdue dossiers"},
    "overdue_none": {"vi": "Không có hồ sơ quá hạn", "en": "No overdue dossiers"},
    "col_dossier": {"vi": "Mã hồ sơ", "en": "Dossier"},
    "col_procedure": {"vi": "Thủ tục", "en": "Procedure"},
    "col_due_at": {"vi": "Hẹn trả", "en": "Due"},
    "col_days_overdue": {"vi": "Quá (ngày LV)", "en": "Late (working days)"},
    "col_apology": {"vi": "Xin lỗi", "en": "Apology"},
    "yes": {"vi": "Có", "en": "Yes"},
    "no": {"vi": "Chưa", "en": "No"},
    "feed_title": {"vi": "Tình trạng kết nối", "en": "Feed health"},
    "feed_state": {"vi": "Trạng thái", "en": "State"},
    "feed_last_seen": {"vi": "Nhận lần cuối", "en": "Last seen"},
    "feed_last_event": {"vi": "Sự kiện mới nhất", "en": "Newest event"},
    "feed_lag": {"vi": "Độ trễ", "en": "Lag"},
    "feed_software": {"vi": "Phần mềm", "en": "Software"},
    "alerts_title": {"vi": "Cảnh báo gần đây", "en": "Recent alerts"},
    "alerts_none": {"vi": "Không có cảnh báo", "en": "No alerts"},
    "alert_open": {"vi": "đang mở", "en": "open"},
    "alert_acknowledged": {"vi": "đã tiếp nhận", "en": "acknowledged"},
    "alert_resolved": {"vi": "đã xử lý", "en": "resolved"},
    "longest_wait": {"vi": "chờ lâu nhất", "en": "longest wait"},
    "counters_open": {"vi": "Quầy đang mở", "en": "Counters open"},
    "online_rate": {"vi": "Trực tuyến (30 ngày)", "en": "Online (30 days)"},
    "minutes_short": {"vi": "phút", "en": "min"},
    "seconds_short": {"vi": "giây", "en": "s"},
}


def t(key: str, lang: str = DEFAULT_LANG, **values: object) -> str:
    """The label ``key`` in ``lang``; a missing key shows itself rather than crash the wall."""
    entry = STRINGS.get(key)
    if entry is None:
        return key
    text = entry.get(lang) or entry[DEFAULT_LANG]
    return text.format(**values) if values else text


def lang_from_search(search: str | None) -> str:
    """``?lang=en`` -> "en"; anything else -> Vietnamese."""
    if not search:
        return DEFAULT_LANG
    value = parse_qs(search.lstrip("?")).get("lang", [DEFAULT_LANG])[0]
    return value if value in LANGS else DEFAULT_LANG


def with_lang(path: str, lang: str, search: str | None = None) -> str:
    """``path`` with the query string of ``search`` and ``lang`` set, for links that keep state."""
    params = {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items()}
    if lang == DEFAULT_LANG:
        params.pop("lang", None)
    else:
        params["lang"] = lang
    return f"{path}?{urlencode(params)}" if params else path


def other_lang(lang: str) -> str:
    return "en" if lang == "vi" else "vi"
