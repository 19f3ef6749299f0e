"""AWS Glue entrypoint of the feature job: job arguments in, ``credit_risk.features`` out.

Arguments (Glue passes them as ``--name value``): ``--input`` raw loans (an S3 file or
prefix), ``--output`` the run's output prefix, ``--as_of`` the run date YYYY-MM-DD,
``--run_id`` (optional) recorded in the report. On Glue they are read with
``awsglue.utils.getResolvedOptions`` and the session is Glue's; anywhere else with
argparse and a local Spark session, so the file can be tried on a laptop:

    python glue_jobs/feature_extraction.py --input raw/ --output out/ --as_of 2024-01-01

The library arrives as a wheel in ``--extra-py-files`` (see glue_jobs/README.md).
Everything the job does is in the library; this file only adapts arguments, session
and errors. Job bookmarks are not used: each run reads the input it is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

REQUIRED = ("input", "output", "as_of")
OPTIONAL = ("run_id",)


def parse_arguments(argv: Sequence[str]) -> dict[str, str | None]:
    """The job arguments from ``argv`` (``sys.argv``: program name first)."""
    from credit_risk.glue import job_arguments

    parser = argparse.ArgumentParser(
        prog="feature_extraction", description="The feature job, as Glue runs it."
    )
    parser.add_argument("--input", required=True, help="raw loans: a file or a folder/prefix")
    parser.add_argument("--output", required=True, help="folder/prefix for the outputs")
    parser.add_argument("--as_of", required=True, help="run date, YYYY-MM-DD")
    parser.add_argument("--run_id", default=None, help="id recorded in the report")
    return job_arguments(argv, REQUIRED, OPTIONAL, parser)


def main(argv: Sequence[str] | None = None) -> int:
    from credit_risk.errors import CreditRiskError
    from credit_risk.features import run_feature_job
    from credit_risk.glue import spark_session

    args = parse_arguments(sys.argv if argv is None else argv)
    spark = spark_session("credit-risk-feature-extraction")
    try:
        report = run_feature_job(
            spark,
            args["input"],
            args["output"],
            args["as_of"],
            args["run_id"],
            on_progress=lambda message: print(f"feature_extraction: {message}", flush=True),
        )
    except CreditRiskError as exc:
        # A one-line reason for the Glue run's error message, not a JVM stack trace.
        print(f"feature_extraction: error: {exc}", file=sys.stderr, flush=True)
        return 2
    summary = {
        key: report[key]
        for key in (
            "run_id",
            "as_of",
            "input_rows",
            "valid_rows",
            "quarantined_rows",
            "quarantined_fraction",
        )
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
