"""Post-deployment smoke test of one environment's scoring API.

The release pipeline runs it after deploying staging and prod, with the API URL
and the ARN of the client-key secret taken from the ``CreditRisk-<env>-Api``
outputs. It needs only the standard library and boto3 (the CodeBuild image has
no project environment), and exits non-zero with one line saying what failed,
which stops the release. A freshly deployed environment fails it with what to do
next (no model yet, no feature snapshot yet, a customer the store does not hold).

    python infra/smoke_test.py --api-url URL --secret-arn ARN --customer-id 1234567

The customer defaults to 1234567, the first customer the synthetic data generator
always creates, so an environment bootstrapped with synthetic data passes as is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

# Kept in step with credit_risk.names (a test checks it); not imported so that
# the script runs without the project installed.
API_KEY_HEADER = "x-api-key"
API_KEY_SECRET_FIELD = "api_key"  # noqa: S105 - a JSON field name, not a secret
ROUTE_HEALTH = "/v1/health"
ROUTE_SCORE = "/v1/scores"
ROUTE_DECISION = "/v1/decisions"
# Its decision is recorded marked as the smoke test's, apart from the lender's.
SYNTHETIC_HEADER = "x-credit-risk-synthetic"
SCORE_FIELDS = ("customer_id", "default_probability", "decision", "model_version")
# The first customer of every synthetic extract (credit_risk.datagen): customer 0.
DEFAULT_CUSTOMER_ID = "1234567"
BOOTSTRAP_COMMAND = "credit-risk env bootstrap --env <env>"


class SmokeTestError(RuntimeError):
    """The deployed API does not behave as a release requires."""


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]


def read_api_key(secret_arn: str, *, client: Any = None) -> str:
    """The client API key stored as ``{"api_key": ...}`` in Secrets Manager."""
    if client is None:
        import boto3

        # The secret lives in the environment's region, which the ARN names.
        region = secret_arn.split(":")[3] if secret_arn.startswith("arn:") else None
        client = boto3.client("secretsmanager", region_name=region or None)
    value = client.get_secret_value(SecretId=secret_arn)["SecretString"]
    try:
        key = json.loads(value)[API_KEY_SECRET_FIELD]
    except (ValueError, KeyError, TypeError) as exc:
        raise SmokeTestError(
            f"secret {secret_arn} has no {API_KEY_SECRET_FIELD!r} JSON field"
        ) from exc
    if not isinstance(key, str) or not key:
        raise SmokeTestError(f"secret {secret_arn} holds an empty API key")
    return key


def call(
    base_url: str, route: str, api_key: str, *, payload: dict | None = None, timeout: float = 15
) -> Response:
    """One request to the API; HTTP errors are returned, network failures raised."""
    url = base_url.rstrip("/") + route
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(  # noqa: S310 - the URL comes from our stack output
        url,
        data=data,
        method="GET" if payload is None else "POST",
        headers={
            API_KEY_HEADER: api_key,
            "content-type": "application/json",
            SYNTHETIC_HEADER: "smoke-test",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            status, raw = reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, TimeoutError) as exc:
        raise SmokeTestError(f"{url} is unreachable: {exc}") from exc
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise SmokeTestError(f"{url} answered {status} with a non-JSON body") from exc
    return Response(status, body if isinstance(body, dict) else {"value": body})


def check_health(base_url: str, api_key: str) -> dict[str, Any]:
    """The health answer of a service with a model and a feature snapshot."""
    reply = call(base_url, ROUTE_HEALTH, api_key)
    if reply.status == 503 and reply.body.get("error") == "no_model":
        # The script does not know the environment's name, only its API.
        raise SmokeTestError(
            "no model is in service in this environment yet: run "
            f"`{BOOTSTRAP_COMMAND}` for the environment whose API this is"
        )
    if reply.status != 200:
        raise SmokeTestError(f"GET {ROUTE_HEALTH} answered {reply.status}: {reply.body}")
    if reply.body.get("store_reachable") is not False and reply.body.get("snapshot_id") is None:
        raise SmokeTestError(
            f"the feature store holds no snapshot: run the bootstrap, `{BOOTSTRAP_COMMAND}`"
        )
    if reply.body.get("status") != "ok":
        raise SmokeTestError(f"GET {ROUTE_HEALTH} reports the service unhealthy: {reply.body}")
    return reply.body


def check_score(
    base_url: str, api_key: str, customer_id: str, snapshot_id: str | None = None
) -> dict[str, Any]:
    """One score of ``customer_id``; ``snapshot_id`` (from the health answer) names
    the store's active snapshot when the customer is not in it."""
    reply = call(base_url, ROUTE_SCORE, api_key, payload={"customer_id": customer_id})
    if reply.status == 404 and reply.body.get("error") == "unknown_customer":
        raise SmokeTestError(
            f"customer {customer_id} is not in the active snapshot {snapshot_id}: set "
            "probe.customer_id of the deployment in cdk.json to a customer the store holds"
        )
    if reply.status != 200:
        raise SmokeTestError(
            f"POST {ROUTE_SCORE} for customer {customer_id} answered {reply.status}: {reply.body}"
        )
    missing = [field for field in SCORE_FIELDS if field not in reply.body]
    if missing:
        raise SmokeTestError(f"POST {ROUTE_SCORE} answer lacks {missing}: {reply.body}")
    probability = reply.body["default_probability"]
    if not isinstance(probability, int | float) or not 0 <= probability <= 1:
        raise SmokeTestError(f"default_probability {probability!r} is not in [0, 1]")
    if reply.body["customer_id"] != customer_id:
        raise SmokeTestError(f"asked for {customer_id}, scored {reply.body['customer_id']}")
    return reply.body


