"""The scoring log end to end: the inference handler (in-process with the sample
events, and behind the local HTTP server) writes one record per score, and
``read_scoring_log`` reads them back from local folders and from S3 (moto) as
Firehose delivers them."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
import requests
from moto import mock_aws

from credit_risk import names, schemas
from credit_risk.monitoring.records import (
    ScoreRecord,
    read_scoring_log,
    scan_scoring_log,
    served_only,
)
from credit_risk.registry import CANARY
from credit_risk.serving.service import IdHasher
from tests.conftest import use_fake_aws_credentials
from tests.integration.api.conftest import (  # noqa: F401 - fixtures shared with the API tests
    AS_OF,
    HASH_KEY,
    Configure,
    Serving,
    configure,
    features_url,
    invoke,
    load_event,
    local_deployment,
    local_dir,
    registry_copy,
    serve,
    serving,
)

pytestmark = pytest.mark.postgres

REPO_ROOT = Path(__file__).resolve().parents[3]
ENV_ENVIRONMENT = names.ENV_ENVIRONMENT
BUCKET = "credit-risk-dev-curated-test"


def today_window() -> tuple:
    # A request near midnight UTC lands in the next day: read both sides of it.
    today = datetime.now(UTC).date()
    return today - timedelta(days=1), today + timedelta(days=1)


def snapshot_rows(deployed: Serving) -> dict[str, dict]:
    return {row["customer_id"]: row for row in deployed.snapshot.to_pylist()}


@pytest.fixture
def logged_handler(configure: Configure, features_url: str, tmp_path: Path):  # noqa: F811
    """The handler on the PostgreSQL store, appending to a scoring log under tmp_path."""
    return configure(
        **{
            names.ENV_DATABASE_URL: features_url,
            names.ENV_SCORING_LOG_URI: str(tmp_path / "scoring-log"),
            ENV_ENVIRONMENT: "dev",
        }
    )


def test_single_and_batch_scores_are_logged_with_the_served_features(
    logged_handler,
    tmp_path: Path,
    serving: Serving,  # noqa: F811
):
    # Given a single-score event and a batch with a repeated id and two unknown ones
    single, batch = load_event("inference_score"), load_event("inference_batch")
    # When both are handled
    one = invoke(logged_handler, single).body
    many = invoke(logged_handler, batch).body
    records = read_scoring_log(str(tmp_path / "scoring-log"), *today_window())
    # Then there is one record per score returned, none for the unknown ids
    assert len(records) == 1 + len(many["results"]) == 4
    by_request = {r.request_id for r in records}
    assert by_request == {
        single["requestContext"]["requestId"],
        batch["requestContext"]["requestId"],
    }
    hash_id = IdHasher(HASH_KEY.encode())
    rows = snapshot_rows(serving)
    for record, result in zip(records, [one, *many["results"]], strict=True):
        # And each record is the response's score with the features the store served
        assert record.customer_hash == hash_id(result["customer_id"])
        assert record.default_probability == result["default_probability"]
        assert record.decision == result["decision"]
        assert record.model_version == serving.version
        assert record.snapshot_id == "api-tests"
        assert record.features_as_of == AS_OF
        assert record.environment == "dev"
        row = rows[result["customer_id"]]
        assert record.features == {name: row[name] for name in schemas.FEATURE_NAMES}
        assert datetime.now(UTC) - record.scored_at < timedelta(days=1)


def test_refused_requests_are_not_logged(logged_handler, tmp_path: Path):
    # Given an unknown customer, a malformed body and an oversized batch
    for event in ("inference_unknown_customer", "inference_wrong_type", "inference_batch_101"):
        assert invoke(logged_handler, load_event(event)).status >= 400
    # Then the scoring log holds nothing
    assert read_scoring_log(str(tmp_path / "scoring-log"), *today_window()) == []


def test_in_lambda_each_score_is_one_stdout_line_the_subscription_filter_selects(
    configure: Configure,  # noqa: F811
    features_url: str,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
):
    # Given the handler as deployed: no scoring-log folder
    handler = configure(**{names.ENV_DATABASE_URL: features_url, names.ENV_SCORING_LOG_URI: None})
    capsys.readouterr()
    # When a batch is scored
    answer = invoke(handler, load_event("inference_batch"))
    # Then stdout carries one score line per result, each a valid record, no customer id
    lines = capsys.readouterr().out.splitlines()
    scores = [json.loads(line) for line in lines if '"record_type":"score"' in line]
    assert len(scores) == len(answer.body["results"]) == 3
    for line in scores:
        ScoreRecord.from_dict(line)
    assert not any(r["customer_id"] in json.dumps(scores) for r in answer.body["results"])


def test_a_log_that_cannot_be_written_does_not_fail_the_score(
    configure: Configure,  # noqa: F811
    features_url: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
):
    # Given a scoring-log folder that cannot be created (a file is in the way)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    handler = configure(
        **{names.ENV_DATABASE_URL: features_url, names.ENV_SCORING_LOG_URI: str(blocker)}
    )
    # When a customer is scored
    answer = invoke(handler, load_event("inference_score"))
    # Then the client still gets the score, and the lost record is counted
    assert answer.status == 200
    assert answer.body["customer_id"] == "5008804"
    documents = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    counted = [d["ScoringLogErrors"] for d in documents if "ScoringLogErrors" in d]
    assert counted in ([1], [[1]])


def test_the_local_server_logs_a_release_s_answers_and_shadows_into_one_readable_log(
    serve,  # noqa: F811
    serving: Serving,  # noqa: F811
    registry_copy,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    # Given the local server during a release at 50%: both models score every customer
    log = tmp_path / "scoring-log"
    monkeypatch.setenv(names.ENV_SCORING_LOG_URI, str(log))
    registry_copy.open_release("r-scoring-log", serving.candidate_version)
    registry_copy.move_release("r-scoring-log", CANARY, 50.0)
    base_url = serve()
    # When customers are scored over HTTP, one by one and in batches
    ids = serving.customer_ids[:40]
    with requests.Session() as http:
        for customer_id in ids[:20]:
            response = http.post(
                f"{base_url}{names.ROUTE_SCORE}", json={"customer_id": customer_id}
            )
            assert response.status_code == 200
        response = http.post(
            f"{base_url}{names.ROUTE_SCORE_BATCH}", json={"customer_ids": ids[20:]}
        )
        assert response.status_code == 200
    # Then every answer and every shadow is one well-formed record of the release
    scan = scan_scoring_log(str(log), *today_window())
    assert scan.malformed == 0
    served = served_only(scan.records)
    assert len(served) == 40
    assert len(scan.records) == 80
    assert {r.model_version for r in served} == {serving.version, serving.candidate_version}
    assert {r.release_id for r in scan.records} == {"r-scoring-log"}
    hash_id = IdHasher(HASH_KEY.encode())
    assert sorted(r.customer_hash for r in served) == sorted(hash_id(c) for c in ids)


# --- reading from S3 as Firehose delivers ---------------------------------------
@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    use_fake_aws_credentials(monkeypatch, "eu-west-1")
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        yield client


def record_at(scored_at: datetime, request_id: str) -> ScoreRecord:
    return ScoreRecord(
        request_id=request_id,
        customer_hash="ab" * 12,
        model_version="v1",
        snapshot_id="run-1",
        features_as_of=scored_at.date() - timedelta(days=1),
        features={name: 1 for name in schemas.FEATURE_NAMES},
        default_probability=0.05,
        decision="approve",
        scored_at=scored_at,
        environment="dev",
    )


def test_reads_firehose_objects_from_s3(s3):
    # Given Firehose objects: gzip (two members), each message followed by the appended
    # delimiter, one scored before midnight but delivered after; and a delivery error
    day = datetime(2026, 11, 21, tzinfo=UTC)
    first = record_at(day + timedelta(hours=9), "r1")
    late = record_at(day + timedelta(hours=23, minutes=59), "r2")
    after = record_at(day + timedelta(days=1, hours=1), "r3")
    prefix = names.SCORING_LOG_PREFIX

    def body(*records: ScoreRecord) -> bytes:
        return "".join(f"{r.to_json()}\n\n" for r in records).encode()

    s3.put_object(
        Bucket=BUCKET,
        Key=f"{prefix}date=2026-11-21/credit-risk-dev-scores-1-2026-11-21-09-05.jsonl.gz",
        Body=gzip.compress(body(first)),
    )
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{prefix}date=2026-11-22/credit-risk-dev-scores-1-2026-11-22-00-03.jsonl.gz",
        Body=gzip.compress(body(late)) + gzip.compress(body(after)),
    )
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{prefix}errors/processing-failed/date=2026-11-21/failed.jsonl.gz",
        Body=gzip.compress(b'{"record_type": "score", "broken": true}\n'),
    )
    # When the day of 2026-11-21 is read from the lake's scoring-log root
    uri = f"s3://{BUCKET}/{prefix}"
    scan = scan_scoring_log(uri, day.date(), day.date())
    # Then both of its scores are there, and nothing else
    assert [r.request_id for r in scan.records] == ["r1", "r2"]
    assert scan.malformed == 0
    assert scan.files == 2
    # And the next day holds the score made after midnight
    next_day = read_scoring_log(uri, day.date() + timedelta(days=1), day.date() + timedelta(days=1))
    assert [r.request_id for r in next_day] == ["r3"]


def test_the_inference_handler_imports_without_pyarrow():
    # Given an interpreter where importing pyarrow fails, as in the inference image
    code = "import sys; sys.modules['pyarrow'] = None; import lambdas.inference.handler"
    # When the handler is imported
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT
    )
    # Then it imports: the scoring log's writer needs nothing of pyarrow
    assert result.returncode == 0, result.stderr[-2000:]
