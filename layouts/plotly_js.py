"""The plotly.js the browser loads: a partial bundle with only the trace types this app draws.

``dcc.Graph`` loads plotly.js when the first graph mounts, from
``_dash-component-suites/plotly/package_data/plotly.min.js``: the full 4.8 MB bundle with every
trace type, whose evaluation was the largest single part of the wall's first page load in
headless Chromium (docs/performance.md). ``layouts/vendor/plotly-wall.min.js.gz`` is the same
plotly.js release built with scatter, bar and choroplethmap only
(``scripts/build-plotly-bundle.sh``), kept gzipped as it is sent (0.9 MB; browsers take gzip,
so nothing is compressed per request); it is served at that address instead.

The figures plotly (Python) writes must meet the plotly.js release it was made for, so the
partial bundle is served only when its release is the one the installed plotly ships; otherwise
Dash serves the full bundle as it would without this module, and the log says why.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import dash
import flask
from plotly.offline import get_plotlyjs_version

from layouts.static import compressed_response

log = logging.getLogger(__name__)

BUNDLE_FILE = Path(__file__).resolve().parent / "vendor" / "plotly-wall.min.js.gz"
# The address dash-renderer gives dcc.Graph for plotly.js when Dash serves files locally.
PLOTLY_JS_PATH = "_dash-component-suites/plotly/package_data/plotly.min.js"
_HEADER = re.compile(
    r"plotly\.js v(?P<version>\S+) \(control-center partial bundle; traces: (?P<traces>[^)]*)\)"
)


@dataclass(frozen=True, eq=False)
class Bundle:
    version: str
    traces: frozenset[str]
    gzipped: bytes
    etag: str

    @functools.cached_property
    def body(self) -> bytes:
        """Decompressed once, for the rare client that does not take gzip."""
        return gzip.decompress(self.gzipped)


def read_bundle(path: Path | None = None) -> Bundle | None:
    """The bundle with its plotly.js release and trace types, from the header the build
    script writes; ``None`` when it is missing or has no such header."""
    try:
        gzipped = (path or BUNDLE_FILE).read_bytes()
        with gzip.GzipFile(fileobj=io.BytesIO(gzipped)) as f:
            head = f.read(512).decode("utf-8", "replace")
    except (OSError, EOFError):
        return None
    found = _HEADER.search(head)
    if found is None:
        return None
    return Bundle(
        version=found["version"],
        traces=frozenset(t.strip() for t in found["traces"].split(",")),
        gzipped=gzipped,
        etag=hashlib.sha256(gzipped).hexdigest()[:20],
    )


def register_plotly_bundle(app: dash.Dash) -> Bundle | None:
    """Serve the partial bundle where dcc.Graph fetches plotly.js; ``None`` when it is not
    used (missing, or built for another plotly.js release than the installed plotly's)."""
    bundle_file = BUNDLE_FILE
    bundle = read_bundle(bundle_file)
    wanted = get_plotlyjs_version()
    if bundle is None or bundle.version != wanted:
        log.warning(
            "serving the full plotly.js: the partial bundle %s is %s, plotly ships plotly.js %s "
            "(rebuild it: bash scripts/build-plotly-bundle.sh)",
            bundle_file,
            f"for plotly.js {bundle.version}" if bundle else "missing or unreadable",
            wanted,
        )
        return None

    def plotly_js() -> flask.Response:
        response = compressed_response(
            etag=bundle.etag,
            gzipped=bundle.gzipped,
            body=lambda: bundle.body,
            mimetype="text/javascript",
        )
        response.cache_control.no_cache = True  # revalidated (304) on each page load, as Dash does
        return response

    # A rule without variables is matched before Dash's /_dash-component-suites/<package>/<path>.
    app.server.add_url_rule(
        app.config.routes_pathname_prefix + PLOTLY_JS_PATH,
        endpoint="plotly_partial_bundle",
        view_func=plotly_js,
        methods=["GET"],
    )
    return bundle
