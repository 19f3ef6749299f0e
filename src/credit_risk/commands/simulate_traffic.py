"""``credit-risk simulate-traffic``: scoring traffic and outcomes for the local monitor."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from credit_risk import names
from credit_risk.commands import iso_date
from credit_risk.errors import InvalidInputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate-traffic",
        help="score a sample of customers over past days and write their outcomes",
        description=(
            "Scores a random sample of the active feature snapshot's customers with the "
            "champion model (the API's scoring code), spreads the scores over --days days "
            "up to --end, writes them to the scoring log (<lake>/scoring-log/, or "
            f"{names.ENV_SCORING_LOG_URI}) and writes the customers' outcomes, drawn from "
            "the synthetic data's true risk model, to <lake>/labels/labels-<end>-<run>.parquet. "
            "Then `credit-risk monitor` has traffic to judge. The same command writes the "
            "same files again instead of adding traffic; a shifted run also shows as skew, "
            "since the offline snapshot keeps the unshifted values. Set "
            "CREDIT_RISK_ID_HASH_KEY (the same for the monitor) so that outcomes and "
            "snapshots can be joined to scores."
        ),
    )
    parser.add_argument(
        "--customers", type=int, default=1000, metavar="N", help="customers to score (1000)"
    )
    parser.add_argument(
        "--days", type=int, default=7, metavar="D", help="days the scores are spread over (7)"
    )
    parser.add_argument(
        "--end",
        type=iso_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="last day of traffic (UTC); default: today",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the sample and outcomes (7)")
    parser.add_argument(
        "--shift",
        action="append",
        default=[],
        metavar="FEATURE=FACTOR",
        help="multiply a feature of the sampled customers by FACTOR before scoring, to "
        "simulate population drift (repeatable), e.g. age=0.7",
    )
    parser.add_argument(
        "--model-version", default=None, help="registry version to score with; default: champion"
    )
    parser.set_defaults(handler=run_simulate_traffic)


def run_simulate_traffic(args: argparse.Namespace) -> int:
    from credit_risk.commands.serve import pinned_version
    from credit_risk.monitoring.records import scoring_log_root
    from credit_risk.monitoring.simulate import Shift, TrafficConfig, simulate_traffic
    from credit_risk.serving.service import InferenceSettings, build_service

    config = TrafficConfig(
        customers=args.customers,
        days=args.days,
        end=args.end or datetime.now(UTC).date(),
        seed=args.seed,
        shifts=tuple(Shift.parse(text) for text in args.shift),
    )
    settings = InferenceSettings()
    version = pinned_version(settings, args.model_version or settings.model_version)
    log_uri = scoring_log_root(settings)
    # The records are written whole by the simulator, not through the service's sink.
    service = build_service(
        settings.model_copy(update={"model_version": version, "scoring_log_uri": None})
    )
    try:
        result = simulate_traffic(
            service,
            config,
            scoring_log_uri=log_uri,
            labels_root=f"{settings.lake}/{names.LABELS_PREFIX.rstrip('/')}",
        )
    finally:
        service.store.close()
    if result.scores == 0:
        raise InvalidInputError("no customer of the sample could be read from the store")
    print(json.dumps(result.summary(), indent=2))
    return 0
