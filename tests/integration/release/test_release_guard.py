"""The release guard against Step Functions (moto, executing state machines).

A model release is a canary-release execution that waits between its stages; one
started here waits an hour, so it is RUNNING while the guard looks. The script's
``main`` runs as the pipeline runs it. An operator's canary on the API stage is
kept by ``stage_canary``: moto 5.2 ignores a stage's canary settings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto import mock_aws

from credit_risk import names
from infra import release_guard
from tests.conftest import use_fake_aws_credentials

REGION = "eu-west-1"
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}}
# A stand-in for a release paused between two canary steps.
WAITING = {"StartAt": "Step", "States": {"Step": {"Type": "Wait", "Seconds": 3600, "End": True}}}


@dataclass
class StepFunctions:
    client: object
    role_arn: str

    def machine(self, name: str) -> str:
        return self.client.create_state_machine(
            name=name, definition=json.dumps(WAITING), roleArn=self.role_arn
        )["stateMachineArn"]

    def start(self, machine: str, name: str) -> str:
        return self.client.start_execution(stateMachineArn=machine, name=name)["executionArn"]


@pytest.fixture
def sfn(monkeypatch) -> Iterator[StepFunctions]:
    use_fake_aws_credentials(monkeypatch, REGION)
    with mock_aws(config=MOTO_CONFIG):
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="release-reader",
            AssumeRolePolicyDocument=json.dumps({"Statement": []}),
        )["Role"]["Arn"]
        client = boto3.client("stepfunctions", region_name=REGION)
        world = StepFunctions(client, role)
        yield world
        for machine in client.list_state_machines()["stateMachines"]:
            for execution in client.list_executions(
                stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING"
            )["executions"]:
                client.stop_execution(executionArn=execution["executionArn"])


def _guard(*machines: str, role_arn: str | None = None) -> int:
    arguments = [a for machine in machines for a in ("--state-machine-arn", machine)]
    return release_guard.main(arguments + (["--role-arn", role_arn] if role_arn else []))


def test_no_running_release_lets_the_deployment_go(sfn, capsys):
    canary = sfn.machine("credit-risk-dev-canary-release")
    finished = sfn.start(canary, "release-1")
    sfn.client.stop_execution(executionArn=finished)

    assert _guard(canary) == 0
    assert "no model release is running" in capsys.readouterr().out


def test_a_running_release_stops_the_deployment_and_says_how_to_go_on(sfn, capsys):
    # given a model release paused between two canary steps
    canary = sfn.machine("credit-risk-dev-canary-release")
    execution = sfn.start(canary, "run-20261201")

    # when the pipeline is about to deploy the environment
    status = _guard(canary)

    # then it refuses, naming the release and the way to end it: a rollback, which
    # closes the release record (a stopped execution would leave it open)
    assert status == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("model release run-20261201 started 20"), line
    assert "is running on credit-risk-dev-canary-release: deploy after it ends" in line
    assert f"--state-machine-arn {canary} " in line
    assert """--input '{"rollback": {"reason": """ in line
    assert "stop-execution" not in line
    assert execution.endswith(":run-20261201")


def test_once_the_release_is_stopped_the_deployment_may_go(sfn):
    canary = sfn.machine("credit-risk-dev-canary-release")
    execution = sfn.start(canary, "run-20261201")
    assert _guard(canary) == 1

    sfn.client.stop_execution(executionArn=execution)

    assert _guard(canary) == 0


def test_every_listed_machine_is_checked_and_every_running_execution_named(sfn, capsys):
    canary = sfn.machine("credit-risk-dev-canary-release")
    training = sfn.machine("credit-risk-dev-training-pipeline")
    sfn.start(training, "run-a")
    sfn.start(training, "run-b")

    assert _guard(canary, training) == 1
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[2] for line in lines] == ["run-a", "run-b"]


def test_a_machine_in_another_account_is_read_through_the_given_role(sfn, capsys):
    canary = sfn.machine("credit-risk-dev-canary-release")
    sfn.start(canary, "run-20261201")

    assert _guard(canary, role_arn=sfn.role_arn) == 1
    assert "run-20261201" in capsys.readouterr().err


def test_a_machine_that_cannot_be_read_is_an_error_not_a_pass(sfn, capsys):
    missing = sfn.machine("credit-risk-dev-canary-release").replace("canary", "absent")

    assert _guard(missing) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"release guard FAILED: cannot list the executions of {missing}")
    assert len(err.splitlines()) == 1


API_STACK = names.stack_name("dev", "Api")


