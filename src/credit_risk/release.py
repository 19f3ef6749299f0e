"""The AWS calls of a model release (step_functions/canary_release.asl.json) and of
the training pipeline's admission.

Each function is one action of a state machine, run by the release Lambda: admit a
run or a release, publish an inference version pinned to a model and probe that it
starts, set or remove the stage canary, report what the candidate did, move the
aliases, promote in the registry. They gather facts and act; what to do next is
``credit_risk.release_decision``, which the Choice states follow. Every action is
idempotent, so that the state machine may retry any of them.

Clients are passed in (``Clients``), built lazily by the handler; nothing here
creates one at import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from credit_risk import names, release_decision
from credit_risk.errors import InvalidInputError
from credit_risk.registry import Registry

# Alias metrics are published per minute; a shorter period only returns gaps.
METRIC_PERIOD_SECONDS = 60


@dataclass(frozen=True)
class ReleaseTarget:
    """What a release acts on; the release Lambda reads it from its environment."""

    function_name: str
    rest_api_id: str
    stage_name: str
    alarm_prefix: str
    registry_uri: str
    model_name: str
    # The stack a code deploy updates: a release waits while it is in progress.
    deploy_stack_name: str | None = None


@dataclass(frozen=True)
class Clients:
    lambda_: Any
    apigateway: Any
    cloudwatch: Any
    stepfunctions: Any = None
    cloudformation: Any = None


def publish_candidate(clients: Clients, target: ReleaseTarget, model_version: str) -> dict:
    """Publish an inference version serving ``model_version``; point ``candidate`` at
    it and probe that it starts.

    The environment of ``$LATEST`` is merged, not replaced: only the model version
    variable is set for the publish, and removed again right after it. Returns the
    new version, the version ``live`` serves now (what a rollback returns to), the
    registry's champion (what the promotion expects to replace) and whether the
    new version started.
    """
    registry = Registry(target.registry_uri, target.model_name)
    registry.metadata(model_version)  # an unknown version fails here, before any change
    client = clients.lambda_
    live = client.get_alias(FunctionName=target.function_name, Name=names.LIVE_ALIAS)
    _wait_for_update(clients, target)  # a restore of an earlier release may still run
    config = client.get_function_configuration(FunctionName=target.function_name)
    variables = dict(config.get("Environment", {}).get("Variables", {}))
    if variables.get(names.ENV_MODEL_VERSION) != model_version:
        _set_variables(
            clients, target, {**variables, names.ENV_MODEL_VERSION: model_version}, config
        )
        _wait_for_update(clients, target)
    # Publishing an unchanged $LATEST returns the version already published for
    # it, so a retried publish does not pile up versions.
    published = client.publish_version(
        FunctionName=target.function_name,
        Description=f"{target.model_name} model {model_version}"[:256],
    )
    pinned = published.get("Environment", {}).get("Variables", {}).get(names.ENV_MODEL_VERSION)
    if pinned != model_version:
        raise InvalidInputError(
            f"version {published['Version']} of {target.function_name} serves model {pinned}, "
            f"not {model_version}: the function changed during the release"
        )
    _unpin(clients, target, model_version)
    client.update_alias(
        FunctionName=target.function_name,
        Name=names.CANDIDATE_ALIAS,
        FunctionVersion=published["Version"],
    )
    start_error = probe_start(clients, target, model_version)
    return {
        "candidate_version": published["Version"],
        "live_version": live["FunctionVersion"],
        "champion": registry.champion_version(),
        "model_version": model_version,
        "started": start_error is None,
        "start_error": start_error,
    }


def _wait_for_update(clients: Clients, target: ReleaseTarget) -> None:
    clients.lambda_.get_waiter("function_updated_v2").wait(
        FunctionName=target.function_name,
        WaiterConfig={"Delay": 5, "MaxAttempts": names.RELEASE_UPDATE_WAIT_SECONDS // 5},
    )


def _set_variables(
    clients: Clients, target: ReleaseTarget, variables: dict, config: dict | None = None
) -> None:
    """The environment of ``$LATEST``; with ``config``, only if it is still that
    revision (fail rather than overwrite a concurrent change, such as a deployment)."""
    revision = {"RevisionId": config["RevisionId"]} if config and "RevisionId" in config else {}
    clients.lambda_.update_function_configuration(
        FunctionName=target.function_name, Environment={"Variables": variables}, **revision
    )


def _unpin(clients: Clients, target: ReleaseTarget, model_version: str) -> None:
    """The pin lives in the published version only: ``$LATEST`` goes back to serving
    the champion, so that whatever publishes from it next (a code deploy that leaves
    the environment alone, a later release) never inherits this model, released or
    rolled back. Only this release's pin is removed, and only at the revision the
    release left: a deployment that changed ``$LATEST`` meanwhile is not undone."""
    config = clients.lambda_.get_function_configuration(FunctionName=target.function_name)
    variables = dict(config.get("Environment", {}).get("Variables", {}))
    if variables.pop(names.ENV_MODEL_VERSION, None) == model_version:
        _set_variables(clients, target, variables, config)


def _warm_up(clients: Clients, target: ReleaseTarget, alias: str) -> tuple[str | None, str | None]:
    """The model ``alias`` serves, as its answer to a warm-up ping, and the error
    when the invocation failed (a version that cannot start)."""
    # The alias in the name ("function:alias"), which every implementation of the
    # API reads; the permission is the alias's ARN either way.
    response = clients.lambda_.invoke(
        FunctionName=f"{target.function_name}:{alias}",
        Payload=json.dumps({"warmup": True}).encode(),
    )
    body = response["Payload"].read()
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    if response.get("FunctionError"):
        message = payload.get("errorMessage") if isinstance(payload, dict) else None
        return (
            None,
            f"{response['FunctionError']}: {message or body[:500].decode(errors='replace')}",
        )
    return (payload.get("model_version") if isinstance(payload, dict) else None), None


def probe_start(clients: Clients, target: ReleaseTarget, model_version: str) -> str | None:
    """Why the ``candidate`` alias cannot serve ``model_version``, or None when it can.

    A warm-up ping initialises the new version before any customer reaches it: a
    model that fails to load or verify is caught here, with nothing to compare it
    with, which is how the first model of an environment is checked at all.
    """
    served, error = _warm_up(clients, target, names.CANDIDATE_ALIAS)
    if error is not None:
        return error
    if served != model_version:
        return f"the candidate answers with model {served}, not {model_version}"
    return None


def confirm_live(clients: Clients, target: ReleaseTarget, model_version: str) -> dict:
    """Whether the ``live`` alias, which serves the registry's champion, serves the
    newly promoted ``model_version``."""
    served, error = _warm_up(clients, target, names.LIVE_ALIAS)
    # Always a string: the state machine quotes it in a message.
    return {
        "model_version": served or (f"none ({error})" if error else "none"),
        "confirmed": error is None and served == model_version,
    }


def _running(clients: Clients, execution_arn: str) -> tuple[str, list]:
    """This execution's name and the RUNNING executions of its state machine."""
    # arn:<partition>:states:<region>:<account>:execution:<machine>:<name>
    parts = execution_arn.split(":")
    if len(parts) != 8 or parts[5] != "execution":
        raise InvalidInputError(f"not a Step Functions execution ARN: {execution_arn!r}")
    machine = ":".join([*parts[:5], "stateMachine", parts[6]])
    running = []
    paginator = clients.stepfunctions.get_paginator("list_executions")
    for page in paginator.paginate(stateMachineArn=machine, statusFilter="RUNNING"):
        running += [
            release_decision.Execution(e["name"], e["startDate"]) for e in page["executions"]
        ]
    return parts[7], running


