"""``credit-risk env bootstrap``: a freshly deployed AWS environment to its first score."""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from credit_risk import bootstrap, names
from credit_risk.commands import iso_date, market_name, positive_int
from credit_risk.progress import Progress

EXIT_RUN_DID_NOT_SUCCEED = 1


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"a positive number, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "env",
        help="work with a deployed AWS environment (bootstrap it to its first score)",
        description="Commands against an environment deployed with `npx cdk deploy`.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = actions.add_parser(
        "bootstrap",
        help="upload a first delivery of raw loans and wait for the first model",
        description=(
            "Take a freshly deployed environment to its first score: read the stack "
            "outputs, upload one delivery of raw loans to the raw bucket (data files to "
            f"{names.RAW_LOANS_PREFIX}ingest_date=DATE/, then the empty "
            f"{names.RAW_DELIVERY_MARKER} marker that starts the training pipeline), "
            "find the run the marker started and wait for it, then print how to score "
            "through the API. Exit 0 when the run released a model (or with --no-wait "
            "once uploaded), 1 when it failed, was skipped, was not started or still runs "
            "at --timeout, 2 for bad input or a stack that is not deployed."
        ),
    )
    run.add_argument(
        "--env",
        required=True,
        choices=names.ENVIRONMENTS,
        help="the environment (stacks CreditRisk-[MARKET-]ENV-*)",
    )
    run.add_argument(
        "--market",
        type=market_name,
        default=None,
        help="the market of the deployment, as in cdk.json's markets (default: the default market)",
    )
    data = run.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--raw",
        nargs="+",
        metavar="FILE",
        help="local raw loan files (.csv, .csv.gz, .parquet with the 24 raw columns) to "
        "deliver; checked before anything is uploaded",
    )
    data.add_argument(
        "--synthetic",
        type=positive_int,
        metavar="N",
        help="deliver N synthetic loans (credit-risk generate-data) and their truth sidecar",
    )
    run.add_argument(
        "--ingest-date",
        type=iso_date,
        default=datetime.now(UTC).date(),
        metavar="YYYY-MM-DD",
        help="the delivery folder's date (default: today, UTC); a folder that already holds "
        "a delivery is refused",
    )
    run.add_argument(
        "--region",
        default=None,
        help="AWS region of the environment (default: AWS_REGION or the AWS CLI profile's)",
    )
    run.add_argument(
        "--no-wait",
        action="store_true",
        help="stop once the delivery is uploaded, without waiting for the training run",
    )
    run.add_argument(
        "--timeout",
        type=_positive,
        default=120.0,
        metavar="MINUTES",
        help="how long to wait for the training run before leaving it running (default: 120)",
    )
    run.add_argument(
        "--poll-seconds",
        type=_positive,
        default=15.0,
        metavar="SECONDS",
        help="how often to ask Step Functions how the training run is going (default: 15)",
    )
    parser.set_defaults(handler=run_bootstrap)


def run_bootstrap(args: argparse.Namespace) -> int:
    files = bootstrap.check_local_raw_files(args.raw) if args.raw else []
    clients = bootstrap.AwsClients(args.region)
    deployment = names.deployment_name(args.env, args.market)
    environment = bootstrap.read_environment(deployment, clients.cloudformation)
    prefix = bootstrap.delivery_prefix(args.ingest_date)
    bootstrap.refuse_existing_delivery(clients.s3, environment.raw_bucket, prefix)
    with tempfile.TemporaryDirectory(prefix="credit-risk-bootstrap-") as workdir:
        if args.synthetic:
            progress = Progress("generating loans", args.synthetic)
            files = bootstrap.generate_synthetic_loans(
                Path(workdir), args.synthetic, on_chunk=progress.advance
            )
            progress.finish()
        delivery = bootstrap.plan_delivery(environment.raw_bucket, args.ingest_date, files)
        customer_id = bootstrap.first_customer_id(files[0])
        marker_at = bootstrap.upload_delivery(clients.s3, delivery, _say)
    if args.no_wait:
        print(f"delivered {delivery.uri()}; the training pipeline starts on its marker")
        print(
            "  follow it: aws stepfunctions list-executions "
            f"--region {environment.region} --state-machine-arn {environment.training_pipeline_arn}"
        )
        print("Once it has succeeded:")
        print("\n".join(bootstrap.score_hints(environment, customer_id)))
        return 0

    execution = bootstrap.find_execution(
        clients.stepfunctions,
        environment.training_pipeline_arn,
        delivery.marker_key,
        since=marker_at,
        poll_seconds=min(args.poll_seconds, bootstrap.FIND_POLL_SECONDS),
    )
    if execution is None:
        print(bootstrap.no_execution_message(environment, delivery, marker_at), file=sys.stderr)
        return EXIT_RUN_DID_NOT_SUCCEED
    _say(f"training run started: {execution}")
    outcome = bootstrap.wait_for_execution(
        clients.stepfunctions,
        execution,
        timeout_seconds=args.timeout * 60,
        poll_seconds=args.poll_seconds,
        say=lambda message: _say(f"training run {message}"),
    )
    lines = bootstrap.describe_outcome(environment, outcome, customer_id)
    print("\n".join(lines), file=sys.stdout if outcome.released_a_model else sys.stderr)
    return 0 if outcome.released_a_model else EXIT_RUN_DID_NOT_SUCCEED


def _say(message: str) -> None:
    print(f"bootstrap: {message}", file=sys.stderr, flush=True)
