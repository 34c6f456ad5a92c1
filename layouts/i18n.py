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
    "sign_out": {"vi": "Đăng xuất", "en": "Sign out"},
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
    # --- wall: navigation, queue view, overdue view, kiosk playlist ---
    "nav_wall": {"vi": "Toàn tỉnh", "en": "Province"},
    "nav_overdue": {"vi": "Quá hạn", "en": "Overdue"},
    "nav_queue": {"vi": "Hàng chờ", "en": "Queues"},
    "nav_alerts": {"vi": "Cảnh báo", "en": "Alerts"},
    "nav_report": {"vi": "Báo cáo ngày", "en": "Daily report"},
    "queue_page_title": {"vi": "Hàng chờ tại quầy", "en": "Counter queues"},
    "queue_worst_title": {
        "vi": "Trung tâm chờ lâu nhất (hôm nay)",
        "en": "Centres with the longest waits (today)",
    },
    "queue_longest_wait": {"vi": "Chờ lâu nhất hiện tại", "en": "Longest wait now"},
    "queue_avg_wait_today": {"vi": "Thời gian chờ TB hôm nay", "en": "Average wait today"},
    "queue_centres_waiting": {
        "vi": "tại {n}/{total} trung tâm",
        "en": "at {n} of {total} centres",
    },
    "queue_none": {
        "vi": "Hôm nay chưa có trung tâm nào phát số thứ tự",
        "en": "No centre has issued tickets today",
    },
    "queue_more": {
        "vi": "và {n} trung tâm khác có hàng chờ hôm nay",
        "en": "and {n} more centres with a queue today",
    },
    "col_waiting": {"vi": "Đang chờ", "en": "Waiting"},
    "col_longest_wait": {"vi": "Chờ lâu nhất", "en": "Longest wait"},
    "col_avg_wait": {"vi": "Chờ TB", "en": "Avg wait"},
    "col_counters_open": {"vi": "Quầy mở", "en": "Counters"},
    "overdue_page_title": {
        "vi": "Hồ sơ quá hạn và sắp đến hạn",
        "en": "Overdue and due-soon dossiers",
    },
    "due_soon_title": {
        "vi": "Sắp đến hạn (trong 1 ngày làm việc)",
        "en": "Due within 1 working day",
    },
    "due_soon_none": {"vi": "Không có hồ sơ sắp đến hạn", "en": "No dossiers due soon"},
    "dossiers_more": {"vi": "và {n} hồ sơ khác", "en": "and {n} more dossiers"},
    "kiosk_step": {"vi": "Trang {i}/{n}", "en": "Page {i} of {n}"},
    # --- alerts page (/alerts) and alert history ---
    "alerts_page_title": {"vi": "Cảnh báo và chuyển cấp", "en": "Alerts and escalations"},
    "filter_state": {"vi": "Trạng thái", "en": "State"},
    "filter_level": {"vi": "Cấp", "en": "Level"},
    "filter_commune": {"vi": "Xã, phường", "en": "Commune"},
    "filter_kind": {"vi": "Loại", "en": "Kind"},
    "filter_all": {"vi": "Tất cả", "en": "All"},
    "ack_by_label": {"vi": "Người xác nhận", "en": "Acknowledging as"},
    "ack_by_placeholder": {"vi": "Họ tên, đơn vị", "en": "Name, unit"},
    "ack_button": {"vi": "Xác nhận", "en": "Acknowledge"},
    "ack_needs_name": {
        "vi": "Nhập người xác nhận ở đầu trang",
        "en": "Enter who acknowledges at the top of the page",
    },
    "ack_by_at": {"vi": "{by} · {at}", "en": "{by} · {at}"},
    "alerts_page_none": {"vi": "Không có cảnh báo phù hợp", "en": "No matching alerts"},
    "pager": {"vi": "{first}-{last} / {total}", "en": "{first}-{last} of {total}"},
    "pager_prev": {"vi": "← Mới hơn", "en": "← Newer"},
    "pager_next": {"vi": "Cũ hơn →", "en": "Older →"},
    "col_raised_at": {"vi": "Phát sinh", "en": "Raised"},
    "col_level": {"vi": "Cấp", "en": "Level"},
    "col_kind": {"vi": "Loại", "en": "Kind"},
    "col_message": {"vi": "Nội dung", "en": "Message"},
    "col_state": {"vi": "Trạng thái", "en": "State"},
    "kind_due_soon": {"vi": "Sắp đến hạn", "en": "Due soon"},
    "kind_due_today": {"vi": "Đến hạn hôm nay", "en": "Due today"},
    "kind_overdue": {"vi": "Quá hạn", "en": "Overdue"},
    "kind_apology_missing": {"vi": "Thiếu phiếu xin lỗi", "en": "No apology slip"},
    "kind_overdue_2d": {"vi": "Quá hạn từ 2 ngày LV", "en": "2+ working days late"},
    "kind_overdue_jump": {"vi": "Quá hạn tăng đột biến", "en": "Overdue jump"},
    "kind_feed_offline": {"vi": "Mất kết nối", "en": "Feed offline"},
    "kind_queue_wait": {"vi": "Chờ quá lâu", "en": "Long queue wait"},
    "kind_at_risk": {"vi": "Dự báo quá hạn", "en": "At risk"},
}


