"""Release function: the actions of the canary release and training state machines.

Event: ``{"action": <name>, ...}`` with one of the actions below; each maps to one
function of ``credit_risk.release`` and returns what it did or found. What to do
next (admit, shadow, the next canary step, promote, roll back) is
``credit_risk.release_decision``, returned by ``decide``, ``judge`` and the
admissions; the state machines' Choice states follow it. The canary machine sends
every action but ``close_abandoned_release``, which an EventBridge rule sends when
one of its executions ended without closing its release.

Errors propagate with their type name (``InvalidInputError``,
``ConcurrentUpdateError``, ``ReleaseEndedError``, …) so that the state machine can
retry or catch them. An AWS service error is raised as ``ClientError`` whatever
class botocore gives it (it names the classes of modelled errors after their code:
``TooManyRequestsException``, ``InternalServiceError``, …), so that the state
machine retries them under one name; the message keeps the code.
"""

from __future__ import annotations

import time
from functools import cache
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
    ValidationError,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from credit_risk import names, release, release_decision
from credit_risk.errors import ConfigurationError, InvalidInputError
from credit_risk.settings import ENV_PREFIX

logger = Logger(service=names.SERVICE_RELEASE)

VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
EXECUTION_ARN_PATTERN = r"^arn:[a-z-]+:states:[a-z0-9-]+:[0-9]{12}:execution:[^:]+:[^:]+$"
# A day: longer waits are a typo, not a release stage.
MAX_WAIT_SECONDS = 24 * 60 * 60


class Environment(BaseSettings):
    """Set by the orchestration stack; validated once per cold start."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # The deployment (names.deployment_name), whose metrics namespace the release reads.
    environment: str = Field(min_length=1)
    inference_function_name: str = Field(min_length=1)
    candidate_alarm_prefix: str = Field(min_length=1)
    registry_uri: str = Field(min_length=1)
    model_name: str = Field(min_length=1)
    # The lake the inference function's scoring log is delivered to.
    lake_uri: str | None = None
    deploy_stack_name: str | None = None


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid")


# An execution name as the release's id (credit_risk.release.release_id_of).
ReleaseId = Annotated[
    str, Field(min_length=1, max_length=80), AfterValidator(release.release_id_of)
]
Stage = Literal["shadow", "canary"]


class Settings(BaseModel):
    """The release's settings (cdk.json ``model_release``; the state machine's
    ``canary`` input may override any of them)."""

    model_config = ConfigDict(extra="forbid")

    steps_percent: list[float] = Field(min_length=1)
    min_requests: int = Field(ge=1)
    shadow_min_requests: int = Field(ge=1)
    # Checked before the release opens, because the Wait states that read them
    # cannot catch a bad value: a fraction, a string or a negative number given
    # by hand would fail the execution with the release left open.
    wait_seconds: StrictInt = Field(ge=1, le=MAX_WAIT_SECONDS)
    shadow_seconds: StrictInt = Field(ge=1, le=MAX_WAIT_SECONDS)
    max_candidate_errors: int = Field(ge=0)
    max_latency_ratio: float
    max_approval_rate_change: float
    max_swap_share: float
    max_score_psi: float

    def policy(self) -> release_decision.CanaryPolicy:
        return release_decision.CanaryPolicy.from_settings(self.model_dump())


class AdmitRun(_Action):
    action: Literal["admit_run"]
    execution_arn: str = Field(pattern=EXECUTION_ARN_PATTERN)
    attempt: int = Field(default=0, ge=0)


class AdmitRelease(_Action):
    action: Literal["admit_release"]
    execution_arn: str = Field(pattern=EXECUTION_ARN_PATTERN)
    attempt: int = Field(default=0, ge=0)


class OpenRelease(_Action):
    action: Literal["open_release"]
    release_id: ReleaseId
    model_version: str = Field(pattern=VERSION_PATTERN)
    settings: Settings
    live_refresh_seconds: StrictInt = Field(ge=1, le=MAX_WAIT_SECONDS)
    # Waited before every check, by a Wait state that could not catch a bad value.
    metric_lag_seconds: StrictInt = Field(ge=1, le=MAX_WAIT_SECONDS)


class Decide(_Action):
    action: Literal["decide"]
    model_version: str = Field(pattern=VERSION_PATTERN)
    champion: str | None = None
    settings: Settings
    started: bool = True
    start_error: str | None = None


class MoveRelease(_Action):
    action: Literal["move_release"]
    release_id: ReleaseId
    stage: Stage
    percent: float = Field(ge=0, le=100)


class CheckRelease(_Action):
    action: Literal["check_release"]
    release_id: ReleaseId
    stage: Stage
    # The canary step in progress (None in shadow): where its evidence starts.
    step_index: int | None = Field(default=None, ge=0)


class Check(BaseModel):
    model_config = ConfigDict(extra="ignore")

    alarms: list[str] = []
    requests: int = Field(default=0, ge=0)
    counts: dict[str, float] = {}


class Judge(_Action):
    action: Literal["judge"]
    release_id: ReleaseId
    settings: Settings
    stage: Stage
    step_index: int | None = Field(default=None, ge=0)
    check: Check


class Promote(_Action):
    action: Literal["promote"]
    release_id: ReleaseId
    reason: str = Field(min_length=1)


class Ending(BaseModel):
    """Why a release ends: a verdict's reason, or the error a task failed with."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = None
    error: str | None = None
    cause: str | None = None

    def text(self) -> str:
        if self.reason:
            return self.reason
        return release.failure_reason(self.error or "Error", self.cause)


