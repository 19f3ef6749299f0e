"""Both state machines executed by moto's Step Functions engine.

The definitions under ``step_functions/`` are what AWS runs. moto cannot run all of
it, so ``moto_runnable`` makes these changes, and only these, to a copy:

1. ``glue:startJobRun.sync`` becomes ``glue:startJobRun``: moto's executor fails
   every ``.sync`` integration. The job run is started, not awaited.
2. The task starting the canary release (``states:startExecution.sync:2``) becomes a
   Pass state that records the request it would send (``$.release.request``) and
   answers with a stand-in execution ARN: moto's ``states:startExecution`` fails in
   any form (it adds an ``Input`` argument that botocore's camelCase API rejects).
   The canary machine is executed on its own, with the real release function, in
   tests/infra (test_model_release.py, test_day_one.py).
3. Retry intervals shrink to one second with no growth, so that a retried task
   fails in seconds; attempts and error names are untouched.

Besides, ``aws_sdk_bodies_as_text`` fixes moto's aws-sdk task, which hands S3 object
bodies to the next state as stream objects where Step Functions hands over text.

Lambda functions do not run: their results come, in invocation order, from moto's
lambda-simple results queue (``queue_results``). Notifications are read back from an
SQS queue subscribed to the topic.
"""

from __future__ import annotations

import copy
import io
import json
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws

from credit_risk import names
from infra.components.asl_state_machine import PLACEHOLDER
from tests.conftest import use_fake_aws_credentials

REPO_ROOT = Path(__file__).resolve().parents[3]
STEP_FUNCTIONS = REPO_ROOT / "step_functions"
REGION = "eu-west-1"
ENVIRONMENT = "dev"
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
STAND_IN_EXECUTION_PREFIX = "stand-in-execution-of:"
RESULTS_QUEUE_URL = "http://motoapi.amazonaws.com/moto-api/static/lambda-simple/response"
CURATED_BUCKET = "credit-risk-dev-curated-test"
MODELS_BUCKET = "credit-risk-dev-models-test"


def moto_runnable(definition: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``definition`` that moto's executor can run (see the module doc)."""
    runnable = copy.deepcopy(definition)
    for name, state in runnable["States"].items():
        resource = state.get("Resource", "")
        if resource.startswith("arn:aws:states:::states:startExecution"):
            runnable["States"][name] = _recorded_start(state)
        elif resource.startswith("arn:aws:states:::glue:") and ".sync" in resource:
            state["Resource"] = resource.split(".sync")[0]
        for retrier in state.get("Retry", []):
            retrier["IntervalSeconds"] = 1
            retrier["BackoffRate"] = 1
            retrier.pop("MaxDelaySeconds", None)
    return runnable


def _recorded_start(task: dict[str, Any]) -> dict[str, Any]:
    """A Pass state in place of a ``startExecution`` task: it keeps the request and
    answers what the task's selector reads from a started execution."""
    stand_in = f"{STAND_IN_EXECUTION_PREFIX}{task['Parameters']['StateMachineArn']}"
    answers = {"$.ExecutionArn": stand_in, "$.Output": {"outcome": "promoted"}}
    result = {key.removesuffix(".$"): answers[path] for key, path in task["ResultSelector"].items()}
    return {
        "Type": "Pass",
        "Comment": "test stand-in for " + task["Resource"],
        "Parameters": {**result, "request": task["Parameters"]},
        "ResultPath": task["ResultPath"],
        "Next": task["Next"],
    }


def substitute(text: str, values: dict[str, str]) -> str:
    """What CloudFormation does with ``DefinitionSubstitutions``."""
    missing = set(PLACEHOLDER.findall(text)) - values.keys()
    assert not missing, f"no value for placeholders {missing}"
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def load_definition(name: str, values: dict[str, str]) -> dict[str, Any]:
    text = (STEP_FUNCTIONS / f"{name}.asl.json").read_text(encoding="utf-8")
    return json.loads(substitute(text, values))


@pytest.fixture
def aws_sdk_bodies_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    read_sdk_bodies_as_text(monkeypatch)


def read_sdk_bodies_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Step Functions returns the ``Body`` of ``aws-sdk:s3:getObject`` as text; moto
    passes botocore's stream on. Read it, as AWS does, before the result selector."""
    from botocore.response import StreamingBody
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as aws_sdk,
    )

    original = aws_sdk.StateTaskServiceAwsSdk._eval_service_task

    def eval_service_task(self, env, *args, **kwargs):
        original(self, env, *args, **kwargs)
        response = env.stack[-1]
        if isinstance(response, dict) and isinstance(response.get("Body"), StreamingBody):
            response["Body"] = response["Body"].read().decode("utf-8")

    monkeypatch.setattr(aws_sdk.StateTaskServiceAwsSdk, "_eval_service_task", eval_service_task)


@dataclass
class Execution:
    arn: str
    status: str
    output: Any
    error: str | None
    cause: str | None
    events: list[dict[str, Any]]

    def entered(self) -> list[str]:
        """Names of the states entered, in order."""
        return [
            e["stateEnteredEventDetails"]["name"]
            for e in self.events
            if "stateEnteredEventDetails" in e
        ]

    def lambda_payloads(self) -> list[dict[str, Any]]:
        """The payloads the Lambda tasks sent, in order."""
        payloads = []
        for event in self.events:
            details = event.get("taskScheduledEventDetails")
            if details and details["resourceType"] == "lambda":
                payloads.append(json.loads(details["parameters"])["Payload"])
        return payloads

    def scheduled(self, resource_type: str) -> list[dict[str, Any]]:
        return [
            json.loads(e["taskScheduledEventDetails"]["parameters"])
            for e in self.events
            if e.get("taskScheduledEventDetails", {}).get("resourceType") == resource_type
        ]


