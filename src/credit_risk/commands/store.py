"""``credit-risk store``: look after the feature store (schema, snapshots, health)."""

from __future__ import annotations

import argparse
import json
import sys

from pydantic import SecretStr

from credit_risk import active_snapshot, io, names
from credit_risk.settings import Settings
from credit_risk.store import FeatureStore, create_store

EXIT_UNHEALTHY = 1


def add_database_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="PostgreSQL URL of the store (default: CREDIT_RISK_DATABASE_URL, else the "
        "SQLite file under CREDIT_RISK_LOCAL_DIR)",
    )


def open_store(database_url: str | None) -> FeatureStore:
    settings = Settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": SecretStr(database_url)})
    return create_store(settings)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "store",
        help="feature store maintenance: migrate, snapshots, rollback, health",
        description="Look after the online feature store (PostgreSQL or the local SQLite).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    migrate = actions.add_parser("migrate", help="apply pending schema migrations (idempotent)")
    migrate.set_defaults(handler=_migrate)

    snapshots = actions.add_parser("snapshots", help="list the retained snapshots")
    snapshots.set_defaults(handler=_snapshots)

    rollback = actions.add_parser("rollback", help="make a retained snapshot the active one again")
    rollback.add_argument("snapshot_id", metavar="SNAPSHOT_ID", help="a retained snapshot's id")
    rollback.set_defaults(handler=_rollback)

    health = actions.add_parser(
        "health", help="check the store answers and has an active snapshot (exit 1 if not)"
    )
    health.set_defaults(handler=_health)

    for action in (migrate, snapshots, rollback, health):
        add_database_url(action)


def _migrate(args: argparse.Namespace) -> int:
    with open_store(args.database_url) as store:
        applied = store.migrate()
        version = store.health().schema_version
    if applied:
        print(f"applied migrations {', '.join(map(str, applied))}; schema version {version}")
    else:
        print(f"schema up to date (version {version})")
    return 0


def _snapshots(args: argparse.Namespace) -> int:
    with open_store(args.database_url) as store:
        infos = store.snapshots()
    if not infos:
        print("no snapshots loaded")
        return 0
    header = ("", "SNAPSHOT", "AS_OF", "ROWS", "LOADED_AT")
    rows = [
        (
            "*" if info.active else "",
            info.snapshot_id,
            info.as_of.isoformat(),
            f"{info.row_count:,}",
            info.loaded_at.isoformat(timespec="seconds"),
        )
        for info in infos
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    with open_store(args.database_url) as store:
        info = store.rollback(args.snapshot_id)
    print(
        f"active snapshot: {info.snapshot_id} as of {info.as_of.isoformat()} "
        f"({info.row_count:,} customers)"
    )
    # The lake's pointer too, or a failover would load the snapshot rolled back from.
    lake = Settings().lake
    where = active_snapshot.active_snapshot_uri(lake)
    if active_snapshot.repoint_active_snapshot(lake, info.snapshot_id) is not None:
        print(f"active-snapshot pointer: {where} names {info.snapshot_id}")
    elif (current := io.read_bytes_if_exists(where)) is not None:
        named = active_snapshot.parse_active_snapshot(current, where).snapshot_id
        if named != info.snapshot_id:
            print(
                f"warning: {lake} keeps no pointer of snapshot {info.snapshot_id}: {where} "
                f"still names {named}, which a failover would load",
                file=sys.stderr,
            )
    else:
        # Most often a shell without the deployment's lake: say which one was looked at.
        print(
            f"warning: {lake} holds no active-snapshot pointer ({where}): nothing re-pointed; "
            f"set {names.ENV_LAKE_URI} to the deployment's lake and run this again",
            file=sys.stderr,
        )
    return 0


def _health(args: argparse.Namespace) -> int:
    with open_store(args.database_url) as store:
        health = store.health()
    print(json.dumps(health.as_dict()))
    return 0 if health.ok else EXIT_UNHEALTHY
