"""The release actions against moto (Lambda versions and aliases, CloudWatch, the S3
registry) and, for API Gateway's canary settings, which moto ignores, against
botocore's Stubber: the exact requests the stage receives are the contract."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from credit_risk import names, release
from credit_risk.errors import InvalidInputError
from credit_risk.local_api import LambdaContext
from credit_risk.registry import ConcurrentUpdateError, ModelNotFoundError, Registry
from lambdas.release import handler
from tests.conftest import EVENTS_DIR, use_fake_aws_credentials

REGION = "eu-west-1"
FUNCTION = "credit-risk-dev-inference"
MODELS_BUCKET = "credit-risk-dev-models-test"
REGISTRY = f"s3://{MODELS_BUCKET}/registry"
OLD_MODEL, NEW_MODEL = "20231201T030000Z-aaaa1111", "20240101T030000Z-0123abcd"
STAGE = {"deploymentId": "dep123", "stageName": names.API_STAGE_NAME}
TEMPLATE_VARIABLES = {names.ENV_MODEL_FALLBACK_TO_CHAMPION: "true", "KEEP": "me"}


@pytest.fixture
def aws(monkeypatch):
    use_fake_aws_credentials(monkeypatch, REGION)
    with mock_aws(config={"lambda": {"use_docker": False}}):
        yield


@pytest.fixture
def target() -> release.ReleaseTarget:
    return release.ReleaseTarget(
        function_name=FUNCTION,
        rest_api_id="a1b2c3d4e5",
        stage_name=names.API_STAGE_NAME,
        alarm_prefix=names.candidate_alarm_prefix("dev"),
        registry_uri=REGISTRY,
        model_name=names.PROJECT,
    )


@pytest.fixture
def clients(aws) -> release.Clients:
    return release.Clients(
        lambda_=boto3.client("lambda", region_name=REGION),
        apigateway=boto3.client("apigateway", region_name=REGION),
        cloudwatch=boto3.client("cloudwatch", region_name=REGION),
        stepfunctions=boto3.client("stepfunctions", region_name=REGION),
        cloudformation=boto3.client("cloudformation", region_name=REGION),
    )


def answer_warm_ups(monkeypatch, answer) -> list[dict]:
    """The inference function's answer to the release's warm-up ping, as moto's
    Lambda returns it: ``answer(event)`` gives (payload, function error or None)."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    seen: list[dict] = []

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        event = json.loads(body)
        seen.append({"function": function_name, "event": event})
        payload, error = answer(event)
        if error:
            response_headers["x-amz-function-error"] = error
        return json.dumps(payload).encode()

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    return seen


@pytest.fixture
def serving_candidate(monkeypatch) -> list[dict]:
    """A candidate that starts and serves the model it is pinned to (NEW_MODEL)."""
    return answer_warm_ups(
        monkeypatch, lambda event: ({"warm": True, "model_version": NEW_MODEL}, None)
    )


@pytest.fixture
def deployed(clients) -> str:
    """The inference function serving OLD_MODEL, both aliases on its version."""
    role = boto3.client("iam").create_role(RoleName="inference", AssumeRolePolicyDocument="{}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    clients.lambda_.create_function(
        FunctionName=FUNCTION,
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": buffer.getvalue()},
        # As the template deploys it: no model pin, the champion served.
        Environment={"Variables": TEMPLATE_VARIABLES},
    )
    version = clients.lambda_.publish_version(FunctionName=FUNCTION)["Version"]
    for alias in (names.LIVE_ALIAS, names.CANDIDATE_ALIAS):
        clients.lambda_.create_alias(FunctionName=FUNCTION, Name=alias, FunctionVersion=version)
    return version


