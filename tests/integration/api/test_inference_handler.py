"""The inference Lambda, called in-process with the sample API Gateway events of
``tests/events/``, a real model and a real PostgreSQL feature store."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from pydantic import ValidationError

from credit_risk import names
from credit_risk.errors import ConfigurationError
from credit_risk.local_api import load_handler_module
from credit_risk.registry import IntegrityError, ModelNotFoundError
from tests.conftest import EVENTS_DIR
from tests.integration.api.conftest import (
    AS_OF,
    ENV_FALLBACK,
    EVENT_CUSTOMERS,
    Configure,
    Serving,
    invoke,
    lambda_context,
    load_event,
    with_body,
)

pytestmark = pytest.mark.postgres

# An address where no PostgreSQL listens: the store is down from the start.
UNREACHABLE_STORE = "postgresql://postgres@127.0.0.1:9/none?connect_timeout=1"


@pytest.fixture
def handler(configure: Configure, features_url: str):
    return configure(**{names.ENV_DATABASE_URL: features_url})


def assert_error(answer, status: int, error: str, request_id: str) -> None:
    assert answer.status == status
    assert answer.body["error"] == error
    assert answer.body["request_id"] == request_id
    assert set(answer.body) == {"error", "message", "request_id"}
    assert "Traceback" not in answer.body["message"]


class _CurrentStdout:
    """Writes wherever ``sys.stdout`` points at the time of the write."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def printed(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, handler):
    """Reads what the function printed, as JSON records (logs and EMF metrics).

    The Powertools logger keeps the stream it started with; it is pointed at the
    captured stdout, where the metrics are printed too."""
    monkeypatch.setattr(handler.logger.registered_handler, "stream", _CurrentStdout())
    capsys.readouterr()

    def read() -> list[dict]:
        return [
            json.loads(line)
            for line in capsys.readouterr().out.splitlines()
            if line.startswith("{")
        ]

    return read


# --- success -----------------------------------------------------------------
def test_score_returns_probability_decision_reasons_and_versions(handler, serving: Serving):
    # Given the sample score event for a customer in the store
    event = load_event("inference_score")
    # When the function is invoked
    answer = invoke(handler, event)
    # Then the score carries everything DESIGN.md lists
    assert answer.status == 200
    score = answer.body
    assert score["customer_id"] == "5008804"
    assert 0.0 <= score["default_probability"] <= 1.0
    assert score["threshold"] == pytest.approx(serving.threshold)
    assert score["model_version"] == serving.version
    assert score["features_as_of"] == AS_OF.isoformat()
    for reason in score["reasons"]:
        # A decline always has a reason: the least favourable one when none raised it.
        assert reason["contribution"] > 0 or (
            score["decision"] == "decline" and len(score["reasons"]) == 1
        )
        assert set(reason) == {"code", "text", "feature", "value", "contribution"}
    assert answer.headers["content-type"] == "application/json"


def test_decision_is_decline_exactly_at_or_above_the_threshold(handler, serving: Serving):
    # Given batches covering the first thousand customers
    decisions = set()
    for start in range(0, 1000, names.MAX_BATCH_SIZE):
        ids = serving.customer_ids[start : start + names.MAX_BATCH_SIZE]
        event = with_body(load_event("inference_batch"), {"customer_ids": ids})
        # When they are scored
        results = invoke(handler, event).body["results"]
        # Then every decision follows the model's threshold
        for result in results:
            expected = (
                "decline" if result["default_probability"] >= serving.threshold else "approve"
            )
            assert result["decision"] == expected
            decisions.add(result["decision"])
    assert decisions == {"approve", "decline"}


def test_batch_keeps_request_order_repeats_duplicates_and_lists_unknown_ids_apart(handler):
    # Given a batch with a repeated id and two unknown ones
    event = load_event("inference_batch")
    requested = json.loads(event["body"])["customer_ids"]
    # When it is scored
    answer = invoke(handler, event)
    # Then known ids come back in request order, duplicates included, unknown ones apart
    assert answer.status == 200
    assert [r["customer_id"] for r in answer.body["results"]] == ["5008805", "5008804", "5008805"]
    assert answer.body["unknown_customer_ids"] == ["NO-SUCH-1", "NO-SUCH-2"]
    assert len(answer.body["results"]) + 2 == len(requested)
    first, _, again = answer.body["results"]
    # Each answer is a decision of its own: the same score under two decision ids.
    assert first.pop("decision_id") != again.pop("decision_id")
    assert first == again


