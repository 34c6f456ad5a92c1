"""The broker side: a Mosquitto password file and ACL from the province's commune list.

One user per commune centre (``centre-<commune code>``) that may publish only under its own
commune (``dossier``, ``queue``, ``status`` and ``alerts/ack``) and read only its own alerts;
service users for the collector (reads the centres' streams), the alert engine (writes alerts,
reads acknowledgements) and the province desk. Mosquitto refuses anything else; the collector
still dead-letters a payload whose commune differs from its topic's, so a centre that publishes
under its own topic cannot speak for another commune either.

Passwords are written in Mosquitto 2's own format (``$7$``: PBKDF2-SHA512, what
``mosquitto_passwd`` writes). Running the command again keeps every existing user's password
and only creates the missing ones (or the ones named with ``--reset``): centres keep working
across runs, and the new passwords are printed once, for the operator to hand over.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes
SALT_BYTES = 12
COLLECTOR_USER = "collector"
ALERTS_USER = "alerts"
PROVINCE_DESK_USER = "province-desk"
CENTRE_PREFIX = "centre-"


def centre_user(commune_code: str) -> str:
    return f"{CENTRE_PREFIX}{commune_code}"


def password_hash(password: str, *, salt: bytes | None = None) -> str:
    """``$7$101$<salt>$<hash>``: Mosquitto 2's PBKDF2-SHA512 password hash."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, 64)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    parts = stored.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    salt = base64.b64decode(parts[3])
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]), 64)
    return secrets.compare_digest(base64.b64encode(digest).decode(), parts[4])


@dataclass(frozen=True)
class Grant:
    user: str
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()


def _services(base: str) -> list[Grant]:
    """The collector, the alert engine: ``base`` is one province's topics, or every one's."""
    return [
        Grant(
            COLLECTOR_USER,
            read=(f"{base}/+/dossier", f"{base}/+/queue", f"{base}/+/status"),
        ),
        Grant(
            ALERTS_USER,
            read=(f"{base}/+/alerts/ack",),
            write=(f"{base}/+/alerts",),
        ),
    ]


def _province(base: str, desk_user: str, communes: Iterable[str]) -> list[Grant]:
    """A province's desk and each of its centres, kept to their own topics."""
    out = [
        Grant(
            desk_user,
            read=(f"{base}/province/alerts",),
            write=(f"{base}/province/alerts/ack",),
        )
    ]
    for code in sorted(communes):
        own = f"{base}/{code}"
        out.append(
            Grant(
                centre_user(code),
                read=(f"{own}/alerts",),
                write=(f"{own}/dossier", f"{own}/queue", f"{own}/status", f"{own}/alerts/ack"),
            )
        )
    return out


def grants(province: str, communes: Iterable[str]) -> list[Grant]:
    base = f"dvc/v1/{province}"
    return _services(base) + _province(base, PROVINCE_DESK_USER, communes)


def national_grants(provinces: Mapping[str, Iterable[str]]) -> list[Grant]:
    """``CC_SCOPE=national``: the services read and write every province's topics; each
    province has its own desk user (``province-desk-79``), each centre its own topics."""
    out = _services("dvc/v1/+")
    for code in sorted(provinces):
        out += _province(f"dvc/v1/{code}", f"{PROVINCE_DESK_USER}-{code}", provinces[code])
    return out


def acl_text(province: str, grants_: Sequence[Grant]) -> str:
    """Mosquitto's ``acl_file`` syntax; anything not granted is refused (no anonymous rules)."""
    lines = [
        f"# control-center mqtt-acl: province {province}; generated, do not edit by hand.",
        "# Anything not granted below is refused.",
        "",
    ]
    for grant in grants_:
        lines.append(f"user {grant.user}")
        lines += [f"topic read {t}" for t in grant.read]
        lines += [f"topic write {t}" for t in grant.write]
        lines.append("")
    return "\n".join(lines)


def read_password_file(path: Path) -> dict[str, str]:
    """user -> stored hash, from an existing Mosquitto password file (missing: empty)."""
    if not path.exists():
        return {}
    users = {}
    for line in path.read_text().splitlines():
        user, sep, stored = line.strip().partition(":")
        if sep and user and not user.startswith("#"):
            users[user] = stored
    return users


def write_broker_files(
    out_dir: Path,
    province: str,
    communes: Iterable[str],
    *,
    reset: Iterable[str] = (),
    grants_: Sequence[Grant] | None = None,
) -> dict[str, str]:
    """Write ``passwords`` and ``acl`` in ``out_dir``; the new passwords, by user. ``grants_``
    replaces the province's (``national_grants`` for the country; ``province`` then labels).

    Both files are written mode 0600 through a temporary file and a rename, so a broker
    reloading (SIGHUP) never reads half a file.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if grants_ is None:
        grants_ = grants(province, communes)
    password_file = out_dir / "passwords"
    existing = read_password_file(password_file)
    resets = set(reset)
    created: dict[str, str] = {}
    lines = []
    for grant in grants_:
        stored = existing.get(grant.user)
        if stored is None or grant.user in resets:
            password = secrets.token_urlsafe(18)
            created[grant.user] = password
            stored = password_hash(password)
        lines.append(f"{grant.user}:{stored}")
    _write_private(password_file, "\n".join(lines) + "\n")
    _write_private(out_dir / "acl", acl_text(province, grants_))
    return created


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


MOSQUITTO_SNIPPET = """\
# mosquitto.conf (Mosquitto 2): centres and services sign in; the ACL limits each to its topics.
listener 8883
certfile /etc/mosquitto/certs/server.crt
keyfile /etc/mosquitto/certs/server.key
cafile /etc/mosquitto/certs/ca.crt
# require_certificate true   # to authenticate centres by client certificate as well
allow_anonymous false
password_file {dir}/passwords
acl_file {dir}/acl
"""