@pytest.fixture
def registry(aws) -> Registry:
    boto3.client("s3").create_bucket(
        Bucket=MODELS_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    models = Registry(REGISTRY, names.PROJECT)
    for version in (OLD_MODEL, NEW_MODEL):
        models.publish(version, b"model " + version.encode(), {"gate": {"passed": True}})
    models.promote(OLD_MODEL)
    return models


def _alias(clients, name: str) -> str:
    return clients.lambda_.get_alias(FunctionName=FUNCTION, Name=name)["FunctionVersion"]


def test_publishing_pins_a_new_version_to_the_model_and_moves_only_the_candidate(
    clients, target, deployed, registry, serving_candidate
):
    published = release.publish_candidate(clients, target, NEW_MODEL)

    assert published["live_version"] == deployed
    assert published["candidate_version"] != deployed
    assert published["champion"] == OLD_MODEL
    assert _alias(clients, names.CANDIDATE_ALIAS) == published["candidate_version"]
    assert _alias(clients, names.LIVE_ALIAS) == deployed
    pinned = clients.lambda_.get_function_configuration(
        FunctionName=FUNCTION, Qualifier=published["candidate_version"]
    )["Environment"]["Variables"]
    # Merged, not replaced: only the model version changed.
    assert pinned == {**TEMPLATE_VARIABLES, names.ENV_MODEL_VERSION: NEW_MODEL}
    # ...and only in the published version: whatever publishes from $LATEST next (a
    # code deploy) serves the champion, not this model.
    latest = clients.lambda_.get_function_configuration(FunctionName=FUNCTION)
    assert latest["Environment"]["Variables"] == TEMPLATE_VARIABLES
    # The new version was started through the candidate alias before any traffic.
    assert serving_candidate == [
        {"function": f"{FUNCTION}:{names.CANDIDATE_ALIAS}", "event": {"warmup": True}}
    ]
    assert (published["started"], published["start_error"]) == (True, None)


def test_a_candidate_that_fails_to_start_is_reported_with_its_error(
    monkeypatch, clients, target, deployed, registry
):
    failure = {"errorType": "IntegrityError", "errorMessage": "model.ubj does not match"}
    answer_warm_ups(monkeypatch, lambda event: (failure, "Unhandled"))

    published = release.publish_candidate(clients, target, NEW_MODEL)

    assert published["started"] is False
    assert published["start_error"] == "Unhandled: model.ubj does not match"


def test_live_is_confirmed_only_when_it_serves_the_promoted_model(
    monkeypatch, clients, target, deployed
):
    served = {"model": OLD_MODEL}
    pings = answer_warm_ups(
        monkeypatch, lambda event: ({"warm": True, "model_version": served["model"]}, None)
    )

    before = release.confirm_live(clients, target, NEW_MODEL)
    served["model"] = NEW_MODEL
    after = release.confirm_live(clients, target, NEW_MODEL)

    assert before == {"model_version": OLD_MODEL, "confirmed": False}
    assert after == {"model_version": NEW_MODEL, "confirmed": True}
    assert {ping["function"] for ping in pings} == {f"{FUNCTION}:{names.LIVE_ALIAS}"}


def test_a_candidate_serving_another_model_did_not_start_the_release(
    monkeypatch, clients, target, deployed, registry
):
    answer_warm_ups(monkeypatch, lambda event: ({"warm": True, "model_version": OLD_MODEL}, None))

    published = release.publish_candidate(clients, target, NEW_MODEL)

    assert published["started"] is False
    assert OLD_MODEL in published["start_error"]


@pytest.fixture
def machine(clients) -> str:
    """A state machine whose executions stay RUNNING (moto does not run them here)."""
    role = boto3.client("iam").create_role(RoleName="machine", AssumeRolePolicyDocument="{}")
    definition = {
        "StartAt": "Hold",
        "States": {"Hold": {"Type": "Wait", "Seconds": 600, "End": True}},
    }
    return clients.stepfunctions.create_state_machine(
        name="credit-risk-dev-training-pipeline",
        definition=json.dumps(definition),
        roleArn=role["Role"]["Arn"],
    )["stateMachineArn"]


def _start(clients, machine: str, name: str) -> str:
    return clients.stepfunctions.start_execution(stateMachineArn=machine, name=name)["executionArn"]


def test_training_runs_are_admitted_one_at_a_time_oldest_first(clients, machine):
    first, second, third = (_start(clients, machine, name) for name in ("a", "b", "c"))

    assert release.admit_run(clients, first)["decision"] == "go"
    assert release.admit_run(clients, second) == {
        "decision": "wait",
        "reason": "waiting for run a to end",
        "ahead": ["a"],
    }
    assert release.admit_run(clients, third)["decision"] == "skip"
    clients.stepfunctions.stop_execution(executionArn=first)
    assert release.admit_run(clients, second)["decision"] == "go"


def test_a_release_is_refused_while_another_runs_and_goes_alone(clients, target, machine):
    target = release.ReleaseTarget(**{**target.__dict__, "deploy_stack_name": "CreditRisk-dev-Ml"})
    first = _start(clients, machine, "release-1")

    # No such stack in this account: nothing is being deployed.
    assert release.admit_release(clients, target, first)["decision"] == "go"
    second = _start(clients, machine, "release-2")
    refused = release.admit_release(clients, target, second)
    assert refused["decision"] == "refuse"
    assert "release-1" in refused["reason"]


def test_a_release_goes_once_the_inference_stack_is_at_rest(clients, target, machine):
    clients.cloudformation.create_stack(
        StackName="CreditRisk-dev-Ml",
        TemplateBody=json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}),
    )
    target = release.ReleaseTarget(**{**target.__dict__, "deploy_stack_name": "CreditRisk-dev-Ml"})

    admitted = release.admit_release(clients, target, _start(clients, machine, "release-1"))

    assert admitted["decision"] == "go"


