"""PostgreSQL-only behaviour: outages, reconnection and where credentials come from."""

from __future__ import annotations

import json
import socket

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from botocore.stub import Stubber
from moto import mock_aws
from psycopg.conninfo import conninfo_to_dict

from credit_risk.errors import ConfigurationError
from credit_risk.settings import Settings
from credit_risk.store import StoreUnavailable, create_store
from credit_risk.store.credentials import PostgresConfig, connect_kwargs
from credit_risk.store.postgres import PostgresFeatureStore
from tests.integration.store.conftest import fresh_postgres_database
from tests.integration.store.data import AS_OF, snapshot_table

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url(postgres_url):
    url, drop = fresh_postgres_database(postgres_url)
    yield url
    drop()


@pytest.fixture
def loaded_store(database_url):
    store = PostgresFeatureStore(PostgresConfig(url=database_url, connect_timeout=2))
    store.migrate()
    store.load_snapshot(snapshot_table(100), "s1", AS_OF)
    yield store
    store.close()


@pytest.fixture
def aws(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    parameters.clear_caches()
    with mock_aws():
        yield
    parameters.clear_caches()


def test_a_store_that_is_down_raises_store_unavailable_then_recovers(loaded_store, postgres_server):
    # given: a working store with an open connection
    assert loaded_store.get("00000001") is not None
    postgres_server.stop()
    try:
        # when: the server is down
        with pytest.raises(StoreUnavailable):
            loaded_store.get("00000001")
        with pytest.raises(StoreUnavailable):
            loaded_store.get_many(["00000001", "00000002"])
        health = loaded_store.health()
    finally:
        postgres_server.start()
    # then: health said so, and the same object serves again once the server is back
    assert not health.ok
    assert "unreachable" in health.error
    assert loaded_store.get("00000001").snapshot_id == "s1"
    assert loaded_store.health().ok


def test_a_connection_lost_while_idle_is_replaced_without_an_error(loaded_store, postgres_server):
    # given: the store's connection dies with a server restart nobody called through
    assert loaded_store.get("00000001") is not None
    postgres_server.stop()
    postgres_server.start()
    # when
    found = loaded_store.get("00000002")
    # then
    assert found is not None
    assert found.snapshot_id == "s1"


def test_an_unreachable_address_fails_within_the_connect_timeout():
    # given: a port where nothing listens
    store = PostgresFeatureStore(
        PostgresConfig(url="postgresql://nobody@127.0.0.1:9/none", connect_timeout=1)
    )
    # when / then
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.get("00000001")
    assert not store.health().ok


def test_a_server_that_never_answers_is_given_up_on_after_the_connect_timeout():
    # given: a port that accepts connections and then says nothing, as a hung server
    # or a black-holing network path would
    with socket.create_server(("127.0.0.1", 0), backlog=8) as silent:
        port = silent.getsockname()[1]
        store = PostgresFeatureStore(
            PostgresConfig(url=f"postgresql://app@127.0.0.1:{port}/features", connect_timeout=1)
        )
        # when / then: the call ends with the store's own error rather than waiting on
        with pytest.raises(StoreUnavailable, match="timeout"):
            store.get("00000001")


def test_credentials_come_from_a_secrets_manager_secret(aws, database_url):
    # given: the RDS-form secret of the test database, and no URL at all
    params = conninfo_to_dict(database_url)
    boto3.client("secretsmanager").create_secret(
        Name="credit-risk/feature-store",
        SecretString=json.dumps(
            {
                "engine": "postgres",
                "username": params["user"],
                "password": "not-checked-by-the-test-server",
                "host": params["host"],
                "port": int(params["port"]),
                "dbname": params["dbname"],
            }
        ),
    )
    settings = Settings(database_secret_id="credit-risk/feature-store")
    # when
    store = create_store(settings)
    store.migrate()
    store.load_snapshot(snapshot_table(10), "s1", AS_OF)
    # then
    assert store.backend == "postgresql"
    assert store.get("00000003").snapshot_id == "s1"
    store.close()


def test_url_values_win_over_the_secret_so_the_url_can_name_the_proxy(aws):
    # given
    boto3.client("secretsmanager").create_secret(
        Name="rds-managed",
        SecretString=json.dumps(
            {
                "username": "app",
                "password": "s3cret",
                "host": "db.internal",
                "port": 5432,
                "dbname": "features",
            }
        ),
    )
    config = PostgresConfig(
        url="postgresql://proxy.example.com:6432", secret_id="rds-managed", sslmode="verify-full"
    )
    # when
    kwargs = connect_kwargs(config)
    # then
    assert kwargs["host"] == "proxy.example.com"
    assert kwargs["port"] == "6432"
    assert (kwargs["user"], kwargs["password"], kwargs["dbname"]) == ("app", "s3cret", "features")
    assert kwargs["sslmode"] == "verify-full"


def test_a_missing_secret_is_a_configuration_error(aws):
    config = PostgresConfig(secret_id="does-not-exist")
    with pytest.raises(ConfigurationError, match="does-not-exist"):
        PostgresFeatureStore(config).get("00000001")


def test_a_secret_out_of_reach_for_now_leaves_the_store_unavailable(aws, monkeypatch):
    # given: Secrets Manager refuses connections (and the SDK does not retry)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        closed = listener.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    store = PostgresFeatureStore(PostgresConfig(secret_id="credit-risk/feature-store"))
    # when / then: unavailable for now (the API's 503 to retry), as a database that
    # cannot be reached is, not a configuration error (a 500)
    with pytest.raises(StoreUnavailable, match="credit-risk/feature-store now"):
        store.get("00000001")


@pytest.mark.parametrize(
    ("code", "status", "raised"),
    [
        ("ThrottlingException", 400, StoreUnavailable),
        ("InternalServiceError", 500, StoreUnavailable),
        ("AccessDeniedException", 400, ConfigurationError),
        ("SomethingNewException", 400, ConfigurationError),
    ],
)
def test_a_secret_read_that_may_succeed_later_leaves_the_store_unavailable(
    aws, monkeypatch, code, status, raised
):
    # given: Secrets Manager answers the read with an error
    client = boto3.client("secretsmanager")
    stubber = Stubber(client)
    stubber.add_client_error("get_secret_value", service_error_code=code, http_status_code=status)
    monkeypatch.setitem(
        parameters.base.DEFAULT_PROVIDERS,
        "secrets",
        parameters.SecretsProvider(boto3_client=client),
    )
    store = PostgresFeatureStore(PostgresConfig(secret_id="credit-risk/feature-store"))
    # when / then: for now (a 503 to retry) only where asking again may succeed
    with stubber, pytest.raises(raised, match="credit-risk/feature-store"):
        store.get("00000001")