@dataclass
class World:
    """The AWS resources the state machines use, in moto."""

    values: dict[str, str]
    topic_queue_url: str
    role_arn: str
    machines: dict[str, str] = field(default_factory=dict)

    @property
    def sfn(self):
        return boto3.client("stepfunctions", region_name=REGION)

    def create_machine(self, name: str, definition: dict[str, Any]) -> str:
        arn = self.sfn.create_state_machine(
            name=name, definition=json.dumps(definition), roleArn=self.role_arn
        )["stateMachineArn"]
        self.machines[name] = arn
        return arn

    def queue_results(self, *results: Any) -> None:
        """What the next Lambda invocations return, in order, whichever function."""
        response = requests.post(
            RESULTS_QUEUE_URL,
            json={"results": [json.dumps(r) for r in results], "region": REGION},
            timeout=10,
        )
        assert response.status_code == 201

    def run(self, arn: str, execution_input: dict[str, Any], timeout: float = 60) -> Execution:
        execution = self.sfn.start_execution(stateMachineArn=arn, input=json.dumps(execution_input))
        deadline = time.monotonic() + timeout
        while True:
            described = self.sfn.describe_execution(executionArn=execution["executionArn"])
            if described["status"] != "RUNNING" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        events = self.sfn.get_execution_history(
            executionArn=execution["executionArn"], maxResults=1000
        )["events"]
        output = described.get("output")
        return Execution(
            arn=execution["executionArn"],
            status=described["status"],
            output=json.loads(output) if output else None,
            error=described.get("error"),
            cause=described.get("cause"),
            events=events,
        )

    def notifications(self) -> list[dict[str, str]]:
        """Subject and message of everything published to the topic so far."""
        return read_notifications(self.topic_queue_url, REGION)


def read_notifications(queue_url: str, region: str | None = None) -> list[dict[str, str]]:
    """Subject and message of each notification an SQS queue subscribed to the topic
    holds, in order; they are taken off the queue."""
    sqs = boto3.client("sqs", region_name=region)
    found = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not batch:
            return found
        for message in batch:
            body = json.loads(message["Body"])
            found.append({"subject": body.get("Subject"), "message": body["Message"]})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, aws_sdk_bodies_as_text) -> Iterator[World]:
    from infra.config import load_config
    from infra.stacks.orchestration import configured_substitutions

    use_fake_aws_credentials(monkeypatch, REGION)
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    config = load_config(context, ENVIRONMENT)
    with mock_aws(config=MOTO_CONFIG):
        iam = boto3.client("iam", region_name=REGION)
        role_arn = iam.create_role(
            RoleName="state-machine", AssumeRolePolicyDocument=json.dumps({"Statement": []})
        )["Role"]["Arn"]
        s3 = boto3.client("s3", region_name=REGION)
        location = {"LocationConstraint": REGION}
        for bucket in (CURATED_BUCKET, MODELS_BUCKET):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration=location)
        glue = boto3.client("glue", region_name=REGION)
        job = "credit-risk-dev-features"
        glue.create_job(
            Name=job,
            Role=role_arn,
            Command={"Name": "glueetl", "ScriptLocation": f"s3://{CURATED_BUCKET}/job.py"},
            ExecutionProperty={"MaxConcurrentRuns": 1},
        )
        functions = {}
        lam = boto3.client("lambda", region_name=REGION)
        for key in ("feature-loader", "training", "inference", "release"):
            functions[key] = lam.create_function(
                FunctionName=f"credit-risk-dev-{key}",
                Runtime="python3.11",
                Role=role_arn,
                Handler="handler.handler",
                Code={"ZipFile": _zip()},
            )["FunctionArn"]
        topic = boto3.client("sns", region_name=REGION).create_topic(Name="notifications")
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        boto3.client("sns", region_name=REGION).subscribe(
            TopicArn=topic["TopicArn"], Protocol="sqs", Endpoint=queue_arn
        )
        account = role_arn.split(":")[4]
        values = {
            **configured_substitutions(config),
            "FeatureJobName": job,
            "RawBucket": "credit-risk-dev-raw-test",
            "CuratedBucket": CURATED_BUCKET,
            "CuratedUri": f"s3://{CURATED_BUCKET}/{names.CURATED_PREFIX}",
            "ModelsBucket": MODELS_BUCKET,
            "RegistryUri": f"s3://{MODELS_BUCKET}/registry",
            "FeatureLoaderFunctionArn": functions["feature-loader"],
            "TrainingFunctionArn": functions["training"],
            "ReleaseFunctionArn": functions["release"],
            "InferenceFunctionName": "credit-risk-dev-inference",
            "InferenceFunctionArn": functions["inference"],
            "CanaryReleaseStateMachineArn": (
                f"arn:aws:states:{REGION}:{account}:stateMachine:credit-risk-dev-canary-release"
            ),
            "NotificationTopicArn": topic["TopicArn"],
        }
        yield World(values=values, topic_queue_url=queue_url, role_arn=role_arn)
