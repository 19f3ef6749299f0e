"""The inference handler as the template deploys it (no pinned version, serving the
champion): in an empty environment it starts and answers 503 no_model, and it
follows promotions without a cold start. Real registries on disk, the API tests'
trained model and PostgreSQL feature store."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from credit_risk import names
from credit_risk.local_api import LambdaContext, load_handler_module, patched_environment
from credit_risk.registry import ModelNotFoundError, Registry
from lambdas.inference.handler import openapi_json
from tests.integration.api.conftest import (
    ENV_FALLBACK,
    MODEL_NAME,
    Configure,
    Serving,
    invoke,
    lambda_context,
    load_event,
)
from tests.integration.api.registries import FIRST, SECOND, promote, publish

pytestmark = pytest.mark.postgres

ENVIRONMENT = "dev"
NO_MODEL_MESSAGE = "no model is in service yet; run `credit-risk env bootstrap --env dev`"
ROUTES = ("inference_score", "inference_batch", "inference_health")


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """An empty registry: the environment before its first model."""
    return Registry(str(tmp_path / "registry"), MODEL_NAME)


class _CurrentStdout:
    """Writes wherever ``sys.stdout`` points at the time of the write."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def champion_mode(configure: Configure, registry: Registry, features_url: str):
    """Configures the handler as the template deploys it (no pinned version, fallback
    to the champion) on the empty registry; keyword overrides as for ``configure``."""

    def apply(**environment: str | None):
        return configure(
            **{
                names.ENV_REGISTRY_URI: registry.root,
                names.ENV_MODEL_VERSION: None,
                ENV_FALLBACK: "true",
                names.ENV_DATABASE_URL: features_url,
                names.ENV_ENVIRONMENT: ENVIRONMENT,
                names.ENV_MODEL_REFRESH_SECONDS: "0",
                **environment,
            }
        )

    return apply


def printed_records(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line[:1] == "{"]


def test_without_a_champion_every_route_answers_503_no_model(champion_mode):
    # Given a function started in an empty environment
    handler = champion_mode()
    handler.initialize()  # the cold start does not fail
    for name in ROUTES:
        event = load_event(name)
        # When a route is called
        answer = invoke(handler, event)
        # Then it answers 503 no_model with the way out and a Retry-After
        assert answer.status == 503, name
        assert answer.body == {
            "error": "no_model",
            "message": NO_MODEL_MESSAGE,
            "request_id": event["requestContext"]["requestId"],
        }
        assert int(answer.headers["retry-after"]) > 0
        assert answer.headers["content-type"] == "application/json"


def test_without_a_champion_warm_ups_are_answered(champion_mode):
    handler = champion_mode()
    answer = handler.lambda_handler(load_event("inference_warm_up"), lambda_context())
    assert answer == {"warm": True, "model_version": None, "release": None}


def test_provisioned_concurrency_starts_without_a_champion(
    champion_mode, monkeypatch: pytest.MonkeyPatch
):
    # Given the template's environment on an empty registry, under provisioned concurrency
    champion_mode()
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "provisioned-concurrency")
    # When a new execution environment imports the handler (which initialises it)
    module = load_handler_module("credit_risk_inference_provisioned_empty")
    # Then the import succeeded, with a service and no model
    assert module._service is not None
    assert module._service.model is None
    module._service.store.close()


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_provisioned_concurrency_still_fails_on_a_missing_pinned_version(champion_mode):
    champion_mode(**{names.ENV_MODEL_VERSION: FIRST})
    with (
        patched_environment({"AWS_LAMBDA_INITIALIZATION_TYPE": "provisioned-concurrency"}),
        pytest.raises(ModelNotFoundError),
    ):
        load_handler_module("credit_risk_inference_provisioned_pinned")


