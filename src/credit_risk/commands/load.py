"""``credit-risk load``: load a serving snapshot into the feature store and activate it."""

from __future__ import annotations

import argparse

from credit_risk.commands import iso_date
from credit_risk.commands.store import add_database_url, open_store
from credit_risk.store.loader import load_snapshot_uri


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "load",
        help="load a serving snapshot (Parquet) into the feature store and activate it",
        description=(
            "Read a serving snapshot (one row per customer, the columns of "
            "schemas.SNAPSHOT_COLUMNS) from a Parquet file or folder, local or s3://, copy "
            "it into a new snapshot table and switch readers to it in one transaction. "
            "The schema is migrated first if needed; older snapshots beyond the retention "
            "(CREDIT_RISK_STORE_RETAINED_SNAPSHOTS) are dropped."
        ),
    )
    parser.add_argument(
        "--snapshot",
        required=True,
        metavar="DIR_OR_S3_URI",
        help="the snapshot's Parquet file or folder (local path or s3://bucket/prefix)",
    )
    parser.add_argument(
        "--snapshot-id",
        default=None,
        help="id of the new snapshot (default: <as_of>-<UTC load time>); loading an id that "
        "is already active does nothing",
    )
    parser.add_argument(
        "--as-of",
        type=iso_date,
        default=None,
        help="expected snapshot date (YYYY-MM-DD); the load fails if the data says otherwise",
    )
    add_database_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with open_store(args.database_url) as store:
        result = load_snapshot_uri(
            store, args.snapshot, snapshot_id=args.snapshot_id, as_of=args.as_of
        )
    if result.already_active:
        print(f"snapshot {result.snapshot_id} is already active ({result.row_count:,} customers)")
        return 0
    print(
        f"loaded snapshot {result.snapshot_id} as of {result.as_of.isoformat()}: "
        f"{result.row_count:,} customers in {result.load_seconds:.2f} s, "
        f"switch {result.swap_seconds * 1000:.1f} ms"
    )
    print(f"active snapshot: {result.snapshot_id} (previous: {result.previous_snapshot_id})")
    if result.dropped_snapshot_ids:
        print(f"dropped old snapshots: {', '.join(result.dropped_snapshot_ids)}")
    return 0