def test_single_and_batch_scores_agree(handler):
    single = invoke(handler, load_event("inference_score")).body
    batch = invoke(
        handler, with_body(load_event("inference_batch"), {"customer_ids": ["5008804"]})
    ).body
    assert single.pop("decision_id") != batch["results"][0].pop("decision_id")
    assert batch["results"] == [single]


def test_health_reports_model_version_and_store(handler, serving: Serving):
    answer = invoke(handler, load_event("inference_health"))
    assert answer.status == 200
    assert answer.body == {
        "status": "ok",
        "model_version": serving.version,
        "store_reachable": True,
        "features_as_of": AS_OF.isoformat(),
        "snapshot_id": "api-tests",
    }


@pytest.mark.parametrize("content_type", ["Application/JSON", "APPLICATION/JSON; charset=UTF-8"])
def test_the_media_type_of_the_body_is_read_in_any_case(handler, content_type):
    # Given a score request whose Content-Type is capitalised (media types are
    # case-insensitive)
    event = load_event("inference_score")
    event["headers"]["Content-Type"] = content_type
    event["multiValueHeaders"]["Content-Type"] = [content_type]
    # When it is handled, then it is scored
    answer = invoke(handler, event)
    assert answer.status == 200, answer.body
    assert answer.body["customer_id"] == "5008804"


# --- errors ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("event_name", "status", "error", "message_part"),
    [
        ("inference_invalid_json", 400, "invalid_request", "not valid JSON"),
        ("inference_not_json", 400, "invalid_request", "must be JSON"),
        ("inference_wrong_type", 400, "invalid_request", "customer_id"),
        ("inference_unknown_field", 400, "invalid_request", "include_features"),
        ("inference_empty_id", 400, "invalid_request", "customer_id"),
        ("inference_long_id", 400, "invalid_request", "customer_id"),
        ("inference_unknown_customer", 404, "unknown_customer", "customer"),
        ("inference_batch_101", 413, "batch_too_large", "at most 100"),
        ("inference_unknown_route", 404, "not_found", "route"),
    ],
)
def test_error_events_get_json_errors(handler, event_name, status, error, message_part):
    # Given a sample event that must be refused
    event = load_event(event_name)
    # When it is handled
    answer = invoke(handler, event)
    # Then the answer is the documented JSON error with the request id
    assert_error(answer, status, error, event["requestContext"]["requestId"])
    assert message_part in answer.body["message"]


@pytest.mark.parametrize(
    "body",
    [
        "",
        "null",
        "[]",
        '"5008804"',
        "{}",
        '{"customer_ids": ["5008804"]}',
        '{"customer_id": ["5008804"]}',
        '{"customer_id": null}',
        '{"customer_id": true}',
        '{"customer_id": "5008804", "customer_id": 7}',
        '{"customer_id": ' + "[" * 5_000 + "]" * 5_000 + "}",
        '{"customer_id": 1' + "0" * 5_000 + "}",
        '{"customer_id": NaN}',
    ],
    ids=[
        "empty",
        "null",
        "array",
        "string",
        "no-field",
        "other-route-field",
        "list",
        "null-id",
        "bool-id",
        "duplicate-key",
        "nested-too-deep",
        "integer-too-long",
        "nan",
    ],
)
def test_malformed_bodies_are_400(handler, body):
    answer = invoke(handler, with_body(load_event("inference_score"), body))
    assert_error(answer, 400, "invalid_request", answer.body["request_id"])


@pytest.mark.parametrize(
    "body",
    [
        '{"customer_ids": []}',
        '{"customer_ids": "5008804"}',
        '{"customer_ids": ["5008804", ""]}',
        '{"customer_ids": [1]}',
    ],
)
def test_malformed_batches_are_400(handler, body):
    answer = invoke(handler, with_body(load_event("inference_batch"), body))
    assert answer.status == 400


def test_hostile_ids_get_400_or_404_never_500(handler):
    # Given SQL, unicode, control characters and a 10 KB id
    hostile = load_event("inference_hostile_ids")["customer_ids"] + ["9" * 10_240]
    score_event, batch_event = load_event("inference_score"), load_event("inference_batch")
    for customer_id in hostile:
        # When each is sent alone and in a batch
        single = invoke(handler, with_body(score_event, {"customer_id": customer_id}))
        batch = invoke(handler, with_body(batch_event, {"customer_ids": [customer_id]}))
        # Then it is refused as input or unknown, and the error quotes no input back
        assert single.status in (400, 404), customer_id
        assert batch.status in (200, 400), customer_id
        if batch.status == 200:
            assert batch.body["unknown_customer_ids"] == [customer_id]
        assert len(single.body["message"]) < 500
    # And the store still answers
    assert invoke(handler, score_event).status == 200


