"""The web side of security, on the wall's Flask server.

One ``before_request`` hook decides who is asking and whether they may:

1. a ``Authorization: Bearer`` header names an API token (a wrong one is a 401, never a
   fall-back to the cookie); else the session cookie names a user or a kiosk link (Flask-Login,
   reloaded from the database on every request, so a disabled user or a revoked kiosk link is
   out at its next refresh);
2. nobody: ``/api/`` and Dash's ``/_dash-*`` answer 401 JSON, pages redirect to ``/login``;
3. a cookie-authenticated POST must carry the session's CSRF token (the Dash renderer sends the
   ``_csrf_token`` cookie back as ``X-CSRFToken``; the sign-in form has a hidden field);
4. a Dash callback request needs the permission of each output it names
   (:data:`~control_center.security.policy.CALLBACK_PERMISSIONS`); API views check theirs in
   :mod:`control_center.api`; pages in the router.

Every response gets security headers and a content-security policy that allows Dash's own
inline scripts by hash. Sign-in attempts are rate-limited per client address (flask-limiter).
"""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import dash
import flask
from flask import Response, g, redirect, render_template_string, request, session
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user, login_user, logout_user
from werkzeug.exceptions import InternalServerError
from werkzeug.middleware.proxy_fix import ProxyFix

from control_center.db import Database
from control_center.jsonutil import dumps
from control_center.security import accounts, policy
from control_center.security.roles import (
    Principal,
    open_principal,
    personal_data_roles,
)
from control_center.settings import Settings, SettingsError

log = logging.getLogger(__name__)

