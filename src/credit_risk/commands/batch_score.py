"""``credit-risk batch-score``: score every customer of a feature snapshot into Parquet."""

from __future__ import annotations

import argparse
import json
import sys

from credit_risk.batch_scoring import (
    ACTIVE,
    DEFAULT_CHUNK_ROWS,
    DEFAULT_PARTITIONS,
    default_output,
    new_run_id,
    run_batch,
)
from credit_risk.commands import positive_int
from credit_risk.commands.store import add_database_url, open_store
from credit_risk.registry import Registry
from credit_risk.settings import Settings

EXIT_INCOMPLETE = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "batch-score",
        help="score every customer of a feature snapshot into Parquet, with a summary",
        description=(
            "Score every customer of a feature-store snapshot with the champion (or a named "
            "version), exactly as the API would answer each of them, and write the scores "
            "as Parquet (customer_id, default_probability, decision, threshold, reasons, "
            "model_version, snapshot_id, features_as_of) with summary.json beside them "
            "(counts, approval rate, score deciles, timing). The snapshot is read in pages, "
            "so memory stays constant whatever its size. Outputs are never overwritten."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--snapshot",
        default=ACTIVE,
        metavar="ACTIVE|ID",
        help="the active snapshot, or a retained one by id (`credit-risk store snapshots`)",
    )
    parser.add_argument(
        "--model-version", default=None, help="registry version to score with (default: champion)"
    )
    parser.add_argument(
        "--output",
        default=None,
        metavar="DIR_OR_S3_URI",
        help="folder for the parts and summary.json; it must not hold files yet "
        "(default: a fresh folder <lake>/batch-scores/<run id>)",
    )
    parser.add_argument(
        "--partitions",
        type=positive_int,
        default=DEFAULT_PARTITIONS,
        help="ranges of customer ids scored one after another, one Parquet part each "
        "(the state machine scores them in parallel)",
    )
    parser.add_argument(
        "--chunk-rows",
        type=positive_int,
        default=DEFAULT_CHUNK_ROWS,
        help="customers read and scored at a time: one Parquet row group each",
    )
    add_database_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    registry = Registry(settings.registry, settings.model_name)
    with open_store(args.database_url) as store:
        if args.output is None:
            run_id = new_run_id(_snapshot_id(store, args.snapshot))
            output = default_output(settings.lake, run_id)
        else:
            output = args.output
            run_id = output.rstrip("/").rsplit("/", 1)[-1] or "batch-scores"
        summary = run_batch(
            store,
            registry,
            output=output,
            run_id=run_id,
            snapshot=args.snapshot,
            model_version=args.model_version,
            partitions=args.partitions,
            chunk_rows=args.chunk_rows,
        )
    print(json.dumps(summary, indent=2))
    print(
        f"scored {summary['scored']:,} of {summary['customers']:,} customers of snapshot "
        f"{summary['snapshot_id']} with model {summary['model_version']} into "
        f"{summary['output']} in {summary['elapsed_seconds']:.1f} s",
        file=sys.stderr,
    )
    if summary["unscorable"]:
        # As `score` does for unknown ids: the scores written are good, but not all.
        print(
            f"{summary['unscorable']:,} customers were not scored: their stored features "
            f"({', '.join(summary['unscorable_features'])}) are not finite numbers",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    return 0


def _snapshot_id(store, snapshot: str) -> str:
    """The id the default run folder is named after (ACTIVE: the active one's)."""
    if snapshot.upper() != ACTIVE:
        return snapshot
    active = store.active_snapshot()
    return active.snapshot_id if active is not None else "none"
