"""`python -m backend.auth`: create, change, disable, delete, list and unlock users, in MongoDB.

It reads the backend's settings (MONGODB_URI, MONGODB_DATABASE, ...) and goes through the same
Accounts as AuthService, so the same rules hold (password length, the last admin stays an admin).
For when no admin can sign in yet, or from a deployment script; over gRPC an admin uses
AuthService instead. A running backend sees a change made here within AUTH_USER_CACHE_S.

    python -m backend.auth create-user alice --role editor     # asks for the password twice
    printf '%s' "$PASSWORD" | python -m backend.auth create-user bob --role viewer --password-stdin
    python -m backend.auth set-role alice admin
    python -m backend.auth disable bob          # and `enable bob`; bob's tokens stop working
    python -m backend.auth delete bob
    python -m backend.auth reset-password bob   # a new password, no old one; bob's tokens stop working
    python -m backend.auth change-password alice   # asks alice's current password, then the new one
    python -m backend.auth list
    python -m backend.auth unlock admin     # forget admin's failed sign-ins, from every address
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from pydantic import ValidationError

from backend.auth.roles import Role
from backend.auth.validation import normalize_username
from backend.config import Settings
from backend.exceptions import FruitstackError
from backend.server import access_tokens, login_limits, open_accounts, open_mongo

ROLES = [r.label for r in Role]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backend.auth", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-user", help="add a user")
    create.add_argument("username")
    create.add_argument("--role", choices=ROLES, required=True)
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input (no prompt)"
    )
    role = commands.add_parser("set-role", help="change a user's role")
    role.add_argument("username")
    role.add_argument("role", choices=ROLES)
    for name, what in [
        ("disable", "stop a user signing in and revoke their tokens"),
        ("enable", "let a disabled user sign in again"),
        ("delete", "delete a user"),
        ("reset-password", "set a user's password (revokes their tokens)"),
        ("change-password", "change a user's password, given the current one (revokes their tokens)"),
    ]:
        command = commands.add_parser(name, help=what)
        command.add_argument("username")
        if name.endswith("-password"):
            command.add_argument(
                "--password-stdin",
                action="store_true",
                help="read the password(s) from standard input, one a line (the current one first)",
            )
    commands.add_parser("list", help="list users, their roles and whether they are disabled")
    unlock = commands.add_parser(
        "unlock", help="forget a username's failed sign-ins from every address (ends its delays)"
    )
    unlock.add_argument("username")
    return parser


def _read_password(from_stdin: bool, prompt: str = "password") -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"{prompt}: ")
    if getpass.getpass(f"{prompt} again: ") != first:
        raise SystemExit("backend.auth: the passwords differ")
    return first


async def _run(args: argparse.Namespace, settings: Settings) -> str:
    async with open_mongo(settings) as mongo:
        accounts = open_accounts(mongo, settings, access_tokens(settings))
        if args.command == "create-user":
            password = _read_password(args.password_stdin)
            user = await accounts.create_user(
                username=args.username, password=password, role=Role.parse(args.role)
            )
            return f"created {user.username} ({user.role.label})"
        if args.command == "unlock":
            name = normalize_username(args.username)
            cleared = await login_limits(mongo, settings).unlock(username=name)
            return f"cleared {cleared} failed sign-in record(s) of {name}"
        if args.command == "set-role":
            user = await accounts.set_role(username=args.username, role=Role.parse(args.role))
            return f"{user.username} is now {user.role.label}"
        if args.command in ("disable", "enable"):
            disabled = args.command == "disable"
            user = await accounts.set_disabled(username=args.username, disabled=disabled)
            return f"{user.username} is {'disabled' if disabled else 'enabled'}"
        if args.command == "delete":
            return f"deleted {await accounts.delete_user(username=args.username)}"
        if args.command == "reset-password":
            user = await accounts.reset_password(
                username=args.username, password=_read_password(args.password_stdin, "new password")
            )
            return f"the password of {user.username} is reset; their tokens are revoked"
        if args.command == "change-password":
            old = (
                sys.stdin.readline().rstrip("\r\n")
                if args.password_stdin
                else getpass.getpass("current password: ")
            )
            issued = await accounts.change_password(
                username=args.username,
                old_password=old,
                new_password=_read_password(args.password_stdin, "new password"),
            )
            return f"the password of {issued.principal.username} is changed; their older tokens are revoked"
        users = await accounts.list_users()
        width = max([len(u.username) for u in users] or [8])
        return "\n".join(
            f"{u.username:<{width}}  {u.role.label:<9}  created {u.created_at:%Y-%m-%d %H:%M UTC}"
            + ("  disabled" if u.disabled else "")
            for u in users
        )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"backend.auth: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    try:
        print(asyncio.run(_run(args, settings)))
    except FruitstackError as exc:
        print(f"backend.auth: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
