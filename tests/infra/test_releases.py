"""Code and model releases as the templates deploy them.

A code release (``cdk deploy``) publishes an inference version that pins no model
and lets CodeDeploy shift the ``live`` alias to it, rolling back on the live
alarms; a model release is run by the release function, whose permissions and
environment are checked here, and by the settings of ``model_release``. Also: the
delivery marker that starts the training pipeline, and the stack outputs the
bootstrap reads.
"""

from __future__ import annotations

import copy
import json
import subprocess

import boto3
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

import credit_risk
from credit_risk import names
from credit_risk.datagen import DirtRates, GeneratorConfig, generate
from infra.config import MIN_STEP_MINUTES, ConfigurationError, load_config
from infra.environment import COMMIT_VARIABLE, code_version
from tests.conftest import use_fake_aws_credentials
from tests.infra.conftest import REPO_ROOT

pytestmark = pytest.mark.infra

REGION = "eu-west-1"


def _function(synth, unit: str, handler: str) -> dict:
    functions = synth.resources(unit, "AWS::Lambda::Function")
    (function,) = [
        f["Properties"]
        for f in functions.values()
        if handler in json.dumps(f["Properties"].get("ImageConfig", {}))
    ]
    return function


def _one(resources: dict) -> tuple[str, dict]:
    ((logical_id, resource),) = resources.items()
    return logical_id, resource