def check_decision(base_url: str, api_key: str, score: dict[str, Any]) -> None:
    """The score's decision was recorded and reads back as answered: the release's
    store holds the decisions table and the lookup route reaches it."""
    decision_id = score.get("decision_id")
    if decision_id is None:
        raise SmokeTestError(f"POST {ROUTE_SCORE} answer carries no decision_id: {score}")
    route = f"{ROUTE_DECISION}/{decision_id}"
    # A decision holds a customer's features: never without the key.
    anonymous = call(base_url, route, "")
    if anonymous.status != 403:
        raise SmokeTestError(f"GET {route} without an API key answered {anonymous.status}")
    reply = call(base_url, route, api_key)
    if reply.status != 200:
        raise SmokeTestError(f"GET {route} answered {reply.status}: {reply.body}")
    recorded = {field: reply.body.get(field) for field in SCORE_FIELDS}
    if recorded != {field: score[field] for field in SCORE_FIELDS}:
        raise SmokeTestError(f"GET {route} differs from the score: {recorded} != {score}")


def check_rejects_missing_key(base_url: str) -> None:
    """A release that opened the API to anonymous callers must not go further."""
    reply = call(base_url, ROUTE_HEALTH, "")
    if reply.status != 403:
        raise SmokeTestError(f"GET {ROUTE_HEALTH} without an API key answered {reply.status}")


def run(base_url: str, api_key: str, customer_id: str) -> str:
    """All checks; returns a one-line summary."""
    health = check_health(base_url, api_key)
    check_rejects_missing_key(base_url)
    score = check_score(base_url, api_key, customer_id, health.get("snapshot_id"))
    check_decision(base_url, api_key, score)
    return (
        f"smoke test passed: model {health.get('model_version')}, customer {customer_id} "
        f"scored {score['default_probability']:.4f} ({score['decision']})"
    )


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--api-url", default=os.environ.get("API_URL"), help="base URL (default: $API_URL)"
    )
    parser.add_argument(
        "--secret-arn",
        default=os.environ.get("API_KEY_SECRET_ARN"),
        help="secret holding the client API key (default: $API_KEY_SECRET_ARN)",
    )
    parser.add_argument(
        "--customer-id",
        default=os.environ.get("SMOKE_CUSTOMER_ID") or DEFAULT_CUSTOMER_ID,
        help="a customer the feature store holds (default: $SMOKE_CUSTOMER_ID, else "
        f"{DEFAULT_CUSTOMER_ID}, the first customer of the synthetic data)",
    )
    arguments = parser.parse_args(argv)
    for name in ("api_url", "secret_arn", "customer_id"):
        if not getattr(arguments, name):
            parser.error(f"--{name.replace('_', '-')} is required")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    try:
        api_key = read_api_key(arguments.secret_arn)
        print(run(arguments.api_url, api_key, arguments.customer_id))
    except SmokeTestError as exc:
        print(f"smoke test FAILED against {arguments.api_url}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"smoke test FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
