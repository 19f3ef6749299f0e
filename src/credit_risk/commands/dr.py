"""``credit-risk dr failover|failback``: move a deployment to its other region."""

from __future__ import annotations

import argparse
import re

from credit_risk import dr, names, probe
from credit_risk.commands import market_name, seconds_up_to
from credit_risk.errors import InvalidInputError

REGION_PATTERN = re.compile(names.REGION_PATTERN)
# The target serves, but the source region's work rules could not be disabled, or
# (failback) the standby's decisions could not be merged yet.
EXIT_NOT_COMPLETE = 3

_DESCRIPTIONS = {
    dr.FAILOVER: (
        "move a deployment to its standby region (the primary is failing or gone)",
        "Run the disaster-recovery runbook toward the standby region given by --to: "
        "check that the replicated registry's champion loads there; check that every file "
        "of the snapshot the primary served (its active-snapshot pointer, replicated with "
        "the lake) is there and load it into the standby's feature store; score a customer "
        "through the standby's API until it answers healthy with the champion; invert the "
        "Route 53 health check on the primary's probe alarm so that the failover records "
        "answer with the standby; enable the standby's work rules and disable the primary's "
        "(asked once, briefly: the primary may be down); record what was done in the "
        f"standby's lake ({names.DR_STATE_KEY}) and print the recovery time. Every step "
        "is safe to run again. Exit 0 when the standby serves and the primary's rules are "
        f"stopped, {EXIT_NOT_COMPLETE} when the standby serves but the primary did not "
        "answer (run it again once it does), 2 when a step cannot be done (the line says "
        "why and what to do).",
    ),
    dr.FAILBACK: (
        "move a deployment back to its primary region once it is healthy again",
        "Copy back to the primary region given by --to what its standby wrote while it "
        "served (raw deliveries, the registry, the active snapshot and its pointer), then "
        "run the same procedure toward it: its registry, its store loaded with that "
        "snapshot, its API checked, the Route 53 health check upright again, its work "
        "rules enabled and the standby's disabled; then merge into its store the decisions "
        "the standby recorded (exported and imported by the two regions' feature loaders, "
        "ids already held skipped), and record the state in its lake. Exit 0 when the "
        f"primary serves and all of that is done, {EXIT_NOT_COMPLETE} when the primary serves "
        "but the standby's rules could not be stopped or its decisions not merged (run it "
        "again), 2 when a step cannot be done.",
    ),
}


def _region(text: str) -> str:
    if not REGION_PATTERN.match(text):
        raise argparse.ArgumentTypeError(f"not an AWS region such as eu-west-1: {text!r}")
    return text


def _customer_id(text: str) -> str:
    try:
        return probe.check_customer_id(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _url(text: str) -> str:
    try:
        return probe.check_url(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dr",
        help="disaster recovery: fail a deployment over to its standby region, or back",
        description="The regional disaster-recovery runbook of a deployment with a standby "
        "region (disaster_recovery in cdk.json), as one command per direction.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for direction, (summary, description) in _DESCRIPTIONS.items():
        action = actions.add_parser(direction, help=summary, description=description)
        _add_arguments(action, direction)
        action.set_defaults(handler=run, direction=direction)


def _add_arguments(parser: argparse.ArgumentParser, direction: str) -> None:
    role = dr.TARGET_ROLE[direction]
    parser.add_argument(
        "--env",
        required=True,
        choices=names.ENVIRONMENTS,
        help="the environment (stacks CreditRisk-[MARKET-]ENV-*)",
    )
    parser.add_argument(
        "--market",
        type=market_name,
        default=None,
        help="the market of the deployment, as in cdk.json's markets (default: the default market)",
    )
    parser.add_argument(
        "--to",
        required=True,
        type=_region,
        metavar="REGION",
        dest="target_region",
        help=f"the deployment's {role} region, where it is to serve (its DataLake stack "
        f"says {names.OUTPUT_DR_ROLE}={role})",
    )
    parser.add_argument(
        "--customer-id",
        type=_customer_id,
        default=probe.DEFAULT_CUSTOMER_ID,
        help="a customer the store holds, scored through the API to check it (default: "
        "%(default)s, the first customer of the synthetic data)",
    )
    parser.add_argument(
        "--api-url",
        type=_url,
        default=None,
        help=f"the API to check, instead of the {names.OUTPUT_API_URL} output of the "
        "target's Api stack (a custom domain's regional name, a local drill)",
    )
    parser.add_argument(
        "--wait-seconds",
        type=seconds_up_to(3600),
        default=dr.DEFAULT_WAIT_SECONDS,
        metavar="SECONDS",
        help="how long the API may take to answer healthy with the champion, asked again "
        f"every {dr.POLL_SECONDS:g} s (default: %(default)g)",
    )


def run(args: argparse.Namespace) -> int:
    request = dr.RecoveryRequest(
        environment=args.env,
        market=args.market,
        direction=args.direction,
        target_region=args.target_region,
        customer_id=args.customer_id,
        api_url=args.api_url,
        wait_seconds=args.wait_seconds,
    )
    state = dr.switch_region(
        request, say=lambda line: print(f"{args.direction}: {line}", flush=True)
    )
    # Served from the target, but the region left may start work again when it comes
    # back, or (failback) the standby's decisions are still to merge: not done until a
    # run of this command has done both.
    return 0 if state.complete else EXIT_NOT_COMPLETE
