"""Decision lookup: every score the API returns is recorded before it leaves, and
``GET /v1/decisions/{decision_id}`` returns it as it was, through the Lambda handler
on the real PostgreSQL store and on the local SQLite store, and over HTTP behind the
local gateway's API key."""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import requests

from credit_risk import decision_ids, names, schemas
from credit_risk.cli import main
from credit_risk.serving.models import DECISION_ID_PATTERN
from credit_risk.settings import Settings
from credit_risk.store import DecisionRow, create_store
from credit_risk.store.sqlite import SqliteFeatureStore
from tests.integration.api.conftest import (
    AS_OF,
    Configure,
    Serve,
    Serving,
    decision_event,
    invoke,
    lambda_context,
    load_event,
    with_body,
)
from tests.integration.store.conftest import fresh_postgres_database

API_KEY = "decisions-test-key"


@pytest.fixture
def handler(configure: Configure, features_url: str):
    return configure(**{names.ENV_DATABASE_URL: features_url})


@pytest.fixture
def sqlite_path(tmp_path, serving: Serving) -> Path:
    """The local SQLite store under ``tmp_path`` (the handler's local directory once
    configured, and the CLI's), holding the serving snapshot as ``local``."""
    with create_store(Settings(local_dir=tmp_path)) as store:
        store.migrate()
        store.load_snapshot(serving.snapshot, "local", AS_OF)
        return store.path


@pytest.fixture
def local_handler(configure: Configure, sqlite_path: Path):
    """The handler on that store (configure points CREDIT_RISK_LOCAL_DIR at it)."""
    return configure()


def score_lines(text: str) -> list[dict]:
    return [
        json.loads(line) for line in text.splitlines() if line.startswith('{"record_type":"score"')
    ]


@pytest.mark.postgres
def test_a_score_is_recorded_as_it_was_answered(handler, serving: Serving, capsys):
    # Given a customer scored through the API
    event = load_event("inference_score")
    before = datetime.now(UTC)
    score = invoke(handler, event)
    after = datetime.now(UTC)
    assert score.status == 200
    decision_id = score.body["decision_id"]
    assert re.match(DECISION_ID_PATTERN, decision_id)
    logged = score_lines(capsys.readouterr().out)
    # When its decision is looked up
    found = invoke(handler, decision_event(decision_id))
    # Then it is what the customer was told, with what it was computed from
    assert found.status == 200
    record = found.body
    for field in (
        "decision_id",
        "customer_id",
        "default_probability",
        "decision",
        "threshold",
        "reasons",
        "model_version",
        "features_as_of",
    ):
        assert record[field] == score.body[field], field
    stored = serving.snapshot.filter(pc.field("customer_id") == "5008804").to_pylist()[0]
    assert record["features"] == {name: stored[name] for name in schemas.FEATURE_NAMES}
    assert record["snapshot_id"] == "api-tests"
    assert record["request_id"] == event["requestContext"]["requestId"]
    assert record["environment"] == "local"
    assert record["release_id"] is None
    assert record["caller"] == event["requestContext"]["identity"]["apiKeyId"]
    assert record["synthetic"] is None
    assert before <= datetime.fromisoformat(record["decided_at"]) <= after
    # And the scoring log names the same decision
    assert [line["decision_id"] for line in logged] == [decision_id]
    # And the id is found whatever its letter case
    assert invoke(handler, decision_event(decision_id.upper())).body == record
    # And the answer is the document exactly as it was written
    raw = handler.lambda_handler(decision_event(decision_id), lambda_context())["body"]
    assert raw == handler._service.store.decision_document(decision_id)


@pytest.mark.postgres
def test_every_answer_of_a_batch_is_a_decision_of_its_own(handler):
    ids = ["5008804", "5008805", "5008804", "NO-SUCH-ID"]
    batch = invoke(handler, with_body(load_event("inference_batch"), {"customer_ids": ids}))
    assert batch.status == 200
    results = batch.body["results"]
    assert len({result["decision_id"] for result in results}) == len(results) == 3
    for result in results:
        found = invoke(handler, decision_event(result["decision_id"]))
        assert found.status == 200
        assert found.body["customer_id"] == result["customer_id"]
        assert found.body["default_probability"] == result["default_probability"]
        assert found.body["reasons"] == result["reasons"]


@pytest.mark.postgres
def test_an_unknown_customer_is_no_decision(handler):
    answer = invoke(handler, load_event("inference_unknown_customer"))
    assert answer.status == 404
    assert "decision_id" not in answer.body