def test_field_names_quoted_in_errors_are_cut_short(handler):
    body = {"customer_id": "5008804", "x" * 10_000: 1}
    answer = invoke(handler, with_body(load_event("inference_score"), body))
    assert answer.status == 400
    assert len(answer.body["message"]) < 200


# --- store outage ----------------------------------------------------------------
def test_store_outage_is_503_with_retry_after_then_recovers(handler, postgres_server):
    event = load_event("inference_score")
    assert invoke(handler, event).status == 200  # the connection is open and warm
    postgres_server.stop()
    try:
        # When the store goes away under a warm function
        down = invoke(handler, event)
        batch = invoke(handler, load_event("inference_batch"))
        health = invoke(handler, load_event("inference_health"))
    finally:
        postgres_server.start()
    # Then scoring answers 503 with Retry-After, and health says degraded
    assert_error(down, 503, "store_unavailable", event["requestContext"]["requestId"])
    assert int(down.headers["retry-after"]) > 0
    assert batch.status == 503
    assert health.status == 200
    assert health.body["status"] == "degraded"
    assert health.body["store_reachable"] is False
    # And once it is back, the same function serves again on a new connection
    assert invoke(handler, event).status == 200


# --- warm-up ---------------------------------------------------------------------
def test_warm_up_is_answered_without_touching_the_store(configure: Configure, serving: Serving):
    # Given a function whose store is unreachable
    handler = configure(**{names.ENV_DATABASE_URL: UNREACHABLE_STORE})
    # When the scheduled warm-up event arrives
    answer = handler.lambda_handler(load_event("inference_warm_up"), lambda_context())
    # Then it is answered at once with the model version
    assert answer == {"warm": True, "model_version": serving.version, "release": None}
    # (a request that does need the store gets 503, so the warm-up did not use it)
    assert invoke(handler, load_event("inference_score")).status == 503


# --- model loading ---------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_corrupt_model_refuses_to_initialise(configure: Configure, serving: Serving):
    handler = configure(**{names.ENV_MODEL_VERSION: serving.corrupt_version})
    with pytest.raises(IntegrityError, match="sha256"):
        handler.initialize()
    # The invocation fails as a whole (a Lambda error), it does not serve anything.
    with pytest.raises(IntegrityError):
        handler.lambda_handler(load_event("inference_score"), lambda_context())
    assert handler._service is None


def test_invalid_environment_refuses_at_cold_start(configure: Configure):
    handler = configure(**{f"{names.ENV_PREFIX}REASONS_TOP_K": "0"})
    with pytest.raises(ValidationError, match="reasons_top_k"):
        handler.initialize()
    assert handler._service is None


def test_importing_the_handler_loads_no_model_and_opens_no_store(configure: Configure):
    # Given an environment where neither the model nor the store could be reached
    configure(
        **{
            names.ENV_MODEL_VERSION: "20990101T000000Z-deadbeef",
            names.ENV_DATABASE_URL: UNREACHABLE_STORE,
        }
    )
    # When a fresh copy of the module is imported, as a new execution environment does
    module = load_handler_module("credit_risk_inference_import_test")
    # Then nothing was loaded or opened yet: that waits for the first invocation
    assert module._service is None


def test_missing_model_version_without_fallback_refuses(configure: Configure):
    handler = configure(**{names.ENV_MODEL_VERSION: None})
    with pytest.raises(ConfigurationError, match="MODEL_VERSION"):
        handler.initialize()


def test_pinned_version_absent_from_registry_refuses(configure: Configure):
    handler = configure(**{names.ENV_MODEL_VERSION: "20990101T000000Z-deadbeef"})
    with pytest.raises(ModelNotFoundError):
        handler.initialize()


def test_fallback_to_champion_serves_the_champion(
    configure: Configure, features_url: str, serving: Serving
):
    handler = configure(
        **{
            names.ENV_MODEL_VERSION: None,
            ENV_FALLBACK: "true",
            names.ENV_DATABASE_URL: features_url,
        }
    )
    assert invoke(handler, load_event("inference_score")).body["model_version"] == serving.version