class CloseRelease(_Action):
    action: Literal["close_release"]
    release_id: ReleaseId
    ending: Ending


class ConfirmLive(_Action):
    action: Literal["confirm_live"]
    model_version: str | None = Field(pattern=VERSION_PATTERN)
    release_id: ReleaseId | None = None


class Report(_Action):
    action: Literal["report"]
    release_id: ReleaseId


class CloseAbandonedRelease(_Action):
    """Sent by EventBridge (infra AbandonedReleases) when a canary-release
    execution was stopped, timed out or failed."""

    action: Literal["close_abandoned_release"]
    execution_name: str = Field(min_length=1, max_length=80)
    status: Literal["ABORTED", "TIMED_OUT", "FAILED"]


class RollBack(_Action):
    action: Literal["roll_back"]
    reason: str = Field(min_length=1, max_length=500)
    rollback_id: ReleaseId
    # Checked before the write, as the release's waits are: the Wait that follows
    # could not catch a bad value.
    live_refresh_seconds: StrictInt = Field(ge=1, le=MAX_WAIT_SECONDS)


Request = Annotated[
    AdmitRun
    | AdmitRelease
    | OpenRelease
    | Decide
    | MoveRelease
    | CheckRelease
    | Judge
    | Promote
    | CloseRelease
    | ConfirmLive
    | Report
    | CloseAbandonedRelease
    | RollBack,
    Field(discriminator="action"),
]
_requests = TypeAdapter(Request)


@cache
def _target() -> release.ReleaseTarget:
    try:
        env = Environment()
    except ValidationError as exc:
        raise ConfigurationError(f"invalid environment: {exc}") from None
    lake = env.lake_uri.rstrip("/") if env.lake_uri else None
    return release.ReleaseTarget(
        function_name=env.inference_function_name,
        alarm_prefix=env.candidate_alarm_prefix,
        registry_uri=env.registry_uri,
        model_name=env.model_name,
        deployment=env.environment,
        # Where Firehose delivers the inference function's score lines, and the
        # monitor reads them (credit_risk.monitoring.records.scoring_log_root).
        scoring_log_uri=f"{lake}/{names.SCORING_LOG_PREFIX.rstrip('/')}" if lake else None,
        deploy_stack_name=env.deploy_stack_name,
    )


@cache
def _clients() -> release.Clients:
    import boto3  # created on first use, never at import

    return release.Clients(
        lambda_=boto3.client("lambda"),
        cloudwatch=boto3.client("cloudwatch"),
        stepfunctions=boto3.client("stepfunctions"),
        cloudformation=boto3.client("cloudformation"),
    )


def act(
    request: Any,
    target: release.ReleaseTarget,
    clients: release.Clients,
    ends_at: float | None = None,
) -> dict:
    """Run one parsed action. ``ends_at``: when the invocation will be stopped
    (``time.monotonic()``), which bounds the report's pass over the scoring log."""
    match request:
        case AdmitRun():
            return release.admit_run(clients, request.execution_arn, request.attempt)
        case AdmitRelease():
            return release.admit_release(clients, target, request.execution_arn, request.attempt)
        case OpenRelease():
            request.settings.policy()  # a policy the decision refuses opens nothing
            return release.open_release(clients, target, request.release_id, request.model_version)
        case MoveRelease():
            return release.move_release(target, request.release_id, request.stage, request.percent)
        case CheckRelease():
            return release.check_release(
                clients, target, request.release_id, request.stage, request.step_index
            )
        case Judge():
            return release.judge(
                target,
                request.release_id,
                request.settings.policy(),
                stage=request.stage,
                step_index=request.step_index,
                check=request.check.model_dump(),
            )
        case Promote():
            return release.promote(target, request.release_id, request.reason)
        case CloseRelease():
            return release.close_release(target, request.release_id, request.ending.text())
        case ConfirmLive():
            return release.confirm_live(clients, target, request.model_version, request.release_id)
        case Report():
            return release.report(clients, target, request.release_id, ends_at)
        case CloseAbandonedRelease():
            return release.close_abandoned(
                clients, target, request.execution_name, request.status, ends_at
            )
        case RollBack():
            return release.roll_back(target, request.reason, request.rollback_id)
    raise InvalidInputError(f"unknown release action {request!r}")


@logger.inject_lambda_context(log_event=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = _requests.validate_python(event)
    except ValidationError as exc:
        raise InvalidInputError(f"invalid release event: {exc}") from None
    if isinstance(request, Decide):  # a pure decision: no environment, no client
        result = release.decide(
            model_version=request.model_version,
            champion=request.champion,
            policy=request.settings.policy(),
            started=request.started,
            start_error=request.start_error,
        )
    else:
        ends_at = time.monotonic() + context.get_remaining_time_in_millis() / 1000
        try:
            result = act(request, _target(), _clients(), ends_at)
        except ClientError as exc:
            if type(exc) is ClientError:
                raise
            raise ClientError(exc.response, exc.operation_name) from exc
    logger.info("release action done", action=request.action, result=result)
    return result
