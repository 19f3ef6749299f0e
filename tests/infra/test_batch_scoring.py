"""Batch scoring as deployed: the function's environment and permissions, the state
machine's definition with its substitutions, the optional schedule, all read from
the synthesized templates; and the machine executed in moto (the dev templates,
every Lambda invocation the real handler against the real PostgreSQL server)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from credit_risk import names
from credit_risk.batch_scoring import SUMMARY_FILE
from credit_risk.settings import Settings
from credit_risk.store import create_store
from infra.config import ConfigurationError, load_config
from tests.conftest import use_fake_aws_credentials
from tests.infra.aws_world import MOTO_CONFIG, AwsWorld
from tests.infra.models import CHAMPION, no_spark, publish
from tests.integration.store.conftest import fresh_postgres_database
from tests.integration.store.data import AS_OF, snapshot_table

pytestmark = pytest.mark.infra

MACHINE = "batch-scoring"


def _function(synth) -> dict[str, Any]:
    (function,) = [
        resource["Properties"]
        for resource in synth.resources("Ml", "AWS::Lambda::Function").values()
        if resource["Properties"].get("ImageConfig", {}).get("Command")
        == [names.HANDLER_BATCH_SCORING]
    ]
    return function


def _machines(synth) -> dict[str, dict[str, Any]]:
    return {
        m["Properties"]["StateMachineName"]: m["Properties"]
        for m in synth.resources("Orchestration", "AWS::StepFunctions::StateMachine").values()
    }


def _statements(synth, unit: str, role_fragment: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in synth.resources(unit, "AWS::IAM::Policy").values()
        if role_fragment in json.dumps(policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statements: list[dict[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for statement in statements:
        actions = statement["Action"]
        for action in [actions] if isinstance(actions, str) else actions:
            found.setdefault(action, []).append(json.dumps(statement["Resource"]))
    return found


# --- synthesized ----------------------------------------------------------------------


def test_the_function_reads_the_store_through_the_proxy_and_is_sized_by_cdk_json(
    every_environment, cdk_context
):
    synth = every_environment
    settings = cdk_context[synth.environment]["batch_scoring"]["function"]
    function = _function(synth)
    env = function["Environment"]["Variables"]

    assert (function["MemorySize"], function["Timeout"]) == (
        settings["memory_mb"],
        settings["timeout_seconds"],
    )
    assert "VpcConfig" in function
    assert env[names.ENV_DATABASE_IAM_AUTH] == "true"
    url = json.dumps(env[names.ENV_DATABASE_URL])
    assert f"{names.DATABASE_USER}@" in url
    assert "sslmode=require" in url
    assert "Proxy" in url
    assert "curated" in json.dumps(env[names.ENV_LAKE_URI]).lower()
    assert names.REGISTRY_PREFIX.rstrip("/") in json.dumps(env[names.ENV_REGISTRY_URI])
    assert env[names.ENV_POWERTOOLS_SERVICE_NAME] == names.SERVICE_BATCH_SCORING


def test_the_function_may_connect_read_the_registry_and_write_only_batch_scores(dev):
    actions = _actions(_statements(dev, "Ml", "BatchScoring"))

    assert "rds-db:connect" in actions
    (written,) = actions["s3:PutObject"]
    assert "curated" in written
    assert f"/{names.BATCH_SCORES_PREFIX}*" in written
    assert any(f"/{names.REGISTRY_PREFIX}*" in r for r in actions["s3:GetObject"])
    assert "s3:DeleteObject" not in actions


def test_the_machine_fans_out_over_ranges_with_the_configured_defaults(
    every_environment, cdk_context
):
    synth = every_environment
    settings = cdk_context[synth.environment]["batch_scoring"]
    machine = _machines(synth)[f"credit-risk-{synth.environment}-{MACHINE}"]
    definition = json.loads(machine["DefinitionString"])
    values = machine["DefinitionSubstitutions"]

    assert values["BatchPartitions"] == json.dumps(settings["partitions"])
    assert values["BatchMaxConcurrency"] == json.dumps(settings["max_concurrency"])
    assert values["BatchChunkRows"] == json.dumps(settings["chunk_rows"])
    assert "BatchScoring" in json.dumps(values["BatchScoringFunctionArn"])
    fan_out = definition["States"]["ScoreRanges"]
    assert fan_out["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert fan_out["ItemsPath"] == "$.plan.ranges"
    task = fan_out["ItemProcessor"]["States"]["ScoreRange"]
    assert task["Parameters"]["FunctionName"] == "${BatchScoringFunctionArn}"
    outputs = synth.template("Orchestration")["Outputs"]
    assert names.OUTPUT_BATCH_SCORING_ARN in outputs


def test_the_machine_may_invoke_its_function_and_run_its_own_child_executions(dev):
    actions = _actions(_statements(dev, "Orchestration", "BatchScoring"))

    assert any("BatchScoring" in r for r in actions["lambda:InvokeFunction"])
    (own,) = actions["states:StartExecution"]
    assert f"credit-risk-dev-{MACHINE}" in own
    assert all(
        f"execution:credit-risk-dev-{MACHINE}/*" in r for r in actions["states:StopExecution"]
    )
    assert "sns:Publish" in actions


def _schedules(synth) -> list[dict[str, Any]]:
    return [
        rule["Properties"]
        for rule in synth.resources("Orchestration", "AWS::Events::Rule").values()
        if rule["Properties"].get("Description") == "Scores the whole portfolio on schedule"
    ]


def test_the_schedule_is_the_one_cdk_json_sets_and_absent_when_unset(
    every_environment, cdk_context
):
    synth = every_environment
    schedule = cdk_context[synth.environment]["batch_scoring"]["schedule"]
    rules = _schedules(synth)

    if schedule is None:
        assert rules == []
        return
    (rule,) = rules
    assert rule["ScheduleExpression"] == schedule
    (target,) = rule["Targets"]
    assert json.loads(target["Input"]) == {}
    assert "BatchScoring" in json.dumps(target["Arn"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_concurrency": 9, "partitions": 8}, "max_concurrency cannot exceed partitions"),
        ({"partitions": names.BATCH_MAX_PARTITIONS + 1}, "partitions"),
        ({"schedule": "every monday"}, "schedule"),
        ({"function": {"memory_mb": 512, "timeout_seconds": 900}}, "at least 300 s and 1024 MB"),
    ],
)
def test_settings_the_machine_could_not_run_fail_the_synth(cdk_context, change, message):
    context = json.loads(json.dumps(cdk_context))
    context["dev"]["batch_scoring"].update(change)

    with pytest.raises(ConfigurationError, match=message):
        load_config(context, "dev")


# --- executed in moto -----------------------------------------------------------------

CUSTOMERS = 57


@pytest.fixture
def store_url(postgres_url: str) -> Iterator[str]:
    url, drop = fresh_postgres_database(postgres_url)
    with create_store(Settings(database_url=url)) as store:
        store.migrate()
        store.load_snapshot(snapshot_table(CUSTOMERS), "moto-snapshot", AS_OF)
    yield url
    drop()


@pytest.fixture
def world(dev, monkeypatch, store_url) -> Iterator[AwsWorld]:
    aws = AwsWorld(dev, database_url=store_url, spark_session=no_spark)
    use_fake_aws_credentials(monkeypatch, aws.region)
    monkeypatch.setenv("AWS_REGION", aws.region)
    with mock_aws(config=MOTO_CONFIG):
        yield aws.build(monkeypatch)


def _start(world: AwsWorld, name: str, execution_input: dict[str, Any]):
    arn = boto3.client("stepfunctions").start_execution(
        stateMachineArn=world.machine(names.OUTPUT_BATCH_SCORING_ARN),
        name=name,
        input=json.dumps(execution_input),
    )["executionArn"]
    return world.wait(arn, timeout=120)


def _objects(bucket: str, prefix: str) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


@pytest.mark.postgres
def test_a_run_scores_every_customer_into_the_curated_bucket(world):
    # given the champion in the registry and a snapshot in the store
    models = world.registry()
    publish(models, CHAMPION, seed=1)
    models.promote(CHAMPION)
    # when the machine runs with three ranges of small pages
    execution = _start(world, "portfolio-1", {"partitions": 3, "chunk_rows": 7})
    # then
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    summary = execution.output
    assert (summary["customers"], summary["scored"]) == (CUSTOMERS, CUSTOMERS)
    assert (summary["model_version"], summary["snapshot_id"]) == (CHAMPION, "moto-snapshot")
    assert summary["partitions"] == 3
    lake = world.lambda_environment(world.function(names.HANDLER_BATCH_SCORING).name)[
        names.ENV_LAKE_URI
    ]
    bucket = lake.removeprefix("s3://").split("/")[0]
    prefix = f"{names.BATCH_SCORES_PREFIX}portfolio-1/"
    assert summary["output"] == f"s3://{bucket}/{prefix.rstrip('/')}"
    objects = _objects(bucket, prefix)
    assert json.loads(objects[prefix + SUMMARY_FILE]) == summary
    parts = sorted(key for key in objects if key.endswith(".parquet"))
    assert len(parts) == 3
    table = pa.concat_tables(pq.read_table(io.BytesIO(objects[key])) for key in parts)
    assert table.num_rows == CUSTOMERS
    assert table.column("customer_id").to_pylist() == sorted(
        snapshot_table(CUSTOMERS).column("customer_id").to_pylist()
    )
    (notification,) = world.notifications()
    assert notification["subject"] == "credit-risk: batch scores ready"
    assert f"scored {CUSTOMERS} of {CUSTOMERS} customers" in notification["message"]


@pytest.mark.postgres
def test_a_run_without_a_model_fails_notifying_why_and_writes_nothing(world):
    execution = _start(world, "portfolio-2", {})

    assert execution.status == "FAILED"
    assert "ModelNotFoundError" in execution.cause
    (notification,) = world.notifications()
    assert notification["subject"] == "credit-risk: batch scoring failed"
    assert "no champion" in notification["message"]
    lake = world.lambda_environment(world.function(names.HANDLER_BATCH_SCORING).name)[
        names.ENV_LAKE_URI
    ]
    assert _objects(lake.removeprefix("s3://"), names.BATCH_SCORES_PREFIX) == {}