# --- wall: trend against the same time yesterday (issue 4) ---
STRINGS.update(
    {
        "trend_vs_same_time": {"vi": "so với cùng giờ hôm qua", "en": "vs same time yesterday"},
    }
)

# --- leaders' review (/overdue, /dossier, /ranking, /report): issue 5 ---
STRINGS.update(
    {
        "review_title": {
            "vi": "Rà soát hồ sơ quá hạn và sắp đến hạn",
            "en": "Review of overdue and nearly-due dossiers",
        },
        "review_state": {"vi": "Tình trạng", "en": "Status"},
        "review_state_attention": {
            "vi": "Quá hạn và sắp đến hạn",
            "en": "Overdue and due soon",
        },
        "review_state_overdue": {"vi": "Quá hạn", "en": "Overdue"},
        "review_state_due_soon": {
            "vi": "Sắp đến hạn (1 ngày làm việc)",
            "en": "Due within 1 working day",
        },
        "review_state_open": {"vi": "Đang giải quyết", "en": "Open"},
        "review_state_finished": {"vi": "Đã giải quyết", "en": "Finished"},
        "review_state_all": {"vi": "Tất cả hồ sơ", "en": "All dossiers"},
        "review_any": {"vi": "Tất cả", "en": "Any"},
        "review_yes": {"vi": "Có", "en": "Yes"},
        "review_no": {"vi": "Không", "en": "No"},
        "review_officer_hint": {
            "vi": "Tên cán bộ, Enter để lọc",
            "en": "Handler's name, Enter to filter",
        },
        "review_level_0": {"vi": "Chưa cảnh báo", "en": "No alert"},
        "review_level_1": {"vi": "Cấp 1 - Trung tâm xã", "en": "1 - Commune centre"},
        "review_level_2": {"vi": "Cấp 2 - Lãnh đạo xã", "en": "2 - Commune leadership"},
        "review_level_3": {"vi": "Cấp 3 - Tỉnh", "en": "3 - Province"},
        "review_channel_online": {"vi": "Trực tuyến", "en": "Online"},
        "review_channel_counter": {"vi": "Trực tiếp", "en": "At the desk"},
        "review_channel_post": {"vi": "Bưu chính", "en": "By post"},
        "review_total": {"vi": "{n} hồ sơ", "en": "{n} dossiers"},
        "review_clear": {"vi": "Bỏ lọc", "en": "Clear filters"},
        "review_xlsx": {"vi": "Tải Excel", "en": "Download Excel"},
        "review_csv": {"vi": "Tải CSV", "en": "Download CSV"},
        "review_share": {
            "vi": "Địa chỉ của trang giữ bộ lọc: gửi cho người khác để cùng xem danh sách này.",
            "en": "The page address keeps the filters: send it to share this list.",
        },
        "review_error": {
            "vi": "Không đọc được dữ liệu lúc {at}; thử lại sau ít phút.",
            "en": "The data could not be read at {at}; try again in a few minutes.",
        },
        "review_col_dossier": {"vi": "Mã hồ sơ", "en": "Dossier"},
        "review_col_commune": {"vi": "Xã, phường", "en": "Commune"},
        "review_col_sector": {"vi": "Lĩnh vực", "en": "Sector"},
        "review_col_procedure": {"vi": "Thủ tục", "en": "Procedure"},
        "review_col_channel": {"vi": "Kênh nộp", "en": "Channel"},
        "review_col_due": {"vi": "Hẹn trả", "en": "Due"},
        "review_col_days_overdue": {"vi": "Ngày LV quá hạn", "en": "Working days late"},
        "review_col_apology": {"vi": "Phiếu xin lỗi", "en": "Apology"},
        "review_col_extended": {"vi": "Gia hạn", "en": "Extended"},
        "review_col_level": {"vi": "Cấp cảnh báo", "en": "Escalation"},
        "review_col_officer": {"vi": "Cán bộ xử lý", "en": "Handler"},
        "nav_review": {"vi": "Rà soát", "en": "Review"},
        # dossier page
        "dossier_title": {"vi": "Hồ sơ {code}", "en": "Dossier {code}"},
        "dossier_back": {"vi": "← Danh sách rà soát", "en": "← Review list"},
        "dossier_not_found": {"vi": "Không có hồ sơ {code}", "en": "No dossier {code}"},
        "dossier_summary": {"vi": "Thông tin hồ sơ", "en": "Dossier"},
        "dossier_received": {"vi": "Tiếp nhận", "en": "Received"},
        "dossier_department": {"vi": "Bộ phận", "en": "Department"},
        "dossier_state": {"vi": "Trạng thái", "en": "State"},
        "dossier_state_open": {"vi": "Đang giải quyết trong hạn", "en": "Open, in time"},
        "dossier_state_due_soon": {"vi": "Sắp đến hạn", "en": "Due soon"},
        "dossier_state_overdue": {"vi": "Đang giải quyết quá hạn", "en": "Open, overdue"},
        "dossier_state_finished": {"vi": "Đã giải quyết", "en": "Finished"},
        "dossier_state_rejected": {"vi": "Không tiếp nhận / từ chối", "en": "Rejected"},
        "dossier_clock": {"vi": "Thời gian giải quyết", "en": "Processing clock"},
        "dossier_clock_start": {"vi": "Bắt đầu tính", "en": "Clock started"},
        "dossier_due": {"vi": "Hẹn trả", "en": "Due"},
        "dossier_used": {"vi": "Đã dùng", "en": "Used"},
        "dossier_paused": {"vi": "Tạm dừng", "en": "Paused"},
        "dossier_remaining": {"vi": "Còn lại", "en": "Remaining"},
        "dossier_overdue_by": {"vi": "Quá hạn", "en": "Overdue by"},
        "dossier_no_due": {"vi": "Chưa có ngày hẹn trả", "en": "No due date"},
        "dossier_working_days": {"vi": "{n} ngày làm việc", "en": "{n} working days"},
        "dossier_pause": {"vi": "Tạm dừng", "en": "Pause"},
        "dossier_pause_supplement": {"vi": "Chờ bổ sung", "en": "Waiting for documents"},
        "dossier_pause_payment": {"vi": "Chờ nộp phí", "en": "Waiting for payment"},
        "dossier_from": {"vi": "Từ", "en": "From"},
        "dossier_to": {"vi": "Đến", "en": "To"},
        "dossier_duration": {"vi": "Thời gian", "en": "Duration"},
        "dossier_still_waiting": {"vi": "đang chờ", "en": "still waiting"},
        "dossier_no_pause": {"vi": "Không tạm dừng", "en": "Never paused"},
        "dossier_apology_title": {"vi": "Xin lỗi và gia hạn", "en": "Apology and extension"},
        "dossier_apology_at": {"vi": "Đã có phiếu lúc {at}", "en": "Issued {at}"},
        "dossier_apology_missing": {
            "vi": "CHƯA CÓ phiếu xin lỗi (bắt buộc với hồ sơ trễ hạn)",
            "en": "MISSING: every late dossier needs a written apology",
        },
        "dossier_apology_none": {"vi": "Không có", "en": "None"},
        "dossier_extended_from": {
            "vi": "Hẹn lại từ {before} sang {after}",
            "en": "Re-set from {before} to {after}",
        },
        "dossier_not_extended": {"vi": "Không gia hạn", "en": "Not extended"},
        "dossier_transfers": {"vi": "Chuyển xử lý", "en": "Transfers"},
        "dossier_no_transfer": {"vi": "Không chuyển", "en": "Never transferred"},
        "dossier_transfer_line": {
            "vi": "{at}: từ {source} sang {target}",
            "en": "{at}: from {source} to {target}",
        },
        "dossier_alerts": {"vi": "Cảnh báo đã phát", "en": "Alerts raised"},
        "dossier_no_alert": {"vi": "Chưa có cảnh báo", "en": "No alert"},
        "dossier_alert_raised": {"vi": "Phát lúc", "en": "Raised"},
        "dossier_alert_ack": {"vi": "Xác nhận", "en": "Acknowledged"},
        "dossier_alert_open": {"vi": "Đang mở", "en": "Open"},
        "dossier_alert_acknowledged": {"vi": "Đã xác nhận", "en": "Acknowledged"},
        "dossier_alert_resolved": {"vi": "Đã xử lý", "en": "Resolved"},
        "dossier_timeline": {"vi": "Diễn biến hồ sơ", "en": "Timeline"},
        "dossier_when": {"vi": "Thời điểm", "en": "When"},
        "dossier_event": {"vi": "Sự kiện", "en": "Event"},
        "dossier_details": {"vi": "Chi tiết", "en": "Details"},
        "dossier_no_events": {"vi": "Chưa nhận sự kiện nào", "en": "No events received"},
        "dossier_arrived_late": {"vi": "nhận muộn lúc {at}", "en": "arrived late at {at}"},
        "event_received": {"vi": "Tiếp nhận", "en": "Received"},
        "event_assigned": {"vi": "Phân công xử lý", "en": "Assigned"},
        "event_supplement_requested": {"vi": "Yêu cầu bổ sung", "en": "Documents requested"},
        "event_supplement_received": {"vi": "Đã nhận bổ sung", "en": "Documents received"},
        "event_payment_requested": {"vi": "Yêu cầu nộp phí", "en": "Payment requested"},
        "event_payment_received": {"vi": "Đã nộp phí", "en": "Payment received"},
        "event_extended": {"vi": "Gia hạn", "en": "Extended"},
        "event_apology_issued": {"vi": "Phiếu xin lỗi, hẹn lại", "en": "Apology issued"},
        "event_completed": {"vi": "Có kết quả", "en": "Result ready"},
        "event_returned": {"vi": "Đã trả kết quả", "en": "Result returned"},
        "event_rejected": {"vi": "Từ chối", "en": "Rejected"},
        "event_withdrawn": {"vi": "Rút hồ sơ", "en": "Withdrawn"},
        "event_transferred": {"vi": "Chuyển xử lý", "en": "Transferred"},
        # ranking page
        "ranking_title": {
            "vi": "Xếp hạng xã, phường theo Bộ chỉ số 766 (phần tính được)",
            "en": "Communes ranked by the Decision 766 index (computable parts)",
        },
        "nav_ranking": {"vi": "Xếp hạng", "en": "Ranking"},
        "ranking_period_week": {"vi": "Tuần này", "en": "This week"},
        "ranking_period_month": {"vi": "Tháng này", "en": "This month"},
        "ranking_period_quarter": {"vi": "Quý này", "en": "This quarter"},
        "ranking_range": {"vi": "Từ {start} đến {end}", "en": "From {start} to {end}"},
        "ranking_how": {"vi": "Cách tính", "en": "How the scores are computed"},
        "ranking_formula_progress": {
            "vi": "Tiến độ giải quyết (20 điểm) = 20 × (hồ sơ giải quyết trước hạn, đúng hạn "
            "+ đang giải quyết trong hạn) / (hồ sơ đã giải quyết có kết quả + đang giải quyết có "
            "ngày hẹn trả).",
            "en": "Settlement progress (20 points) = 20 × (finished early or on time + in "
            "progress within time) / (finished with an outcome + in progress with a due date).",
        },
        "ranking_formula_online": {
            "vi": "Dịch vụ trực tuyến (12 điểm) = 12 × hồ sơ nộp trực tuyến / hồ sơ tiếp nhận, "
            "trong các thủ tục đủ điều kiện trực tuyến toàn trình.",
            "en": "Online service (12 points) = 12 × dossiers received online / dossiers "
            "received, among procedures eligible for full online service.",
        },
        "ranking_formula_apology": {
            "vi": "Xin lỗi đúng quy định (chỉ số riêng, không cộng vào điểm) = hồ sơ trễ hạn có "
            "phiếu xin lỗi / hồ sơ trễ hạn; yêu cầu 100%.",
            "en": "Apology compliance (our own indicator, not in the score) = late dossiers "
            "with a written apology / late dossiers; the rule is 100%.",
        },
        "ranking_not_computed": {
            "vi": "Chưa tính được (hệ thống không nhận dữ liệu này): {groups}. Điểm tối đa "
            "ở đây là 32/100.",
            "en": "Not computed (this product does not receive the data): {groups}. The "
            "maximum here is 32 of 100.",
        },
        "ranking_group_transparency": {"vi": "Công khai, minh bạch", "en": "Transparency"},
        "ranking_group_online_payment": {
            "vi": "Thanh toán trực tuyến",
            "en": "Online payment",
        },
        "ranking_group_digitisation": {"vi": "Số hoá hồ sơ", "en": "Digitisation"},
        "ranking_group_satisfaction": {"vi": "Mức độ hài lòng", "en": "Satisfaction"},
        "ranking_col_rank": {"vi": "Hạng", "en": "Rank"},
        "ranking_col_score": {"vi": "Điểm (/32)", "en": "Score (/32)"},
        "ranking_col_progress": {"vi": "Tiến độ (/20)", "en": "Progress (/20)"},
        "ranking_col_online": {"vi": "Trực tuyến (/12)", "en": "Online (/12)"},
        "ranking_col_apology_rate": {"vi": "Tỉ lệ có phiếu xin lỗi", "en": "Apology rate"},
        # printable daily report
        "report_title": {
            "vi": "Báo cáo ngày {day} - {province}",
            "en": "Daily report {day} - {province}",
        },
        "report_as_of": {
            "vi": "Lập lúc {at}; dữ liệu đến {data}",
            "en": "Made at {at}; data as of {data}",
        },
        "report_stale": {
            "vi": "Lưu ý: dữ liệu chưa được cập nhật đầy đủ, số liệu có thể đã cũ.",
            "en": "Note: data is not current; figures may be out of date.",
        },
        "report_summary": {"vi": "Toàn tỉnh", "en": "Province"},
        "report_worst": {
            "vi": "{n} xã, phường nhiều hồ sơ quá hạn nhất",
            "en": "The {n} communes with the most overdue dossiers",
        },
        "report_no_overdue": {
            "vi": "Không xã, phường nào có hồ sơ quá hạn hoặc sắp đến hạn.",
            "en": "No commune has overdue or nearly-due dossiers.",
        },
        "report_finished_today": {"vi": "Giải quyết hôm nay", "en": "Finished today"},
        "report_on_time_late": {"vi": "đúng hạn / trễ hạn", "en": "on time / late"},
        "report_avg_processing": {
            "vi": "Thời gian giải quyết TB hôm nay",
            "en": "Average processing time today",
        },
        "report_working_days": {"vi": "ngày làm việc", "en": "working days"},
        "report_print": {"vi": "In / Lưu PDF", "en": "Print / Save as PDF"},
        "report_footer": {
            "vi": "Tỉ lệ đúng hạn tính trên 30 ngày gần nhất; điểm tiến độ theo Quyết định "
            "766/QĐ-TTg. Nguồn: Trung tâm điều hành.",
            "en": "On-time rate over the last 30 days; progress score per Decision 766/QĐ-TTg. "
            "Source: the control centre.",
        },
        "ranking_col_without_apology": {
            "vi": "Trễ hạn chưa xin lỗi",
            "en": "Late, no apology",
        },
    }
)

