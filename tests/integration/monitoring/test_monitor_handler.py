"""The monitor function with moto (S3 lake, Secrets Manager, EventBridge) and the
real PostgreSQL store: a scheduled event in, metrics, a report in the lake and,
when live quality drops and retraining is enabled, a retraining request out; before
the first model is in service, a run that skips instead of failing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, time
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from credit_risk import names
from credit_risk.errors import InvalidInputError
from credit_risk.registry import ModelNotFoundError
from credit_risk.settings import Settings
from credit_risk.store import create_store
from infra.stacks.monitoring import MONITOR_ALARMS
from lambdas.monitor import handler
from tests.conftest import EVENTS_DIR, use_fake_aws_credentials
from tests.integration.api.conftest import (  # noqa: F401 - the serving fixture
    MODEL_NAME,
    lambda_context,
    serving,
)
from tests.integration.monitoring.world import (
    AS_OF,
    END,
    HASH_KEY,
    SNAPSHOT_ID,
    TODAY,
    World,
    make_world,
)
from tests.integration.store.conftest import fresh_postgres_database

pytestmark = pytest.mark.postgres
REGION = "eu-west-1"
DEPLOYMENT = "dev"
BUCKET = "credit-risk-dev-curated-test"
PER_DAY = 300


@pytest.fixture
def database_url(postgres_url: str) -> Iterator[str]:
    url, drop = fresh_postgres_database(postgres_url)
    yield url
    drop()


@pytest.fixture
def aws(monkeypatch) -> Iterator[None]:
    use_fake_aws_credentials(monkeypatch, REGION)
    with mock_aws():
        boto3.client("s3").create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield


@pytest.fixture
def retraining_queue(aws) -> str:
    """An SQS queue receiving what a rule on the default bus matches: the monitor's
    retraining requests, as the training pipeline's trigger rule selects them."""
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="retraining")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = boto3.client("events")
    events.put_rule(
        Name="retraining-requested",
        EventPattern=json.dumps(
            {"source": [names.MONITOR_EVENT_SOURCE], "detail-type": [names.RETRAINING_REQUESTED]}
        ),
    )
    events.put_targets(Rule="retraining-requested", Targets=[{"Id": "queue", "Arn": arn}])
    return url


@pytest.fixture
def world(aws, tmp_path, serving, database_url, monkeypatch) -> World:  # noqa: F811
    """The lake on S3, the store in PostgreSQL, the id-hash key in Secrets Manager, and
    the function's environment as the stack sets it."""
    world = make_world(tmp_path, f"s3://{BUCKET}", serving)
    world.publish_snapshot()
    secret = boto3.client("secretsmanager").create_secret(Name="id-hash", SecretString=HASH_KEY)
    for name, value in {
        "CREDIT_RISK_LOCAL_DIR": str(tmp_path),
        names.ENV_ENVIRONMENT: DEPLOYMENT,
        names.ENV_LAKE_URI: world.lake,
        names.ENV_REGISTRY_URI: serving.registry_uri,
        names.ENV_MODEL_NAME: MODEL_NAME,
        names.ENV_DATABASE_URL: database_url,
        names.ENV_ID_HASH_SECRET_ID: secret["ARN"],
        "CREDIT_RISK_MONITOR_WINDOW_DAYS": "3",
        "CREDIT_RISK_MONITOR_MIN_SCORES": "200",
        "CREDIT_RISK_MIN_LABELLED": "300",
        "CREDIT_RISK_SKEW_SAMPLE_SIZE": "100",
        "CREDIT_RISK_RETRAIN_ON_QUALITY_DROP": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CREDIT_RISK_ID_HASH_KEY", raising=False)
    return world


def _scheduled_event() -> dict[str, Any]:
    """The sample scheduled event, fired at 05:00 today: the window ends yesterday."""
    event = json.loads((EVENTS_DIR / "monitor_scheduled.json").read_text())
    event["time"] = datetime.combine(TODAY, time(5), UTC).isoformat().replace("+00:00", "Z")
    return event


def _emf(output: str) -> list[dict[str, Any]]:
    documents = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


def _metric_values(documents: list[dict[str, Any]]) -> dict[tuple[str, str | None], Any]:
    values = {}
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == names.metric_namespace(DEPLOYMENT)
            for metric in directive["Metrics"]:
                assert document["service"] == names.SERVICE_MONITOR
                value = document[metric["Name"]]  # a list when Powertools aggregated it
                (value,) = value if isinstance(value, list) else [value]
                values[(metric["Name"], document.get("feature"))] = value
    return values


def _received(queue_url: str) -> list[dict[str, Any]]:
    messages = boto3.client("sqs").receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    )
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


def _load_store(world: World) -> Any:
    store = create_store(Settings())
    store.migrate()
    store.load_snapshot(world.snapshot, SNAPSHOT_ID, AS_OF)
    return store


