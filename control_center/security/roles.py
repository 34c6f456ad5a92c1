"""Roles, permissions, the signed-in principal and the scope the read side filters by.

Four roles (docs/security.md):

- ``wall``: the control-room screens: aggregates and the wall's pages, no personal data, no
  dossier pages, no lists beyond the wall's own overdue board;
- ``commune``: one commune centre: the wall's aggregates, and the details (dossiers, alerts,
  review) of its own commune only; it acknowledges its own commune's alerts;
- ``leader``: province-wide details and exports, acknowledgements;
- ``admin``: what a leader may, plus the audit log (users are managed with the CLI).

Applicants' personal data is shown in full only to the roles of ``CC_PERSONAL_DATA_ROLES``
(default ``commune``: the centre that serves the citizen); everyone else sees it masked.

Nothing here touches Flask or the database: the queries take a :class:`Scope`, the web layer
builds a :class:`Principal`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from control_center.security.masking import PERSONAL_FIELDS, mask_name, mask_text, mask_value

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement

    from control_center.settings import Settings


class Permission(StrEnum):
    WALL = "wall"  # figures, the wall's pages and its overdue board (codes, no names)
    DETAILS = "details"  # dossier lists and pages, alerts, dead letters, the leaders' review
    EXPORT = "export"  # Excel/CSV files
    ACKNOWLEDGE = "acknowledge"  # acknowledge an alert
    ADMIN = "admin"  # the audit log


WALL, COMMUNE, LEADER, ADMIN = "wall", "commune", "leader", "admin"
ROLES = (WALL, COMMUNE, LEADER, ADMIN)

ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    WALL: frozenset({Permission.WALL}),
    COMMUNE: frozenset({Permission.WALL, Permission.DETAILS, Permission.ACKNOWLEDGE}),
    LEADER: frozenset(
        {Permission.WALL, Permission.DETAILS, Permission.EXPORT, Permission.ACKNOWLEDGE}
    ),
    ADMIN: frozenset(Permission),
}


def check_role(role: str, commune_code: str | None) -> None:
    """``ValueError`` unless ``role`` is known and a commune is given exactly for ``commune``."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if role == COMMUNE and not (commune_code and len(commune_code) == 5 and commune_code.isdigit()):
        raise ValueError("the commune role needs a 5-digit commune code")
    if role != COMMUNE and commune_code:
        raise ValueError("only the commune role belongs to a commune")


def personal_data_roles(settings: Settings) -> frozenset[str]:
    roles = {r.strip() for r in settings.personal_data_roles.split(",") if r.strip()}
    unknown = roles - set(ROLES)
    if unknown:
        raise ValueError(
            f"CC_PERSONAL_DATA_ROLES names unknown roles: {', '.join(sorted(unknown))}"
        )
    return frozenset(roles)


@dataclass(frozen=True)
class Scope:
    """What a read may return: the communes (None: the whole province), and whether
    applicants' personal data and officers' names are shown or masked.

    The default is the narrowest for personal data and the widest for communes: internal
    callers (tests, the CLI) read everything but still never see a citizen's name.
    """

    communes: frozenset[str] | None = None
    personal_data: bool = False
    staff_names: bool = True

    def allows(self, commune_code: str | None) -> bool:
        return self.communes is None or commune_code in self.communes

    def where(self, column: Any) -> list[ColumnElement[bool]]:
        """SQL conditions that keep rows of ``column`` (a commune code) inside the scope."""
        if self.communes is None:
            return []
        return [column.in_(sorted(self.communes))]

    def applicant(self, name: str | None) -> str | None:
        return name if self.personal_data else mask_name(name)

    def officer(self, name: str | None) -> str | None:
        return name if self.staff_names else None

    def details(self, payload: dict[str, Any]) -> dict[str, Any]:
        """An event's fields as this scope may see them: personal fields left out or masked."""
        if self.personal_data:
            return payload
        return {k: v for k, v in payload.items() if k not in PERSONAL_FIELDS}

    def text(self, raw: str | None) -> str | None:
        """Free text that may hold personal data (a dead letter's payload excerpt)."""
        if raw is None or self.personal_data:
            return raw
        return mask_text(raw)

    def masked(self, key: str, value: Any) -> Any:
        return value if self.personal_data else mask_value(key, value)


UNRESTRICTED = Scope()


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in user, an API token, a kiosk link, or the open wall.

    Also Flask-Login's user object (``get_id`` and the ``is_*`` properties).
    """

    kind: str  # user / token / kiosk / open / nobody
    key: str  # Flask-Login id of a session principal ("u:<id>:<nonce>", "k:<uuid>")
    name: str  # what the audit log and an acknowledgement record
    role: str | None
    commune_code: str | None = None
    personal_data_roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS.get(self.role or "", frozenset())

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def scope(self) -> Scope:
        return Scope(
            communes=frozenset({self.commune_code or ""}) if self.role == COMMUNE else None,
            personal_data=self.role in self.personal_data_roles,
            staff_names=self.can(Permission.DETAILS),
        )

    # Flask-Login's user interface
    @property
    def is_authenticated(self) -> bool:
        return self.role is not None

    @property
    def is_active(self) -> bool:
        return self.role is not None

    @property
    def is_anonymous(self) -> bool:
        return self.role is None

    def get_id(self) -> str:
        return self.key


NOBODY = Principal(kind="nobody", key="", name="anonymous", role=None)


def open_principal(settings: Settings) -> Principal:
    """Everyone, when ``CC_AUTH_REQUIRED=false``: every permission, personal data masked
    unless ``admin`` is among the personal-data roles."""
    return Principal(
        kind="open",
        key="",
        name="anonymous",
        role=ADMIN,
        personal_data_roles=personal_data_roles(settings),
    )


def current_principal(settings: Settings) -> Principal:
    """The principal of the request being served (set by :mod:`.web`).

    Outside a request (tests calling a layout directly, the CLI), or on a server without the
    security layer, it is the open principal when sign-in is off and nobody when it is on.
    """
    from flask import g, has_request_context

    if has_request_context():
        principal = g.get("cc_principal")
        if isinstance(principal, Principal):
            return principal
    return open_principal(settings) if not settings.auth_required else NOBODY


def signed_in_user() -> str | None:
    """The name of the person who signed in with a password for this request; None for a kiosk
    link, an API token, an open wall or nobody (what pages offer a sign-out link to)."""
    from flask import g, has_request_context

    principal = g.get("cc_principal") if has_request_context() else None
    if isinstance(principal, Principal) and principal.kind == "user":
        return principal.name
    return None


def roles_with(permission: Permission) -> Iterable[str]:
    return [role for role in ROLES if permission in ROLE_PERMISSIONS[role]]
