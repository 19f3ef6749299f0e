"""Feature-store load step of the training pipeline (Step Functions task).

Event: ``{"snapshot_uri": "s3://…/snapshot/", "snapshot_id": "…", "as_of": "YYYY-MM-DD"}``.
Returns the row count and the snapshot now active, which it also records in the
lake (``credit_risk.active_snapshot``: a failover loads the same one). Errors propagate with their
type name (``InvalidInputError``, ``StoreUnavailable``, …) so that the state machine
can retry or catch them by name.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from credit_risk.active_snapshot import record_active_snapshot
from credit_risk.errors import ConfigurationError, InvalidInputError
from credit_risk.settings import ENV_PREFIX, Settings
from credit_risk.store import FeatureStore, get_store
from credit_risk.store.base import SNAPSHOT_ID_PATTERN
from credit_risk.store.loader import load_snapshot_uri

logger = Logger()


class Environment(BaseSettings):
    """What this function needs from its environment: a PostgreSQL store, never SQLite,
    and the lake where it records the active snapshot."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    lake_uri: str = Field(min_length=1)
    database_url: SecretStr | None = None
    database_secret_id: str | None = None

    @model_validator(mode="after")
    def _a_database_is_configured(self) -> Environment:
        if self.database_url is None and not self.database_secret_id:
            raise ValueError(f"set {ENV_PREFIX}DATABASE_SECRET_ID or {ENV_PREFIX}DATABASE_URL")
        return self


class LoadEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    snapshot_uri: str = Field(min_length=1)
    snapshot_id: str = Field(pattern=SNAPSHOT_ID_PATTERN.pattern)
    as_of: date


def _settings() -> Settings:
    """The environment, validated (a load a day: read afresh each time)."""
    try:
        Environment()
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(f"invalid environment: {exc}") from None


@cache
def _store() -> FeatureStore:
    """Once per cold start; the store and its connection live while warm."""
    return get_store(_settings())


@logger.inject_lambda_context(log_event=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = LoadEvent.model_validate(event)
    except ValidationError as exc:
        raise InvalidInputError(f"invalid feature-loader event: {exc}") from None
    settings = _settings()
    result = load_snapshot_uri(
        _store(),
        request.snapshot_uri,
        snapshot_id=request.snapshot_id,
        as_of=request.as_of,
        # Each load also deletes the decisions past their retention.
        decision_retention=timedelta(days=settings.decision_retention_days),
    )
    record_active_snapshot(settings.lake, request.snapshot_uri, result)
    response = result.as_dict()
    logger.info("feature snapshot active", extra=response)
    return response