def admit_run(clients: Clients, execution_arn: str, attempt: int = 0) -> dict:
    """Whether a training-pipeline execution may go on (one run at a time)."""
    own, running = _running(clients, execution_arn)
    return release_decision.admit_run(own, running, attempt).as_dict()


def admit_release(
    clients: Clients, target: ReleaseTarget, execution_arn: str, attempt: int = 0
) -> dict:
    """Whether a release may begin: no other release, no code deploy in progress."""
    own, running = _running(clients, execution_arn)
    status = None
    if target.deploy_stack_name:
        try:
            stacks = clients.cloudformation.describe_stacks(StackName=target.deploy_stack_name)
            status = stacks["Stacks"][0]["StackStatus"]
        except clients.cloudformation.exceptions.ClientError as exc:
            # A stack that does not exist is not being deployed.
            if "does not exist" not in str(exc):
                raise
    return release_decision.admit_release(own, running, status, attempt).as_dict()


def decide(
    *,
    model_version: str,
    champion: str | None,
    steps_percent: list[float],
    min_requests: int,
    started: bool = True,
    start_error: str | None = None,
    step_index: int | None = None,
    check: dict | None = None,
) -> dict:
    """The release's next move (``release_decision.decide``) for the state machine."""
    policy = release_decision.CanaryPolicy(tuple(steps_percent), min_requests)
    observed = (
        release_decision.StepCheck(
            alarms=tuple(check.get("alarms", ())),
            requests=int(check.get("requests", 0)),
            moved=tuple(check.get("moved", ())),
        )
        if check is not None
        else None
    )
    return release_decision.decide(
        model_version=model_version,
        champion=champion,
        policy=policy,
        started=started,
        start_error=start_error,
        step_index=step_index,
        check=observed,
    ).as_dict()


def canary_operations(percent: float, deployment_id: str) -> list[dict[str, str]]:
    """Patch operations that create or update the stage canary at ``percent``.

    The canary runs the stage's own deployment: only the stage variable that
    selects the alias differs, so the integration is never edited.
    """
    # 100: the promotion's last step, every request on the candidate while the
    # champion changes.
    if not 0.0 < percent <= 100.0:
        raise InvalidInputError(f"canary percentage must be in (0, 100], got {percent}")
    return [
        {"op": "replace", "path": "/canarySettings/deploymentId", "value": deployment_id},
        {"op": "replace", "path": "/canarySettings/percentTraffic", "value": f"{percent:g}"},
        {
            "op": "replace",
            "path": f"/canarySettings/stageVariableOverrides/{names.STAGE_VARIABLE_LAMBDA_ALIAS}",
            "value": names.CANDIDATE_ALIAS,
        },
    ]