def _statements(synth, unit: str, role_fragment: str) -> list[dict]:
    return [
        statement
        for policy in synth.resources(unit, "AWS::IAM::Policy").values()
        if role_fragment in json.dumps(policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _dimensions(alarm: dict) -> dict:
    return {d["Name"]: d["Value"] for d in alarm["Dimensions"]}


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# --- What a deployed version serves ------------------------------------------


def test_a_deployed_inference_version_serves_the_champion_and_names_its_commit(dev):
    variables = _function(dev, "Ml", names.HANDLER_INFERENCE)["Environment"]["Variables"]

    assert variables[names.ENV_MODEL_FALLBACK_TO_CHAMPION] == "true"
    # A change of the registry (a release's stage, a promotion, a rollback) reaches
    # every instance within this, and so every customer within a minute.
    assert int(variables[names.ENV_MODEL_REFRESH_SECONDS]) == names.MODEL_REFRESH_SECONDS == 30
    # No pin in the template: only a model release publishes a pinned version.
    assert names.ENV_MODEL_VERSION not in variables
    assert variables[names.ENV_CODE_VERSION] == code_version()


def test_training_records_the_commit_it_was_deployed_from(dev):
    variables = _function(dev, "Ml", names.HANDLER_TRAINING)["Environment"]["Variables"]

    assert variables[names.ENV_CODE_VERSION] == code_version()


def test_the_code_version_is_codebuilds_commit_when_there_is_one(monkeypatch):
    monkeypatch.setenv(COMMIT_VARIABLE, "0123456789abcdef0123456789abcdef01234567")

    assert code_version() == "0123456789abcdef0123456789abcdef01234567"


def test_the_code_version_is_the_checkouts_short_head_otherwise(monkeypatch):
    monkeypatch.delenv(COMMIT_VARIABLE, raising=False)
    head = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    assert code_version() == head


def test_a_source_tree_outside_git_is_the_library_version(monkeypatch, tmp_path):
    monkeypatch.delenv(COMMIT_VARIABLE, raising=False)

    assert code_version(tmp_path) == credit_risk.__version__


# --- Code release: CodeDeploy on the live alias -------------------------------


def test_codedeploy_shifts_the_live_alias_in_the_configured_canary(every_environment, cdk_context):
    synth = every_environment
    settings = cdk_context[synth.environment]["code_release"]
    config_id, config = _one(synth.resources("Ml", "AWS::CodeDeploy::DeploymentConfig"))
    group_id, group = _one(synth.resources("Ml", "AWS::CodeDeploy::DeploymentGroup"))
    aliases = synth.resources("Ml", "AWS::Lambda::Alias")
    (live,) = [a for a in aliases.values() if a["Properties"]["Name"] == names.LIVE_ALIAS]

    assert config["Properties"]["ComputePlatform"] == "Lambda"
    assert config["Properties"]["TrafficRoutingConfig"] == {
        "Type": "TimeBasedCanary",
        "TimeBasedCanary": {
            "CanaryPercentage": settings["canary_percent"],
            "CanaryInterval": settings["canary_minutes"],
        },
    }
    assert group["Properties"]["DeploymentConfigName"] == {"Ref": config_id}
    update = live["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    assert update["DeploymentGroupName"] == {"Ref": group_id}


def test_a_code_release_rolls_back_on_failure_and_on_either_live_alarm(staging):
    _, group = _one(staging.resources("Ml", "AWS::CodeDeploy::DeploymentGroup"))
    alarms = staging.resources("Ml", "AWS::CloudWatch::Alarm")
    rollback = group["Properties"]["AutoRollbackConfiguration"]
    watched = group["Properties"]["AlarmConfiguration"]

    assert rollback["Enabled"] is True
    assert set(rollback["Events"]) == {"DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"}
    assert watched["Enabled"] is True
    assert {json.dumps(a["Name"]) for a in watched["Alarms"]} == {
        json.dumps({"Ref": logical_id}) for logical_id in alarms
    }
    assert len(alarms) == 2


def test_the_live_alarms_fire_on_one_error_or_one_5xx_in_a_minute(staging):
    alarms = {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in staging.resources("Ml", "AWS::CloudWatch::Alarm").values()
    }
    prefix = "credit-risk-staging-inference-live-release-"
    errors, server_errors = alarms[f"{prefix}errors"], alarms[f"{prefix}server-errors"]

    for alarm in (errors, server_errors):
        assert alarm["Period"] == 60
        assert alarm["EvaluationPeriods"] == 1
        assert alarm["Threshold"] == 1
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["Statistic"] == "Sum"
    assert errors["Namespace"] == "AWS/Lambda"
    assert errors["MetricName"] == "Errors"
    assert f":{names.LIVE_ALIAS}" in json.dumps(_dimensions(errors)["Resource"])
    assert server_errors["Namespace"] == names.metric_namespace("staging")
    assert server_errors["MetricName"] == names.METRIC_SERVER_ERRORS
    assert _dimensions(server_errors) == {
        "service": names.SERVICE_INFERENCE,
        names.METRIC_DIMENSION_ALIAS: names.LIVE_ALIAS,
    }


# --- Settings that make a release observable ----------------------------------


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ("model_release", "shadow_minutes"),
        ("model_release", "wait_minutes"),
        ("code_release", "canary_minutes"),
    ],
)
def test_a_canary_step_shorter_than_an_alarm_can_see_is_refused(cdk_context, section, field):
    broken = copy.deepcopy(cdk_context)
    broken["dev"][section][field] = MIN_STEP_MINUTES - 1

    shorter = rf"{section}.*{field} is {MIN_STEP_MINUTES - 1}: .* at least {MIN_STEP_MINUTES} min"
    with pytest.raises(ConfigurationError, match=shorter):
        load_config(broken, "dev")


@pytest.mark.parametrize("environment", names.ENVIRONMENTS)
def test_every_environment_waits_long_enough_for_its_alarms(cdk_context, environment):
    config = load_config(cdk_context, environment)

    assert config.model_release.shadow_minutes >= MIN_STEP_MINUTES
    assert config.model_release.wait_minutes >= MIN_STEP_MINUTES
    assert config.code_release.canary_minutes >= MIN_STEP_MINUTES


@pytest.mark.parametrize("environment", names.ENVIRONMENTS)
def test_the_smoke_test_scores_a_customer_every_generated_dataset_has(
    cdk_context, environment, tmp_path
):
    # The smoke test and the probe score the deployment's probe customer.
    customer = load_config(cdk_context, environment).probe.customer_id
    for seed in (1, 42):
        output = tmp_path / f"loans-{seed}.parquet"
        generate(str(output), GeneratorConfig(loans=50, seed=seed, dirt=DirtRates.none()))

        assert customer in pq.read_table(output, columns=["id"])["id"].to_pylist()


# --- The model release function -------------------------------------------------


def test_the_release_function_knows_which_stack_a_code_deploy_updates(staging):
    variables = _function(staging, "Orchestration", names.HANDLER_RELEASE)["Environment"][
        "Variables"
    ]

    assert variables[names.ENV_DEPLOY_STACK_NAME] == "CreditRisk-staging-Ml"
    assert staging.stacks.ml.stack_name == variables[names.ENV_DEPLOY_STACK_NAME]


def test_the_release_function_may_see_runs_deploys_and_warm_live_up(staging):
    statements = _statements(staging, "Orchestration", "ReleaseRole")

    def resources_of(action: str) -> str:
        return json.dumps([s["Resource"] for s in statements if action in _as_list(s["Action"])])

    executions = resources_of("states:ListExecutions")
    assert ":stateMachine:credit-risk-staging-training-pipeline" in executions
    assert ":stateMachine:credit-risk-staging-canary-release" in executions
    stacks = resources_of("cloudformation:DescribeStacks")
    assert ":stack/CreditRisk-staging-Ml/*" in stacks
    (invoke,) = [s for s in statements if s["Action"] == "lambda:InvokeFunction"]
    # The release's warm-up of live only (its probe and confirmations).
    assert invoke["Resource"]["Fn::Join"][1][-1] == f":{names.LIVE_ALIAS}"


def test_the_training_pipeline_may_ask_the_release_function_for_admission(staging):
    statements = _statements(staging, "Orchestration", "TrainingPipeline")
    (invoke,) = [s for s in statements if s["Action"] == "lambda:InvokeFunction"]

    assert "Release" in json.dumps(invoke["Resource"])


# --- Outputs -------------------------------------------------------------------


def test_the_bootstrap_finds_the_raw_bucket_and_the_state_machines_in_outputs(dev):
    lake = dev.template("DataLake")["Outputs"]
    orchestration = dev.template("Orchestration")["Outputs"]
    machines = dev.resources("Orchestration", "AWS::StepFunctions::StateMachine")
    by_name = {m["Properties"]["StateMachineName"]: k for k, m in machines.items()}

    assert lake[names.OUTPUT_RAW_BUCKET]["Value"]["Ref"].startswith("DataLakeRaw")
    assert orchestration[names.OUTPUT_TRAINING_PIPELINE_ARN]["Value"] == {
        "Ref": by_name["credit-risk-dev-training-pipeline"]
    }
    assert orchestration[names.OUTPUT_CANARY_RELEASE_ARN]["Value"] == {
        "Ref": by_name["credit-risk-dev-canary-release"]
    }


# --- The delivery marker starts the training pipeline ---------------------------


def _raw_data_rule(synth) -> dict:
    rules = synth.resources("Orchestration", "AWS::Events::Rule")
    (rule,) = [
        r["Properties"]
        for r in rules.values()
        if r["Properties"].get("EventPattern", {}).get("source") == ["aws.s3"]
    ]
    return rule


@pytest.fixture
def aws_credentials(monkeypatch):
    use_fake_aws_credentials(monkeypatch, REGION)


def test_only_the_marker_of_a_complete_delivery_starts_a_run(staging, aws_credentials):
    bucket = "credit-risk-staging-raw-test"
    pattern = copy.deepcopy(_raw_data_rule(staging)["EventPattern"])
    pattern["detail"]["bucket"]["name"] = [bucket]
    with mock_aws():
        # given the raw bucket announcing its objects on EventBridge, and the
        # synthesized rule delivering what it matches to a queue
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        sqs = boto3.client("sqs", region_name=REGION)
        queue = sqs.create_queue(QueueName="started")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events = boto3.client("events", region_name=REGION)
        events.put_rule(Name="NewRawData", EventPattern=json.dumps(pattern))
        events.put_targets(Rule="NewRawData", Targets=[{"Id": "queue", "Arn": queue_arn}])

        # when a delivery is written, data files first and the marker last
        delivery = f"{names.RAW_LOANS_PREFIX}ingest_date=2026-12-01/"
        for key in (
            f"{delivery}loans.csv",
            f"{delivery}loans.csv.truth.parquet",
            f"{delivery}{names.RAW_DELIVERY_MARKER}",
            f"{names.CURATED_PREFIX}run=1/{names.RAW_DELIVERY_MARKER}",
        ):
            s3.put_object(Bucket=bucket, Key=key, Body=b"")

        # then the rule matched the marker only
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    keys = [json.loads(m["Body"])["detail"]["object"]["key"] for m in messages]
    assert keys == [f"{delivery}{names.RAW_DELIVERY_MARKER}"]


def test_the_raw_data_rule_matches_the_marker_key_of_the_raw_bucket_only(staging):
    detail = _raw_data_rule(staging)["EventPattern"]["detail"]

    assert detail["object"]["key"] == [{"wildcard": names.RAW_DELIVERY_MARKER_PATTERN}]
    assert "DataLakeRaw" in json.dumps(detail["bucket"]["name"])


def test_a_run_started_by_a_delivery_knows_the_marker_that_started_it(staging):
    (target,) = _raw_data_rule(staging)["Targets"]
    transformer = target["InputTransformer"]
    paths = transformer["InputPathsMap"]
    template = transformer["InputTemplate"]

    assert "$.detail.object.key" in paths.values()
    assert '"trigger":"new_raw_data"' in template
    assert '"object_key":<' in template