def test_a_quality_drop_publishes_metrics_stores_the_report_and_requests_retraining(
    world, retraining_queue, capsys
):
    # given yesterday's window of traffic whose outcomes no longer follow the score
    with _load_store(world) as store:
        served = world.traffic(store, world.customers(), PER_DAY)
    world.write_log(served)
    rng = np.random.default_rng(3)
    world.write_labels(served, lambda p: int(rng.random() < 0.3))

    # when the schedule fires
    summary = handler.lambda_handler(_scheduled_event(), lambda_context())

    # then live quality alerts and a retraining was requested on the default bus
    assert summary["status"] == "alert"
    assert summary["checks"]["quality"]["status"] == "alert"
    assert summary["retraining_requested"] is True
    (request,) = _received(retraining_queue)
    assert request["detail-type"] == names.RETRAINING_REQUESTED
    assert request["source"] == names.MONITOR_EVENT_SOURCE
    assert request["detail"]["model_version"] == world.serving.version
    assert "live quality" in request["detail"]["reason"]
    # the report (and its page) are in the lake under the window's end
    key = f"{names.MONITORING_PREFIX}date={END.isoformat()}/report.json"
    assert summary["report_uri"] == f"s3://{BUCKET}/{key}"
    s3 = boto3.client("s3")
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert report["window"]["end"] == END.isoformat()
    assert report["counts"]["scores"] == 3 * PER_DAY
    assert report["checks"]["skew"]["compared"] == 100  # ids hashed with the secret's key
    assert report["checks"]["skew"]["mismatches"] == 0
    page = s3.get_object(Bucket=BUCKET, Key=key.replace("report.json", "report.html"))
    assert page["Body"].read().startswith(b"<!doctype html>")
    # and every metric the alarms watch was published, PSI per feature, under exactly
    # the dimensions the alarms and the dashboard name (another set is another metric)
    documents = _emf(capsys.readouterr().out)
    metrics = _metric_values(documents)
    dimensions = {
        metric["Name"]: directive["Dimensions"]
        for document in documents
        for directive in document["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    }
    for _, name, _ in MONITOR_ALARMS:
        assert dimensions[name] == [["service"]], name
    assert dimensions[names.METRIC_PSI] == [["service", "feature"]]
    assert metrics[(names.METRIC_LIVE_QUALITY_ALERTS, None)] == 1.0
    assert metrics[(names.METRIC_SCORES_MONITORED, None)] == 3 * PER_DAY
    for name in (
        names.METRIC_DRIFT_ALERTS,
        names.METRIC_SKEW_MISMATCHES,
        names.METRIC_INVARIANT_VIOLATIONS,
        names.METRIC_STALENESS_ALERTS,
        names.METRIC_LIVE_AUC,
        names.METRIC_MODEL_AGE_DAYS,
        names.METRIC_FEATURES_AGE_DAYS,
    ):
        assert (name, None) in metrics
    assert (names.METRIC_PSI, "age") in metrics
    assert (names.METRIC_PSI, "score") in metrics


def test_without_retraining_enabled_a_quality_drop_only_alerts(
    world, retraining_queue, monkeypatch
):
    monkeypatch.setenv("CREDIT_RISK_RETRAIN_ON_QUALITY_DROP", "false")
    with _load_store(world) as store:
        served = world.traffic(store, world.customers(), PER_DAY)
    world.write_log(served)
    world.write_labels(served, lambda p: 1 if p < 0.05 else 0)  # ranked upside down

    summary = handler.lambda_handler(_scheduled_event(), lambda_context())

    assert summary["checks"]["quality"]["status"] == "alert"
    assert summary["retraining_requested"] is False
    assert _received(retraining_queue) == []


def test_a_manual_run_of_a_window_without_scores_reports_staleness(world, retraining_queue):
    with _load_store(world):
        pass

    summary = handler.lambda_handler({"end": END.isoformat(), "days": 2}, lambda_context())

    assert summary["scores"] == 0
    assert summary["window"]["days"] == 2
    assert summary["checks"]["staleness"]["status"] == "ok"
    assert summary["checks"]["drift"]["status"] == "skipped"
    assert any("no scores" in note for note in summary["notes"])
    assert summary["retraining_requested"] is False


def test_an_invalid_event_is_refused(world):
    with pytest.raises(InvalidInputError, match="invalid monitor event"):
        handler.lambda_handler({"days": 0}, lambda_context())


@pytest.fixture
def empty_registry(aws, tmp_path, monkeypatch) -> str:
    """A freshly deployed environment: the lake and the registry exist, no model was
    trained yet. Returns the registry root."""
    registry = f"s3://{BUCKET}/{names.REGISTRY_PREFIX.rstrip('/')}"
    for name, value in {
        "CREDIT_RISK_LOCAL_DIR": str(tmp_path),
        names.ENV_LAKE_URI: f"s3://{BUCKET}",
        names.ENV_REGISTRY_URI: registry,
        names.ENV_MODEL_NAME: MODEL_NAME,
    }.items():
        monkeypatch.setenv(name, value)
    return registry


def test_before_the_first_model_the_scheduled_run_skips_without_raising(empty_registry, caplog):
    # given an environment whose registry has no champion yet

    # when the schedule fires
    summary = handler.lambda_handler(_scheduled_event(), lambda_context())

    # then the run says why it did nothing, and neither fails nor writes a report
    assert summary == {"skipped": "no_model"}
    assert "no model in service yet; nothing to monitor" in caplog.messages
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=names.MONITORING_PREFIX)
    assert listed["KeyCount"] == 0


def test_a_champion_pointing_at_a_missing_version_still_fails_the_run(empty_registry):
    # given a champion pointer whose version was never written (a broken registry)
    bucket, _, prefix = empty_registry.removeprefix("s3://").partition("/")
    boto3.client("s3").put_object(
        Bucket=bucket,
        Key=f"{prefix}/{MODEL_NAME}/champion.json",
        Body=json.dumps({"model_name": MODEL_NAME, "version": "20990101T000000Z"}).encode(),
    )

    # then the run raises, so that the function's Errors alarm sees it
    with pytest.raises(ModelNotFoundError, match="20990101T000000Z"):
        handler.lambda_handler(_scheduled_event(), lambda_context())
