"""Every 5xx of the inference handler is counted per alias (``live``/``candidate``,
from the qualifier of the invoked ARN): the code and model releases alarm on it.
The errors are real 503s from a feature store that cannot be reached."""

from __future__ import annotations

import json

import pytest

from credit_risk import names
from credit_risk.local_api import LIVE, LambdaContext, LocalFunction, LocalGateway
from tests.integration.api.conftest import Configure, Serving, load_event

# An address where no PostgreSQL listens: every scoring request is a 503.
UNREACHABLE_STORE = "postgresql://postgres@127.0.0.1:9/none?connect_timeout=1"


def alias_documents(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    """The printed EMF documents of ServerErrors by service and alias."""
    documents = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line[:1] == "{"
    ]
    return [
        d
        for d in documents
        if names.METRIC_SERVER_ERRORS in d
        and d["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
        == [["service", names.METRIC_DIMENSION_ALIAS]]
    ]


@pytest.fixture
def down(configure: Configure, serving: Serving):
    """The handler serving a model, with its feature store unreachable."""
    return configure(**{names.ENV_DATABASE_URL: UNREACHABLE_STORE})


@pytest.mark.parametrize(
    ("qualifier", "alias"),
    [
        (names.LIVE_ALIAS, names.LIVE_ALIAS),
        (names.CANDIDATE_ALIAS, names.CANDIDATE_ALIAS),
        (None, "unqualified"),
        ("$LATEST", "unqualified"),
        ("7", "unqualified"),
    ],
)
def test_a_5xx_is_counted_under_the_alias_it_came_through(
    down, capsys: pytest.CaptureFixture[str], qualifier: str | None, alias: str
):
    # Given a call through an alias (or none) that gets a 503
    context = LambdaContext(function_name="credit-risk-inference", qualifier=qualifier)
    capsys.readouterr()
    response = down.lambda_handler(load_event("inference_score"), context)
    assert response["statusCode"] == 503
    # Then one ServerErrors count is published with the service and that alias
    (document,) = alias_documents(capsys)
    namespace = document["_aws"]["CloudWatchMetrics"][0]["Namespace"]
    assert namespace == names.metric_namespace("local")  # no deployment named: a local run
    assert document["service"] == names.SERVICE_INFERENCE
    assert document[names.METRIC_DIMENSION_ALIAS] == alias
    count = document[names.METRIC_SERVER_ERRORS]
    assert (sum(count) if isinstance(count, list) else count) == 1


def test_answers_below_500_are_not_counted(down, capsys: pytest.CaptureFixture[str]):
    context = LambdaContext(function_name="credit-risk-inference", qualifier=names.LIVE_ALIAS)
    capsys.readouterr()
    for name in ("inference_invalid_json", "inference_batch_101", "inference_unknown_route"):
        assert down.lambda_handler(load_event(name), context)["statusCode"] < 500
    assert down.lambda_handler(load_event("inference_warm_up"), context)["warm"] is True
    assert alias_documents(capsys) == []


def test_the_local_gateway_invokes_through_the_live_alias(
    local_deployment: None, serving: Serving, capsys: pytest.CaptureFixture[str]
):
    # Given the local gateway in front of a function whose store is down
    down = {names.ENV_DATABASE_URL: UNREACHABLE_STORE}
    live = LocalFunction(LIVE, {**down, names.ENV_MODEL_VERSION: serving.version})
    gateway = LocalGateway(live)
    body = json.dumps({"customer_id": "5008804"}).encode()
    capsys.readouterr()
    # When a request reaches it
    response = gateway.handle("POST", names.ROUTE_SCORE, {"content-type": "application/json"}, body)
    # Then its 5xx is counted under the live alias, as for API Gateway's stage in AWS
    assert response["statusCode"] == 503
    (document,) = alias_documents(capsys)
    assert document[names.METRIC_DIMENSION_ALIAS] == names.LIVE_ALIAS
    live.close()
