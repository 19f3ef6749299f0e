"""``credit-risk release``: run, roll back and inspect model releases on this machine."""

from __future__ import annotations

import argparse
import json
import sys

from credit_risk import names
from credit_risk.commands import positive_int
from credit_risk.local_canary import (
    DEFAULT_ENVIRONMENT,
    RELEASE_CUSTOMERS,
    REQUESTS_PER_STEP,
    LocalReleasePolicy,
    run_canary,
)
from credit_risk.registry import Registry
from credit_risk.rollback import CLOSED_RELEASE, roll_back
from credit_risk.settings import Settings

EXIT_ROLLED_BACK = 1
DEFAULT_REASON = "rolled back by hand (credit-risk release rollback)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "release",
        help="release a model version locally (shadow, canary, promotion), roll back, status",
        description=(
            "Model releases against the local registry and feature store (or those "
            "CREDIT_RISK_* variables point at), decided exactly as the AWS release decides "
            "them. A running `credit-risk serve` follows what these commands change."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    run = actions.add_parser(
        "run",
        help="release a registry version: shadow, each canary step, then promote or roll back",
        description=(
            "Open a release of VERSION, score the store's customers with it beside the "
            "champion on a local inference function (in shadow, then at each canary share, "
            "customers assigned by a keyed hash of their id), judge every stage by the gates, "
            "then promote it or roll it back. The first model of an empty registry is "
            "promoted at once. Prints a JSON summary (each stage's verdict, the outcome, the "
            "report's location); progress goes to stderr. Exit 0 when promoted, "
            f"{EXIT_ROLLED_BACK} when rolled back, 2 for bad input."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run.add_argument("version", help="the registry version to release (it passed its gate)")
    run.add_argument(
        "--requests-per-step",
        type=positive_int,
        default=REQUESTS_PER_STEP,
        metavar="N",
        help="single-customer requests sent in the shadow stage and in each canary step "
        "(where AWS waits wait_minutes for traffic)",
    )
    run.add_argument(
        "--env",
        choices=names.ENVIRONMENTS,
        default=None,
        help="judge with this environment's model_release settings in cdk.json "
        f"(default: {DEFAULT_ENVIRONMENT}'s)",
    )
    run.add_argument(
        "--seed", type=int, default=0, help="seed of the random choice of customers per request"
    )
    run.set_defaults(handler=run_release)

    rollback = actions.add_parser(
        "rollback",
        help="one step back: end the release in progress, else restore the previous champion",
        description=(
            "Roll back at once, with no traffic minimum. A release in progress is ended as "
            "rolled back (its candidate stops scoring; the champion never changed). "
            "Otherwise the champion before the current one serves again; each rollback "
            "goes one champion further back. Prints what was done as JSON. Exit 2 when "
            "there is nothing to roll back."
        ),
    )
    rollback.add_argument(
        "--reason", default=DEFAULT_REASON, help="why, recorded with the rollback"
    )
    rollback.set_defaults(handler=run_rollback)

    status = actions.add_parser(
        "status",
        help="the release record and the champion, as JSON",
        description="Print the champion record and the last release record (null: none).",
    )
    status.set_defaults(handler=run_status)


def _registry(settings: Settings) -> Registry:
    return Registry(settings.registry, settings.model_name)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_release(args: argparse.Namespace) -> int:
    from credit_risk.store import create_store

    settings = Settings()
    policy = LocalReleasePolicy.of_environment(
        args.env or DEFAULT_ENVIRONMENT, requests_per_step=args.requests_per_step
    )
    _registry(settings).metadata(args.version)  # an unknown version fails before the store
    with create_store(settings) as store:
        customers = store.customer_ids(RELEASE_CUSTOMERS)
    outcome = run_canary(settings, args.version, customers, policy, seed=args.seed, say=_say)
    print(json.dumps(outcome.as_dict(), indent=2))
    return 0 if outcome.promoted else EXIT_ROLLED_BACK


def run_rollback(args: argparse.Namespace) -> int:
    done = roll_back(_registry(Settings()), args.reason)
    if done["did"] == CLOSED_RELEASE:
        _say(
            f"release {done['release_id']} of {done['candidate']} rolled back; "
            f"the champion is {done['model_version'] or 'none'}"
        )
    else:
        _say(f"the champion is now {done['model_version']} (was {done['rolled_back_from']})")
    if "report_html" in done:
        _say(f"report: {done['report_html']}")
    print(json.dumps(done, indent=2))
    return 0


def run_status(args: argparse.Namespace) -> int:
    registry = _registry(Settings())
    state = registry.release_state()
    print(
        json.dumps(
            {
                "model_name": registry.model_name,
                "registry": registry.root,
                "champion": registry.champion(),
                "release": state.as_dict() if state is not None else None,
            },
            indent=2,
        )
    )
    return 0
