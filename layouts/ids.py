"""Every component id of the wall in one place, so layouts, callbacks and tests agree."""

from __future__ import annotations

# App shell
URL = "url"
PAGE = "page"
NAV = "nav"
LANG_SWITCH = "lang-switch"
SIGN_OUT = "sign-out"

# Wall page
WALL_INTERVAL = "wall-interval"
WALL_MAP = "wall-map"
WALL_MAP_BUILT = "wall-map-built"  # (measure, lang) of the figure in the browser
WALL_MAP_BOX = "wall-map-box"  # dcc.Store: the geometry's bounds, to fit the panel's pixels
WALL_MEASURE = "wall-measure"
WALL_KPIS = "wall-kpis"
WALL_WORST = "wall-worst"
WALL_TICKER = "wall-ticker"
WALL_FEEDS = "wall-feeds"
WALL_CLOCK = "wall-clock"
WALL_DATA_AS_OF = "wall-data-as-of"
WALL_STALE_BANNER = "wall-stale-banner"

# National wall (CC_SCOPE=national, ``/``): the country's provinces
NATIONAL_INTERVAL = "national-interval"
NATIONAL_MAP = "national-map"
NATIONAL_MAP_BUILT = "national-map-built"
NATIONAL_MAP_BOX = "national-map-box"
NATIONAL_MEASURE = "national-measure"
NATIONAL_KPIS = "national-kpis"
NATIONAL_WORST_PROVINCES = "national-worst-provinces"
NATIONAL_WORST_COMMUNES = "national-worst-communes"
NATIONAL_FEEDS = "national-feeds"
NATIONAL_CLOCK = "national-clock"
NATIONAL_DATA_AS_OF = "national-data-as-of"
NATIONAL_STALE_BANNER = "national-stale-banner"

# Commune page
COMMUNE_INTERVAL = "commune-interval"
COMMUNE_CODE = "commune-code"  # dcc.Store with the commune shown
COMMUNE_TITLE = "commune-title"
COMMUNE_KPIS = "commune-kpis"
COMMUNE_DAILY = "commune-daily"
COMMUNE_QUEUE = "commune-queue"
COMMUNE_OVERDUE = "commune-overdue"
COMMUNE_FEED = "commune-feed"
COMMUNE_ALERTS = "commune-alerts"
COMMUNE_CLOCK = "commune-clock"
COMMUNE_BANNER = "commune-banner"

# Kiosk (rotating pages, no navigation)
KIOSK_INTERVAL = "kiosk-interval"
KIOSK_BODY = "kiosk-body"
KIOSK_STEP = "kiosk-step"

# Queue view (/queue)
QUEUE_INTERVAL = "queue-interval"
QUEUE_TOTALS = "queue-totals"
QUEUE_TABLE = "queue-table"
QUEUE_CLOCK = "queue-clock"
QUEUE_DATA_AS_OF = "queue-data-as-of"
QUEUE_STALE_BANNER = "queue-stale-banner"
QUEUE_KIOSK = "queue-kiosk"  # dcc.Store: rendered inside the kiosk (no links)

# Overdue view for the wall and kiosk (/wall/overdue)
OVERDUE_WALL_INTERVAL = "overdue-wall-interval"
OVERDUE_WALL_TOTALS = "overdue-wall-totals"
OVERDUE_WALL_LIST = "overdue-wall-list"
OVERDUE_WALL_DUE_SOON = "overdue-wall-due-soon"
OVERDUE_WALL_CLOCK = "overdue-wall-clock"

# Alerts page (/alerts)
ALERTS_INTERVAL = "alerts-interval"
ALERTS_STATE = "alerts-state"  # filter dropdowns
ALERTS_LEVEL = "alerts-level"
ALERTS_COMMUNE = "alerts-commune"
ALERTS_KIND = "alerts-kind"
ALERTS_PAGE = "alerts-page"  # dcc.Store: page number, 0-based
ALERTS_PREV = "alerts-prev"
ALERTS_NEXT = "alerts-next"
ALERTS_PAGER = "alerts-pager"  # "1-25 / 312"
ALERTS_LIST = "alerts-list"
ALERTS_CLOCK = "alerts-clock"
ALERTS_ACK_BY = "alerts-ack-by"  # who acknowledges; kept in the browser's local storage
# Pattern-matching ids, one per alert row: {"type": ..., "index": alert_id}
ALERT_ACK = "alert-ack"  # acknowledge button
ALERT_STATE = "alert-state"  # the row's state cell

# Leaders' overdue review (/overdue)
REVIEW_GRID = "review-grid"  # dash-ag-grid, infinite row model (server-side paging/sort)
REVIEW_FILTERS = "review-filters"  # dcc.Store: the filters of the URL, as query parameters
REVIEW_FILTER = "review-filter"  # pattern-matching: {"type": REVIEW_FILTER, "name": <param>}
REVIEW_TOTAL = "review-total"
REVIEW_CLEAR = "review-clear"
REVIEW_XLSX = "review-xlsx"
REVIEW_CSV = "review-csv"
REVIEW_DOWNLOAD = "review-download"
REVIEW_CLOCK = "review-clock"
REVIEW_ERROR = "review-error"

# Dossier page (/dossier/<code>)
DOSSIER_CLOCK = "dossier-clock"

# Ranking page (/ranking)
RANKING_CLOCK = "ranking-clock"

# Printable daily report (/report/daily)
REPORT_PRINT = "report-print"
REPORT_PRINTED = "report-printed"
