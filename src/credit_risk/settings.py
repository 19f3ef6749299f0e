"""Runtime configuration, read once from the environment.

Every runtime (CLI, Lambda, Glue) builds one ``Settings``; defaults are the local
layout of DESIGN.md: everything under ``./.local/``. A ``s3://`` URI for the lake
or the registry and a PostgreSQL URL for the store switch those to AWS.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "CREDIT_RISK_"
# 25 months of 31 days: Regulation B keeps a decision's record 25 months after the
# applicant was told (12 CFR 1002.12(b)(1)).
DEFAULT_DECISION_RETENTION_DAYS = 775


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
    decision_retention_days: int = Field(
        default=DEFAULT_DECISION_RETENTION_DAYS,
        ge=1,
        le=3650,
        description="Days a recorded decision is kept for lookup; each feature load "
        "deletes older ones. The default is 25 months (Regulation B, 1002.12(b)).",
    )
    environment: str = Field(
        default="local",
        description="The deployment this runs in (names.deployment_name): recorded with "
        "every score, and names the namespace its metrics are published and read under.",
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
    scoring_log_uri: str | None = Field(
        default=None,
        description="Folder the inference handler appends score records to (local runs; "
        "credit-risk serve sets <lake>/scoring-log). Unset: one JSON line per score on "
        "stdout, which in AWS CloudWatch Logs and Firehose deliver to the lake.",
    )
    # --- Monitoring (credit-risk monitor, the monitor Lambda) ---
    monitor_window_days: int = Field(
        default=7, ge=1, le=90, description="Days of scoring log the monitor compares, up to end."
    )
    monitor_min_scores: int = Field(
        default=200,
        ge=1,
        description="Scores a window needs before drift and invariants are judged: PSI on "
        "fewer is mostly sampling noise.",
    )
    psi_warn: float = Field(
        default=0.1, gt=0, description="PSI (served vs training) at or above which drift warns."
    )
    psi_alert: float = Field(
        default=0.25, gt=0, description="PSI at or above which drift alerts (above psi_warn)."
    )
    max_model_age_days: int = Field(
        default=40, ge=1, description="Age of the champion model beyond which it is stale."
    )
    max_features_age_days: int = Field(
        default=7, ge=1, description="Age of the active feature snapshot beyond which it is stale."
    )
    auc_drop_tolerance: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="Drop of live AUC (on delayed labels) below the offline test AUC that alerts.",
    )
    calibration_tolerance: float = Field(
        default=0.25,
        gt=0,
        description="Relative gap between predicted and observed default rates on delayed "
        "labels that alerts (when it is also beyond 3 standard deviations).",
    )
    min_labelled: int = Field(
        default=200, ge=1, description="Labelled scores needed before live quality is judged."
    )
    label_window_days: int = Field(
        default=180,
        ge=1,
        le=730,
        description="Decision dates (up to the monitor's end) whose outcomes live quality uses.",
    )
    skew_sample_size: int = Field(
        default=500,
        ge=1,
        description="Served records per run compared with the offline snapshot (seeded sample).",
    )
    retrain_on_quality_drop: bool = Field(
        default=False,
        description="Ask for a retraining (EventBridge event) when live quality alerts.",
    )
    adverse_impact_floor: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Adverse impact ratio (a group's approval rate over the most favoured "
        "group's, on served decisions) below which fairness warns (the four-fifths rule); "
        "it alerts when the ratio's whole 95% interval is below.",
    )
    fairness_min_decisions: int = Field(
        default=100,
        ge=1,
        description="Served decisions a group needs in the window before its approval rate "
        "is judged: a ratio of small counts swings by chance.",
    )

    @model_validator(mode="after")
    def _psi_alert_above_warn(self) -> Settings:
        if self.psi_alert <= self.psi_warn:
            raise ValueError("psi_alert must be above psi_warn")
        return self

    @field_validator("lake_uri", "registry_uri", "scoring_log_uri")
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
