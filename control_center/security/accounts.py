"""Users, password hashes, API tokens, kiosk links and the audit log, in the database.

- Passwords: argon2id (argon2-cffi's defaults, RFC 9106's second recommended profile); a hash
  made with older parameters is replaced at the next successful sign-in.
- API tokens: 32 random bytes shown once; only their SHA-256 is stored (a random token needs no
  slow hash), looked up by that digest.
- Kiosk links: the URL carries the link's id signed with ``CC_SECRET_KEY`` (itsdangerous);
  the row says whether it is still valid, so revoking it ends the screens' sessions.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from control_center.models import ApiToken, AuditEvent, KioskLink, User
from control_center.security.roles import COMMUNE, WALL, Principal, check_role

log = logging.getLogger(__name__)

TOKEN_PREFIX = "cct_"
USERNAME_MAX = 64
_hasher = PasswordHasher()
# Verified when the user does not exist, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
MIN_PASSWORD_LENGTH = 10


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message is for the operator."""


def _now() -> datetime:
    return datetime.now(UTC)


def generate_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, ~120 bits


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


# --- users ----------------------------------------------------------------------------------


def user_principal(user: User, personal_roles: frozenset[str]) -> Principal:
    return Principal(
        kind="user",
        key=f"u:{user.id}:{user.session_nonce}",
        name=user.username,
        role=user.role,
        commune_code=user.commune_code,
        personal_data_roles=personal_roles,
    )


def create_user(
    session: Session,
    username: str,
    password: str,
    role: str,
    commune_code: str | None = None,
    display_name: str | None = None,
) -> User:
    username = username.strip()
    if not username or len(username) > USERNAME_MAX or any(c.isspace() for c in username):
        raise AccountError(f"a user name is 1-{USERNAME_MAX} characters without spaces")
    try:
        check_role(role, commune_code)
    except ValueError as exc:
        raise AccountError(str(exc)) from None
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise AccountError(f"user {username!r} exists")
    user = User(
        username=username,
        display_name=display_name,
        password_hash=hash_password(password),
        role=role,
        commune_code=commune_code if role == COMMUNE else None,
        active=True,
        session_nonce=secrets.token_hex(8),
    )
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username.strip()))


def set_password(session: Session, user: User, password: str) -> None:
    user.password_hash = hash_password(password)
    user.password_changed_at = _now()
    user.session_nonce = secrets.token_hex(8)  # every browser of the user signs in again


def set_active(session: Session, user: User, active: bool) -> None:
    user.active = active
    user.session_nonce = secrets.token_hex(8)


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this name and password, or None (same work either way)."""
    user = find_user(session, username) if username else None
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_sign_in_at = _now()
    return user


def load_user(session: Session, user_id: int, nonce: str) -> User | None:
    user = session.get(User, user_id)
    if user is None or not user.active or not secrets.compare_digest(user.session_nonce, nonce):
        return None
    return user


# --- API tokens -----------------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session,
    name: str,
    role: str,
    commune_code: str | None = None,
    days: float | None = None,
) -> tuple[ApiToken, str]:
    """A new token: the row and the token itself, which is shown once and never stored."""
    try:
        check_role(role, commune_code)
    except ValueError as exc:
        raise AccountError(str(exc)) from None
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name.strip()[:100] or "token",
        token_hash=_digest(token),
        role=role,
        commune_code=commune_code if role == COMMUNE else None,
        expires_at=_now() + timedelta(days=days) if days else None,
    )
    session.add(row)
    session.flush()
    return row, token


def token_principal(
    session: Session, token: str, personal_roles: frozenset[str]
) -> Principal | None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(token)))
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= _now():
        return None
    return Principal(
        kind="token",
        key="",
        name=f"token:{row.name}",
        role=row.role,
        commune_code=row.commune_code,
        personal_data_roles=personal_roles,
    )


def revoke_token(session: Session, token_id: int) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise AccountError(f"no API token {token_id}")
    row.revoked_at = row.revoked_at or _now()
    return row


# --- kiosk links ----------------------------------------------------------------------------

_KIOSK_SALT = "control-center.kiosk-link"


def _kiosk_serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=_KIOSK_SALT)


def create_kiosk_link(
    session: Session,
    secret_key: str,
    label: str,
    created_by: str | None = None,
    days: float | None = None,
) -> tuple[KioskLink, str]:
    """A new kiosk link: the row and the signed token to put in ``/kiosk/login?token=``."""
    row = KioskLink(
        label=label.strip()[:100] or "wall",
        created_by=created_by,
        expires_at=_now() + timedelta(days=days) if days else None,
    )
    session.add(row)
    session.flush()
    return row, kiosk_token(secret_key, row.id)


def kiosk_token(secret_key: str, link_id: uuid.UUID) -> str:
    return str(_kiosk_serializer(secret_key).dumps(str(link_id)))


def kiosk_link(session: Session, secret_key: str, token: str) -> KioskLink | None:
    """The valid (signed, not revoked, not expired) link a token names, else None."""
    try:
        raw = _kiosk_serializer(secret_key).loads(token)
        link_id = uuid.UUID(str(raw))
    except (BadSignature, ValueError):
        return None
    return valid_kiosk_link(session, link_id)


def valid_kiosk_link(session: Session, link_id: uuid.UUID) -> KioskLink | None:
    row = session.get(KioskLink, link_id)
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= _now():
        return None
    return row


def kiosk_principal(link: KioskLink) -> Principal:
    return Principal(kind="kiosk", key=f"k:{link.id}", name=f"kiosk:{link.label}", role=WALL)


def revoke_kiosk_link(session: Session, link_id: str) -> KioskLink:
    try:
        key = uuid.UUID(link_id)
    except ValueError:
        raise AccountError(f"{link_id!r} is not a kiosk link id") from None
    row = session.get(KioskLink, key)
    if row is None:
        raise AccountError(f"no kiosk link {link_id}")
    row.revoked_at = row.revoked_at or _now()
    return row


# --- audit log ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    name: str
    role: str | None = None
    remote_addr: str | None = None


def audit(
    session: Session,
    action: str,
    actor: Actor,
    target: str | None = None,
    **detail: Any,
) -> AuditEvent:
    """Add one audit row to ``session`` (committed with the change it records)."""
    event = AuditEvent(
        at=_now(),
        action=action,
        actor=actor.name[:200],
        role=actor.role,
        target=target[:300] if target else None,
        remote_addr=actor.remote_addr,
        detail=detail,
    )
    session.add(event)
    log.info(
        "audit",
        extra={"action": action, "actor": actor.name, "role": actor.role, "target": target},
    )
    return event


def audit_request(
    db: Any, principal: Principal, action: str, target: str | None = None, **detail: Any
) -> None:
    """One audit row for the request being served, in its own transaction (an export: the
    file is already built; a failure to record it is logged, never shown to the user)."""
    from flask import has_request_context, request

    remote = request.remote_addr if has_request_context() else None
    try:
        with db.session() as session, session.begin():
            audit(session, action, Actor(principal.name, principal.role, remote), target, **detail)
    except Exception:
        log.exception("audit: could not record %s by %s", action, principal.name)


def audit_rows(
    session: Session, *, action: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    stmt = select(AuditEvent)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    stmt = stmt.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit).offset(offset)
    return [
        {
            "id": e.id,
            "at": e.at,
            "action": e.action,
            "actor": e.actor,
            "role": e.role,
            "target": e.target,
            "remote_addr": e.remote_addr,
            "detail": e.detail,
        }
        for e in session.scalars(stmt)
    ]