def set_canary(clients: Clients, target: ReleaseTarget, percent: float) -> dict:
    stage = clients.apigateway.get_stage(restApiId=target.rest_api_id, stageName=target.stage_name)
    updated = clients.apigateway.update_stage(
        restApiId=target.rest_api_id,
        stageName=target.stage_name,
        patchOperations=canary_operations(percent, stage["deploymentId"]),
    )
    return {"percent": updated.get("canarySettings", {}).get("percentTraffic", percent)}


def remove_canary(clients: Clients, target: ReleaseTarget) -> dict:
    """All of the stage's traffic back on its own stage variables (``live``)."""
    stage = clients.apigateway.get_stage(restApiId=target.rest_api_id, stageName=target.stage_name)
    if "canarySettings" not in stage:
        return {"removed": False}
    clients.apigateway.update_stage(
        restApiId=target.rest_api_id,
        stageName=target.stage_name,
        patchOperations=[{"op": "remove", "path": "/canarySettings"}],
    )
    return {"removed": True}


def check_candidate(
    clients: Clients,
    target: ReleaseTarget,
    window_seconds: int,
    now: datetime | None = None,
    *,
    expected: dict[str, str] | None = None,
) -> dict:
    """The candidate alarms in ALARM, the requests the candidate alias served in the
    last ``window_seconds``, and the aliases no longer on the version ``expected``
    of them (alias -> version): anything but the release moving them (a deploy)
    means the canary no longer measures what it releases."""
    if window_seconds <= 0:
        raise InvalidInputError(f"window_seconds must be positive, got {window_seconds}")
    alarms: list[str] = []
    paginator = clients.cloudwatch.get_paginator("describe_alarms")
    for page in paginator.paginate(
        AlarmNamePrefix=target.alarm_prefix,
        StateValue="ALARM",
        AlarmTypes=["MetricAlarm", "CompositeAlarm"],
    ):
        # The state is checked again here: a name prefix and a state filter together
        # are not honoured by every implementation of the API (moto ignores one).
        for alarm in (*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])):
            if alarm.get("StateValue") == "ALARM":
                alarms.append(alarm["AlarmName"])
    end = now or datetime.now(UTC)
    # The window widens to whole metric periods, so a short wait still counts.
    start = end - timedelta(seconds=max(window_seconds, METRIC_PERIOD_SECONDS))
    metric = {
        "Namespace": "AWS/Lambda",
        "MetricName": "Invocations",
        "Dimensions": [
            {"Name": "FunctionName", "Value": target.function_name},
            {"Name": "Resource", "Value": f"{target.function_name}:{names.CANDIDATE_ALIAS}"},
        ],
    }
    requests = 0.0
    token: str | None = None
    while True:
        response = clients.cloudwatch.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "requests",
                    "MetricStat": {
                        "Metric": metric,
                        "Period": METRIC_PERIOD_SECONDS,
                        "Stat": "Sum",
                    },
                }
            ],
            StartTime=start,
            EndTime=end,
            **({"NextToken": token} if token else {}),
        )
        for result in response.get("MetricDataResults", []):
            requests += sum(result.get("Values", []))
        token = response.get("NextToken")
        if not token:
            break
    moved = [
        f"{alias} is on version {found}, not {version}"
        for alias, version in sorted((expected or {}).items())
        if (found := _alias_version(clients, target, alias)) != version
    ]
    return {"alarms": sorted(alarms), "requests": int(requests), "moved": moved}


def _alias_version(clients: Clients, target: ReleaseTarget, alias: str) -> str:
    return clients.lambda_.get_alias(FunctionName=target.function_name, Name=alias)[
        "FunctionVersion"
    ]


def point_aliases(
    clients: Clients, target: ReleaseTarget, *, live: str | None, candidate: str | None
) -> dict:
    """Point ``live`` and/or ``candidate`` at the given function versions."""
    moved = {}
    for alias, version in ((names.LIVE_ALIAS, live), (names.CANDIDATE_ALIAS, candidate)):
        if version is None:
            continue
        clients.lambda_.update_alias(
            FunctionName=target.function_name, Name=alias, FunctionVersion=version
        )
        moved[alias] = version
    if not moved:
        raise InvalidInputError("point_aliases needs a version for live, candidate or both")
    return {"aliases": moved}


def promote_model(target: ReleaseTarget, model_version: str, expected_champion: str | None) -> dict:
    """Make ``model_version`` the registry's champion, unless it already is.

    ``expected_champion`` is the champion when the release began: a promotion that
    happened meanwhile makes this one fail instead of silently replacing it.
    """
    registry = Registry(target.registry_uri, target.model_name)
    if registry.champion_version() == model_version:
        return {"champion": model_version, "previous": None, "already": True}
    record = registry.promote(model_version, expected_champion=expected_champion)
    return {"champion": record["version"], "previous": record["previous"], "already": False}
