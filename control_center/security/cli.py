"""``control-center users | tokens | kiosk | mqtt-acl``: accounts and the broker's ACL.

Secrets (generated passwords, API tokens, kiosk links) are printed once and never stored in
clear. Every change is written to the audit log with the operating-system user who ran it.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_center.db import Database
from control_center.settings import Settings, SettingsError

Handler = Callable[[Settings, argparse.Namespace], int]


def _actor() -> Any:
    from control_center.security.accounts import Actor

    try:
        who = getpass.getuser()
    except Exception:  # no user name in a bare container
        who = "?"
    return Actor(f"cli:{who}", None, None)


def _session(settings: Settings) -> tuple[Database, Session]:
    db = Database(settings.database_url)
    return db, db.session()


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password from stdin (``--password-stdin``), else a generated one (to print)."""
    from control_center.security.accounts import generate_password

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    return generate_password(), True


def _run(settings: Settings, work: Callable[[Session], int]) -> int:
    from control_center.security.accounts import AccountError

    db, session = _session(settings)
    try:
        with session, session.begin():
            return work(session)
    except AccountError as exc:
        print(f"control-center: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()


def cmd_users(settings: Settings, args: argparse.Namespace) -> int:
    from control_center.models import User
    from control_center.security import accounts

    def add(session: Session) -> int:
        password, generated = _password(args)
        user = accounts.create_user(
            session, args.username, password, args.role, args.commune, args.display_name
        )
        accounts.audit(session, "user_created", _actor(), user.username, role=user.role)
        print(
            f"user {user.username} ({user.role}{' ' + user.commune_code if user.commune_code else ''})"
        )
        if generated:
            print(f"password: {password}")
        return 0

    def passwd(session: Session) -> int:
        user = _existing(session, args.username)
        password, generated = _password(args)
        accounts.set_password(session, user, password)
        accounts.audit(session, "password_changed", _actor(), user.username)
        if generated:
            print(f"password: {password}")
        print(f"{user.username}: new password; every browser of this user signs in again")
        return 0

    def active(session: Session) -> int:
        user = _existing(session, args.username)
        accounts.set_active(session, user, args.users_command == "enable")
        accounts.audit(session, f"user_{args.users_command}d", _actor(), user.username)
        print(f"{user.username}: {'enabled' if user.active else 'disabled'}")
        return 0

    def list_(session: Session) -> int:
        for user in session.scalars(select(User).order_by(User.username)):
            state = "" if user.active else "  (disabled)"
            last = (
                user.last_sign_in_at.isoformat(timespec="seconds") if user.last_sign_in_at else "-"
            )
            print(
                f"{user.username:24} {user.role:8} {user.commune_code or '-':6} "
                f"last sign-in {last}{state}"
            )
        return 0

    def _existing(session: Session, username: str) -> User:
        user = accounts.find_user(session, username)
        if user is None:
            raise accounts.AccountError(f"no user {username!r}")
        return user

    work = {"add": add, "passwd": passwd, "disable": active, "enable": active, "list": list_}
    return _run(settings, work[args.users_command])


def cmd_tokens(settings: Settings, args: argparse.Namespace) -> int:
    from control_center.models import ApiToken
    from control_center.security import accounts

    def create(session: Session) -> int:
        row, token = accounts.create_token(session, args.name, args.role, args.commune, args.days)
        accounts.audit(session, "token_created", _actor(), f"{row.id}:{row.name}", role=row.role)
        print(f"token {row.id} ({row.name}, {row.role}); send it as 'Authorization: Bearer ...':")
        print(token)
        return 0

    def revoke(session: Session) -> int:
        row = accounts.revoke_token(session, args.id)
        accounts.audit(session, "token_revoked", _actor(), f"{row.id}:{row.name}")
        print(f"token {row.id} ({row.name}) revoked")
        return 0

    def list_(session: Session) -> int:
        for row in session.scalars(select(ApiToken).order_by(ApiToken.id)):
            state = "revoked" if row.revoked_at else "active"
            print(f"{row.id:5} {row.name:24} {row.role:8} {row.commune_code or '-':6} {state}")
        return 0

    work = {"create": create, "revoke": revoke, "list": list_}
    return _run(settings, work[args.tokens_command])


def kiosk_url(base_url: str, token: str, next_path: str | None = None) -> str:
    from urllib.parse import urlencode

    query = {"token": token, **({"next": next_path} if next_path else {})}
    return f"{base_url.rstrip('/')}/kiosk/login?{urlencode(query)}"


def cmd_kiosk(settings: Settings, args: argparse.Namespace) -> int:
    from control_center.models import KioskLink
    from control_center.security import accounts

    def create(session: Session) -> int:
        if settings.secret_key is None:
            raise SettingsError("CC_SECRET_KEY must be set: it signs kiosk links")
        row, token = accounts.create_kiosk_link(
            session,
            settings.secret_key.get_secret_value(),
            args.label,
            created_by=_actor().name,
            days=args.days,
        )
        accounts.audit(session, "kiosk_link_created", _actor(), str(row.id), label=row.label)
        base = args.base_url or f"http://{settings.web_host}:{settings.web_port}"
        print(f"kiosk link {row.id} ({row.label}); open it once on the screen:")
        print(kiosk_url(base, token, args.next))
        return 0

    def revoke(session: Session) -> int:
        row = accounts.revoke_kiosk_link(session, args.id)
        accounts.audit(session, "kiosk_link_revoked", _actor(), str(row.id), label=row.label)
        print(
            f"kiosk link {row.id} ({row.label}) revoked: its screens sign out at their next refresh"
        )
        return 0

    def list_(session: Session) -> int:
        for row in session.scalars(select(KioskLink).order_by(KioskLink.created_at)):
            state = "revoked" if row.revoked_at else "active"
            print(f"{row.id} {row.label:24} {state}")
        return 0

    work = {"create": create, "revoke": revoke, "list": list_}
    return _run(settings, work[args.kiosk_command])


def cmd_mqtt_acl(settings: Settings, args: argparse.Namespace) -> int:
    from control_center.reference import province_codes, province_communes
    from control_center.security.mqtt_acl import (
        MOSQUITTO_SNIPPET,
        national_grants,
        write_broker_files,
    )

    out = Path(args.out)
    if settings.national:  # every province's centres and desks
        provinces = {p: [c.code for c in province_communes(p)] for p in province_codes()}
        communes = [c for codes in provinces.values() for c in codes]
        created = write_broker_files(
            out, "national", communes, reset=args.reset or (), grants_=national_grants(provinces)
        )
    else:
        communes = [c.code for c in province_communes(settings.province)]
        created = write_broker_files(out, settings.province, communes, reset=args.reset or ())
    desks = len(province_codes()) if settings.national else 1
    print(
        f"wrote {out / 'passwords'} and {out / 'acl'}: {len(communes)} centres, "
        f"{desks} province desk(s), 2 services"
    )
    if created:
        print("new passwords (shown once; hand each to its centre or service):")
        for user, password in created.items():
            print(f"{user}\t{password}")
    print("\n" + MOSQUITTO_SNIPPET.format(dir=out.resolve()))
    return 0


def add_commands(sub: Any) -> None:
    """Register the subcommands on the ``control-center`` parser."""
    from control_center.security.roles import ROLES

    def role_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--role", required=True, choices=ROLES)
        p.add_argument("--commune", help="5-digit commune code (role commune only)")

    users = sub.add_parser("users", help="people who sign in to the wall")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = users_sub.add_parser("add", help="create a user (prints a generated password)")
    add.add_argument("username")
    role_args(add)
    add.add_argument("--display-name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    passwd = users_sub.add_parser("passwd", help="new password (signs the user out everywhere)")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true")
    for action in ("disable", "enable"):
        users_sub.add_parser(action, help=f"{action} a user").add_argument("username")
    users_sub.add_parser("list", help="users, roles, last sign-in")
    users.set_defaults(func=cmd_users)

    tokens = sub.add_parser("tokens", help="API tokens of machine clients")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    create = tokens_sub.add_parser("create", help="a new token (printed once)")
    create.add_argument("name")
    role_args(create)
    create.add_argument("--days", type=float, help="expires after this many days")
    tokens_sub.add_parser("revoke", help="revoke a token").add_argument("id", type=int)
    tokens_sub.add_parser("list", help="tokens (never their value)")
    tokens.set_defaults(func=cmd_tokens)

    kiosk = sub.add_parser("kiosk", help="signed links for unattended wall screens")
    kiosk_sub = kiosk.add_subparsers(dest="kiosk_command", required=True, metavar="ACTION")
    kc = kiosk_sub.add_parser("create", help="a new kiosk link (wall role)")
    kc.add_argument("label", help="which screen, e.g. 'control room left'")
    kc.add_argument("--base-url", help="the wall's address as the screen reaches it")
    kc.add_argument("--next", help="page to open after signing in (default /kiosk)")
    kc.add_argument("--days", type=float, help="expires after this many days")
    kiosk_sub.add_parser("revoke", help="revoke a kiosk link").add_argument("id")
    kiosk_sub.add_parser("list", help="kiosk links")
    kiosk.set_defaults(func=cmd_kiosk)

    acl = sub.add_parser("mqtt-acl", help="Mosquitto password file and ACL for the centres")
    acl.add_argument("--out", required=True, help="directory for 'passwords' and 'acl'")
    acl.add_argument("--reset", action="append", metavar="USER", help="new password for this user")
    acl.set_defaults(func=cmd_mqtt_acl)
