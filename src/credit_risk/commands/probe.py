"""``credit-risk probe``: the synthetic probe of a scoring API, once, from the shell."""

from __future__ import annotations

import argparse
import sys

from credit_risk import probe
from credit_risk.commands import seconds_up_to
from credit_risk.probe import ProbeResult

# 0: both calls answered as they should (and the answer is the one expected);
# 1: the API failed a check; 2 (the CLI's error exit): bad arguments or state;
# 3: the probe customer's answer changed with neither a new model nor new features.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ANSWER_CHANGED = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "probe",
        help="check a scoring API as a client does: health and one known customer's score",
        description=(
            "Call GET /v1/health and score one customer (POST /v1/scores) through the "
            "API's URL with the client key, as the probe function does on a schedule in "
            "AWS, and print what each call answered and how long it took. With --state, "
            "compare the answer with the one an earlier probe kept there: the same "
            "customer scored by the same model version on the same feature snapshot must "
            "get the same probability, decision and reasons. Exit status: 0 when every "
            "check passes, 1 when the API fails one, 2 for bad arguments or an unreadable "
            "state, 3 when the answer changed with neither a new model version nor new "
            "features."
        ),
    )
    parser.add_argument(
        "--url",
        required=True,
        help="base URL of the API: http://127.0.0.1:8080 for `credit-risk serve`, the "
        "ApiUrl output of CreditRisk-<env>-Api for a deployed environment",
    )
    key = parser.add_mutually_exclusive_group()
    key.add_argument(
        "--api-key",
        default=None,
        help="the client API key sent in x-api-key (default: CREDIT_RISK_API_KEY; neither: "
        "no key is sent)",
    )
    key.add_argument(
        "--api-key-secret",
        default=None,
        metavar="SECRET_ID",
        help="read the client key from this Secrets Manager secret instead (the "
        "ApiKeySecretArn output), as the probe function does",
    )
    parser.add_argument(
        "--customer-id",
        default=probe.DEFAULT_CUSTOMER_ID,
        help="a customer the feature store holds (default: %(default)s, the first customer "
        "of the synthetic data)",
    )
    parser.add_argument(
        "--state",
        default=None,
        metavar="FILE",
        help="compare the answer with the one kept in FILE (a path or s3:// URI) by an "
        "earlier probe, then keep this answer there; a missing FILE is created",
    )
    parser.add_argument(
        "--timeout",
        type=seconds_up_to(300),
        default=probe.DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="how long each call may take before it counts as failed (default: %(default)g)",
    )
    parser.set_defaults(handler=run_probe_command)


def _api_key(args: argparse.Namespace) -> str | None:
    if args.api_key_secret:
        return probe.read_api_key(args.api_key_secret)
    if args.api_key is not None:
        return args.api_key
    from credit_risk.settings import Settings

    key = Settings().api_key
    return key.get_secret_value() if key else None


def print_result(result: ProbeResult) -> None:
    print(f"probe {'OK' if result.ok else 'FAILED'}: {result.url}")
    for check in result.checks:
        latency = f"{check.latency_ms:.0f} ms" if check.status is not None else "-"
        verdict = "ok" if check.ok else "FAILED"
        print(f"  {check.name:<7} {verdict:<9} {latency:>8}  {check.detail}")
    if result.comparison is not None:
        print(f"  {'answer':<7} {result.comparison.status:<9} {'':>8}  {result.comparison.detail}")


def run_probe_command(args: argparse.Namespace) -> int:
    # Arguments first: a typo is reported before a secret is read.
    probe.check_url(args.url)
    probe.check_customer_id(args.customer_id)
    result = probe.probe(
        args.url,
        _api_key(args),
        args.customer_id,
        timeout=args.timeout,
        state_uri=args.state,
    )
    print_result(result)
    for check in result.checks:
        if not check.ok:
            print(f"credit-risk probe: {check.name} failed: {check.detail}", file=sys.stderr)
    if not result.ok:
        return EXIT_FAILED
    if result.answer_changed:
        print(f"credit-risk probe: {result.comparison.detail}", file=sys.stderr)
        return EXIT_ANSWER_CHANGED
    return EXIT_OK
