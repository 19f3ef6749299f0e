"""``credit-risk pipeline run``: every step of the training pipeline, in-process."""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import date

from credit_risk.pipeline import (
    DEFAULT_MAX_QUARANTINED_FRACTION,
    STEPS,
    PipelineRun,
    PipelineStopped,
)
from credit_risk.settings import Settings

EXIT_STOPPED_BY_GATE = 3


def _fraction(text: str) -> float:
    """A share of rows, 0 to 1: anything else (NaN included) would never stop the gate."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a fraction from 0 to 1, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pipeline",
        help="run the training pipeline locally, step by step like the state machine",
        description="Run the training pipeline in this process: " + " → ".join(STEPS) + ".",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = actions.add_parser(
        "run",
        help="features → quality gate → store load → train → model gate → promote",
        description=(
            "Run every step in the order of the training state machine and stop at the "
            "same gates. Exit code 3 when a gate stops the run."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run.add_argument(
        "--input",
        default=None,
        help="raw loans (file or folder, local or s3://); default: the lake's raw zone",
    )
    run.add_argument(
        "--as-of",
        default=None,
        metavar="YYYY-MM-DD",
        help="the run date the snapshot is taken at; default: today",
    )
    run.add_argument("--run-id", default=None, help="run id; default: one made from the date")
    run.add_argument(
        "--max-quarantined-fraction",
        type=_fraction,
        default=DEFAULT_MAX_QUARANTINED_FRACTION,
        help="the data-quality gate: stop above this share of quarantined rows",
    )
    parser.set_defaults(handler=run_pipeline)


def run_pipeline(args: argparse.Namespace) -> int:
    from credit_risk.features.job import check_run_id, new_run_id, parse_as_of

    settings = Settings()
    as_of = parse_as_of(args.as_of) if args.as_of else date.today()
    run = PipelineRun(
        input_uri=args.input or settings.raw_loans_uri,
        as_of=as_of,
        run_id=check_run_id(args.run_id) if args.run_id else new_run_id(as_of),
        settings=settings,
        max_quarantined_fraction=args.max_quarantined_fraction,
        say=lambda message: print(message, file=sys.stderr, flush=True),
    )
    try:
        summary = run.run()
    except PipelineStopped as stop:
        print(json.dumps(stop.summary, indent=2, default=str))
        print(f"credit-risk pipeline: stopped at {stop}", file=sys.stderr)
        return EXIT_STOPPED_BY_GATE
    print(json.dumps(summary, indent=2, default=str))
    print(
        f"pipeline done: model {summary['champion']} serves features as of {as_of}", file=sys.stderr
    )
    return 0
