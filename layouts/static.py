"""Files the app serves itself (the map's polygons, plotly.js): kept compressed, sent gzipped
to a browser that takes it, revalidated by ETag. Cache lifetimes are the caller's."""

from __future__ import annotations

from collections.abc import Callable

import flask


def compressed_response(
    *, etag: str, gzipped: bytes, body: Callable[[], bytes], mimetype: str
) -> flask.Response:
    """304 when the browser holds ``etag``; else ``gzipped`` with its Content-Encoding, or
    ``body()`` for a client that does not take gzip."""
    request = flask.request
    if etag in request.if_none_match:
        response = flask.Response(status=304)
    elif "gzip" in request.accept_encodings:
        response = flask.Response(gzipped, mimetype=mimetype)
        response.headers["Content-Encoding"] = "gzip"
    else:
        response = flask.Response(body(), mimetype=mimetype)
    response.set_etag(etag)
    response.headers["Vary"] = "Accept-Encoding"
    return response
