"""The partial plotly.js bundle: built for the installed plotly, holding every trace type the
app draws, and served where dcc.Graph fetches plotly.js (the full bundle when it cannot be)."""

from __future__ import annotations

import ast
import gzip
import logging
from collections.abc import Iterator
from pathlib import Path

import plotly.graph_objects as go
import pytest
from plotly.basedatatypes import BaseTraceType
from plotly.offline import get_plotlyjs_version

from control_center.app import create_app
from control_center.settings import load_settings
from layouts import plotly_js
from layouts.plotly_js import BUNDLE_FILE, PLOTLY_JS_PATH, read_bundle

ROOT = Path(__file__).resolve().parent.parent
URL = "/" + PLOTLY_JS_PATH


def app_sources() -> Iterator[Path]:
    """The app's Python files: what the browser's figures are built from."""
    for package in ("layouts", "control_center", "alerts"):
        yield from (ROOT / package).rglob("*.py")


def trace_types_in_code() -> set[str]:
    """The type of every ``go.<Trace>(...)`` the app's code constructs."""
    found: set[str] = set()
    for path in app_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "go"
            ):
                cls = getattr(go, node.func.attr)
                if isinstance(cls, type) and issubclass(cls, BaseTraceType):
                    found.add(cls().type)
    return found


def test_the_committed_bundle_is_for_the_plotly_js_that_plotly_ships() -> None:
    bundle = read_bundle()
    assert bundle is not None, f"{BUNDLE_FILE} is missing or has no header"
    assert bundle.version == get_plotlyjs_version(), (
        "plotly was upgraded: rebuild the bundle with bash scripts/build-plotly-bundle.sh"
    )
    assert (BUNDLE_FILE.parent / "LICENSE-plotly.js.txt").is_file()


def test_the_bundle_holds_every_trace_type_the_app_draws() -> None:
    bundle = read_bundle()
    assert bundle is not None
    used = trace_types_in_code()
    # The scan sees the figures the wall and commune pages are made of.
    assert {"choroplethmap", "bar", "scatter"} <= used
    missing = used - bundle.traces
    assert not missing, (
        f"add {sorted(missing)} to traces in scripts/build-plotly-bundle.sh and rebuild"
    )


def test_plotly_express_is_not_used() -> None:
    # Its figures can hold any trace type; the scan above would not see them.
    for path in app_sources():
        assert "plotly.express" not in path.read_text(encoding="utf-8"), path


def test_dcc_graph_gets_the_partial_bundle_gzipped_and_revalidated(tmp_path: Path) -> None:
    app = create_app(load_settings(database_url=f"sqlite:///{tmp_path / 'cc.db'}"))
    client = app.server.test_client()
    bundle = read_bundle()
    assert bundle is not None

    zipped = client.get(URL, headers={"Accept-Encoding": "gzip, deflate"})
    assert zipped.status_code == 200
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.mimetype == "text/javascript"
    assert "no-cache" in zipped.headers["Cache-Control"]
    assert zipped.data == BUNDLE_FILE.read_bytes()  # as kept: nothing compressed per request
    body = gzip.decompress(zipped.data)
    assert body.startswith(b"/**\n* plotly.js v") and len(body) > 2 * len(zipped.data)

    plain = client.get(URL)
    assert plain.status_code == 200 and "Content-Encoding" not in plain.headers
    assert plain.data == body

    etag = zipped.headers["ETag"]
    again = client.get(URL, headers={"If-None-Match": etag, "Accept-Encoding": "gzip"})
    assert again.status_code == 304 and again.data == b""

    # Dash's other files are still Dash's.
    dcc = client.get("/_dash-component-suites/dash/dcc/async-graph.js")
    assert dcc.status_code == 200


def test_a_bundle_for_another_plotly_js_is_not_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stale = tmp_path / "plotly-wall.min.js.gz"
    body = gzip.decompress(BUNDLE_FILE.read_bytes())
    stale.write_bytes(
        gzip.compress(
            body.replace(f"plotly.js v{get_plotlyjs_version()} ".encode(), b"plotly.js v0.0.1 ", 1)
        )
    )
    found = read_bundle(stale)
    assert found is not None and found.version == "0.0.1"
    monkeypatch.setattr(plotly_js, "BUNDLE_FILE", stale)
    with caplog.at_level(logging.WARNING, logger="layouts.plotly_js"):
        app = create_app(load_settings(database_url=f"sqlite:///{tmp_path / 'cc.db'}"))
    assert "plotly.js 0.0.1" in caplog.text and "build-plotly-bundle.sh" in caplog.text

    served = app.server.test_client().get(URL)
    assert served.status_code == 200
    # Dash's own full plotly.js, as without the bundle.
    assert f"plotly.js v{get_plotlyjs_version()}\n".encode() in served.data[:200]
    assert b"partial bundle" not in served.data[:200]
    assert len(served.data) > len(body)


def test_a_file_without_the_header_is_not_a_bundle(tmp_path: Path) -> None:
    odd = tmp_path / "plotly.js.gz"
    odd.write_bytes(gzip.compress(b"var Plotly = {};"))
    assert read_bundle(odd) is None
    not_gzip = tmp_path / "plain.js.gz"
    not_gzip.write_text("var Plotly = {};")
    assert read_bundle(not_gzip) is None
    assert read_bundle(tmp_path / "absent.js") is None