def test_a_champion_promoted_after_the_start_is_served_without_a_cold_start(
    champion_mode, registry: Registry, serving: Serving
):
    # Given a function answering no_model
    handler = champion_mode()
    assert invoke(handler, load_event("inference_score")).status == 503
    service = handler._service
    # When the first model is promoted
    promote(registry, publish(registry, serving, FIRST))
    # Then the same function instance scores with it
    score = invoke(handler, load_event("inference_score"))
    assert score.status == 200
    assert score.body["model_version"] == FIRST
    assert invoke(handler, load_event("inference_health")).body["model_version"] == FIRST
    assert handler._service is service


def test_a_promotion_is_not_seen_before_the_refresh_interval(
    champion_mode, registry: Registry, serving: Serving
):
    # Given a function serving the champion, refreshing every hour
    promote(registry, publish(registry, serving, FIRST))
    handler = champion_mode(**{names.ENV_MODEL_REFRESH_SECONDS: "3600"})
    assert invoke(handler, load_event("inference_score")).body["model_version"] == FIRST
    # When another version is promoted
    promote(registry, publish(registry, serving, SECOND))
    # Then requests within the hour are still scored by the first
    assert invoke(handler, load_event("inference_score")).body["model_version"] == FIRST
    batch = invoke(handler, load_event("inference_batch")).body
    assert batch["model_version"] == FIRST
    assert {r["model_version"] for r in batch["results"]} == {FIRST}


def test_a_corrupt_promotion_keeps_scoring_up_and_publishes_the_error_metric(
    champion_mode,
    registry: Registry,
    serving: Serving,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    # Given a function serving the champion
    promote(registry, publish(registry, serving, FIRST))
    handler = champion_mode()
    monkeypatch.setattr(handler.logger.registered_handler, "stream", _CurrentStdout())
    assert invoke(handler, load_event("inference_score")).status == 200
    capsys.readouterr()
    # When a version with a damaged model file is promoted
    promote(registry, publish(registry, serving, SECOND, corrupt=True))
    answer = invoke(handler, load_event("inference_score"))
    # Then scoring goes on with the model in service
    assert answer.status == 200
    assert answer.body["model_version"] == FIRST
    # And the failure is logged and counted (service dimension only, for an alarm)
    records = printed_records(capsys)
    errors = [r for r in records if r.get("message") == "the new champion could not be loaded"]
    assert errors
    assert errors[0]["level"] == "ERROR"
    assert "sha256" in errors[0]["reason"]
    metric = [r for r in records if names.METRIC_MODEL_REFRESH_ERRORS in r]
    assert len(metric) == 1
    count = metric[0][names.METRIC_MODEL_REFRESH_ERRORS]
    assert (sum(count) if isinstance(count, list) else count) == 1
    directive = metric[0]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == names.metric_namespace(ENVIRONMENT)
    assert directive["Dimensions"] == [["service"]]
    assert metric[0]["service"] == names.SERVICE_INFERENCE


def test_every_route_documents_the_503_no_model_answer():
    paths = json.loads(openapi_json())["paths"]
    for path in (names.ROUTE_SCORE, names.ROUTE_SCORE_BATCH, names.ROUTE_HEALTH):
        (operation,) = paths[path].values()
        unavailable = operation["responses"]["503"]
        assert "no_model" in unavailable["description"]
        assert "Retry-After" in unavailable["headers"]


def test_no_model_is_not_counted_against_the_alias_the_releases_watch(champion_mode, capsys):
    # Given an empty environment, called through live as the warm-up rule calls it
    handler = champion_mode()
    context = LambdaContext(function_name="credit-risk-inference", qualifier=names.LIVE_ALIAS)
    capsys.readouterr()
    # When the health route answers 503 no_model
    response = handler.lambda_handler(load_event("inference_health"), context)
    assert response["statusCode"] == 503
    # Then no per-alias ServerErrors is published: a code deploy made before the
    # bootstrap must not roll back on the empty environment's answers
    per_alias = [
        record
        for record in printed_records(capsys)
        if names.METRIC_SERVER_ERRORS in record and names.METRIC_DIMENSION_ALIAS in record
    ]
    assert per_alias == []
