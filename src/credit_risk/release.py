"""The AWS calls of a canary release (step_functions/canary_release.asl.json).

Each function is one action of the release state machine, run by the release
Lambda: publish an inference version pinned to a model, set or remove the stage
canary, report what the candidate did, move the aliases, promote in the registry.
They report facts and never decide: whether to raise the canary, promote or roll
back is a Choice state of the definition. Every action is idempotent, so that the
state machine may retry any of them.

Clients are passed in (``Clients``), built lazily by the handler; nothing here
creates one at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from credit_risk import names
from credit_risk.errors import InvalidInputError
from credit_risk.registry import Registry

# Alias metrics are published per minute; a shorter period only returns gaps.
METRIC_PERIOD_SECONDS = 60
# How long the publish waits for the configuration update to settle.
UPDATE_WAIT_SECONDS = 300


@dataclass(frozen=True)
class ReleaseTarget:
    """What a release acts on; the release Lambda reads it from its environment."""

    function_name: str
    rest_api_id: str
    stage_name: str
    alarm_prefix: str
    registry_uri: str
    model_name: str


@dataclass(frozen=True)
class Clients:
    lambda_: Any
    apigateway: Any
    cloudwatch: Any


def publish_candidate(clients: Clients, target: ReleaseTarget, model_version: str) -> dict:
    """Publish an inference version serving ``model_version``; point ``candidate`` at it.

    The environment of ``$LATEST`` is merged, not replaced: only the model
    version variable changes. Returns the new version, the version ``live``
    serves now (what a rollback returns to) and the registry's champion (what
    the promotion expects to replace).
    """
    registry = Registry(target.registry_uri, target.model_name)
    registry.metadata(model_version)  # an unknown version fails here, before any change
    client = clients.lambda_
    live = client.get_alias(FunctionName=target.function_name, Name=names.LIVE_ALIAS)
    config = client.get_function_configuration(FunctionName=target.function_name)
    variables = dict(config.get("Environment", {}).get("Variables", {}))
    if variables.get(names.ENV_MODEL_VERSION) != model_version:
        variables[names.ENV_MODEL_VERSION] = model_version
        # RevisionId: fail rather than overwrite a concurrent change (a deployment).
        client.update_function_configuration(
            FunctionName=target.function_name,
            Environment={"Variables": variables},
            **({"RevisionId": config["RevisionId"]} if "RevisionId" in config else {}),
        )
    client.get_waiter("function_updated_v2").wait(
        FunctionName=target.function_name,
        WaiterConfig={"Delay": 5, "MaxAttempts": UPDATE_WAIT_SECONDS // 5},
    )
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
    client.update_alias(
        FunctionName=target.function_name,
        Name=names.CANDIDATE_ALIAS,
        FunctionVersion=published["Version"],
    )
    return {
        "candidate_version": published["Version"],
        "live_version": live["FunctionVersion"],
        "champion": registry.champion_version(),
        "model_version": model_version,
    }


def canary_operations(percent: float, deployment_id: str) -> list[dict[str, str]]:
    """Patch operations that create or update the stage canary at ``percent``.

    The canary runs the stage's own deployment: only the stage variable that
    selects the alias differs, so the integration is never edited.
    """
    if not 0.0 < percent < 100.0:
        raise InvalidInputError(f"canary percentage must be in (0, 100), got {percent}")
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
    clients: Clients, target: ReleaseTarget, window_seconds: int, now: datetime | None = None
) -> dict:
    """The candidate alarms in ALARM and the requests the candidate alias served in
    the last ``window_seconds``."""
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
    return {"alarms": sorted(alarms), "requests": int(requests)}


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