SESSION_COOKIE = "cc_session"
CSRF_COOKIE = "_csrf_token"  # the names the Dash renderer reads and sends back
CSRF_HEADER = "X-CSRFToken"
CSRF_FIELD = "csrf_token"
CALLBACK_PATH = "/_dash-update-component"
PUBLIC_PATHS = frozenset({"/login", "/kiosk/login", "/healthz", "/metrics"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    resp = Response(
        dumps({"error": {"status": status, "message": message}}),
        status=status,
        mimetype="application/json",
    )
    resp.headers["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def client_address() -> str | None:
    return request.remote_addr


def actor(principal: Principal) -> accounts.Actor:
    return accounts.Actor(principal.name, principal.role, client_address())


def safe_next(target: str | None, default: str = "/") -> str:
    """Only a path on this server: ``//evil.example`` or ``https://...`` fall back to ``/``."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


def content_security_policy(app: dash.Dash, settings: Settings) -> str:
    """A CSP that Dash and the MapLibre map work under: scripts only from this server plus the
    hashes of Dash's own inline scripts, no eval; styles may be inline (plotly.js and React
    write them); MapLibre draws in workers started from blob: URLs."""
    tiles = ""
    if settings.map_tiles:
        parts = urlsplit(settings.map_tiles.replace("{", "").replace("}", ""))
        tiles = f" {parts.scheme}://{parts.netloc}" if parts.netloc else ""
    hashes = " ".join(dict.fromkeys(app.csp_hashes()))  # already quoted: 'sha256-...'
    directives = {
        "default-src": "'self'",
        "script-src": f"'self' {hashes}".strip(),
        "style-src": "'self' 'unsafe-inline'",
        "img-src": f"'self' data: blob:{tiles}",
        "font-src": "'self' data:",
        "connect-src": f"'self'{tiles}",
        "worker-src": "'self' blob:",
        "child-src": "'self' blob:",
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{k} {v}" for k, v in directives.items())


def install(app: dash.Dash, settings: Settings, db: Database) -> None:
    """Sessions, sign-in, kiosk links, CSRF, permission checks and headers on ``app.server``."""
    server: flask.Flask = app.server
    server.debug = False  # never the Werkzeug debugger: it runs code for whoever reaches it
    server.config.update(
        PROPAGATE_EXCEPTIONS=False,
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
        SESSION_REFRESH_EACH_REQUEST=True,  # a wall that refreshes stays signed in
    )
    if settings.web_proxy_count:
        n = settings.web_proxy_count
        server.wsgi_app = ProxyFix(server.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    personal = personal_data_roles(settings)

    secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
    if settings.auth_required and len(secret) < 16:
        raise SettingsError(
            "CC_SECRET_KEY must be set (16+ characters, the same on every web worker) when "
            "sign-in is required; e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    if secret:
        server.secret_key = secret

    login_manager = LoginManager()
    login_manager.init_app(server)
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def _load(key: str) -> Principal | None:
        kind, _, rest = key.partition(":")
        with db.session() as s:
            if kind == "u":
                raw_id, _, nonce = rest.partition(":")
                user = accounts.load_user(s, int(raw_id), nonce) if raw_id.isdigit() else None
                return accounts.user_principal(user, personal) if user else None
            if kind == "k":
                try:
                    link = accounts.valid_kiosk_link(s, uuid.UUID(rest))
                except ValueError:
                    return None
                return accounts.kiosk_principal(link) if link else None
        return None

    limiter = Limiter(
        get_remote_address,
        app=server,
        storage_uri=settings.ratelimit_storage_url,
        default_limits=[],
        headers_enabled=True,
    )
    csp_cache: list[str] = []

    def principal_from_request() -> Principal | Response | None:
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return json_error(401, "use Authorization: Bearer <token>", _bearer_challenge())
            with db.session() as s:
                found = accounts.token_principal(s, token.strip(), personal)
            if found is None:
                return json_error(401, "token not accepted", _bearer_challenge())
            return found
        user = current_user._get_current_object() if current_user else None
        if isinstance(user, Principal) and user.is_authenticated:
            return user
        return None

    @server.before_request
    def _authorise() -> Response | None:
        if not settings.auth_required:
            g.cc_principal = open_principal(settings)
            return None
        path = request.path
        if path in PUBLIC_PATHS:
            return None
        found = principal_from_request()
        if isinstance(found, Response):
            return found
        if found is None:
            return _unauthenticated(path)
        g.cc_principal = found
        if found.kind != "token" and request.method not in SAFE_METHODS and not _csrf_ok():
            log.warning("CSRF token missing or wrong", extra={"path": path, "actor": found.name})
            return json_error(403, "CSRF token missing or wrong; reload the page")
        if path == CALLBACK_PATH:
            return _check_callback(found)
        return None

    def _check_callback(principal: Principal) -> Response | None:
        body = request.get_json(silent=True)
        needed = policy.callback_permissions(body) if isinstance(body, dict) else None
        if needed is None:
            return json_error(403, "this callback is not open to anyone")
        if not all(principal.can(p) for p in needed):
            return json_error(403, f"the {principal.role} role may not use this part of the wall")
        return None

    @server.after_request
    def _headers(response: Response) -> Response:
        if not csp_cache:
            csp_cache.append(content_security_policy(app, settings))
        h = response.headers
        h.setdefault("Content-Security-Policy", csp_cache[0])
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if settings.cookie_secure:
            h.setdefault("Strict-Transport-Security", "max-age=31536000")
        principal = g.get("cc_principal")
        if settings.auth_required and isinstance(principal, Principal) and principal.key:
            token = session.get(CSRF_FIELD)
            if not token:
                token = session[CSRF_FIELD] = secrets.token_urlsafe(32)
            if request.cookies.get(CSRF_COOKIE) != token:
                response.set_cookie(
                    CSRF_COOKIE,
                    token,
                    secure=settings.cookie_secure,
                    httponly=False,  # the Dash renderer reads it to send it back as a header
                    samesite="Strict",
                )
        return response

    @server.errorhandler(InternalServerError)
    def _internal_error(exc: InternalServerError) -> Any:
        # Never a stack trace: the trace goes to the log, the client gets one line.
        if request.path.startswith("/api/") or request.path.startswith("/_dash-"):
            return json_error(500, "internal error")
        return Response("Internal error. Try again shortly.", 500, mimetype="text/plain")

    # --- sign-in, sign-out, kiosk links ------------------------------------------------------

    def _lang() -> str:
        return "en" if request.args.get("lang") == "en" else "vi"

    def _page(error: str | None = None, status: int = 200) -> Response:
        lang = _lang()
        token = session.get(CSRF_FIELD) or secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
        html = render_template_string(
            SIGN_IN_PAGE,
            text=SIGN_IN_TEXT[lang],
            lang=lang,
            error=error,
            csrf=token,
            next=safe_next(request.values.get("next")),
            username=request.form.get("username", ""),
        )
        return Response(html, status=status, mimetype="text/html")

    @server.get("/login")
    def sign_in_form() -> Response:
        return _page()

    @server.post("/login")
    @limiter.limit(settings.signin_rate_limit, methods=["POST"])
    def sign_in() -> Any:
        if not settings.auth_required:
            return redirect("/")
        if not _csrf_ok():
            return _page(SIGN_IN_TEXT[_lang()]["expired"], 400)
        username = request.form.get("username", "").strip()[: accounts.USERNAME_MAX]
        password = request.form.get("password", "")
        with db.session() as s, s.begin():
            user = accounts.authenticate(s, username, password)
            who = accounts.Actor(username or "?", user.role if user else None, client_address())
            accounts.audit(s, "sign_in" if user else "sign_in_failed", who)
            principal = accounts.user_principal(user, personal) if user else None
        if principal is None:
            return _page(SIGN_IN_TEXT[_lang()]["wrong"], 401)
        _start_session(principal)
        return redirect(safe_next(request.form.get("next")))

    @server.route("/logout", methods=["GET", "POST"])
    def sign_out() -> Any:
        if request.method == "GET":
            return Response(
                render_template_string(SIGN_OUT_PAGE, csrf=session.get(CSRF_FIELD, "")),
                mimetype="text/html",
            )
        principal = g.get("cc_principal")
        if isinstance(principal, Principal) and principal.key:
            with db.session() as s, s.begin():
                accounts.audit(s, "sign_out", actor(principal))
        logout_user()
        session.clear()
        response = redirect("/login")
        response.delete_cookie(CSRF_COOKIE)
        return response

    @server.get("/kiosk/login")
    @limiter.limit(settings.signin_rate_limit)
    def kiosk_sign_in() -> Any:
        if not settings.auth_required:
            return redirect(safe_next(request.args.get("next"), "/kiosk"))
        token = request.args.get("token", "")
        secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
        with db.session() as s, s.begin():
            link = accounts.kiosk_link(s, secret, token) if token else None
            who = accounts.Actor(
                f"kiosk:{link.label}" if link else "kiosk:?", "wall", client_address()
            )
            accounts.audit(
                s, "kiosk_sign_in" if link else "kiosk_refused", who, str(link.id) if link else None
            )
            principal = accounts.kiosk_principal(link) if link else None
        if principal is None:
            return Response(KIOSK_REFUSED, 401, mimetype="text/plain; charset=utf-8")
        _start_session(principal)
        return redirect(safe_next(request.args.get("next"), "/kiosk"))

    def _start_session(principal: Principal) -> None:
        session.clear()  # a new session id: nothing planted before sign-in survives it
        session.permanent = True
        login_user(principal)
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
        g.cc_principal = principal

    def _unauthenticated(path: str) -> Any:
        if path.startswith("/api/"):
            return json_error(401, "sign in or send a bearer token", _bearer_challenge())
        if path.startswith("/_dash-") or request.method not in SAFE_METHODS:
            return json_error(401, "not signed in (or the session ended): reload the page")
        target = request.full_path if request.query_string else path
        return redirect(f"/login?next={quote(target, safe='')}")

    server.extensions["cc_limiter"] = limiter


def _bearer_challenge() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="control-center"'}


def _csrf_ok() -> bool:
    expected = session.get(CSRF_FIELD)
    given = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD)
    return bool(expected and given and secrets.compare_digest(str(expected), str(given)))


SIGN_IN_TEXT = {
    "vi": {
        "title": "Đăng nhập",
        "app": "Trung tâm điều hành - Phục vụ hành chính công cấp xã",
        "username": "Tên đăng nhập",
        "password": "Mật khẩu",
        "submit": "Đăng nhập",
        "wrong": "Tên đăng nhập hoặc mật khẩu không đúng.",
        "expired": "Phiên làm việc đã hết hạn, vui lòng thử lại.",
        "switch": "English",
    },
    "en": {
        "title": "Sign in",
        "app": "Control centre - commune public administration service",
        "username": "User name",
        "password": "Password",
        "submit": "Sign in",
        "wrong": "Wrong user name or password.",
        "expired": "The form expired; please try again.",
        "switch": "Tiếng Việt",
    },
}

SIGN_IN_PAGE = """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ text.title }} · control-center</title>
<style>
body{margin:0;min-height:100vh;display:grid;place-items:center;background:#0b1220;color:#e5e7eb;
font:18px/1.4 system-ui,sans-serif}
form{background:#111827;padding:2rem 2.5rem;border-radius:12px;min-width:22rem}
h1{font-size:1.4rem;margin:.2rem 0 1.2rem}.app{color:#9ca3af;font-size:.9rem}
label{display:block;margin:.8rem 0 .3rem}input{width:100%;box-sizing:border-box;padding:.55rem;
font-size:1rem;border-radius:6px;border:1px solid #374151;background:#0b1220;color:#e5e7eb}
button{margin-top:1.2rem;width:100%;padding:.65rem;font-size:1rem;border:0;border-radius:6px;
background:#2563eb;color:#fff;cursor:pointer}.error{color:#fca5a5;margin-top:.8rem}
a{color:#93c5fd;font-size:.9rem}
</style></head><body>
<form method="post" action="/login{{ '?lang=en' if lang == 'en' else '' }}" class="sign-in">
<div class="app">{{ text.app }}</div><h1>{{ text.title }}</h1>
<input type="hidden" name="csrf_token" value="{{ csrf }}">
<input type="hidden" name="next" value="{{ next }}">
<label for="username">{{ text.username }}</label>
<input id="username" name="username" autocomplete="username" value="{{ username }}" required autofocus>
<label for="password">{{ text.password }}</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="sign-in">{{ text.submit }}</button>
{% if error %}<div class="error" role="alert">{{ error }}</div>{% endif %}
<p><a href="/login?lang={{ 'vi' if lang == 'en' else 'en' }}">{{ text.switch }}</a></p>
</form></body></html>
"""

SIGN_OUT_PAGE = """<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><title>Đăng xuất · control-center</title></head>
<body><form method="post" action="/logout">
<input type="hidden" name="csrf_token" value="{{ csrf }}">
<button type="submit" id="sign-out">Đăng xuất (sign out)</button></form></body></html>
"""

KIOSK_REFUSED = (
    "Liên kết màn hình không hợp lệ hoặc đã bị thu hồi.\n"
    "This kiosk link is not valid or was revoked.\n"
)
