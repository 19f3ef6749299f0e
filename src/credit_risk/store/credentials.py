"""Where the PostgreSQL store's connection parameters come from.

Locally a URL carries everything. In AWS the URL (or nothing) names the RDS Proxy
endpoint and the rest comes from a Secrets Manager secret in the form RDS writes
(``username``, ``password``, ``host``, ``port``, ``dbname``), or the password is an
IAM auth token minted at each connect. Secrets are fetched through Powertools
Parameters, which caches them across invocations of a warm Lambda.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from credit_risk.errors import ConfigurationError
from credit_risk.settings import Settings
from credit_risk.store.base import DEFAULT_RETAINED_SNAPSHOTS, StoreUnavailable

SECRET_MAX_AGE_SECONDS = 300
# An RDS IAM auth token: a request presigned for this service, valid this long.
IAM_AUTH_SIGNING_NAME = "rds-db"
IAM_AUTH_EXPIRES_SECONDS = 900
_URL_SCHEMES = ("postgresql", "postgres")
_URL_FORM = "postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME"
# Secret keys (RDS's form) → libpq keywords.
_SECRET_KEYS = {
    "host": "host",
    "port": "port",
    "dbname": "dbname",
    "username": "user",
    "password": "password",
}


@dataclass(frozen=True, slots=True)
class PostgresConfig:
    """Typed configuration of :class:`credit_risk.store.postgres.PostgresFeatureStore`."""

    url: str | None = None
    secret_id: str | None = None
    iam_auth: bool = False
    sslmode: str | None = None
    sslrootcert: str | None = None
    connect_timeout: int = 3
    retained_snapshots: int = DEFAULT_RETAINED_SNAPSHOTS
    # A swap waits at most this long for readers' locks on the view, so a stuck
    # reader fails the swap instead of queueing every later reader behind it.
    swap_lock_timeout_ms: int = 5_000

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgresConfig:
        return cls(
            url=settings.database_url.get_secret_value() if settings.database_url else None,
            secret_id=settings.database_secret_id,
            iam_auth=settings.database_iam_auth,
            sslmode=settings.database_sslmode,
            sslrootcert=settings.database_sslrootcert,
            connect_timeout=settings.database_connect_timeout,
            retained_snapshots=settings.store_retained_snapshots,
        )

    def describe(self) -> str:
        """Where the store is, without credentials (for messages and logs)."""
        params = conninfo_to_dict(self.url or "")
        where = f"{params.get('host', '?')}:{params.get('port', 5432)}/{params.get('dbname', '?')}"
        return where if self.url else f"secret {self.secret_id}"


def _url_params(url: str | None) -> dict[str, Any]:
    """The URL's libpq parameters, or a ConfigurationError that never echoes the URL
    (it may carry a password)."""
    if not url:
        return {}
    scheme, separator, _ = url.partition("://")
    if separator and scheme.lower() not in _URL_SCHEMES:
        raise ConfigurationError(
            f"the database URL must be {_URL_FORM} (the store is PostgreSQL), not {scheme}://…"
        )
    try:
        params: dict[str, Any] = dict(conninfo_to_dict(url))
    except (psycopg.Error, UnicodeError) as exc:  # malformed, or not encodable
        reason = str(exc).replace(url, "<url>").strip()
        raise ConfigurationError(f"invalid database URL, expected {_URL_FORM}: {reason}") from None
    ports = str(params.get("port", "")).split(",")
    if any(port and not port.isdigit() for port in ports):
        raise ConfigurationError(f"invalid database URL: port {params['port']!r} is not a number")
    return params


def connect_kwargs(config: PostgresConfig, *, refresh_secret: bool = False) -> dict[str, Any]:
    """``psycopg.connect`` keyword arguments; URL values win over the secret's."""
    params = _url_params(config.url)
    if config.secret_id:
        for key, value in _secret(config.secret_id, refresh=refresh_secret).items():
            if key in _SECRET_KEYS and value not in (None, ""):
                params.setdefault(_SECRET_KEYS[key], str(value))
    if config.sslmode:
        params.setdefault("sslmode", config.sslmode)
    if config.sslrootcert:
        params.setdefault("sslrootcert", config.sslrootcert)
    if config.iam_auth:
        # RDS only accepts tokens over TLS.
        params.setdefault("sslmode", "require")
        params["password"] = _iam_token(params)
    params["connect_timeout"] = config.connect_timeout
    params.setdefault("application_name", "credit-risk-feature-store")
    return params


def _secret(secret_id: str, *, refresh: bool) -> dict[str, Any]:
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_secret(
            secret_id, transform="json", max_age=SECRET_MAX_AGE_SECONDS, force_fetch=refresh
        )
    except parameters.exceptions.GetParameterError as exc:
        # Powertools raises it while handling the SDK's error: that is its context.
        if _transient(exc.__context__):
            raise StoreUnavailable(
                f"cannot read database secret {secret_id} now: {exc}; retry later"
            ) from None
        raise ConfigurationError(f"cannot read database secret {secret_id}: {exc}") from None
    except parameters.exceptions.TransformParameterError as exc:
        raise ConfigurationError(f"cannot read database secret {secret_id}: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"database secret {secret_id} is not a JSON object")
    return value


# What Secrets Manager, or any AWS API, answers when asked again later may succeed:
# throttling, a request that timed out, an error of the service (also any 5xx).
# Every other error says the secret cannot be read as configured (no such secret, no
# access to it or its key, a malformed id or request, bad credentials).
_TRANSIENT_ERROR_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalServiceError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)


def _transient(error: BaseException | None) -> bool:
    """Whether an SDK error reading the secret may pass by itself (see
    ``_TRANSIENT_ERROR_CODES``; no connection or a timeout), after the SDK's own
    retries: the store is then unavailable for now, as when the database itself
    cannot be reached: the API's 503 with Retry-After, a state machine's retry.
    Anything else is a configuration error, which no retry mends."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as SdkConnectionError

    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in _TRANSIENT_ERROR_CODES or status >= 500
    return isinstance(error, SdkConnectionError | HTTPClientError)


def _iam_token(params: dict[str, Any]) -> str:
    """The IAM auth token of a new connection: what an RDS client's
    ``generate_db_auth_token`` returns (a ``connect`` request for ``rds-db``,
    presigned with SigV4 for 15 minutes, without its scheme), signed here with the
    default session's credentials and region, without making the client: loading
    the RDS service model it needs for nothing else is tens of milliseconds of
    the inference Lambda's cold start. tests/unit/store/test_iam_token.py holds the
    two to the same token."""
    import boto3
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest

    missing = [key for key in ("host", "user") if not params.get(key)]
    if missing:
        raise ConfigurationError(f"IAM database auth needs {' and '.join(missing)}")
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    credentials = session.get_credentials()
    if credentials is None:
        raise ConfigurationError("IAM database auth needs AWS credentials, and none were found")
    if not session.region_name:
        raise ConfigurationError("IAM database auth needs an AWS region (AWS_DEFAULT_REGION)")
    request = AWSRequest(
        method="GET",
        url=f"https://{params['host']}:{int(params.get('port', 5432))}/",
        params={"Action": "connect", "DBUser": params["user"]},
    )
    signer = SigV4QueryAuth(
        credentials.get_frozen_credentials(),
        IAM_AUTH_SIGNING_NAME,
        session.region_name,
        expires=IAM_AUTH_EXPIRES_SECONDS,
    )
    signer.add_auth(request)
    return request.prepare().url.removeprefix("https://")
