"""Runtime configuration, read once from the environment.

Every runtime (CLI, Lambda, Glue) builds one ``Settings``; defaults are the local
layout of DESIGN.md: everything under ``./.local/``. A ``s3://`` URI for the lake
or the registry and a PostgreSQL URL for the store switch those to AWS.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "CREDIT_RISK_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    local_dir: Path = Field(
        default=Path(".local"),
        description="Root of everything kept locally: lake, registry, SQLite store.",
    )
    lake_uri: str | None = Field(
        default=None, description="Data lake root (directory or s3://bucket/prefix)."
    )
    registry_uri: str | None = Field(
        default=None, description="Model registry root (directory or s3://bucket/prefix)."
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL of the feature store; unset = SQLite under local_dir.",
    )
    # --- Feature store (PostgreSQL) in AWS: how credentials and TLS are found ---
    database_secret_id: str | None = Field(
        default=None,
        description="Secrets Manager secret (RDS JSON form: username, password, host, port, "
        "dbname) holding the store's credentials; values in database_url win over it.",
    )
    database_iam_auth: bool = Field(
        default=False,
        description="Authenticate to RDS / RDS Proxy with an IAM auth token instead of a "
        "password (host, port and user from database_url or the secret).",
    )
    database_sslmode: str | None = Field(
        default=None,
        pattern=r"^(disable|allow|prefer|require|verify-ca|verify-full)$",
        description="libpq sslmode for the store, unless the URL sets one.",
    )
    database_sslrootcert: str | None = Field(
        default=None, description="CA bundle for sslmode verify-ca / verify-full."
    )
    database_connect_timeout: int = Field(
        default=3, ge=1, le=60, description="Seconds before an unreachable store is reported."
    )
    store_retained_snapshots: int = Field(
        default=2, ge=0, le=20, description="Previous snapshots kept for rollback."
    )
    model_name: str = Field(default="credit-risk", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    api_key: SecretStr | None = Field(
        default=None, description="Key the local API server expects in x-api-key."
    )
    code_version: str | None = Field(
        default=None,
        description="Commit or build id of the running code, recorded in model metadata.",
    )
    spark_master: str = Field(
        default="local[*]", description="Spark master of local feature runs (local[N])."
    )
    spark_driver_memory: str = Field(
        default="2g",
        pattern=r"^[1-9][0-9]*[mMgG]$",
        description="Heap of the local Spark driver, which also runs the tasks in local mode.",
    )

    @field_validator("lake_uri", "registry_uri")
    @classmethod
    def _strip_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @cached_property
    def lake(self) -> str:
        return self.lake_uri or str(self.local_dir / "lake")

    @cached_property
    def registry(self) -> str:
        return self.registry_uri or str(self.local_dir / "registry")

    @cached_property
    def sqlite_path(self) -> Path:
        return self.local_dir / "feature_store.sqlite3"

    @property
    def raw_loans_uri(self) -> str:
        """The raw zone of the lake, where new loan extracts land."""
        return f"{self.lake}/raw/loans"

    @property
    def curated_uri(self) -> str:
        """Where feature runs write their outputs, one folder per run."""
        return f"{self.lake}/curated"
