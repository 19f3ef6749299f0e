"""The release smoke test against a real HTTP server and Secrets Manager (moto).

The server answers as the deployed API does (API key header, JSON bodies); each
test sets how it answers and runs the script's ``main`` as the pipeline does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import boto3
import pytest
from moto import mock_aws

from credit_risk import names
from infra import smoke_test

API_KEY = "k" * 40
CUSTOMER = "5008804"
SNAPSHOT_ID = "2026-01-01-20260101T030000Z"
HEALTHY = {
    "status": "ok",
    "model_version": "20260101T000000Z",
    "store_reachable": True,
    "features_as_of": "2026-01-01",
    "snapshot_id": SNAPSHOT_ID,
}
SCORE = {
    "customer_id": CUSTOMER,
    "default_probability": 0.0421,
    "decision": "approve",
    "threshold": 0.2,
    "reasons": [],
    "model_version": "20260101T000000Z",
    "features_as_of": "2026-01-01",
    "decision_id": "019ad8a4-5f3e-7c41-9a0b-2f6d1e8c7a55",
}
DECISION_ROUTE = f"{names.ROUTE_DECISION}/{SCORE['decision_id']}"


class FakeApi(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, Any]]] = {}
    # Routes a broken release would serve without the key.
    open_routes: ClassVar[set[str]] = set()
    synthetic: ClassVar[list[str | None]] = []

    def _answer(self) -> None:
        route = self.path.removeprefix(f"/{names.API_STAGE_NAME}")
        FakeApi.synthetic.append(self.headers.get(names.SYNTHETIC_HEADER))
        if self.headers.get(names.API_KEY_HEADER) != API_KEY and route not in self.open_routes:
            status, body = 403, {"message": "Forbidden"}
        else:
            # API Gateway's URL ends in the stage name, which routing strips.
            route = self.path.removeprefix(f"/{names.API_STAGE_NAME}")
            status, body = self.answers.get(route) or self._recorded(route)
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _recorded(self, route: str) -> tuple[int, Any]:
        """Like the API, the decision of the score it answers is on record."""
        status, score = self.answers.get(names.ROUTE_SCORE, (404, {}))
        if status == 200 and route == f"{names.ROUTE_DECISION}/{score.get('decision_id')}":
            return 200, {**score, "snapshot_id": SNAPSHOT_ID, "features": {}}
        return 404, {"error": "not_found"}

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        self._answer()

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def api() -> Iterator[str]:
    FakeApi.answers = {
        names.ROUTE_HEALTH: (200, HEALTHY),
        names.ROUTE_SCORE: (200, SCORE),
    }
    FakeApi.open_routes = set()
    FakeApi.synthetic = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/{names.API_STAGE_NAME}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def secret_arn(monkeypatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        client = boto3.client("secretsmanager")
        secret = client.create_secret(
            Name="client-key",
            SecretString=json.dumps({"key_name": "x", names.API_KEY_SECRET_FIELD: API_KEY}),
        )
        yield secret["ARN"]


def _run(url: str, secret: str) -> int:
    return smoke_test.main(["--api-url", url, "--secret-arn", secret, "--customer-id", CUSTOMER])


def test_the_script_uses_the_names_the_api_uses():
    assert smoke_test.API_KEY_HEADER == names.API_KEY_HEADER
    assert smoke_test.API_KEY_SECRET_FIELD == names.API_KEY_SECRET_FIELD
    assert smoke_test.ROUTE_HEALTH == names.ROUTE_HEALTH
    assert smoke_test.ROUTE_SCORE == names.ROUTE_SCORE
    assert smoke_test.ROUTE_DECISION == names.ROUTE_DECISION
    assert smoke_test.SYNTHETIC_HEADER == names.SYNTHETIC_HEADER


def test_a_healthy_api_that_scores_the_known_customer_passes(api, secret_arn, capsys):
    assert _run(api, secret_arn) == 0
    assert f"customer {CUSTOMER} scored 0.0421 (approve)" in capsys.readouterr().out


def test_a_degraded_api_fails_the_release_with_the_reason(api, secret_arn, capsys):
    FakeApi.answers[names.ROUTE_HEALTH] = (
        200,
        {**HEALTHY, "status": "degraded", "store_reachable": False, "snapshot_id": None},
    )

    assert _run(api, secret_arn) == 1
    assert "unhealthy" in capsys.readouterr().err


def test_an_environment_without_a_model_is_told_to_run_the_bootstrap(api, secret_arn, capsys):
    # given a freshly deployed environment: health answers 503 no_model
    FakeApi.answers[names.ROUTE_HEALTH] = (
        503,
        {
            "error": "no_model",
            "message": "no model is in service yet; run `credit-risk env bootstrap --env dev`",
            "request_id": "r-1",
        },
    )

    # then the release stops with what to do next, naming the API it checked
    assert _run(api, secret_arn) == 1
    err = capsys.readouterr().err
    assert f"smoke test FAILED against {api}: no model is in service in this environment yet" in err
    assert "run `credit-risk env bootstrap --env <env>`" in err


def test_a_store_without_a_snapshot_is_told_to_run_the_bootstrap(api, secret_arn, capsys):
    FakeApi.answers[names.ROUTE_HEALTH] = (
        200,
        {**HEALTHY, "status": "degraded", "features_as_of": None, "snapshot_id": None},
    )

    assert _run(api, secret_arn) == 1
    err = capsys.readouterr().err
    assert "the feature store holds no snapshot: run the bootstrap" in err
    assert "credit-risk env bootstrap" in err


def test_an_unknown_customer_names_the_snapshot_and_the_setting_to_change(api, secret_arn, capsys):
    FakeApi.answers[names.ROUTE_SCORE] = (
        404,
        {"error": "unknown_customer", "message": "no features for this customer id"},
    )

    assert _run(api, secret_arn) == 1
    assert (
        f"customer {CUSTOMER} is not in the active snapshot {SNAPSHOT_ID}: set "
        "probe.customer_id of the deployment in cdk.json to a customer the store holds"
    ) in capsys.readouterr().err


def test_another_404_on_the_score_route_is_reported_as_is(api, secret_arn, capsys):
    # a wrong URL (API Gateway's own 404) is not a customer missing from the store
    FakeApi.answers.pop(names.ROUTE_SCORE)

    assert _run(api, secret_arn) == 1
    assert f"customer {CUSTOMER} answered 404" in capsys.readouterr().err


def test_the_customer_defaults_to_the_first_synthetic_customer(
    api, secret_arn, capsys, monkeypatch
):
    monkeypatch.delenv("SMOKE_CUSTOMER_ID", raising=False)
    FakeApi.answers[names.ROUTE_SCORE] = (200, {**SCORE, "customer_id": "1234567"})

    assert smoke_test.main(["--api-url", api, "--secret-arn", secret_arn]) == 0
    assert "customer 1234567 scored" in capsys.readouterr().out


def test_a_probability_outside_zero_one_fails_the_release(api, secret_arn, capsys):
    FakeApi.answers[names.ROUTE_SCORE] = (200, {**SCORE, "default_probability": 1.7})

    assert _run(api, secret_arn) == 1
    assert "not in [0, 1]" in capsys.readouterr().err


def test_a_wrong_key_in_the_secret_fails_on_the_first_call(api, capsys):
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="eu-west-1")
        arn = client.create_secret(
            Name="stale", SecretString=json.dumps({names.API_KEY_SECRET_FIELD: "stale"})
        )["ARN"]

        assert _run(api, arn) == 1
    assert "answered 403" in capsys.readouterr().err


def test_a_secret_without_the_key_field_is_reported(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        client = boto3.client("secretsmanager")
        arn = client.create_secret(Name="empty", SecretString="{}")["ARN"]

        with pytest.raises(smoke_test.SmokeTestError, match="'api_key'"):
            smoke_test.read_api_key(arn, client=client)


def test_an_unreachable_api_fails_with_one_line(secret_arn, capsys):
    assert _run("http://127.0.0.1:9", secret_arn) == 1
    assert "unreachable" in capsys.readouterr().err


def test_missing_arguments_are_a_usage_error(monkeypatch):
    for variable in ("API_URL", "API_KEY_SECRET_ARN", "SMOKE_CUSTOMER_ID"):
        monkeypatch.delenv(variable, raising=False)

    with pytest.raises(SystemExit) as exit_info:
        smoke_test.main([])
    assert exit_info.value.code == 2


def test_a_score_without_a_decision_id_fails_the_release(api, secret_arn, capsys):
    FakeApi.answers[names.ROUTE_SCORE] = (
        200,
        {key: value for key, value in SCORE.items() if key != "decision_id"},
    )

    assert _run(api, secret_arn) == 1
    assert "carries no decision_id" in capsys.readouterr().err


def test_a_decision_not_on_record_fails_the_release(api, secret_arn, capsys):
    FakeApi.answers[DECISION_ROUTE] = (404, {"error": "unknown_decision"})

    assert _run(api, secret_arn) == 1
    assert f"GET {DECISION_ROUTE} answered 404" in capsys.readouterr().err


def test_a_decision_recorded_otherwise_than_answered_fails_the_release(api, secret_arn, capsys):
    FakeApi.answers[DECISION_ROUTE] = (200, {**SCORE, "decision": "decline"})

    assert _run(api, secret_arn) == 1
    assert "differs from the score" in capsys.readouterr().err


def test_a_decision_readable_without_the_key_fails_the_release(api, secret_arn, capsys):
    FakeApi.open_routes = {DECISION_ROUTE}

    assert _run(api, secret_arn) == 1
    assert f"GET {DECISION_ROUTE} without an API key answered 200" in capsys.readouterr().err


def test_every_call_says_it_is_the_smoke_test(api, secret_arn):
    # Its decision is recorded as synthetic traffic, apart from the lender's.
    assert _run(api, secret_arn) == 0
    assert set(FakeApi.synthetic) == {"smoke-test"}
