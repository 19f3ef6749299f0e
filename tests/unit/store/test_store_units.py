"""Pure pieces of the feature store: id rules, row checks, config and migrations."""

from __future__ import annotations

import dataclasses
from datetime import date

import pyarrow as pa
import pytest

from credit_risk import schemas
from credit_risk.errors import InvalidInputError
from credit_risk.settings import Settings
from credit_risk.store import create_store
from credit_risk.store.base import (
    READ_COLUMNS,
    CustomerFeatures,
    is_storable_id,
    storable_ids,
    validate_snapshot_id,
)
from credit_risk.store.credentials import PostgresConfig, connect_kwargs
from credit_risk.store.migrations import migrations
from credit_risk.store.snapshot_data import conform_batch
from credit_risk.store.sqlite import SqliteFeatureStore, _statements

AS_OF = date(2024, 6, 1)


def test_rows_read_map_onto_the_features_dataclass_in_contract_order():
    fields = [field.name for field in dataclasses.fields(CustomerFeatures)]
    assert fields == list(READ_COLUMNS)
    row = CustomerFeatures("01", 30, None, 2, 1500.0, 1, AS_OF, "s1")
    assert row.feature_values() == (30, None, 2, 1500.0, 1)
    assert tuple(fields[1:6]) == schemas.FEATURE_NAMES


@pytest.mark.parametrize(
    ("customer_id", "storable"),
    [
        ("0001", True),
        ("' OR 1=1 --", True),
        ("", False),
        ("a\x00", False),
        ("\udc80", False),
        ("x" * 257, False),
        ("客户", True),
    ],
)
def test_which_ids_could_be_stored(customer_id, storable):
    assert is_storable_id(customer_id) is storable


def test_storable_ids_dedupes_in_order_and_refuses_a_bare_string():
    assert storable_ids(["b", "a", "b", "", "a"]) == ["b", "a"]
    with pytest.raises(InvalidInputError):
        storable_ids("abc")


@pytest.mark.parametrize("snapshot_id", ["20240601-20240602T010203Z", "run.1:a_b-c", "x"])
def test_valid_snapshot_ids(snapshot_id):
    assert validate_snapshot_id(snapshot_id) == snapshot_id


def test_a_batch_is_cast_to_the_contract_types_and_column_order():
    # given: int32 ages, columns shuffled
    batch = pa.record_batch(
        {
            "as_of": pa.array([AS_OF], pa.date32()),
            "flag_own_car": pa.array([1], pa.int32()),
            "customer_id": ["007"],
            "age": pa.array([41], pa.int32()),
            "years_on_the_job": pa.array([None], pa.int64()),
            "nb_previous_loans": pa.array([0], pa.int64()),
            "avg_amount_loans_previous": pa.array([None], pa.float64()),
        }
    )
    # when
    conformed = conform_batch(batch, AS_OF)
    # then
    assert conformed.schema.names == [name for name, _ in schemas.SNAPSHOT_COLUMNS]
    assert conformed.column("age").type == pa.int64()
    assert conformed.to_pylist()[0]["customer_id"] == "007"


def test_an_iam_token_replaces_the_password_and_forces_tls(monkeypatch):
    # given: credentials botocore can sign with (a token is signed locally, no call)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    config = PostgresConfig(url="postgresql://app@proxy.example.com:5432/features", iam_auth=True)
    # when
    kwargs = connect_kwargs(config)
    # then
    assert kwargs["password"].startswith("proxy.example.com:5432/?Action=connect")
    assert "DBUser=app" in kwargs["password"]
    assert kwargs["sslmode"] == "require"
    assert kwargs["connect_timeout"] == 3


def test_the_backend_follows_the_configuration(tmp_path):
    sqlite = create_store(Settings(local_dir=tmp_path))
    postgres = create_store(
        Settings(database_url="postgresql://u@h/db", store_retained_snapshots=5)
    )
    assert isinstance(sqlite, SqliteFeatureStore)
    assert sqlite.path == tmp_path / "feature_store.sqlite3"
    assert postgres.backend == "postgresql"
    assert postgres.config.retained_snapshots == 5


def test_migrations_are_numbered_and_split_into_statements():
    for dialect in ("postgres", "sqlite"):
        found = migrations(dialect)
        assert [m.version for m in found] == list(range(1, len(found) + 1))
    statements = list(_statements(migrations("sqlite")[0].sql))
    assert any(s.startswith("CREATE VIEW customer_features") for s in statements)
    assert all(not s.startswith("--") for s in statements)


def test_a_libpq_keyword_string_is_a_valid_database_url():
    kwargs = connect_kwargs(PostgresConfig(url="host=db port=6432 dbname=features user=app"))
    assert (kwargs["host"], kwargs["port"], kwargs["dbname"]) == ("db", "6432", "features")
