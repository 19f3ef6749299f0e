"""The synthetic probe in AWS.

On the synths: its schedule, the function's image, environment and permissions, and
its alarms. Then the function itself, run with the dev template's environment in
moto: the client key in Secrets Manager, its kept answer in the lake's curated
bucket, its metrics in CloudWatch, where the probe alarms as deployed are evaluated
on them. The real local API server stands in for the public API; the API's URL is
the one variable replaced, after checking that it is the Api stack's ``ApiUrl``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from credit_risk import names
from infra.config import ConfigurationError, load_config
from lambdas.probe import handler as probe_handler
from tests.conftest import EVENTS_DIR, use_fake_aws_credentials
from tests.infra.aws_world import (
    AlarmEvaluator,
    LambdaContext,
    LogDelivery,
    Physical,
    Resolver,
    generated_name,
)
from tests.integration.api.conftest import (  # noqa: F401 - fixtures used by name
    Serve,
    Serving,
    local_deployment,
    local_dir,
    serve,
    serving,
)
from tests.integration.api.probe_store import SNAPSHOT_ID, private_store, rewrite_features

pytestmark = pytest.mark.infra

API_KEY = "probe-client-key-0123456789abcdef"
ALARM_KEYS = (
    "AlarmName",
    "ComparisonOperator",
    "Dimensions",
    "EvaluationPeriods",
    "MetricName",
    "Namespace",
    "Period",
    "Statistic",
    "Threshold",
    "TreatMissingData",
)


# --- reading the synths ---------------------------------------------------------------


def probe_function(synth) -> tuple[str, dict[str, Any]]:
    """Logical id and properties of the one function running the probe handler."""
    (found,) = [
        (logical_id, resource["Properties"])
        for logical_id, resource in synth.resources("Monitoring", "AWS::Lambda::Function").items()
        if resource["Properties"].get("ImageConfig", {}).get("Command") == [names.HANDLER_PROBE]
    ]
    return found


def probe_alarms(synth) -> dict[str, dict[str, Any]]:
    prefix = names.resource_name(synth.environment, "probe") + "-"
    return {
        props["AlarmName"]: props
        for props in (
            alarm["Properties"]
            for alarm in synth.resources("Monitoring", "AWS::CloudWatch::Alarm").values()
        )
        if props["AlarmName"].startswith(prefix)
    }


def only(synth, unit: str, resource_type: str) -> str:
    (logical_id,) = synth.resources(unit, resource_type)
    return logical_id


def resolver(synth, *, region: str, account: str, secret_arn: str) -> Resolver:
    """CloudFormation's evaluation of the templates, with the Api stack's REST API, stage
    and client-key secret deployed (as ``rest-api-id``, its stage name, ``secret_arn``)
    and the probe function named as CloudFormation would name it."""
    stack_names = {unit: names.stack_name(synth.environment, unit) for unit in synth.templates}
    resolved = Resolver(synth.templates, stack_names, region=region, account=account)
    stage = synth.resources("Api", "AWS::ApiGateway::Stage")[
        only(synth, "Api", "AWS::ApiGateway::Stage")
    ]
    resolved.add("Api", only(synth, "Api", "AWS::ApiGateway::RestApi"), Physical("rest-api-id"))
    resolved.add(
        "Api",
        only(synth, "Api", "AWS::ApiGateway::Stage"),
        Physical(stage["Properties"]["StageName"]),
    )
    resolved.add("Api", only(synth, "Api", "AWS::SecretsManager::Secret"), Physical(secret_arn))
    logical_id, _ = probe_function(synth)
    name = generated_name(stack_names["Monitoring"], logical_id)
    resolved.add("Monitoring", logical_id, Physical(name, {"Arn": f"arn:function:{name}"}))
    return resolved


def curated_bucket(synth, resolved: Resolver) -> str:
    (name,) = [
        resolved.resolve("DataLake", bucket["Properties"]["BucketName"])
        for bucket in synth.resources("DataLake", "AWS::S3::Bucket").values()
        if "-curated-" in json.dumps(bucket["Properties"].get("BucketName"))
    ]
    return name


# --- the synths -------------------------------------------------------------------------


def test_the_probe_runs_at_its_configured_rate_and_never_late(every_environment, cdk_context):
    settings = load_config(cdk_context, every_environment.environment).probe
    logical_id, _ = probe_function(every_environment)
    (rule,) = [
        rule
        for rule in every_environment.resources("Monitoring", "AWS::Events::Rule").values()
        if logical_id in json.dumps(rule["Properties"]["Targets"])
    ]
    (invoke,) = every_environment.resources("Monitoring", "AWS::Lambda::EventInvokeConfig").values()

    minutes = settings.rate_minutes
    assert rule["Properties"]["ScheduleExpression"] == (
        f"rate({minutes} minute{'s' if minutes > 1 else ''})"
    )
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [logical_id, "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    # a run repeated late measures nothing the next scheduled one does not
    assert invoke["Properties"]["MaximumRetryAttempts"] == 0
    assert invoke["Properties"]["MaximumEventAgeInSeconds"] == minutes * 60


def test_the_probe_runs_the_inference_image_outside_the_vpc_one_run_at_a_time(dev, cdk_context):
    _, props = probe_function(dev)
    (inference,) = [
        f["Properties"]
        for f in dev.resources("Ml", "AWS::Lambda::Function").values()
        if f["Properties"]["ImageConfig"]["Command"] == [names.HANDLER_INFERENCE]
    ]
    settings = load_config(cdk_context, "dev").probe

    assert props["Code"]["ImageUri"] == inference["Code"]["ImageUri"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert "VpcConfig" not in props  # it calls the public URL, as a client does
    assert props["ReservedConcurrentExecutions"] == 1
    assert props["Timeout"] == settings.function_timeout_seconds < settings.rate_minutes * 60


def test_the_probe_calls_the_public_url_with_the_client_key_and_keeps_its_answer_in_the_lake(
    dev, cdk_context
):
    _, props = probe_function(dev)
    settings = load_config(cdk_context, "dev").probe
    resolved = resolver(dev, region="eu-west-1", account="123456789012", secret_arn="arn:secret")

    variables = resolved.resolve("Monitoring", props["Environment"]["Variables"])

    assert variables[names.ENV_PROBE_URL] == resolved.output("Api", names.OUTPUT_API_URL)
    assert variables[names.ENV_PROBE_API_KEY_SECRET_ID] == resolved.output(
        "Api", names.OUTPUT_API_KEY_SECRET_ARN
    )
    assert variables[names.ENV_PROBE_STATE_URI] == (
        f"s3://{curated_bucket(dev, resolved)}/{names.PROBE_STATE_KEY}"
    )
    assert variables[names.ENV_PROBE_CUSTOMER_ID] == settings.customer_id
    assert variables[names.ENV_PROBE_TIMEOUT_SECONDS] == str(settings.timeout_seconds)
    assert variables[names.ENV_POWERTOOLS_SERVICE_NAME] == names.SERVICE_PROBE
    assert variables[names.ENV_POWERTOOLS_METRICS_NAMESPACE] == names.metric_namespace("dev")


def test_the_probe_may_read_the_client_key_and_write_its_own_answer_only(dev):
    _, props = probe_function(dev)
    role = props["Role"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in dev.resources("Monitoring", "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    by_action = {}
    for statement in statements:
        actions = statement["Action"]
        for action in actions if isinstance(actions, list) else [actions]:
            by_action[action] = json.dumps(statement["Resource"])

    assert set(by_action) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTelemetryRecords",
        "xray:PutTraceSegments",
        "secretsmanager:GetSecretValue",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:ListBucket",
    }
    secret = only(dev, "Api", "AWS::SecretsManager::Secret")
    assert f"ExportsOutputRef{secret}" in by_action["secretsmanager:GetSecretValue"]
    assert by_action["s3:PutObject"].endswith(f'/{names.PROBE_STATE_PREFIX}*"]]}}')
    assert "-curated-" in by_action["s3:PutObject"]


def test_each_probe_alarm_watches_what_the_function_publishes_and_notifies(
    every_environment, cdk_context
):
    settings = load_config(cdk_context, every_environment.environment).probe
    logical_id, _ = probe_function(every_environment)
    alarms = probe_alarms(every_environment)
    prefix = names.resource_name(every_environment.environment, "probe")
    period = settings.rate_minutes * 60
    published = [{"Name": "service", "Value": names.SERVICE_PROBE}]

    assert set(alarms) == {f"{prefix}-failures", f"{prefix}-answer-changed", f"{prefix}-errors"}
    failures = alarms[f"{prefix}-failures"]
    assert (failures["Namespace"], failures["MetricName"]) == (
        names.metric_namespace(every_environment.environment),
        names.METRIC_PROBE_FAILURES,
    )
    assert failures["Dimensions"] == published
    assert (failures["Statistic"], failures["Period"]) == ("Maximum", period)
    assert failures["EvaluationPeriods"] == settings.failures_to_alarm
    assert failures["TreatMissingData"] == "missing"
    changed = alarms[f"{prefix}-answer-changed"]
    assert changed["MetricName"] == names.METRIC_PROBE_ANSWER_CHANGED
    assert changed["Dimensions"] == published
    assert (changed["Period"], changed["EvaluationPeriods"]) == (period, 1)
    errors = alarms[f"{prefix}-errors"]
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": logical_id}}]
    for alarm in alarms.values():
        assert alarm["Threshold"] == 1
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert "NotificationsTopic" in json.dumps(alarm["AlarmActions"])
        assert "NotificationsTopic" in json.dumps(alarm["OKActions"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"customer_id": "12 34"}, r"probe.*customer id '12 34'"),
        ({"rate_minutes": 1, "timeout_seconds": 25}, r"probe.*runs would overlap"),
        ({"timeout_seconds": 30}, r"probe\.timeout_seconds"),
        ({"failures_to_alarm": 0}, r"probe\.failures_to_alarm"),
    ],
)
def test_a_probe_that_could_not_work_is_refused_at_synth(cdk_context, change, message):
    context = copy.deepcopy(cdk_context)
    context["dev"]["probe"].update(change)

    with pytest.raises(ConfigurationError, match=message):
        load_config(context, "dev")


# --- the function, in moto, against the local API ------------------------------------


@dataclass
class ProbeWorld:
    environment: dict[str, str]  # the function's variables as deployed, URL -> local
    secret_arn: str
    bucket: str
    key: str
    local_dir: Path
    alarms: AlarmEvaluator

    def state(self) -> dict[str, Any] | None:
        try:
            body = boto3.client("s3").get_object(Bucket=self.bucket, Key=self.key)["Body"]
        except ClientError:
            return None
        return json.loads(body.read())

    def alarm_states(self) -> dict[str, str]:
        found = boto3.client("cloudwatch").describe_alarms(
            AlarmNames=[alarm["AlarmName"] for alarm in self.alarms.alarms]
        )["MetricAlarms"]
        suffix = len(names.resource_name("dev", "probe")) + 1
        return {alarm["AlarmName"][suffix:]: alarm["StateValue"] for alarm in found}


@pytest.fixture
def world(
    dev,
    cdk_context,
    serve: Serve,  # noqa: F811
    serving: Serving,  # noqa: F811
    tmp_path,
    monkeypatch,
) -> Iterator[ProbeWorld]:
    region = load_config(cdk_context, "dev").region
    use_fake_aws_credentials(monkeypatch, region)
    with mock_aws():
        account = boto3.client("sts").get_caller_identity()["Account"]
        secret_arn = boto3.client("secretsmanager").create_secret(
            Name="client-key",
            SecretString=json.dumps({"key_name": "client", names.API_KEY_SECRET_FIELD: API_KEY}),
        )["ARN"]
        resolved = resolver(dev, region=region, account=account, secret_arn=secret_arn)
        _, props = probe_function(dev)
        variables = resolved.resolve("Monitoring", props["Environment"]["Variables"])
        assert variables[names.ENV_PROBE_URL] == resolved.output("Api", names.OUTPUT_API_URL)
        bucket, _, key = variables[names.ENV_PROBE_STATE_URI].removeprefix("s3://").partition("/")
        assert bucket == curated_bucket(dev, resolved)
        boto3.client("s3").create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
        )
        specs = []
        for props in probe_alarms(dev).values():
            spec = {k: resolved.resolve("Monitoring", props[k]) for k in ALARM_KEYS if k in props}
            spec = {**spec, "Threshold": float(spec["Threshold"])}
            boto3.client("cloudwatch").put_metric_alarm(**spec)
            specs.append(spec)
        # The public API: the local server, on a store holding the configured customer.
        local = private_store(
            tmp_path / "local", serving, holding=variables[names.ENV_PROBE_CUSTOMER_ID]
        )
        monkeypatch.setenv(f"{names.ENV_PREFIX}LOCAL_DIR", str(local))
        url = serve(api_key=API_KEY)
        yield ProbeWorld(
            environment={**variables, names.ENV_PROBE_URL: url},
            secret_arn=secret_arn,
            bucket=bucket,
            key=key,
            local_dir=local,
            alarms=AlarmEvaluator(specs),
        )


def run_function(world: ProbeWorld, monkeypatch, capsys) -> dict[str, Any]:
    """One scheduled run; what it printed reaches CloudWatch as Lambda's log would
    take it (EMF -> metrics), and the alarms are evaluated on the metrics."""
    for name, value in world.environment.items():
        monkeypatch.setenv(name, value)
    event = json.loads((EVENTS_DIR / "probe_scheduled.json").read_text())
    context = LambdaContext(
        function_name="credit-risk-dev-probe",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:eu-west-1:123456789012:function:probe",
        memory_limit_in_mb=512,
    )
    capsys.readouterr()
    try:
        return probe_handler.lambda_handler(event, context)
    finally:
        LogDelivery.put_metrics(capsys.readouterr().out.splitlines())
        world.alarms()


def test_the_function_probes_the_public_api_and_alarms_on_an_answer_changed_in_place(
    world: ProbeWorld, monkeypatch, capsys
):
    customer = world.environment[names.ENV_PROBE_CUSTOMER_ID]

    # given a first run: the API passes, its answer is kept, nothing alarms
    first = run_function(world, monkeypatch, capsys)
    assert first["ok"] is True
    assert first["comparison"]["status"] == "first"
    kept = world.state()
    assert kept["customer_id"] == customer
    assert kept["snapshot_id"] == SNAPSHOT_ID
    assert world.alarm_states() == {"failures": "OK", "answer-changed": "OK", "errors": "OK"}
    assert run_function(world, monkeypatch, capsys)["comparison"]["status"] == "unchanged"

    # when the customer's features are rewritten behind the loader's back
    rewrite_features(world.local_dir, customer)
    changed = run_function(world, monkeypatch, capsys)

    # then the answer-changed alarm fires, and the new answer is kept
    assert changed["ok"] is True
    assert changed["comparison"]["status"] == "changed"
    assert world.alarm_states()["answer-changed"] == "ALARM"
    assert world.alarm_states()["failures"] == "OK"
    assert world.state()["default_probability"] != kept["default_probability"]


def test_a_key_the_api_refuses_raises_the_failure_alarm_and_keeps_nothing(
    world: ProbeWorld, monkeypatch, capsys
):
    # dev alarms at the first failed probe (probe.failures_to_alarm)
    assert {a["AlarmName"]: a for a in world.alarms.alarms}[
        names.resource_name("dev", "probe", "failures")
    ]["EvaluationPeriods"] == 1
    boto3.client("secretsmanager").put_secret_value(
        SecretId=world.secret_arn,
        SecretString=json.dumps({names.API_KEY_SECRET_FIELD: "a-key-the-api-never-issued"}),
    )

    result = run_function(world, monkeypatch, capsys)

    assert result["ok"] is False
    assert [check["status"] for check in result["checks"]] == [403, 403]
    assert world.alarm_states()["failures"] == "ALARM"
    assert world.state() is None


def test_a_kept_object_that_is_no_answer_is_replaced_not_fatal(
    world: ProbeWorld, monkeypatch, capsys
):
    boto3.client("s3").put_object(Bucket=world.bucket, Key=world.key, Body=b"{}")

    result = run_function(world, monkeypatch, capsys)

    assert result["ok"] is True
    assert result["comparison"]["status"] == "first"
    assert result["comparison"]["detail"].endswith("; replaced by this answer")
    assert world.state()["customer_id"] == world.environment[names.ENV_PROBE_CUSTOMER_ID]


def test_a_probe_that_cannot_read_its_key_fails_the_function(
    world: ProbeWorld, monkeypatch, capsys
):
    # the function's Errors alarm reports that the API is not being probed
    boto3.client("secretsmanager").delete_secret(
        SecretId=world.secret_arn, ForceDeleteWithoutRecovery=True
    )

    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        run_function(world, monkeypatch, capsys)
    assert world.state() is None