@pytest.mark.postgres
def test_an_id_never_issued_is_404_and_a_malformed_one_400(handler):
    unknown = invoke(handler, load_event("inference_decision"))
    assert unknown.status == 404
    assert unknown.body["error"] == "unknown_decision"
    request_id = load_event("inference_decision")["requestContext"]["requestId"]
    assert unknown.body["request_id"] == request_id
    for malformed in (
        "not-a-decision",
        str(uuid.uuid4()),  # a UUID, but not version 7
        "019ad8a4-5f3e-7c41-9a0b-2f6d1e8c7a5",
        "019ad8a4-5f3e-7c41-9a0b-2f6d1e8c7a55x",
        "' OR 1=1 --",
        "x" * 5000,
        "019ad8a4%2D5f3e-7c41-9a0b-2f6d1e8c7a55",
    ):
        answer = invoke(handler, decision_event(malformed))
        assert answer.status == 400, malformed
        assert answer.body["error"] == "invalid_request"
        assert set(answer.body) == {"error", "message", "request_id"}
        assert "decision_id" in answer.body["message"]
        assert "Traceback" not in answer.body["message"]


def test_a_decision_is_never_recomputed(local_handler, tmp_path, serving: Serving):
    # Given the local SQLite store, a customer scored on one snapshot
    handler = local_handler
    first = invoke(handler, load_event("inference_score"))
    assert first.status == 200
    # When a new snapshot changes the customer's features and the customer is scored again
    snapshot = serving.snapshot
    changed = pc.if_else(
        pc.equal(snapshot["customer_id"], "5008804"),
        pa.scalar(40, pa.int64()),
        snapshot["nb_previous_loans"],
    )
    column = snapshot.schema.get_field_index("nb_previous_loans")
    with create_store(Settings(local_dir=tmp_path)) as store:
        store.load_snapshot(
            snapshot.set_column(column, "nb_previous_loans", changed), "after", AS_OF
        )
    second = invoke(handler, load_event("inference_score"))
    assert second.body["default_probability"] != first.body["default_probability"]
    # Then the first decision still reads as it was made, from the first snapshot
    record = invoke(handler, decision_event(first.body["decision_id"])).body
    assert record["snapshot_id"] == "local"
    assert record["features"]["nb_previous_loans"] != 40
    assert record["default_probability"] == first.body["default_probability"]
    assert record["reasons"] == first.body["reasons"]
    assert (
        invoke(handler, decision_event(second.body["decision_id"])).body["snapshot_id"] == "after"
    )


def test_an_answer_whose_decision_cannot_be_recorded_is_not_given(
    configure: Configure, sqlite_path: Path, capsys
):
    # Given a store that refuses every decision
    with sqlite3.connect(sqlite_path) as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON decisions "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    conn.close()
    handler = configure()
    capsys.readouterr()
    # When a customer is scored
    answer = invoke(handler, load_event("inference_score"))
    # Then no score is given, nor logged as given
    assert answer.status == 500
    assert set(answer.body) == {"error", "message", "request_id"}
    assert score_lines(capsys.readouterr().out) == []


def test_a_store_from_before_decisions_records_the_first_one(
    configure: Configure, sqlite_path: Path
):
    # Given a local store migrated and loaded by a version without decisions
    with sqlite3.connect(sqlite_path) as conn:
        conn.execute("DROP TABLE decisions")
        conn.execute("DELETE FROM schema_migrations WHERE version > 1")
    conn.close()
    handler = configure()
    # When this version scores a customer
    answer = invoke(handler, load_event("inference_score"))
    # Then the answer is given and its decision found
    assert answer.status == 200
    assert invoke(handler, decision_event(answer.body["decision_id"])).status == 200


def test_lookups_over_http_need_the_api_key(serve: Serve):
    base_url = serve(api_key=API_KEY)
    key = {names.API_KEY_HEADER: API_KEY}
    score = requests.post(
        f"{base_url}{names.ROUTE_SCORE}", json={"customer_id": "5008804"}, headers=key, timeout=10
    ).json()
    url = f"{base_url}{names.ROUTE_DECISION}/{score['decision_id']}"
    refused = requests.get(url, timeout=10)
    found = requests.get(url, headers=key, timeout=10)
    assert refused.status_code == 403
    assert found.status_code == 200
    assert found.headers["content-type"] == "application/json"
    assert found.json()["default_probability"] == score["default_probability"]
    missing = requests.get(f"{base_url}{names.ROUTE_DECISION}/", headers=key, timeout=10)
    assert missing.status_code == 404


