"""The web's request metrics tell the Dash callbacks apart (they all share one route)."""

from __future__ import annotations

from pathlib import Path

import dash
from dash import Input, Output, dcc, html

from control_center.api import register_api
from control_center.db import Database
from control_center.domain.calendar import load_calendar
from control_center.settings import load_settings
from tests.test_api import NOW


def test_each_callback_is_counted_under_its_own_endpoint(tmp_path: Path) -> None:
    app = dash.Dash(__name__)
    app.layout = html.Div([dcc.Input(id="measure"), html.Div(id="kpis"), html.Div(id="clock")])

    @app.callback(
        Output("kpis", "children"), Output("clock", "children"), Input("measure", "value")
    )
    def refresh(value: str | None) -> tuple[str, str]:
        return f"kpis {value}", "10:00"

    url = f"sqlite:///{tmp_path / 'm.db'}"
    settings = load_settings(database_url=url, province="08")
    register_api(app.server, Database(url), settings, load_calendar(), clock=lambda: NOW)
    client = app.server.test_client()
    body = {
        "output": "..kpis.children...clock.children..",
        "outputs": [
            {"id": "kpis", "property": "children"},
            {"id": "clock", "property": "children"},
        ],
        "inputs": [{"id": "measure", "property": "value", "value": "overdue"}],
        "changedPropIds": ["measure.value"],
    }
    for _ in range(3):
        assert client.post("/_dash-update-component", json=body).status_code == 200
    client.get("/healthz?check=database")

    text = client.get("/metrics").get_data(as_text=True)
    assert (
        'cc_http_requests_total{endpoint="/_dash-update-component#kpis",method="POST",'
        'status="200"} 3.0' in text
    )
    assert (
        'cc_http_request_duration_seconds_count{endpoint="/_dash-update-component#kpis"} 3.0'
        in text
    )
    assert 'cc_http_requests_total{endpoint="/healthz",method="GET",status="200"} 1.0' in text
