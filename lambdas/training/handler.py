"""Training step of the training pipeline (Step Functions task, container Lambda).

Event: ``{"features_uri": "s3://…/training/", "registry_uri": "s3://…", "run_id": "…",
"snapshot_uri": "s3://…/snapshot/"}``,
optionally ``truth_uri`` and ``gate`` (overrides of ``credit_risk.model.gate.GateConfig``
from the execution input; each is recorded in the version's metadata as
``gate.overrides``). Trains, evaluates, gates and registers a
version; returns ``{model_version, metrics, gate: {passed, reasons}}`` for the Choice
state that follows. Errors propagate with their type name (``InvalidInputError``, …)
so the state machine can catch them by name.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from credit_risk import names
from credit_risk.errors import InvalidInputError
from credit_risk.model.gate import GateConfig
from credit_risk.model.pipeline import TrainingConfig, run_training
from credit_risk.settings import Settings

logger = Logger()


class TrainingEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features_uri: str = Field(min_length=1)
    registry_uri: str = Field(min_length=1)
    run_id: str = Field(pattern=names.RUN_ID_PATTERN)
    truth_uri: str | None = None
    # The serving snapshot of the same feature run: the monitor's reference.
    snapshot_uri: str | None = None
    gate: dict[str, float] = Field(default_factory=dict)


@logger.inject_lambda_context(correlation_id_path="run_id")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = TrainingEvent.model_validate(event)
    except ValidationError as exc:
        raise InvalidInputError(f"invalid training event: {exc}") from None
    known = {spec.name for spec in fields(GateConfig)}
    unknown = sorted(set(request.gate) - known)
    if unknown:
        raise InvalidInputError(f"unknown gate settings {unknown}; known: {sorted(known)}")
    gate = replace(GateConfig(), **request.gate)
    settings = Settings()
    result = run_training(
        request.features_uri,
        request.registry_uri,
        settings.model_name,
        config=TrainingConfig.for_settings(settings, gate=gate),
        truth_uri=request.truth_uri,
        run_id=request.run_id,
        code_version=settings.code_version,
        serving_snapshot_uri=request.snapshot_uri,
    )
    summary = result.summary()
    logger.info(
        "model trained",
        model_version=result.version,
        gate_passed=result.gate.passed,
        auc=summary["metrics"]["auc"],
        seconds=result.seconds,
    )
    return summary
