"""Every component id of the wall in one place, so layouts, callbacks and tests agree."""

from __future__ import annotations

# App shell
URL = "url"
PAGE = "page"
NAV = "nav"
LANG_SWITCH = "lang-switch"

# Wall page
WALL_INTERVAL = "wall-interval"
WALL_MAP = "wall-map"
WALL_MAP_BUILT = "wall-map-built"  # (measure, lang) of the figure in the browser
WALL_MEASURE = "wall-measure"
WALL_KPIS = "wall-kpis"
WALL_WORST = "wall-worst"
WALL_TICKER = "wall-ticker"
WALL_FEEDS = "wall-feeds"
WALL_CLOCK = "wall-clock"
WALL_DATA_AS_OF = "wall-data-as-of"
WALL_STALE_BANNER = "wall-stale-banner"

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
