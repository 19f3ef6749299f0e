"""Loading snapshot Parquet from S3 (moto) and local folders: the Lambda, the library, the CLI."""

from __future__ import annotations

import importlib
import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import boto3
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aws_lambda_powertools.utilities import parameters
from botocore.exceptions import ClientError
from moto import mock_aws

from credit_risk import active_snapshot, decision_ids, names
from credit_risk.active_snapshot import PointerNotRecorded
from credit_risk.cli import main
from credit_risk.commands.store import open_store
from credit_risk.errors import ConfigurationError, InvalidInputError
from credit_risk.settings import Settings
from credit_risk.store import (
    DecisionRow,
    SnapshotExistsError,
    StoreNotInitialized,
    StoreUnavailable,
    create_store,
    get_store,
)
from credit_risk.store.credentials import PostgresConfig
from credit_risk.store.loader import load_snapshot_uri
from credit_risk.store.postgres import PostgresFeatureStore
from tests.conftest import EVENTS_DIR
from tests.integration.store.conftest import fresh_postgres_database
from tests.integration.store.data import AS_OF, snapshot_table


def write_snapshot(folder, table: pa.Table, parts: int = 2) -> str:
    """Writes ``table`` as Spark would: part files plus a _SUCCESS marker."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-table.num_rows // parts)
    for part in range(parts):
        pq.write_table(table.slice(part * size, size), folder / f"part-{part:05d}.parquet")
    (folder / "_SUCCESS").write_text("")
    return str(folder)


# --- the library -------------------------------------------------------------------------


def test_a_local_snapshot_folder_loads_with_its_own_as_of(target, tmp_path):
    # given
    uri = write_snapshot(tmp_path / "snapshot", snapshot_table(500))
    store = target.new_store()
    # when: the store is not even migrated yet
    result = load_snapshot_uri(store, uri, snapshot_id="s1")
    # then
    assert (result.row_count, result.as_of) == (500, AS_OF)
    assert store.get("00000499").snapshot_id == "s1"
    store.close()


def test_a_retried_load_of_the_active_snapshot_does_nothing(target, tmp_path):
    # given
    uri = write_snapshot(tmp_path / "snapshot", snapshot_table(50))
    store = target.new_store()
    load_snapshot_uri(store, uri, snapshot_id="s1")
    # when
    again = load_snapshot_uri(store, uri, snapshot_id="s1")
    # then
    assert again.already_active
    assert again.row_count == 50
    assert len(store.snapshots()) == 1
    store.close()


def test_reloading_a_snapshot_that_is_no_longer_active_is_refused(target, tmp_path):
    # given
    store = target.new_store()
    load_snapshot_uri(store, write_snapshot(tmp_path / "a", snapshot_table(5)), snapshot_id="s1")
    load_snapshot_uri(store, write_snapshot(tmp_path / "b", snapshot_table(5)), snapshot_id="s2")
    # when / then
    with pytest.raises(SnapshotExistsError, match="rollback s1"):
        load_snapshot_uri(store, str(tmp_path / "a"), snapshot_id="s1")
    store.close()


@pytest.mark.postgres
def test_a_load_that_lost_the_store_before_its_switch_is_finished_by_its_retry(
    postgres_url, tmp_path
):
    url, drop = fresh_postgres_database(postgres_url)
    store = PostgresFeatureStore(PostgresConfig(url=url, swap_lock_timeout_ms=200))
    try:
        load_snapshot_uri(
            store, write_snapshot(tmp_path / "a", snapshot_table(5)), snapshot_id="s1"
        )
        newer = write_snapshot(tmp_path / "b", snapshot_table(8, version=2))
        # given: a load whose switch times out (another switch holds the state row)
        # after its snapshot was written
        with psycopg.connect(url) as other, other.transaction():
            other.execute("SELECT 1 FROM feature_store_state FOR UPDATE")
            with pytest.raises(StoreUnavailable):
                load_snapshot_uri(store, newer, snapshot_id="s2")
        assert store.active_snapshot().snapshot_id == "s1"
        # and a load of other data under the same id is refused, not switched to
        other = write_snapshot(tmp_path / "c", snapshot_table(3, version=3))
        with pytest.raises(SnapshotExistsError, match="from other data"):
            load_snapshot_uri(store, other, snapshot_id="s2")
        # when: the state machine retries the task
        result = load_snapshot_uri(store, newer, snapshot_id="s2")
        # then: the retry finishes the load
        assert (result.snapshot_id, result.previous_snapshot_id) == ("s2", "s1")
        assert (result.row_count, result.already_active) == (8, False)
        assert store.active_snapshot().snapshot_id == "s2"
    finally:
        store.close()
        drop()


def test_without_an_id_a_snapshot_is_named_after_its_date(target, tmp_path):
    store = target.new_store()
    result = load_snapshot_uri(store, write_snapshot(tmp_path / "s", snapshot_table(5)))
    assert result.snapshot_id.startswith("20240601-")
    store.close()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            pa.concat_tables(
                [snapshot_table(3), snapshot_table(3, start=3, as_of=date(2024, 7, 1))]
            ),
            "one date, found 2",
        ),
        (snapshot_table(3).rename_columns(["id", *snapshot_table(0).column_names[1:]]), "missing"),
    ],
    ids=["two-dates", "renamed-column"],
)
def test_a_snapshot_breaking_the_contract_is_refused(tmp_path, table, message):
    store = sqlite_store(tmp_path)
    with pytest.raises(InvalidInputError, match=message):
        load_snapshot_uri(store, write_snapshot(tmp_path / "bad", table, parts=1))


def test_a_snapshot_whose_parts_disagree_on_columns_is_refused(tmp_path, capsys):
    # given: a folder whose second part lacks two feature columns
    folder = tmp_path / "mixed"
    write_snapshot(folder, snapshot_table(10), parts=1)
    pq.write_table(
        snapshot_table(10, start=10).drop_columns(["age", "flag_own_car"]),
        folder / "part-00001.parquet",
    )
    # when / then: refused, naming the part and the columns, and nothing loaded
    store = sqlite_store(tmp_path)
    with pytest.raises(InvalidInputError, match=r"part-00001\.parquet lacks age, flag_own_car"):
        load_snapshot_uri(store, str(folder))
    assert store.snapshots() == []


def sqlite_store(tmp_path):
    from credit_risk.store.sqlite import SqliteFeatureStore

    return SqliteFeatureStore(tmp_path / "features.sqlite3")


# --- the Lambda, with S3 in moto and the real PostgreSQL ---------------------------------


@dataclass
class FakeLambdaContext:
    function_name: str = "feature-loader"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:feature-loader"
    aws_request_id: str = "5a8d7a1e-0000-4000-8000-000000000001"


def load_event(name: str) -> dict:
    return json.loads((EVENTS_DIR / name).read_text())


# The lake the sample event's snapshot is in (its curated bucket in AWS).
LAKE_URI = "s3://credit-risk-lake-test"


def read_pointer() -> dict | None:
    """The active-snapshot pointer the function recorded in the lake, if any."""
    bucket = LAKE_URI.removeprefix("s3://")
    try:
        body = boto3.client("s3").get_object(Bucket=bucket, Key=names.ACTIVE_SNAPSHOT_KEY)
    except ClientError:  # NoSuchKey
        return None
    return json.loads(body["Body"].read())


@pytest.fixture
def handler(monkeypatch, postgres_url):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "POWERTOOLS_SERVICE_NAME": "feature-loader",
        names.ENV_LAKE_URI: LAKE_URI,
    }.items():
        monkeypatch.setenv(name, value)
    url, drop = fresh_postgres_database(postgres_url)
    monkeypatch.setenv("CREDIT_RISK_DATABASE_URL", url)
    module = importlib.import_module("lambdas.feature_loader.handler")
    module._store.cache_clear()
    get_store.cache_clear()
    parameters.clear_caches()
    with mock_aws():
        yield module
    if module._store.cache_info().currsize:
        module._store().close()
    module._store.cache_clear()
    get_store.cache_clear()
    drop()


def put_snapshot_in_s3(event: dict, table: pa.Table) -> None:
    bucket, _, prefix = event["snapshot_uri"].removeprefix("s3://").partition("/")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    s3.put_object(Bucket=bucket, Key=f"{prefix}part-00000.parquet", Body=sink.getvalue())
    s3.put_object(Bucket=bucket, Key=f"{prefix}_SUCCESS", Body=b"")


@pytest.mark.postgres
def test_the_loader_lambda_loads_an_s3_snapshot_into_postgresql(handler):
    # given
    event = load_event("feature_loader_load.json")
    put_snapshot_in_s3(event, snapshot_table(1_000))
    # when
    response = handler.lambda_handler(event, FakeLambdaContext())
    retried = handler.lambda_handler(event, FakeLambdaContext())
    # then
    assert response["snapshot_id"] == response["active_snapshot_id"] == event["snapshot_id"]
    assert response["row_count"] == 1_000
    assert response["as_of"] == "2024-06-01"
    assert not response["already_active"]
    assert retried["already_active"]
    assert retried["row_count"] == 1_000
    row = handler._store().get("00000042")
    assert row is not None
    assert row.snapshot_id == event["snapshot_id"]
    # and the lake records what the store serves, for a failover to load the same
    pointer = read_pointer()
    assert pointer is not None
    assert {key: pointer[key] for key in ("snapshot_uri", "snapshot_id", "as_of", "row_count")} == {
        "snapshot_uri": event["snapshot_uri"],
        "snapshot_id": event["snapshot_id"],
        "as_of": "2024-06-01",
        "row_count": 1_000,
    }
    assert datetime.fromisoformat(pointer["loaded_at"]).tzinfo is not None
    # and keeps the snapshot's own, which a rollback points back to
    kept = boto3.client("s3").get_object(
        Bucket=LAKE_URI.removeprefix("s3://"),
        Key=f"{names.SNAPSHOT_POINTERS_PREFIX}{event['snapshot_id']}.json",
    )
    assert json.loads(kept["Body"].read()) == pointer


@pytest.mark.postgres
def test_each_load_purges_the_decisions_past_their_retention(handler, monkeypatch):
    # Given decisions recorded 31 days and 1 day ago, and a retention of 30 days
    monkeypatch.setenv(names.ENV_DECISION_RETENTION_DAYS, "30")
    now = datetime.now(UTC)
    made = [now - timedelta(days=age) for age in (31, 1)]
    rows = [
        DecisionRow(decision_ids.new_ids(1, int(at.timestamp()) * 10**9)[0], at, "1", "v", "{}")
        for at in made
    ]
    handler._store().migrate()
    handler._store().record_decisions(rows)
    event = load_event("feature_loader_load.json")
    put_snapshot_in_s3(event, snapshot_table(10))
    # When a snapshot is loaded, and the load retried
    response = handler.lambda_handler(event, FakeLambdaContext())
    retried = handler.lambda_handler(event, FakeLambdaContext())
    # Then the older decision is gone and the other kept
    assert response["purged_decisions"] == 1
    assert retried["purged_decisions"] == 0
    assert handler._store().decision_document(rows[0].decision_id) is None
    assert handler._store().decision_document(rows[1].decision_id) == "{}"


@pytest.mark.postgres
def test_the_loader_lambda_exports_the_decision_record_to_the_lake_and_imports_it(handler):
    # Given decisions recorded in the function's store
    boto3.client("s3").create_bucket(
        Bucket=LAKE_URI.removeprefix("s3://"),
        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
    )
    rows = [
        DecisionRow(
            decision_id, datetime.now(UTC), "1", "v", json.dumps({"decision_id": decision_id})
        )
        for decision_id in decision_ids.new_ids(3)
    ]
    handler._store().record_decisions(rows)

    # When they are exported (what a failback asks of the standby's loader)
    exported = handler.lambda_handler(
        {"action": "export_decisions", "region": "eu-central-1"}, FakeLambdaContext()
    )

    # Then they are in the lake, in a folder of their own under the exports
    assert re.fullmatch(names.DECISION_EXPORT_KEY_PATTERN, exported["key"])
    assert exported["key"].startswith(f"{names.DECISION_EXPORTS_PREFIX}eu-central-1/")
    assert (exported["count"], exported["parts"]) == (3, 1)
    assert exported["last_id"] == max(row.decision_id for row in rows)
    listed = boto3.client("s3").list_objects_v2(
        Bucket=LAKE_URI.removeprefix("s3://"), Prefix=exported["key"]
    )
    assert sorted(item["Key"].removeprefix(exported["key"]) for item in listed["Contents"]) == [
        "manifest.json",
        "part-00000.jsonl.gz",
    ]
    # and importing them into a store that lacks one records that one, nothing twice
    lost = rows[1].decision_id
    handler._store()._read(
        lambda c: c.execute("DELETE FROM decisions WHERE decision_id = %s::uuid", (lost,))
    )
    imported = handler.lambda_handler(
        {"action": "import_decisions", "key": exported["key"]}, FakeLambdaContext()
    )
    assert imported == {"key": exported["key"], "count": 3, "recorded": 1}
    assert handler._store().decision_document(lost) == rows[1].document
    # and a later export takes those after the id it is given
    later = handler.lambda_handler(
        {"action": "export_decisions", "region": "eu-central-1", "after_id": rows[0].decision_id},
        FakeLambdaContext(),
    )
    assert later["count"] == len([r for r in rows if r.decision_id > rows[0].decision_id])


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"action": "export_decisions", "region": "the moon"}, "region"),
        ({"action": "export_decisions"}, "region"),
        ({"action": "import_decisions", "key": names.ACTIVE_SNAPSHOT_KEY}, "key"),
        ({"action": "import_decisions", "key": "dr/decisions/eu-central-1/../../"}, "key"),
        ({"action": "export_decisions", "region": "eu-central-1", "after_id": "7"}, "after_id"),
        ({"action": "drop_everything"}, "action 'drop_everything' is none of"),
        ({"action": ["export_decisions"]}, "is none of"),
    ],
)
def test_the_loader_lambda_refuses_a_decision_event_outside_its_contract(handler, event, message):
    with pytest.raises(InvalidInputError, match=message):
        handler.lambda_handler(event, FakeLambdaContext())


@pytest.mark.postgres
def test_the_loader_lambda_reports_a_missing_export_as_bad_input(handler):
    boto3.client("s3").create_bucket(
        Bucket=LAKE_URI.removeprefix("s3://"),
        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
    )
    key = f"{names.DECISION_EXPORTS_PREFIX}eu-central-1/20261203T000000Z/"
    with pytest.raises(InvalidInputError, match="no decision export at"):
        handler.lambda_handler({"action": "import_decisions", "key": key}, FakeLambdaContext())


@pytest.mark.postgres
def test_a_load_whose_pointer_was_not_written_is_completed_by_its_retry(handler, monkeypatch):
    # Given a lake the function cannot write to (yet)
    monkeypatch.setenv(names.ENV_LAKE_URI, "s3://credit-risk-lake-not-there-yet")
    event = load_event("feature_loader_load.json")
    put_snapshot_in_s3(event, snapshot_table(10))

    # When the snapshot is loaded: the store serves it, the pointer fails, by a name
    # the state machine retries
    with pytest.raises(PointerNotRecorded, match="is active in the store"):
        handler.lambda_handler(event, FakeLambdaContext())
    assert handler._store().active_snapshot().snapshot_id == event["snapshot_id"]

    # Then its retry, once the lake answers, writes it
    boto3.client("s3").create_bucket(
        Bucket="credit-risk-lake-not-there-yet",
        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
    )
    assert handler.lambda_handler(event, FakeLambdaContext())["already_active"]
    pointer = active_snapshot.read_active_snapshot("s3://credit-risk-lake-not-there-yet")
    assert pointer.snapshot_id == event["snapshot_id"]


@pytest.mark.postgres
def test_the_loader_lambda_refuses_a_malformed_event(handler):
    with pytest.raises(InvalidInputError, match="snapshot_id"):
        handler.lambda_handler(load_event("feature_loader_invalid.json"), FakeLambdaContext())


@pytest.mark.postgres
def test_the_loader_lambda_refuses_a_snapshot_of_another_date(handler):
    event = load_event("feature_loader_load.json")
    put_snapshot_in_s3(event, snapshot_table(10, as_of=date(2024, 5, 1)))
    with pytest.raises(InvalidInputError, match="as of 2024-05-01, not 2024-06-01"):
        handler.lambda_handler(event, FakeLambdaContext())
    # A load that failed records nothing as active.
    assert read_pointer() is None


@pytest.mark.postgres
def test_the_loader_lambda_reports_a_missing_snapshot_as_bad_input(handler):
    # given: the event names a bucket that does not exist
    event = load_event("feature_loader_load.json")
    # when / then
    with pytest.raises(InvalidInputError, match=r"no snapshot at s3://.*NoSuchBucket"):
        handler.lambda_handler(event, FakeLambdaContext())
    assert handler._store().active_snapshot() is None


@pytest.mark.postgres
def test_the_loader_lambda_needs_the_lake_to_record_the_active_snapshot(handler, monkeypatch):
    # given a function configured without its lake, and a snapshot to load
    monkeypatch.delenv(names.ENV_LAKE_URI)
    event = load_event("feature_loader_load.json")
    put_snapshot_in_s3(event, snapshot_table(10))
    # when / then: refused before the store is touched
    with pytest.raises(ConfigurationError, match="lake_uri"):
        handler.lambda_handler(event, FakeLambdaContext())
    assert read_pointer() is None
    with create_store(Settings()) as store, pytest.raises(StoreNotInitialized):
        store.active_snapshot()


@pytest.mark.postgres
def test_the_loader_lambda_needs_a_postgresql_store(handler, monkeypatch):
    monkeypatch.delenv("CREDIT_RISK_DATABASE_URL")
    handler._store.cache_clear()
    with pytest.raises(ConfigurationError, match="DATABASE_SECRET_ID"):
        handler.lambda_handler(load_event("feature_loader_load.json"), FakeLambdaContext())


# --- the CLI -------------------------------------------------------------------------------


@pytest.fixture
def store_args(target, monkeypatch, tmp_path):
    """The --database-url arguments that reach the target database."""
    if target.kind == "sqlite":
        monkeypatch.setenv("CREDIT_RISK_LOCAL_DIR", str(tmp_path / "local"))
        monkeypatch.delenv("CREDIT_RISK_DATABASE_URL", raising=False)
        return []
    store = target.new_store()
    url = store.config.url
    store.close()
    return ["--database-url", url]


def test_the_cli_loads_lists_rolls_back_and_checks_health(store_args, tmp_path, capsys):
    # given
    first = write_snapshot(tmp_path / "one", snapshot_table(20))
    second = write_snapshot(tmp_path / "two", snapshot_table(20, version=2))
    # when
    codes = [
        main(["store", "health", *store_args]),
        main(["store", "migrate", *store_args]),
        main(["load", "--snapshot", first, "--snapshot-id", "s1", *store_args]),
        main(
            [
                "load",
                "--snapshot",
                second,
                "--snapshot-id",
                "s2",
                "--as-of",
                "2024-06-01",
                *store_args,
            ]
        ),
        main(["store", "rollback", "s1", *store_args]),
        main(["store", "snapshots", *store_args]),
        main(["store", "health", *store_args]),
    ]
    out = capsys.readouterr().out.splitlines()
    # then
    assert codes == [1, 0, 0, 0, 0, 0, 0]
    assert any(line.startswith("loaded snapshot s2 as of 2024-06-01: 20 customers") for line in out)
    assert "active snapshot: s2 (previous: s1)" in out
    assert out[-4].split()[:1] == ["SNAPSHOT"]
    assert out[-3].split()[:2] == ["s2", "2024-06-01"]
    assert out[-2].split()[:2] == ["*", "s1"]
    assert json.loads(out[-1])["active_snapshot_id"] == "s1"


def test_a_rollback_points_the_lake_back_at_the_snapshot_it_activates(
    store_args, tmp_path, monkeypatch, capsys
):
    # Given two snapshots loaded by the pipeline, which recorded each in the lake
    lake = tmp_path / "lake"
    monkeypatch.setenv(names.ENV_LAKE_URI, str(lake))
    with open_store(store_args[-1] if store_args else None) as store:
        for snapshot_id, folder, version in (("s1", "one", 1), ("s2", "two", 2)):
            uri = write_snapshot(tmp_path / folder, snapshot_table(20, version=version))
            loaded = load_snapshot_uri(store, uri, snapshot_id=snapshot_id)
            active_snapshot.record_active_snapshot(str(lake), uri, loaded)
    assert active_snapshot.read_active_snapshot(str(lake)).snapshot_id == "s2"

    # When the store is rolled back to the first
    assert main(["store", "rollback", "s1", *store_args]) == 0

    # Then the lake's pointer names it again, with its own files: a failover loads it
    pointer = active_snapshot.read_active_snapshot(str(lake))
    assert (pointer.snapshot_id, pointer.snapshot_uri) == ("s1", str(tmp_path / "one"))
    assert f"active-snapshot pointer: {lake}/{names.ACTIVE_SNAPSHOT_KEY} names s1" in (
        capsys.readouterr().out
    )

    # and a snapshot the lake keeps no pointer of is rolled back to with a warning
    (lake / names.SNAPSHOT_POINTERS_PREFIX / "s2.json").unlink()
    assert main(["store", "rollback", "s2", *store_args]) == 0
    assert "still names s1, which a failover would load" in capsys.readouterr().err
    assert active_snapshot.read_active_snapshot(str(lake)).snapshot_id == "s1"

    # and a shell pointed at another lake (none of the deployment's) is told so
    monkeypatch.setenv(names.ENV_LAKE_URI, str(tmp_path / "another-lake"))
    assert main(["store", "rollback", "s1", *store_args]) == 0
    warning = capsys.readouterr().err
    assert f"{tmp_path / 'another-lake'} holds no active-snapshot pointer" in warning
    assert f"set {names.ENV_LAKE_URI} to the deployment's lake" in warning


def test_the_cli_reports_bad_input_in_one_line(store_args, tmp_path, capsys):
    # when
    missing = main(["load", "--snapshot", str(tmp_path / "nothing-here"), *store_args])
    unknown = main(["store", "rollback", "never-loaded", *store_args])
    # then
    err = capsys.readouterr().err.splitlines()
    assert (missing, unknown) == (2, 2)
    assert err == [
        f"credit-risk load: error: no such file or folder: {tmp_path / 'nothing-here'}",
        "credit-risk store: error: no retained snapshot never-loaded",
    ]


def test_the_cli_refuses_a_file_that_is_not_parquet(tmp_path, monkeypatch, capsys):
    # given
    monkeypatch.setenv("CREDIT_RISK_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.delenv("CREDIT_RISK_DATABASE_URL", raising=False)
    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "part-00000.parquet").write_text("customer_id,age\n1,30\n")
    # when
    code = main(["load", "--snapshot", str(folder)])
    # then
    (line,) = capsys.readouterr().err.splitlines()
    assert code == 2
    assert line.startswith(f"credit-risk load: error: cannot read the snapshot at {folder}: ")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://app:hunter2@db/features", "must be postgresql://"),
        ("not a url", "invalid database URL"),
        ("postgresql://app:hunter2@[db/features", "invalid database URL"),
        ("postgresql://app:hunter2@db:port/features", "port 'port' is not a number"),
    ],
)
def test_the_cli_refuses_a_bad_database_url_without_echoing_it(tmp_path, capsys, url, message):
    # given
    snapshot = write_snapshot(tmp_path / "snapshot", snapshot_table(5))
    # when
    codes = [
        main(["load", "--snapshot", snapshot, "--database-url", url]),
        main(["store", "migrate", "--database-url", url]),
    ]
    # then
    err = capsys.readouterr().err
    assert codes == [2, 2]
    assert len(err.splitlines()) == 2
    assert message in err
    assert "hunter2" not in err
