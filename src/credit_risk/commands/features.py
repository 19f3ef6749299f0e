"""``credit-risk features``: the feature job on Spark in local mode."""

from __future__ import annotations

import argparse
import sys
import time

from credit_risk import io
from credit_risk.errors import InvalidInputError
from credit_risk.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "features",
        help="validate raw loans and compute training features and the serving snapshot",
        description=(
            "Run the feature job on Spark in local mode: validate the raw loans (bad rows "
            "go to quarantine with their reasons), compute point-in-time-correct training "
            "features (one row per loan) and the serving snapshot as of --as-of (one row "
            "per customer), and write OUTPUT/training/, OUTPUT/snapshot/, OUTPUT/audit/ "
            "(the snapshot customers' gender, for fairness checks only), "
            "OUTPUT/quarantine/ (Parquet) and OUTPUT/dq_report.json."
        ),
    )
    parser.add_argument(
        "--input",
        default=None,
        help="raw loans: a .csv/.parquet file or a folder of them, searched recursively "
        "(default: the lake's raw zone, LAKE/raw/loans)",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="folder for the five outputs (default: LAKE/curated/RUN_ID)",
    )
    parser.add_argument(
        "--as-of",
        required=True,
        metavar="YYYY-MM-DD",
        help="run date A: loans before A are history in the snapshot, ages are taken at A",
    )
    parser.add_argument(
        "--run-id",
        default=None,
        help="id recorded in the report (default: features-AS_OF-UTC_TIME-RANDOM)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: ``credit-risk --help`` and the other commands do not load Spark.
    from credit_risk.features import job
    from credit_risk.features.spark import build_local_session, check_raw_files, list_raw_files

    settings = Settings()
    as_of = job.parse_as_of(args.as_of)
    run_id = job.check_run_id(args.run_id or job.new_run_id(as_of))
    input_uri = args.input or settings.raw_loans_uri
    output_uri = args.output or io.join(settings.curated_uri, run_id)
    for uri in (input_uri, output_uri):
        if io.is_s3(uri):
            raise InvalidInputError(
                f"{uri}: the local command reads and writes local paths; S3 runs go "
                "through the Glue job (glue_jobs/feature_extraction.py)"
            )
    # Fail on a missing, empty or wrongly shaped input before paying for the JVM start-up.
    files = list_raw_files(input_uri)
    check_raw_files(files)

    started = time.perf_counter()
    _say(f"starting Spark ({settings.spark_master}) for {len(files)} raw file(s)")
    spark = build_local_session(
        master=settings.spark_master, driver_memory=settings.spark_driver_memory
    )
    try:
        report = job.run_feature_job(spark, input_uri, output_uri, as_of, run_id, on_progress=_say)
    finally:
        spark.stop()
    seconds = time.perf_counter() - started

    broken = {rule: n for rule, n in report["violations"].items() if n}
    print(
        f"features {report['run_id']}: {report['input_rows']:,} rows in, "
        f"{report['training_rows']:,} training rows, {report['snapshot_rows']:,} customers "
        f"in the snapshot as of {report['as_of']}, {report['quarantined_rows']:,} quarantined "
        f"({report['quarantined_fraction']:.2%}) in {seconds:.1f}s"
    )
    if broken:
        print("quarantine reasons: " + ", ".join(f"{r} {n:,}" for r, n in broken.items()))
    print(f"outputs: {output_uri}")
    return 0


def _say(message: str) -> None:
    print(f"features: {message}", file=sys.stderr, flush=True)
