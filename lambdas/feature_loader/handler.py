"""Feature-store load step of the training pipeline (Step Functions task).

Event: ``{"snapshot_uri": "s3://…/snapshot/", "snapshot_id": "…", "as_of": "YYYY-MM-DD"}``.
Returns the row count and the snapshot now active, which it also records in the
lake (``credit_risk.active_snapshot``: a failover loads the same one). Errors propagate with their
type name (``InvalidInputError``, ``StoreUnavailable``, …) so that the state machine
can retry or catch them by name.

A failback (``credit_risk.dr``) also has it move the decision record, being the
function that reaches the store: ``{"action": "export_decisions", "region": "…",
"after_id": "…"}`` exports the store's decisions (those after ``after_id``, if given)
into the lake and returns the export's ``key``; ``{"action": "import_decisions",
"key": "dr/decisions/…/"}`` imports one (``credit_risk.decision_transfer``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any, Literal, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from credit_risk import decision_ids, decision_transfer, io, names
from credit_risk.active_snapshot import record_active_snapshot
from credit_risk.errors import ConfigurationError, InvalidInputError, validation_problems
from credit_risk.settings import ENV_PREFIX, Settings
from credit_risk.store import FeatureStore, get_store
from credit_risk.store.base import SNAPSHOT_ID_PATTERN
from credit_risk.store.loader import load_snapshot_uri

logger = Logger()
ModelT = TypeVar("ModelT", bound=BaseModel)


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


class ExportDecisionsEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["export_decisions"]
    # The region whose store this is: the export's folder says where it came from.
    region: str = Field(pattern=names.REGION_PATTERN)
    after_id: str | None = Field(default=None, pattern=decision_ids.PATTERN)


class ImportDecisionsEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["import_decisions"]
    key: str = Field(pattern=names.DECISION_EXPORT_KEY_PATTERN)


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
    action = event.get("action") if isinstance(event, dict) else None
    if action is not None:
        if not isinstance(action, str) or action not in _ACTIONS:
            raise InvalidInputError(
                f"invalid feature-loader event: action {action!r} is none of "
                f"{sorted(_ACTIONS)} (a snapshot load has none)"
            )
        model, act = _ACTIONS[action]
        return act(_validated(model, event))
    request = _validated(LoadEvent, event)
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


def _export_decisions(request: ExportDecisionsEvent) -> dict[str, Any]:
    now = datetime.now(UTC)  # the folder's time and the manifest's are one
    key = names.decision_export_key(request.region, now)
    manifest = decision_transfer.export_decisions(
        _store(), io.join(_settings().lake, key), after_id=request.after_id, now=now
    )
    response = {
        "key": key,
        "count": manifest.count,
        "parts": len(manifest.parts),
        "last_id": manifest.last_id,
    }
    logger.info("decisions exported", extra=response)
    return response


def _import_decisions(request: ImportDecisionsEvent) -> dict[str, Any]:
    result = decision_transfer.import_decisions(_store(), io.join(_settings().lake, request.key))
    response = {"key": request.key, **result.as_dict()}
    logger.info("decisions imported", extra=response)
    return response


# What a failback asks besides a load: the event's model and what answers it.
_ACTIONS: dict[str, tuple[type[BaseModel], Callable[[Any], dict[str, Any]]]] = {
    "export_decisions": (ExportDecisionsEvent, _export_decisions),
    "import_decisions": (ImportDecisionsEvent, _import_decisions),
}


def _validated(model: type[ModelT], event: dict[str, Any]) -> ModelT:
    try:
        return model.model_validate(event)
    except ValidationError as exc:
        raise InvalidInputError(
            f"invalid feature-loader event: {validation_problems(exc, 'the event')}"
        ) from None
