"""The wall's maps: a province's communes, or the country's provinces, coloured by one measure.

``go.Choroplethmap`` (MapLibre) with a style that has no tile source: it draws with no network
beyond this server, unlike ``go.Choropleth``, which fetches a world topojson from a CDN.

The polygons are a file of this server (:func:`register_geo_files`, ``/geo/<name>.geojson``)
that the figure names by URL with its content hash: plotly.js fetches it once per page (its
``PlotlyGeoAssets`` cache) and the browser keeps it across visits, so neither a page switch in
kiosk mode nor a new figure carries 200 KB of polygons again. The figure is built once per
(measure, language); refresh ticks send only ``z`` and the hover text as a :class:`dash.Patch`.

The server fits the view to a 1920x1080 panel; in the browser ``assets/map_fit.js``
(:func:`layouts.wall.register_fit_to_panel`) refits it once to the panel's real size, so a
3840x2160 wall fills its panel too, as a Patch of the centre and zoom only. Plotly's own
``map.fitbounds`` ignores choropleth traces, hence this.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import flask
import plotly.graph_objects as go
from dash import Patch

from layouts.format import fmt_int, fmt_minutes, fmt_pct
from layouts.i18n import t
from layouts.static import compressed_response

MEASURES = ("overdue", "due_soon", "open", "on_time_rate", "queue_waiting", "feed_state")
# On the country's map a province has many feeds: it is coloured by how many centres are silent.
NATIONAL_MEASURES = (
    "overdue",
    "due_soon",
    "open",
    "on_time_rate",
    "queue_waiting",
    "centres_silent",
)
DEFAULT_MEASURE = "overdue"
FEED_STATES = ("live", "catching_up", "stale", "offline", "unknown")
# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
FEED_COLOURS = {
    "live": "#0072B2",
    "catching_up": "#56B4E9",
    "stale": "#E69F00",
    "offline": "#D55E00",
    "unknown": "#6b7280",
}
# Bright = needs attention on every measure, so the eye reads the map the same way whatever
# is picked: counts use Cividis as is, the on-time rate uses it reversed.
_REVERSED = {"on_time_rate"}
MEASURE_TRACE = 1  # data[0] is the grey base layer drawing every commune, data[1] the measure

# MapLibre's built-in "white-bg" needs no network; a custom dark style object works too but
# raises "Map error" on every Patch (plotly.js re-applies the style), so the dark sea is a
# world-sized polygon painted under the communes instead.
MAP_STYLE = "white-bg"
DARK_SEA: dict[str, Any] = {
    "sourcetype": "geojson",
    "source": {
        "type": "Feature",
        "properties": {},
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[-180, -85], [180, -85], [180, 85], [-180, 85], [-180, -85]]],
        },
    },
    "type": "fill",
    "color": "#0b1220",
    "below": "traces",
}


@lru_cache(maxsize=4)
def province_geojson(province: str, config_dir: Path) -> dict[str, Any]:
    """The province's commune polygons (features' ``properties.code`` = 5-digit commune code).

    Cached per process: the boundaries ship with the release and never change while it runs.
    """
    from control_center.reference import province_geojson as shipped

    geojson = shipped(province, config_dir / "geo")
    if geojson is None:
        raise FileNotFoundError(f"no commune map for province {province} in {config_dir / 'geo'}")
    return geojson


# --- the polygons as a file of this server ----------------------------------------------------

GEO_URL_PREFIX = "/geo/"
_GEO_NAME = re.compile(r"^(country|province-(\d{2}))$")
GEO_MAX_AGE_S = 365 * 24 * 3600  # a versioned address never changes content


@dataclass(frozen=True)
class GeoFile:
    body: bytes  # compact JSON
    gzipped: bytes
    version: str  # content hash: part of the address, and the ETag


@lru_cache(maxsize=128)  # every name the pattern admits: 101
def geo_file(name: str, config_dir: Path) -> GeoFile | None:
    """``country`` (the 34 provinces) or ``province-NN`` (a province's communes), encoded once
    per process; None for any other name or a province with no map."""
    from control_center import reference

    match = _GEO_NAME.match(name)
    if match is None:
        return None
    geo_dir = config_dir / "geo"
    if match.group(2):
        if match.group(2) not in reference.province_codes():
            return None
        geojson = reference.province_geojson(match.group(2), geo_dir)
    else:
        geojson = reference.national_geojson(geo_dir)
    if geojson is None:
        return None
    body = json.dumps(geojson, ensure_ascii=False, separators=(",", ":")).encode()
    version = hashlib.sha256(body).hexdigest()[:16]
    return GeoFile(body=body, gzipped=gzip.compress(body, mtime=0), version=version)


def geo_url(name: str, config_dir: Path) -> str:
    """The versioned address of a map's polygons, for a figure's ``geojson``."""
    found = geo_file(name, config_dir)
    if found is None:
        raise FileNotFoundError(f"no map {name!r} in {config_dir / 'geo'}")
    return f"{GEO_URL_PREFIX}{name}.geojson?v={found.version}"


def province_geo_url(province: str, config_dir: Path) -> str:
    return geo_url(f"province-{province}", config_dir)


def register_geo_files(server: flask.Flask, config_dir: Path) -> None:
    """``GET /geo/<name>.geojson``: the polygons, gzipped when the browser takes it, cached
    for a year under their versioned address (private: the wall may sit behind sign-in)."""

    @server.get(GEO_URL_PREFIX + "<name>.geojson")
    def geo_geojson(name: str) -> flask.Response:
        found = geo_file(name, config_dir)
        if found is None:
            flask.abort(404)
        response = compressed_response(
            etag=found.version,
            gzipped=found.gzipped,
            body=lambda: found.body,
            mimetype="application/geo+json",
        )
        response.cache_control.private = True
        if flask.request.args.get("v") == found.version:
            response.cache_control.max_age = GEO_MAX_AGE_S
            response.cache_control.immutable = True
        else:
            response.cache_control.no_cache = True
        return response


def feature_codes(geojson: Mapping[str, Any]) -> list[str]:
    return [str(f["properties"]["code"]) for f in geojson["features"]]


def bounds(geojson: Mapping[str, Any]) -> tuple[float, float, float, float]:
    """(min lon, min lat, max lon, max lat) of every polygon."""
    lons: list[float] = []
    lats: list[float] = []

    def walk(coords: Any) -> None:
        if coords and isinstance(coords[0], (int, float)):
            lons.append(coords[0])
            lats.append(coords[1])
        else:
            for c in coords:
                walk(c)

    for feature in geojson["features"]:
        walk(feature["geometry"]["coordinates"])
    return min(lons), min(lats), max(lons), max(lats)


def fit_view(
    box: tuple[float, float, float, float], width_px: int = 1000, height_px: int = 660
) -> tuple[dict[str, float], float]:
    """Centre and zoom that fit ``box`` in a panel of the given size (web Mercator)."""
    min_lon, min_lat, max_lon, max_lat = box

    def merc_y(lat: float) -> float:
        return math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))

    lon_zoom = math.log2(width_px * 360 / (512 * max(max_lon - min_lon, 1e-6)))
    lat_span = (merc_y(max_lat) - merc_y(min_lat)) * 180 / math.pi
    lat_zoom = math.log2(height_px * 360 / (512 * max(lat_span, 1e-6)))
    centre = {"lon": (min_lon + max_lon) / 2, "lat": (min_lat + max_lat) / 2}
    return centre, round(min(lon_zoom, lat_zoom) - 0.1, 2)


def measure_value(row: Mapping[str, Any] | None, measure: str) -> float | None:
    """The number a commune (or a province) is coloured by; None = no data (drawn grey)."""
    if measure == "feed_state":
        state = (row or {}).get("feed_state") or "unknown"
        return float(FEED_STATES.index(state if state in FEED_STATES else "unknown"))
    if row is None:
        return None
    if measure == "centres_silent":
        return float((row.get("centres_stale") or 0) + (row.get("centres_offline") or 0))
    value = row.get(measure)
    if value is None:
        return None
    return float(value) * 100 if measure == "on_time_rate" else float(value)


def _figure_lines(row: Mapping[str, Any], lang: str, name: str) -> list[str]:
    """The hover lines a commune and a province share: name, backlog, queue, on-time rate."""
    return [
        f"<b>{row.get('name') or name}</b> ({row.get('code', '')})",
        f"{t('col_overdue', lang)}: {fmt_int(row.get('overdue'), lang)}",
        f"{t('col_due_soon', lang)}: {fmt_int(row.get('due_soon'), lang)}",
        f"{t('col_open', lang)}: {fmt_int(row.get('open'), lang)}",
        f"{t('measure_queue_waiting', lang)}: {fmt_int(row.get('queue_waiting'), lang)}"
        f" ({t('kpi_avg_wait', lang)} {fmt_minutes(row.get('avg_wait_minutes'), lang)})",
        f"{t('measure_on_time_rate', lang)}: {fmt_pct(row.get('on_time_rate'), lang)}",
    ]


def hover_text(row: Mapping[str, Any] | None, lang: str, name: str = "") -> str:
    if row is None:
        return f"<b>{name}</b><br>{t('no_data', lang)}"
    state = row.get("feed_state") or "unknown"
    lines = [
        *_figure_lines(row, lang, name),
        f"{t('col_feed', lang)}: {t('feed_' + state, lang)}",
    ]
    return "<br>".join(lines)


def province_hover_text(row: Mapping[str, Any] | None, lang: str, name: str = "") -> str:
    """Hover of a province on the country's map: its summed figures and its centres."""
    if row is None:
        return f"<b>{name}</b><br>{t('no_data', lang)}"
    lines = [
        *_figure_lines(row, lang, name),
        t(
            "hover_centres",
            lang,
            online=fmt_int(row.get("centres_online"), lang),
            total=fmt_int(row.get("centres_total"), lang),
            stale=fmt_int(row.get("centres_stale"), lang),
            offline=fmt_int(row.get("centres_offline"), lang),
        ),
    ]
    return "<br>".join(lines)


Hover = Callable[[Mapping[str, Any] | None, str, str], str]


def map_values(
    codes: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    measure: str,
    lang: str,
    names: Mapping[str, str] | None = None,
    hover: Hover = hover_text,
) -> dict[str, Any]:
    """``z``, hover ``text`` and colour range for the measure trace, in feature order."""
    by_code = {str(r["code"]): r for r in rows}
    z = [measure_value(by_code.get(code), measure) for code in codes]
    text = [hover(by_code.get(code), lang, (names or {}).get(code, code)) for code in codes]
    if measure == "feed_state":
        zmin, zmax = -0.5, len(FEED_STATES) - 0.5
    elif measure == "on_time_rate":
        zmin, zmax = 0.0, 100.0
    else:
        # Keep a floor of 1 so a province with no overdue dossiers is uniformly dark, not mid-scale.
        zmin, zmax = 0.0, max([v for v in z if v is not None] + [1.0])
    return {"z": z, "text": text, "zmin": zmin, "zmax": zmax}


def _colour_setup(measure: str, lang: str) -> dict[str, Any]:
    bar: dict[str, Any] = {
        "thickness": 22,
        "len": 0.8,
        "x": 0.99,
        "xanchor": "right",
        "bgcolor": "rgba(11,18,32,0.75)",
        "tickfont": {"size": 18, "color": "#e5e7eb"},
        "title": {"text": t("measure_" + measure, lang), "font": {"size": 18, "color": "#e5e7eb"}},
    }
    if measure == "feed_state":
        n = len(FEED_STATES)
        scale: list[list[Any]] = []
        for i, state in enumerate(FEED_STATES):
            scale += [[i / n, FEED_COLOURS[state]], [(i + 1) / n, FEED_COLOURS[state]]]
        bar |= {
            "tickvals": list(range(n)),
            "ticktext": [t("feed_" + s, lang) for s in FEED_STATES],
        }
        return {"colorscale": scale, "reversescale": False, "colorbar": bar}
    bar |= {
        "ticksuffix": "%" if measure == "on_time_rate" else "",
        "tickvals": None,
        "ticktext": None,
    }
    return {"colorscale": "Cividis", "reversescale": measure in _REVERSED, "colorbar": bar}


def base_layers(tiles: str | None) -> list[dict[str, Any]]:
    """Under the communes: a configured raster tile source, else the dark sea (no network)."""
    if tiles:
        return [{"sourcetype": "raster", "source": [tiles], "below": "traces"}]
    return [DARK_SEA]


def build_map_figure(
    geojson: Mapping[str, Any],
    rows: Iterable[Mapping[str, Any]],
    measure: str,
    lang: str,
    tiles: str | None = None,
    *,
    source: str | None = None,
    hover: Hover = hover_text,
    uirevision: str = "province-map",
) -> go.Figure:
    """The map's whole figure; ``source`` is the polygons' address (:func:`geo_url`), which
    the browser fetches once, else they are embedded in the figure."""
    shapes = source or geojson
    codes = feature_codes(geojson)
    names = {
        str(f["properties"]["code"]): f["properties"].get("name", "") for f in geojson["features"]
    }
    values = map_values(codes, rows, measure, lang, names, hover)
    centre, zoom = fit_view(bounds(geojson))
    base = go.Choroplethmap(
        geojson=shapes,
        featureidkey="properties.code",
        locations=codes,
        z=[0] * len(codes),
        colorscale=[[0, "#374151"], [1, "#374151"]],
        showscale=False,
        marker={"line": {"color": "#0b1220", "width": 0.6}},
        hoverinfo="skip",
        name="base",
    )
    measure_trace = go.Choroplethmap(
        geojson=shapes,
        featureidkey="properties.code",
        locations=codes,
        z=values["z"],
        zmin=values["zmin"],
        zmax=values["zmax"],
        text=values["text"],
        hovertemplate="%{text}<extra></extra>",
        marker={"line": {"color": "#0b1220", "width": 0.8}, "opacity": 0.95},
        name=measure,
        **_colour_setup(measure, lang),
    )
    fig = go.Figure([base, measure_trace])
    fig.update_layout(
        map={"style": MAP_STYLE, "layers": base_layers(tiles), "center": centre, "zoom": zoom},
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        paper_bgcolor="#0b1220",
        font={"color": "#e5e7eb", "size": 16},
        hoverlabel={"font": {"size": 18}, "bgcolor": "#111827", "bordercolor": "#e5e7eb"},
        # Survives value patches and measure changes: the operator's zoom stays where it was.
        uirevision=uirevision,
    )
    return fig


def map_patch(values: Mapping[str, Any], *, measure: str | None = None, lang: str = "vi") -> Patch:
    """Refresh tick: new colours and hover text only; with ``measure``, also its colour scale
    and legend. The polygons never travel again, and the operator's zoom is left alone (a new
    figure would reset it: plotly.js compares against the layout it has since mutated)."""
    patch = Patch()
    trace = patch["data"][MEASURE_TRACE]
    trace["z"] = values["z"]
    trace["text"] = values["text"]
    trace["zmin"] = values["zmin"]
    trace["zmax"] = values["zmax"]
    if measure is not None:
        trace["name"] = measure
        for key, value in _colour_setup(measure, lang).items():
            trace[key] = value
    return patch


def clicked_commune(click_data: Mapping[str, Any] | None) -> str | None:
    """The commune code under a map click, if any."""
    if not click_data or not click_data.get("points"):
        return None
    code = click_data["points"][0].get("location")
    return str(code) if code else None