def test_an_execution_arn_of_another_kind_is_refused(clients):
    with pytest.raises(InvalidInputError, match="execution ARN"):
        release.admit_run(clients, "arn:aws:states:eu-west-1:123456789012:stateMachine:x")


def test_publishing_an_unknown_model_changes_nothing(clients, target, deployed, registry):
    with pytest.raises(ModelNotFoundError):
        release.publish_candidate(clients, target, "20990101T000000Z-ffffffff")

    assert _alias(clients, names.CANDIDATE_ALIAS) == deployed


def test_the_check_reports_candidate_alarms_and_requests_only(clients, target):
    cloudwatch = clients.cloudwatch
    for name in (
        target.alarm_prefix + "errors",
        target.alarm_prefix + "throttles",
        "credit-risk-dev-inference-live-errors",
    ):
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            MetricName="Errors",
            Namespace="AWS/Lambda",
            Statistic="Sum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    for name in (target.alarm_prefix + "errors", "credit-risk-dev-inference-live-errors"):
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")
    now = datetime.now(UTC)
    for alias, count in ((names.CANDIDATE_ALIAS, 12), (names.LIVE_ALIAS, 500)):
        cloudwatch.put_metric_data(
            Namespace="AWS/Lambda",
            MetricData=[
                {
                    "MetricName": "Invocations",
                    "Dimensions": [
                        {"Name": "FunctionName", "Value": FUNCTION},
                        {"Name": "Resource", "Value": f"{FUNCTION}:{alias}"},
                    ],
                    "Timestamp": now - timedelta(seconds=30),
                    "Value": count,
                    "Unit": "Count",
                }
            ],
        )

    found = release.check_candidate(clients, target, window_seconds=300, now=now)

    assert found == {"alarms": [target.alarm_prefix + "errors"], "requests": 12, "moved": []}


def test_the_check_reports_aliases_that_something_else_moved(clients, target, deployed):
    clients.lambda_.update_function_configuration(
        FunctionName=FUNCTION, Environment={"Variables": {"A": "deploy"}}
    )
    deployed_again = clients.lambda_.publish_version(FunctionName=FUNCTION)["Version"]
    clients.lambda_.update_alias(
        FunctionName=FUNCTION, Name=names.CANDIDATE_ALIAS, FunctionVersion=deployed_again
    )
    expected = {names.CANDIDATE_ALIAS: deployed, names.LIVE_ALIAS: deployed}

    found = release.check_candidate(clients, target, window_seconds=60, expected=expected)

    assert found["moved"] == [f"candidate is on version {deployed_again}, not {deployed}"]


def test_the_canary_is_created_on_the_stage_deployment_with_the_candidate_override(clients, target):
    with Stubber(clients.apigateway) as stage:
        stage.add_response(
            "get_stage", STAGE, {"restApiId": "a1b2c3d4e5", "stageName": names.API_STAGE_NAME}
        )
        stage.add_response(
            "update_stage",
            {**STAGE, "canarySettings": {"percentTraffic": 10.0}},
            {
                "restApiId": "a1b2c3d4e5",
                "stageName": names.API_STAGE_NAME,
                "patchOperations": [
                    {"op": "replace", "path": "/canarySettings/deploymentId", "value": "dep123"},
                    {"op": "replace", "path": "/canarySettings/percentTraffic", "value": "10"},
                    {
                        "op": "replace",
                        "path": "/canarySettings/stageVariableOverrides/lambdaAlias",
                        "value": names.CANDIDATE_ALIAS,
                    },
                ],
            },
        )

        assert release.set_canary(clients, target, 10) == {"percent": 10.0}
        stage.assert_no_pending_responses()


def test_removing_the_canary_is_idempotent(clients, target):
    with Stubber(clients.apigateway) as stage:
        stage.add_response("get_stage", {**STAGE, "canarySettings": {"percentTraffic": 50.0}})
        stage.add_response(
            "update_stage",
            STAGE,
            {
                "restApiId": "a1b2c3d4e5",
                "stageName": names.API_STAGE_NAME,
                "patchOperations": [{"op": "remove", "path": "/canarySettings"}],
            },
        )
        stage.add_response("get_stage", STAGE)

        assert release.remove_canary(clients, target) == {"removed": True}
        assert release.remove_canary(clients, target) == {"removed": False}
        stage.assert_no_pending_responses()


@pytest.mark.parametrize("percent", [0, 100.5, -5])
def test_a_canary_percentage_outside_the_interval_is_refused(percent):
    with pytest.raises(InvalidInputError, match="canary percentage"):
        release.canary_operations(percent, "dep123")