def test_pinned_version_is_served_even_when_it_is_not_the_champion(
    configure: Configure, features_url: str, serving: Serving
):
    handler = configure(
        **{names.ENV_MODEL_VERSION: serving.candidate_version, names.ENV_DATABASE_URL: features_url}
    )
    answer = invoke(handler, load_event("inference_score"))
    assert answer.body["model_version"] == serving.candidate_version


# --- the image's dependency set ----------------------------------------------------
# What containers/inference/Dockerfile leaves out: pyarrow, the spark, train and infra
# extras, and the dev tools.
NOT_IN_THE_IMAGE = ("pyarrow", "pandas", "pyspark", "sklearn", "matplotlib", "aws_cdk", "flask")
IMAGE_RUN = """
import importlib.abc, json, sys

class NotInTheImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in {absent!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None

sys.meta_path.insert(0, NotInTheImage())
sys.path.insert(0, {root!r})
from credit_risk.local_api import LambdaContext
from lambdas.inference import handler

statuses = []
for name in ("inference_score", "inference_batch", "inference_health"):
    event = json.loads(open(f"{events}/{{name}}.json").read())
    response = handler.lambda_handler(event, LambdaContext(function_name="image"))
    statuses.append(response["statusCode"])
print(json.dumps(statuses), file=sys.stderr)
"""


def test_the_handler_serves_with_the_image_dependencies_only(handler):
    # Given a fresh interpreter where what the image does not install cannot be imported
    script = IMAGE_RUN.format(
        absent=NOT_IN_THE_IMAGE, root=str(EVENTS_DIR.parents[1]), events=str(EVENTS_DIR)
    )
    # When it serves the sample events against the PostgreSQL store
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    # Then every request is answered
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stderr.strip().splitlines()[-1]) == [200, 200, 200]


# --- logs and metrics ------------------------------------------------------------
def test_customer_ids_never_appear_in_clear_in_logs(handler, printed):
    # Given known, unknown, repeated and hostile ids
    hostile = load_event("inference_hostile_ids")["customer_ids"]
    invoke(handler, load_event("inference_score"))
    invoke(handler, load_event("inference_batch"))
    invoke(handler, load_event("inference_unknown_customer"))
    for customer_id in hostile:
        invoke(handler, with_body(load_event("inference_score"), {"customer_id": customer_id}))
    # When the printed logs are read
    records = printed()
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    # Then they carry keyed hashes, never the ids
    scored = [r for r in records if r.get("message") == "scored"]
    assert len(scored) >= 3  # every request that reached the store
    assert sum(len(r["unknown_customers"]) for r in scored) >= 3
    assert all(re.fullmatch(r"[0-9a-f]{24}", h) for r in scored for h in r["customers"])
    for customer_id in (*EVENT_CUSTOMERS, "NO-SUCH-1", "UNKNOWN-42"):
        assert customer_id not in text
    assert all(r.get("correlation_id") for r in scored)


def test_metrics_are_emitted_with_the_model_version(handler, printed, serving: Serving):
    # When a batch with two unknown ids and a health check are handled
    invoke(handler, load_event("inference_batch"))
    invoke(handler, load_event("inference_health"))
    documents = [r for r in printed() if "_aws" in r]

    def total(name: str, **dimensions: str) -> float:
        return sum(
            sum(d[name]) if isinstance(d[name], list) else d[name]
            for d in documents
            if name in d and all(d.get(k) == v for k, v in dimensions.items())
        )

    # Then every request metric is in the deployment's namespace (here a local run's)
    # with the model_version dimension
    request_docs = [d for d in documents if "Requests" in d or "ScoresServed" in d]
    for document in request_docs:
        directive = document["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == names.metric_namespace("local")
        assert set(directive["Dimensions"][0]) == {"model_version", "service"}
    version = {"model_version": serving.version}
    assert total("Requests", **version) == 2
    assert total("Latency", **version) > 0
    assert total("ScoresServed", **version) == 3
    assert total("UnknownCustomers", **version) == 2
    # And the score-bucket counts add up to the scores served
    bucket_names = {k for d in documents for k in d if k.startswith("ScoreBucket_")}
    assert bucket_names
    assert sum(total(name, **version) for name in bucket_names) == 3
    # And health publishes the staleness gauges the alarms watch (service dimension only)
    ages = [d for d in documents if names.METRIC_MODEL_AGE_DAYS in d]
    assert ages[-1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert any(names.METRIC_FEATURES_AGE_DAYS in d for d in documents)
