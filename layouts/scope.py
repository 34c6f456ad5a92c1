"""Which province a page shows: the configured one, or, in national mode, the URL's.

With ``CC_SCOPE=national`` the wall at ``/`` is the country; ``/?province=08`` is province 08's
wall, the same page a provincial deployment shows at ``/``. The province lives in the URL, like
the language, so every gunicorn worker renders the same page for the same address and a kiosk
URL can pin a province.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode

from control_center.settings import Settings
from layouts.i18n import with_lang


def province_from_search(search: str | None) -> str | None:
    """``?province=08`` -> "08"; None when absent or not two digits."""
    if not search:
        return None
    value = parse_qs(search.lstrip("?")).get("province", [""])[0]
    return value if len(value) == 2 and value.isdigit() else None


def page_settings(settings: Settings, search: str | None) -> Settings:
    """The settings a page reads with: narrowed to the URL's province in national mode.

    A provincial deployment ignores ``?province=``: it only has its own province's data.
    """
    code = province_from_search(search)
    if not settings.national or code is None:
        return settings
    try:
        return settings.for_province(code)
    except ValueError:  # two digits but not one of the 34: the country, not an error page
        return settings


def is_country(settings: Settings, search: str | None) -> bool:
    """The national wall (not one province's) is what ``/`` shows for this URL."""
    return page_settings(settings, search).national


def province_href(code: str, lang: str, search: str | None) -> str:
    """The province's wall, keeping the URL's other parameters (language, kiosk options)."""
    return with_lang("/", lang, _with_param(search, "province", code))


def country_href(lang: str, search: str | None) -> str:
    return with_lang("/", lang, _with_param(search, "province", None))


def _with_param(search: str | None, name: str, value: str | None) -> str:
    params = {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items()}
    if value is None:
        params.pop(name, None)
    else:
        params[name] = value
    return "?" + urlencode(params) if params else ""


def commune_province(settings: Settings, commune_code: str) -> str:
    """The province a commune page belongs to: the configured one, or the commune's own in
    national mode (from the GSO list: a commune code does not spell its province)."""
    if not settings.national:
        return settings.province
    from vietnam_provinces import Ward

    try:
        ward = Ward.from_code(int(commune_code))  # type: ignore[arg-type]
    except ValueError:
        return settings.province
    return f"{int(ward.province_code):02d}"