def test_promotion_moves_the_champion_once_and_refuses_a_stale_expectation(target, registry):
    first = release.promote_model(target, NEW_MODEL, expected_champion=OLD_MODEL)
    again = release.promote_model(target, NEW_MODEL, expected_champion=OLD_MODEL)

    assert first == {"champion": NEW_MODEL, "previous": OLD_MODEL, "already": False}
    assert again["already"] is True
    assert registry.champion_version() == NEW_MODEL
    with pytest.raises(ConcurrentUpdateError):
        release.promote_model(target, OLD_MODEL, expected_champion="someone-else")


def test_the_aliases_move_back_on_rollback(clients, target, deployed, registry, serving_candidate):
    published = release.publish_candidate(clients, target, NEW_MODEL)

    release.point_aliases(clients, target, live=deployed, candidate=deployed)

    assert published["candidate_version"] != deployed
    assert _alias(clients, names.CANDIDATE_ALIAS) == deployed
    assert _alias(clients, names.LIVE_ALIAS) == deployed


@pytest.fixture
def handler_environment(monkeypatch, target):
    for name, value in {
        names.ENV_INFERENCE_FUNCTION_NAME: target.function_name,
        names.ENV_REST_API_ID: target.rest_api_id,
        names.ENV_API_STAGE_NAME: target.stage_name,
        names.ENV_CANDIDATE_ALARM_PREFIX: target.alarm_prefix,
        names.ENV_REGISTRY_URI: target.registry_uri,
        names.ENV_MODEL_NAME: target.model_name,
    }.items():
        monkeypatch.setenv(name, value)
    handler._target.cache_clear()
    handler._clients.cache_clear()
    yield
    handler._target.cache_clear()
    handler._clients.cache_clear()


def test_the_handler_runs_the_action_of_the_event(
    handler_environment, deployed, registry, serving_candidate
):
    event = json.loads((EVENTS_DIR / "release_publish_candidate.json").read_text())

    result = handler.lambda_handler(event, LambdaContext("credit-risk-dev-release"))

    assert result["model_version"] == event["model_version"] == NEW_MODEL
    assert result["live_version"] == deployed


def test_the_handler_refuses_an_unknown_action(handler_environment):
    event = json.loads((EVENTS_DIR / "release_invalid.json").read_text())

    with pytest.raises(InvalidInputError, match="invalid release event"):
        handler.lambda_handler(event, LambdaContext("credit-risk-dev-release"))


def test_the_handler_answers_the_verdict_of_the_one_decision_function(handler_environment):
    event = {
        "action": "decide",
        "model_version": NEW_MODEL,
        "champion": OLD_MODEL,
        "steps_percent": [10, 50],
        "min_requests": 20,
        "started": True,
        "start_error": None,
        "step_index": 0,
        "check": {"alarms": [], "requests": 7},
    }

    verdict = handler.lambda_handler(event, LambdaContext("credit-risk-dev-release"))

    assert verdict == {
        "action": "roll_back",
        "reason": "the candidate served 7 requests at 10%, fewer than the 20 required",
        "step_index": None,
        "percent": None,
    }


@pytest.mark.parametrize("wait", [90.5, "90", 0, -5])
def test_a_release_timing_the_wait_states_could_not_take_is_refused_before_traffic(
    handler_environment, wait
):
    event = {
        "action": "decide",
        "model_version": NEW_MODEL,
        "champion": OLD_MODEL,
        "steps_percent": [10, 50],
        "min_requests": 20,
        "wait_seconds": wait,
        "live_refresh_seconds": 65,
    }

    with pytest.raises(InvalidInputError, match="wait_seconds"):
        handler.lambda_handler(event, LambdaContext("credit-risk-dev-release"))


class DeployingLambda:
    """The Lambda client of the release, with a code deploy (CloudFormation updating
    ``$LATEST``'s environment) landing right after the release publishes its version."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def publish_version(self, **kwargs):
        published = self._client.publish_version(**kwargs)
        self._client.update_function_configuration(
            FunctionName=kwargs["FunctionName"],
            Environment={"Variables": {**TEMPLATE_VARIABLES, "CODE": "next-commit"}},
        )
        return published


def test_the_unpin_never_undoes_a_deploy_that_changed_latest_meanwhile(
    clients, target, deployed, registry, serving_candidate
):
    deploying = release.Clients(**{**clients.__dict__, "lambda_": DeployingLambda(clients.lambda_)})

    release.publish_candidate(deploying, target, NEW_MODEL)

    latest = clients.lambda_.get_function_configuration(FunctionName=FUNCTION)
    assert latest["Environment"]["Variables"] == {**TEMPLATE_VARIABLES, "CODE": "next-commit"}
