"""Batch-scoring function: the steps of the batch-scoring state machine.

Events (``action`` picks the step; each calls ``credit_risk.batch_scoring``):

- ``{"action": "plan", "run_id": "…", "snapshot": "ACTIVE"|ID, "model_version": null|V,
  "partitions": N, "chunk_rows": K}`` → ``{"run": {...}, "ranges": [0, 1, …]}``: the
  run (snapshot, model, output ``<lake>/batch-scores/<run_id>``, ranges of customer
  ids) and the indexes the Map state fans out over;
- ``{"action": "score_range", "run": {...}, "index": I}`` → the range's counts
  (its Parquet part and tally are written under the run's output);
- ``{"action": "finish", "run": {...}}`` → the run's summary, written last.

Errors propagate with their type name (``SnapshotNotFoundError``,
``ModelNotFoundError``, ``InvalidInputError``, ``StoreUnavailable``, …) so that the
state machine can retry or report them by name.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from credit_risk import names
from credit_risk.batch_scoring import (
    ACTIVE,
    DEFAULT_CHUNK_ROWS,
    BatchRun,
    default_output,
    finish_run,
    plan_run,
    score_range,
)
from credit_risk.errors import ConfigurationError, InvalidInputError
from credit_risk.model.package import ModelPackage
from credit_risk.registry import Registry
from credit_risk.settings import Settings
from credit_risk.store import FeatureStore, get_store
from credit_risk.store.base import SNAPSHOT_ID_PATTERN

logger = Logger(service=names.SERVICE_BATCH_SCORING)


class PlanEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["plan"]
    run_id: str = Field(pattern=names.RUN_ID_PATTERN)
    snapshot: str = Field(default=ACTIVE, pattern=SNAPSHOT_ID_PATTERN.pattern)
    model_version: str | None = Field(default=None, min_length=1, max_length=128)
    partitions: int = Field(default=1, ge=1, le=names.BATCH_MAX_PARTITIONS)
    chunk_rows: int = Field(default=DEFAULT_CHUNK_ROWS, ge=1, le=1_000_000)


class RangeEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["score_range"]
    run: dict[str, Any]
    index: int = Field(ge=0)


class FinishEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["finish"]
    run: dict[str, Any]


@cache
def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:  # the deployment's, not the event's
        raise ConfigurationError(f"invalid environment: {exc}") from None


def _store() -> FeatureStore:
    return get_store(_settings())


def _registry() -> Registry:
    settings = _settings()
    return Registry(settings.registry, settings.model_name)


@cache
def _model(version: str) -> ModelPackage:
    """Loaded (and its sha256 checked) once per version while the function is warm."""
    return _registry().load(version)


def _run(data: dict[str, Any]) -> BatchRun:
    return BatchRun.from_dict(data)


@logger.inject_lambda_context(log_event=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action") if isinstance(event, dict) else None
    try:
        if action == "plan":
            request = PlanEvent.model_validate(event)
            run = plan_run(
                _store(),
                _registry(),
                output=default_output(_settings().lake, request.run_id),
                run_id=request.run_id,
                snapshot=request.snapshot,
                model_version=request.model_version,
                partitions=request.partitions,
                chunk_rows=request.chunk_rows,
            )
            logger.info("batch scoring planned", extra={"ranges": len(run.ranges)})
            return {"run": run.to_dict(), "ranges": [part.index for part in run.ranges]}
        if action == "score_range":
            scoring = RangeEvent.model_validate(event)
            run = _run(scoring.run)
            if scoring.index >= len(run.ranges):
                raise InvalidInputError(f"run {run.run_id} has no range {scoring.index}")
            return score_range(_store(), _model(run.model_version), run, scoring.index)
        if action == "finish":
            summary = finish_run(_run(FinishEvent.model_validate(event).run))
            logger.info("batch scoring finished", extra=summary)
            return summary
    except ValidationError as exc:
        raise InvalidInputError(f"invalid batch-scoring event: {exc}") from None
    raise InvalidInputError(f"unknown batch-scoring action {action!r}")