# The national wall (CC_SCOPE=national): the country's provinces, then one province's wall.
STRINGS.update(
    {
        "national_title": {"vi": "Toàn quốc", "en": "Viet Nam"},
        "national_map_title": {
            "vi": "Bản đồ {n} tỉnh, thành phố",
            "en": "Map of the {n} provinces and cities",
        },
        "measure_centres_silent": {"vi": "Trung tâm mất kết nối", "en": "Centres silent"},
        "worst_provinces_title": {"vi": "Tỉnh, thành phố cần chú ý", "en": "Provinces to watch"},
        "worst_communes_national_title": {
            "vi": "10 xã cần chú ý trên cả nước",
            "en": "Top 10 communes to watch in the country",
        },
        "col_province": {"vi": "Tỉnh, thành phố", "en": "Province"},
        "col_centres_silent": {"vi": "Mất kết nối", "en": "Silent"},
        "hover_centres": {
            "vi": "Trung tâm: {online}/{total} trực tuyến, {stale} chậm, {offline} mất kết nối",
            "en": "Centres: {online}/{total} live, {stale} stale, {offline} offline",
        },
        "back_to_country": {"vi": "← Toàn quốc", "en": "← Country"},
        "nav_country": {"vi": "Toàn quốc", "en": "Country"},
    }
)


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
