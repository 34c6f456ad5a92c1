"""Number, time and trend formatting for the wall (plain functions, unit-tested).

Vietnamese writes 12.345 and 91,3 %; English 12,345 and 91.3%. Missing values show a dash:
a wall must never show 0 for "we do not know".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
MISSING = "—"


def _swap_separators(text: str) -> str:
    return text.replace(",", "\0").replace(".", ",").replace("\0", ".")


def fmt_int(value: float | None, lang: str = "vi") -> str:
    if value is None:
        return MISSING
    text = f"{round(value):,}"
    return _swap_separators(text) if lang == "vi" else text


def fmt_number(value: float | None, lang: str = "vi", digits: int = 1) -> str:
    if value is None:
        return MISSING
    text = f"{value:,.{digits}f}"
    return _swap_separators(text) if lang == "vi" else text


def fmt_pct(rate: float | None, lang: str = "vi", digits: int = 1) -> str:
    """A rate in [0, 1] as a percentage."""
    if rate is None:
        return MISSING
    return f"{fmt_number(rate * 100, lang, digits)}%"


def fmt_minutes(minutes: float | None, lang: str = "vi") -> str:
    if minutes is None:
        return MISSING
    unit = "phút" if lang == "vi" else "min"
    return f"{fmt_number(minutes, lang, 0 if minutes >= 10 else 1)} {unit}"


def fmt_lag(seconds: float | None, lang: str = "vi") -> str:
    """A feed lag in the largest sensible unit: 45 s, 12 phút, 3,5 giờ."""
    if seconds is None:
        return MISSING
    if seconds < 120:
        return f"{fmt_int(seconds, lang)} {'giây' if lang == 'vi' else 's'}"
    if seconds < 7200:
        return f"{fmt_int(seconds / 60, lang)} {'phút' if lang == 'vi' else 'min'}"
    return f"{fmt_number(seconds / 3600, lang)} {'giờ' if lang == 'vi' else 'h'}"


def local(instant: datetime) -> datetime:
    return instant.astimezone(LOCAL_TZ)


def fmt_clock(instant: datetime | None) -> str:
    """Wall-clock time in the province. HH:MM: the wall refreshes every few seconds, so
    seconds would jump by the refresh period and look broken from across the room."""
    return MISSING if instant is None else local(instant).strftime("%H:%M")


def fmt_datetime(instant: datetime | None, now: datetime | None = None) -> str:
    """Local time; the date is shown only when it is not today, to keep tiles short."""
    if instant is None:
        return MISSING
    here = local(instant)
    if now is not None and here.date() == local(now).date():
        return here.strftime("%H:%M")
    return here.strftime("%d/%m/%Y %H:%M")


def fmt_date(instant: datetime | None) -> str:
    return MISSING if instant is None else local(instant).strftime("%d/%m/%Y")


def trend(
    current: float | None,
    previous: float | None,
    *,
    higher_is_better: bool = True,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
) -> tuple[str, str] | None:
    """Arrow text and tone ("good" / "bad" / "flat") of a change since yesterday.

    None when either side is unknown: no arrow beats a made-up one. A change too small to
    show at ``fmt``'s precision is flat: never "▼ 0,0".
    """
    if current is None or previous is None:
        return None
    delta = current - previous
    if abs(delta) < 1e-9 or fmt(abs(delta)) == fmt(0.0):
        return "→ 0", "flat"
    arrow = "▲" if delta > 0 else "▼"
    good = (delta > 0) == higher_is_better
    return f"{arrow} {fmt(abs(delta))}", "good" if good else "bad"
