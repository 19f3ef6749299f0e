"""The store's IAM auth token is the one an RDS client would mint, without the client."""

from __future__ import annotations

import datetime

import boto3
import botocore.auth
import pytest

from credit_risk.errors import ConfigurationError
from credit_risk.store.credentials import PostgresConfig, connect_kwargs

SIGNED_AT = datetime.datetime(2024, 6, 1, 12, 0, 0)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Lambda's credentials and region in the environment, a fresh default session,
    and a frozen signing clock."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: SIGNED_AT)
    return monkeypatch


def rds_client_token(host: str, port: int, user: str) -> str:
    return boto3.client("rds").generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user)


@pytest.mark.parametrize(
    ("url", "host", "port", "user"),
    [
        ("postgresql://app@proxy.example.com:5432/features", "proxy.example.com", 5432, "app"),
        ("postgresql://app@proxy.example.com/features", "proxy.example.com", 5432, "app"),
        (
            "postgresql://svc%2Bscoring%40x@db.internal:6432/features",
            "db.internal",
            6432,
            "svc+scoring@x",
        ),
    ],
)
@pytest.mark.parametrize("session_token", [None, "FwoGZXIvYXdzE/with+slash=="])
def test_the_token_is_the_rds_clients_token(aws, url, host, port, user, session_token):
    # given Lambda's credentials (temporary ones carry a session token)
    if session_token is not None:
        aws.setenv("AWS_SESSION_TOKEN", session_token)
    # when the store mints the password of a new connection
    password = connect_kwargs(PostgresConfig(url=url, iam_auth=True))["password"]
    # then it is, byte for byte, what an RDS client signs at the same instant
    assert password == rds_client_token(host, port, user)


def test_no_rds_client_is_made(aws):
    # (its service model is a cold-start cost the token does not need)
    def no_client(*args, **kwargs):
        raise AssertionError("an AWS client was created")

    aws.setattr(boto3, "client", no_client)
    config = PostgresConfig(url="postgresql://app@proxy.example.com:5432/features", iam_auth=True)
    assert connect_kwargs(config)["password"].startswith("proxy.example.com:5432/?Action=connect")


def test_a_token_without_a_region_is_a_configuration_error(aws):
    aws.delenv("AWS_DEFAULT_REGION")
    aws.delenv("AWS_REGION", raising=False)
    aws.setenv("AWS_CONFIG_FILE", "/nonexistent")
    config = PostgresConfig(url="postgresql://app@proxy.example.com:5432/features", iam_auth=True)
    with pytest.raises(ConfigurationError, match="region"):
        connect_kwargs(config)