def test_the_command_reads_decisions_by_id_and_by_customer(local_handler, capsys):
    # Given two decisions for one customer, made through the API on the local store
    handler = local_handler
    made = [invoke(handler, load_event("inference_score")).body for _ in range(2)]
    capsys.readouterr()
    # When the risk team reads one by id, then the customer's
    assert main(["decisions", "show", made[0]["decision_id"]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert main(["decisions", "list", "--customer", "5008804"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # Then they read what the API answers for the same ids
    assert shown == invoke(handler, decision_event(made[0]["decision_id"])).body
    assert [record["decision_id"] for record in listed] == [
        made[1]["decision_id"],
        made[0]["decision_id"],
    ]
    # And an id never issued, or not an id at all, is a clear error
    assert main(["decisions", "show", "019ad8a4-5f3e-7c41-9a0b-2f6d1e8c7a55"]) == 2
    assert "no decision 019ad8a4" in capsys.readouterr().err
    assert main(["decisions", "show", "nonsense"]) == 2
    assert "not a decision id" in capsys.readouterr().err
    assert main(["decisions", "list", "--customer", "5008804", "--limit", "0"]) == 2


def test_synthetic_traffic_is_recorded_marked_and_listed_apart(local_handler, capsys):
    # Given the local store, a lender's request and the probe's for one customer
    handler = local_handler
    lender = invoke(handler, load_event("inference_score")).body
    event = load_event("inference_score")
    probe = invoke(
        handler, {**event, "headers": {**event["headers"], names.SYNTHETIC_HEADER: "probe"}}
    ).body
    # Then both are recorded, the probe's marked as such
    assert invoke(handler, decision_event(probe["decision_id"])).body["synthetic"] == "probe"
    assert invoke(handler, decision_event(lender["decision_id"])).body["synthetic"] is None
    # And the customer's list shows the lender's decision unless asked for the probe's
    capsys.readouterr()
    assert main(["decisions", "list", "--customer", "5008804"]) == 0
    listed = [json.loads(line)["decision_id"] for line in capsys.readouterr().out.splitlines()]
    assert listed == [lender["decision_id"]]
    assert main(["decisions", "list", "--customer", "5008804", "--include-synthetic"]) == 0
    everything = [json.loads(line)["decision_id"] for line in capsys.readouterr().out.splitlines()]
    assert everything == [probe["decision_id"], lender["decision_id"]]
    # And a marker that is no name is refused before anything is recorded
    bad = invoke(
        handler, {**event, "headers": {**event["headers"], names.SYNTHETIC_HEADER: "Probe!"}}
    )
    assert bad.status == 400
    assert names.SYNTHETIC_HEADER in bad.body["message"]
    capsys.readouterr()
    assert main(["decisions", "list", "--customer", "5008804", "--include-synthetic"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(everything)


def test_the_probe_s_decisions_are_marked_as_the_probe_s(serve: Serve, local_dir):
    base_url = serve(api_key=API_KEY)
    assert main(["probe", "--url", base_url, "--api-key", API_KEY, "--customer-id", "5008805"]) == 0
    with create_store(Settings(local_dir=local_dir)) as store:
        mine = store.customer_decision_documents("5008805", 50, include_synthetic=True)
    assert json.loads(mine[0])["synthetic"] == "probe"


def test_the_command_purges_what_it_is_told_to(local_handler, sqlite_path: Path, capsys):
    # Given a decision made now and one recorded 40 days ago
    made = invoke(local_handler, load_event("inference_score")).body
    made_at = datetime.now(UTC) - timedelta(days=40)
    millis = (made_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    (old_id,) = decision_ids.new_ids(1, millis * 1_000_000)
    with SqliteFeatureStore(sqlite_path) as store:
        store.record_decisions([DecisionRow(old_id, made_at, "5008804", "v", "{}")])
    capsys.readouterr()
    # When decisions older than 30 days are purged
    assert main(["decisions", "purge", "--older-than-days", "30"]) == 0
    # Then the old one is gone and today's is kept
    assert "purged 1 decisions" in capsys.readouterr().out
    assert invoke(local_handler, decision_event(old_id)).status == 404
    assert invoke(local_handler, decision_event(made["decision_id"])).status == 200
    assert main(["decisions", "purge", "--older-than-days", "0"]) == 2


@pytest.mark.postgres
def test_the_command_moves_the_decision_record_to_another_store(
    local_handler, postgres_url: str, tmp_path: Path, capsys
):
    # Given decisions made by the local API, and an empty PostgreSQL database
    made = [invoke(local_handler, load_event("inference_score")).body for _ in range(3)]
    url, drop = fresh_postgres_database(postgres_url)
    folder = str(tmp_path / "export")
    try:
        # When the record is exported, then imported there, twice
        assert main(["decisions", "export", "--to", folder]) == 0
        assert "exported 3 decisions in 1 part(s)" in capsys.readouterr().out
        assert main(["decisions", "import", "--from", folder, "--database-url", url]) == 0
        assert "3 recorded, 0 already on record" in capsys.readouterr().out
        assert main(["decisions", "import", "--from", folder, "--database-url", url]) == 0
        assert "0 recorded, 3 already on record" in capsys.readouterr().out

        # Then it reads every decision there as it was answered
        for answer in made:
            assert main(["decisions", "show", answer["decision_id"], "--database-url", url]) == 0
            shown = json.loads(capsys.readouterr().out)
            assert shown["default_probability"] == answer["default_probability"]
        # and a folder that holds no export is refused in one line
        assert main(["decisions", "import", "--from", str(tmp_path), "--database-url", url]) == 2
        assert "no decision export at" in capsys.readouterr().err
    finally:
        drop()