def stage_canary(monkeypatch) -> None:
    """The canary settings of a REST API stage, which moto 5.2 ignores (and would
    take ``/canarySettings/deploymentId`` for the stage's own deployment): the patch
    operations an operator sends are kept, and ``GetStage`` answers them."""
    from moto.apigateway.models import Stage

    apply_operations, to_json = Stage.apply_operations, Stage.to_json

    def apply(stage, operations):
        others = []
        for op in operations:
            path = op["path"]
            if path == "/canarySettings" and op["op"] == "remove":
                stage.canary_settings = None
            elif path.startswith("/canarySettings/") and op["op"] == "replace":
                settings = getattr(stage, "canary_settings", None) or {}
                key, _, variable = path.removeprefix("/canarySettings/").partition("/")
                if key == "stageVariableOverrides":
                    settings.setdefault(key, {})[variable] = op["value"]
                elif key == "percentTraffic":
                    settings[key] = float(op["value"])
                else:
                    settings[key] = op["value"]
                stage.canary_settings = settings
            else:
                others.append(op)
        return apply_operations(stage, others)

    def as_json(stage):
        answer = to_json(stage)
        if getattr(stage, "canary_settings", None):
            answer["canarySettings"] = stage.canary_settings
        return answer

    monkeypatch.setattr(Stage, "apply_operations", apply)
    monkeypatch.setattr(Stage, "to_json", as_json)


def _api_stack(monkeypatch, canary_percent: float | None) -> None:
    """The dev Api stack: its ApiUrl output, and its stage with or without an
    operator's canary (sending its share to version 7 of the function)."""
    stage_canary(monkeypatch)
    apigateway = boto3.client("apigateway", region_name=REGION)
    api = apigateway.create_rest_api(name="credit-risk-dev")["id"]
    root = apigateway.get_resources(restApiId=api)["items"][0]["id"]
    apigateway.put_method(
        restApiId=api, resourceId=root, httpMethod="GET", authorizationType="NONE"
    )
    apigateway.put_integration(restApiId=api, resourceId=root, httpMethod="GET", type="MOCK")
    deployment = apigateway.create_deployment(restApiId=api, stageName=names.API_STAGE_NAME)
    if canary_percent is not None:
        apigateway.update_stage(
            restApiId=api,
            stageName=names.API_STAGE_NAME,
            patchOperations=[
                {
                    "op": "replace",
                    "path": "/canarySettings/deploymentId",
                    "value": deployment["id"],
                },
                {
                    "op": "replace",
                    "path": "/canarySettings/percentTraffic",
                    "value": f"{canary_percent:g}",
                },
                {
                    "op": "replace",
                    "path": "/canarySettings/stageVariableOverrides/"
                    + names.STAGE_VARIABLE_LAMBDA_ALIAS,
                    "value": "7",
                },
            ],
        )
    url = f"https://{api}.execute-api.{REGION}.amazonaws.com/{names.API_STAGE_NAME}/"
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {names.OUTPUT_API_URL: {"Value": url}},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=API_STACK, TemplateBody=json.dumps(template)
    )


def test_an_operators_canary_on_the_stage_stops_the_deployment(sfn, monkeypatch, capsys):
    # given an operator's canary sending a tenth of the stage to version 7
    _api_stack(monkeypatch, canary_percent=10)
    canary = sfn.machine("credit-risk-dev-canary-release")

    # when the pipeline is about to deploy: no release runs, but the canary is on
    status = release_guard.main(["--state-machine-arn", canary, "--api-stack", API_STACK])

    assert status == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "has a canary sending 10% of its requests elsewhere (lambdaAlias=7)" in line
    assert "an operator set it, no release does" in line
    assert "op=remove,path=/canarySettings" in line


def test_a_stage_without_canary_or_an_api_not_deployed_yet_lets_it_go(sfn, monkeypatch):
    canary = sfn.machine("credit-risk-dev-canary-release")
    arguments = ["--state-machine-arn", canary, "--api-stack", API_STACK]

    assert release_guard.main(arguments) == 0  # day one: no Api stack yet
    _api_stack(monkeypatch, canary_percent=None)
    assert release_guard.main(arguments) == 0


@pytest.mark.parametrize(
    "arguments",
    [
        [],
        ["--state-machine-arn", "credit-risk-dev-canary-release"],
        ["--state-machine-arn", "arn:aws:states:eu-west-1:123456789012:execution:x:y"],
        [
            "--state-machine-arn",
            "arn:aws:states:eu-west-1:123456789012:stateMachine:credit-risk-dev-canary-release",
            "--role-arn",
            "cdk-lookup-role",
        ],
    ],
)
def test_bad_arguments_exit_2_with_a_message(arguments, capsys):
    with pytest.raises(SystemExit) as stopped:
        release_guard.main(arguments)

    assert stopped.value.code == 2
    assert "error:" in capsys.readouterr().err
