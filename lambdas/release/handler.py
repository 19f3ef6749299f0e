"""Release function: the API calls of the canary release and training state machines.

Event: ``{"action": <name>, ...}`` with one of the actions below; each maps to one
function of ``credit_risk.release`` and returns what it did or found. What to do
next (admit, raise the canary, promote, roll back) is ``credit_risk.release_decision``,
returned by ``decide`` and the admissions; the state machines' Choice states follow it.
Errors propagate with their type name (``InvalidInputError``, ``ClientError``, …)
so that the state machine can retry or catch them.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from credit_risk import names, release
from credit_risk.errors import ConfigurationError, InvalidInputError
from credit_risk.settings import ENV_PREFIX

logger = Logger(service=names.SERVICE_RELEASE)

VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
FUNCTION_VERSION_PATTERN = r"^[0-9]+$"
# A day: longer waits are a typo, not a canary.
MAX_WAIT_SECONDS = 24 * 60 * 60


class Environment(BaseSettings):
    """Set by the orchestration stack; validated once per cold start."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    inference_function_name: str = Field(min_length=1)
    rest_api_id: str = Field(min_length=1)
    api_stage_name: str = Field(min_length=1)
    candidate_alarm_prefix: str = Field(min_length=1)
    registry_uri: str = Field(min_length=1)
    model_name: str = Field(min_length=1)
    deploy_stack_name: str | None = None


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PublishCandidate(_Action):
    action: Literal["publish_candidate"]
    model_version: str = Field(pattern=VERSION_PATTERN)


EXECUTION_ARN_PATTERN = r"^arn:[a-z-]+:states:[a-z0-9-]+:[0-9]{12}:execution:[^:]+:[^:]+$"


class AdmitRun(_Action):
    action: Literal["admit_run"]
    execution_arn: str = Field(pattern=EXECUTION_ARN_PATTERN)
    attempt: int = Field(default=0, ge=0)


class AdmitRelease(_Action):
    action: Literal["admit_release"]
    execution_arn: str = Field(pattern=EXECUTION_ARN_PATTERN)
    attempt: int = Field(default=0, ge=0)


class Check(BaseModel):
    model_config = ConfigDict(extra="ignore")

    alarms: list[str] = []
    requests: int = Field(default=0, ge=0)
    moved: list[str] = []


class Decide(_Action):
    action: Literal["decide"]
    model_version: str = Field(pattern=VERSION_PATTERN)
    champion: str | None = None
    steps_percent: list[float] = Field(min_length=1)
    min_requests: int = Field(ge=1)
    started: bool = True
    start_error: str | None = None
    step_index: int | None = Field(default=None, ge=0)
    check: Check | None = None
    # Checked here, before any traffic moves, because the Wait states that read
    # them cannot catch a bad value: a release started by hand with a fraction,
    # a string or a negative number would strand the stage canary.
    wait_seconds: StrictInt | None = Field(default=None, ge=1, le=MAX_WAIT_SECONDS)
    live_refresh_seconds: StrictInt | None = Field(default=None, ge=1, le=MAX_WAIT_SECONDS)


class SetCanary(_Action):
    action: Literal["set_canary"]
    percent: float = Field(gt=0, le=100)


class CheckCandidate(_Action):
    action: Literal["check_candidate"]
    window_seconds: int = Field(gt=0)
    candidate_version: str | None = Field(default=None, pattern=FUNCTION_VERSION_PATTERN)
    live_version: str | None = Field(default=None, pattern=FUNCTION_VERSION_PATTERN)


class RemoveCanary(_Action):
    action: Literal["remove_canary"]


class PointAliases(_Action):
    action: Literal["point_aliases"]
    live: str | None = Field(default=None, pattern=FUNCTION_VERSION_PATTERN)
    candidate: str | None = Field(default=None, pattern=FUNCTION_VERSION_PATTERN)


class ConfirmLive(_Action):
    action: Literal["confirm_live"]
    model_version: str = Field(pattern=VERSION_PATTERN)


class PromoteModel(_Action):
    action: Literal["promote_model"]
    model_version: str = Field(pattern=VERSION_PATTERN)
    expected_champion: str | None = None


Request = Annotated[
    AdmitRun
    | AdmitRelease
    | PublishCandidate
    | Decide
    | SetCanary
    | CheckCandidate
    | RemoveCanary
    | PointAliases
    | PromoteModel
    | ConfirmLive,
    Field(discriminator="action"),
]
_requests = TypeAdapter(Request)


@cache
def _target() -> release.ReleaseTarget:
    try:
        env = Environment()
    except ValidationError as exc:
        raise ConfigurationError(f"invalid environment: {exc}") from None
    return release.ReleaseTarget(
        function_name=env.inference_function_name,
        rest_api_id=env.rest_api_id,
        stage_name=env.api_stage_name,
        alarm_prefix=env.candidate_alarm_prefix,
        registry_uri=env.registry_uri,
        model_name=env.model_name,
        deploy_stack_name=env.deploy_stack_name,
    )


@cache
def _clients() -> release.Clients:
    import boto3  # created on first use, never at import

    return release.Clients(
        lambda_=boto3.client("lambda"),
        apigateway=boto3.client("apigateway"),
        cloudwatch=boto3.client("cloudwatch"),
        stepfunctions=boto3.client("stepfunctions"),
        cloudformation=boto3.client("cloudformation"),
    )


def act(request: Any, target: release.ReleaseTarget, clients: release.Clients) -> dict:
    """Run one parsed action."""
    match request:
        case AdmitRun():
            return release.admit_run(clients, request.execution_arn, request.attempt)
        case AdmitRelease():
            return release.admit_release(clients, target, request.execution_arn, request.attempt)
        case PublishCandidate():
            return release.publish_candidate(clients, target, request.model_version)
        case SetCanary():
            return release.set_canary(clients, target, request.percent)
        case CheckCandidate():
            expected = {
                alias: version
                for alias, version in (
                    (names.CANDIDATE_ALIAS, request.candidate_version),
                    (names.LIVE_ALIAS, request.live_version),
                )
                if version is not None
            }
            return release.check_candidate(
                clients, target, request.window_seconds, expected=expected
            )
        case RemoveCanary():
            return release.remove_canary(clients, target)
        case PointAliases():
            return release.point_aliases(
                clients, target, live=request.live, candidate=request.candidate
            )
        case ConfirmLive():
            return release.confirm_live(clients, target, request.model_version)
        case PromoteModel():
            return release.promote_model(target, request.model_version, request.expected_champion)
    raise InvalidInputError(f"unknown release action {request!r}")


@logger.inject_lambda_context(log_event=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = _requests.validate_python(event)
    except ValidationError as exc:
        raise InvalidInputError(f"invalid release event: {exc}") from None
    if isinstance(request, Decide):  # a pure decision: no environment, no client
        fields = request.model_dump(
            exclude={"action", "check", "wait_seconds", "live_refresh_seconds"}
        )
        check = request.check.model_dump() if request.check is not None else None
        result = release.decide(**fields, check=check)
    else:
        result = act(request, _target(), _clients())
    logger.info("release action done", action=request.action, result=result)
    return result
