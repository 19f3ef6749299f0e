"""``credit-risk env bootstrap`` against moto: CloudFormation stacks holding just the
outputs the command reads, the raw bucket, and a training state machine that moto's
Step Functions engine runs.

The EventBridge rule is played by ``RawDataRule``: a thread that watches the raw
bucket through the S3 API and, when a delivery's marker lands, starts the training
pipeline with the input the rule sends (infra/components/pipeline_triggers.py).
"""

from __future__ import annotations

import csv
import fnmatch
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from credit_risk import bootstrap, cli, datagen, names
from credit_risk.errors import InvalidInputError
from tests.conftest import create_output_stack, use_fake_aws_credentials

REGION = "eu-west-1"
ENVIRONMENT = "dev"
RAW_BUCKET = "credit-risk-dev-raw-test"
ROLE_ARN = "arn:aws:iam::123456789012:role/credit-risk-dev-training-pipeline"
API_URL = "https://abc123.execute-api.eu-west-1.amazonaws.com/api/"
MODEL_VERSION = "20260105T030000Z"
INGEST_DATE = date(2026, 1, 5)
DELIVERY = f"{names.RAW_LOANS_PREFIX}ingest_date={INGEST_DATE.isoformat()}/"
MARKER = DELIVERY + names.RAW_DELIVERY_MARKER
LOANS = 300

# The training pipeline as far as the bootstrap can tell: it registers and releases a
# model (``$.model`` of its output), is stopped by a gate, or is still running.
RELEASES_A_MODEL = {
    "StartAt": "Train",
    "States": {
        "Train": {
            "Type": "Pass",
            "Result": {"model_version": MODEL_VERSION},
            "ResultPath": "$.model",
            "Next": "Succeeded",
        },
        "Succeeded": {"Type": "Succeed"},
    },
}
STOPPED_BY_THE_QUALITY_GATE = {
    "StartAt": "Stopped",
    "States": {
        "Stopped": {
            "Type": "Fail",
            "Error": "PipelineStopped",
            "Cause": "quality_gate: quarantined fraction 0.31 is above the limit 0.05",
        }
    },
}
SKIPPED_AT_ADMISSION = {
    "StartAt": "Admit",
    "States": {
        "Admit": {
            "Type": "Pass",
            "Result": {"decision": "skip", "reason": "2 older runs are running"},
            "ResultPath": "$.admitted",
            "Next": "Skipped",
        },
        "Skipped": {"Type": "Succeed"},
    },
}
STILL_TRAINING = {
    "StartAt": "Train",
    "States": {
        "Train": {"Type": "Wait", "Seconds": 3, "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}


@dataclass
class Deployment:
    training_pipeline_arn: str
    secret_arn: str


@dataclass
class RawDataRule:
    """Starts ``pipeline_arn`` once per delivery marker that lands in the raw bucket."""

    pipeline_arn: str
    # For each marker seen: the keys of its folder when it was first seen.
    seen: dict[str, list[str]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def watch(self) -> None:
        s3, sfn = boto3.client("s3"), boto3.client("stepfunctions")
        while not self.stop.wait(0.02):
            listed = s3.list_objects_v2(Bucket=RAW_BUCKET, Prefix=names.RAW_LOANS_PREFIX)
            keys = [item["Key"] for item in listed.get("Contents", [])]
            for key in keys:
                if key in self.seen or not fnmatch.fnmatch(key, names.RAW_DELIVERY_MARKER_PATTERN):
                    continue
                folder = key.removesuffix(names.RAW_DELIVERY_MARKER)
                self.seen[key] = [k for k in keys if k.startswith(folder)]
                now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                rule_input = {
                    "environment": ENVIRONMENT,
                    "model_name": names.PROJECT,
                    "trigger": "new_raw_data",
                    "requested_at": now,
                    "object_key": key,
                }
                sfn.start_execution(
                    stateMachineArn=self.pipeline_arn,
                    name=str(uuid.uuid4()),  # EventBridge names the runs it starts so
                    input=json.dumps(rule_input),
                )


@pytest.fixture
def aws(monkeypatch) -> Iterator[None]:
    use_fake_aws_credentials(monkeypatch, REGION)
    monkeypatch.delenv("AWS_REGION", raising=False)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        boto3.client("s3").create_bucket(
            Bucket=RAW_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield


def _create_stack(unit: str, outputs: dict[str, str]) -> None:
    """A stack holding nothing but ``outputs``, named as the environment's stack is."""
    create_output_stack(
        boto3.client("cloudformation"), names.stack_name(ENVIRONMENT, unit), outputs
    )


def deploy(definition: dict[str, Any] = RELEASES_A_MODEL) -> Deployment:
    """The three stacks the bootstrap reads, with a training pipeline of ``definition``."""
    pipeline = boto3.client("stepfunctions").create_state_machine(
        name="credit-risk-dev-training-pipeline",
        definition=json.dumps(definition),
        roleArn=ROLE_ARN,
    )["stateMachineArn"]
    secret = boto3.client("secretsmanager").create_secret(
        Name="credit-risk-dev-client-key",
        SecretString=json.dumps({names.API_KEY_SECRET_FIELD: "k" * 40}),
    )["ARN"]
    _create_stack("DataLake", {names.OUTPUT_RAW_BUCKET: RAW_BUCKET})
    _create_stack(
        "Orchestration",
        {names.OUTPUT_TRAINING_PIPELINE_ARN: pipeline, names.OUTPUT_CANARY_RELEASE_ARN: pipeline},
    )
    _create_stack("Api", {names.OUTPUT_API_URL: API_URL, names.OUTPUT_API_KEY_SECRET_ARN: secret})
    return Deployment(training_pipeline_arn=pipeline, secret_arn=secret)


@pytest.fixture
def rule() -> Iterator[Any]:
    """Call with the training pipeline's ARN to start playing the raw-data rule."""
    started: list[tuple[RawDataRule, threading.Thread]] = []

    def start(pipeline_arn: str) -> RawDataRule:
        watcher = RawDataRule(pipeline_arn)
        thread = threading.Thread(target=watcher.watch, daemon=True)
        thread.start()
        started.append((watcher, thread))
        return watcher

    yield start
    for watcher, thread in started:
        watcher.stop.set()
        thread.join(timeout=5)


def _bootstrap(*arguments: str) -> int:
    return cli.main(
        [
            "env",
            "bootstrap",
            "--env",
            ENVIRONMENT,
            "--ingest-date",
            INGEST_DATE.isoformat(),
            "--poll-seconds",
            "0.1",
            *arguments,
        ]
    )


def _raw_keys() -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=RAW_BUCKET)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def _executions(pipeline_arn: str) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions")
    return [
        sfn.describe_execution(executionArn=e["executionArn"])
        for e in sfn.list_executions(stateMachineArn=pipeline_arn)["executions"]
    ]


def test_a_synthetic_bootstrap_delivers_waits_for_the_run_and_says_how_to_score(aws, rule, capsys):
    # given a freshly deployed environment whose raw-data rule works
    deployment = deploy()
    watcher = rule(deployment.training_pipeline_arn)

    # when it is bootstrapped with a few hundred synthetic loans
    code = _bootstrap("--synthetic", str(LOANS))

    # then the delivery is in the raw zone: the data, its truth sidecar, the marker
    out, err = capsys.readouterr()
    assert code == 0, err
    data_key = DELIVERY + "loans.parquet"
    truth_key = data_key + ".truth.parquet"
    assert _raw_keys() == sorted([data_key, truth_key, MARKER])
    # written last: when the marker appeared, the data files were already there
    assert sorted(watcher.seen[MARKER]) == sorted([data_key, truth_key, MARKER])
    assert boto3.client("s3").head_object(Bucket=RAW_BUCKET, Key=MARKER)["ContentLength"] == 0
    # the run the marker started was found and awaited to its end
    (execution,) = _executions(deployment.training_pipeline_arn)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["input"])["object_key"] == MARKER
    assert f"model {MODEL_VERSION} is in service" in out
    # and the closing hint scores the first customer of the uploaded data
    body = boto3.client("s3").get_object(Bucket=RAW_BUCKET, Key=data_key)["Body"].read()
    uploaded = pq.read_table(pa.BufferReader(body), columns=["id"]).column("id").to_pylist()
    customer = next(value for value in uploaded if value)
    assert f"Score customer {customer}:" in out
    assert f"curl -sS -X POST {API_URL}v1/scores" in out
    assert f'-H "{names.API_KEY_HEADER}: $CREDIT_RISK_API_KEY"' in out
    assert json.dumps({"customer_id": customer}) in out
    # the key itself is never printed, only how to read it
    assert f"--secret-id {deployment.secret_arn}" in out
    assert "k" * 40 not in out + err


def test_raw_files_are_checked_before_anything_is_uploaded(aws, rule, tmp_path, capsys):
    deploy()
    good = tmp_path / "loans.csv"
    datagen.generate(str(good), datagen.GeneratorConfig(loans=50), fmt="csv")
    bad = tmp_path / "extract.csv"
    bad.write_text("customer,amount\n1,100\n")

    code = _bootstrap("--raw", str(good), str(bad))

    assert code == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "credit-risk env: error:" in err
    assert "extract.csv does not have the raw loan columns" in err
    assert _raw_keys() == []


def test_a_missing_stack_is_one_line_saying_to_deploy_first(aws, capsys):
    # no stack deployed at all
    code = _bootstrap("--synthetic", str(LOANS))

    assert code == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.strip() == (
        f"credit-risk env: error: stack CreditRisk-{ENVIRONMENT}-DataLake not found in "
        f"{REGION}: deploy it first with `npx cdk deploy -c env={ENVIRONMENT} --all`"
    )
    assert _raw_keys() == []


def test_a_market_s_stacks_are_read_by_its_deployment_name(aws, capsys):
    deploy()  # the default market's dev: not the one asked for

    code = _bootstrap("--market", "mx", "--synthetic", str(LOANS))

    assert code == cli.EXIT_USER_ERROR
    assert capsys.readouterr().err.strip() == (
        f"credit-risk env: error: stack CreditRisk-mx-dev-DataLake not found in {REGION}: "
        "deploy it first with `npx cdk deploy -c env=dev -c market=mx --all`"
    )
    assert _raw_keys() == []


def test_a_misnamed_market_is_refused_before_anything_is_read(aws, capsys):
    with pytest.raises(SystemExit) as exited:
        _bootstrap("--market", "MX", "--synthetic", str(LOANS))

    assert exited.value.code == cli.EXIT_USER_ERROR
    assert "a market is 2 to 8 lower-case letters, got 'MX'" in capsys.readouterr().err


def test_a_stack_without_the_new_output_asks_for_a_deploy_of_the_current_version(aws, capsys):
    deploy()
    boto3.client("cloudformation").delete_stack(StackName=names.stack_name(ENVIRONMENT, "Api"))
    _create_stack("Api", {names.OUTPUT_API_URL: API_URL})

    assert _bootstrap("--synthetic", str(LOANS)) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert f"has no output {names.OUTPUT_API_KEY_SECRET_ARN}" in err
    assert "npx cdk deploy -c env=dev --all" in err


def test_a_delivery_that_exists_is_never_overwritten(aws, capsys):
    deploy()
    s3 = boto3.client("s3")
    s3.put_object(Bucket=RAW_BUCKET, Key=DELIVERY + "loans.csv", Body=b"earlier delivery")
    s3.put_object(Bucket=RAW_BUCKET, Key=MARKER, Body=b"")

    code = _bootstrap("--synthetic", str(LOANS))

    assert code == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert f"s3://{RAW_BUCKET}/{DELIVERY} is a delivery already" in err
    assert "pass --ingest-date" in err
    assert _raw_keys() == sorted([DELIVERY + "loans.csv", MARKER])
    body = s3.get_object(Bucket=RAW_BUCKET, Key=DELIVERY + "loans.csv")["Body"].read()
    assert body == b"earlier delivery"


def test_a_run_stopped_by_a_gate_exits_1_with_its_error_and_cause(aws, rule, capsys):
    deployment = deploy(STOPPED_BY_THE_QUALITY_GATE)
    rule(deployment.training_pipeline_arn)

    code = _bootstrap("--synthetic", str(LOANS))

    assert code == 1
    err = capsys.readouterr().err
    assert "FAILED" in err
    assert "PipelineStopped: quality_gate: quarantined fraction 0.31 is above the limit 0.05" in err
    assert "aws stepfunctions get-execution-history" in err


def test_a_run_skipped_at_admission_is_not_taken_for_a_first_model(aws, rule, capsys):
    deployment = deploy(SKIPPED_AT_ADMISSION)
    rule(deployment.training_pipeline_arn)

    code = _bootstrap("--synthetic", str(LOANS))

    assert code == 1
    out, err = capsys.readouterr()
    assert "succeeded without releasing a model: 2 older runs are running" in err
    assert "curl" not in out + err


def test_a_run_still_going_at_the_timeout_is_left_running(aws, rule, capsys):
    deployment = deploy(STILL_TRAINING)
    rule(deployment.training_pipeline_arn)

    code = _bootstrap("--synthetic", str(LOANS), "--timeout", "0.005")

    assert code == 1
    err = capsys.readouterr().err
    assert "training run RUNNING (step Train)" in err
    assert "is still running after" in err
    assert "aws stepfunctions describe-execution" in err


def test_no_wait_stops_once_the_delivery_is_uploaded(aws, tmp_path, capsys):
    # given raw files of a real extract and no rule at all: nothing would start a run
    deployment = deploy()
    extract = tmp_path / "extract-2026-01.csv"
    datagen.generate(str(extract), datagen.GeneratorConfig(loans=80), fmt="csv")

    code = _bootstrap("--raw", str(extract), "--no-wait")

    out = capsys.readouterr().out
    assert code == 0
    assert _raw_keys() == sorted([DELIVERY + extract.name, MARKER])
    assert f"--state-machine-arn {deployment.training_pipeline_arn}" in out
    with extract.open(newline="") as rows:
        customer = next(row["id"] for row in csv.DictReader(rows) if row["id"])
    assert f"Score customer {customer}:" in out
    assert _executions(deployment.training_pipeline_arn) == []


def test_the_marker_is_written_after_every_data_file(aws, tmp_path):
    # given two data files of one delivery
    files = []
    for name in ("part-1.csv", "part-2.csv"):
        files.append(tmp_path / name)
        datagen.generate(str(files[-1]), datagen.GeneratorConfig(loans=20), fmt="csv")
    delivery = bootstrap.plan_delivery(RAW_BUCKET, INGEST_DATE, files)
    s3 = boto3.client("s3")
    written: list[str] = []
    s3.meta.events.register(
        "provide-client-params.s3.PutObject", lambda params, **_: written.append(params["Key"])
    )

    # when it is uploaded
    bootstrap.upload_delivery(s3, delivery, say=lambda message: None)

    # then the marker is the last object written
    assert written == [DELIVERY + "part-1.csv", DELIVERY + "part-2.csv", MARKER]


def test_when_no_run_starts_the_message_says_how_to_start_one_by_hand(aws):
    # given a delivery whose marker started nothing (no rule is playing)
    deployment = deploy()
    environment = bootstrap.read_environment(ENVIRONMENT, boto3.client("cloudformation"))
    delivery = bootstrap.plan_delivery(RAW_BUCKET, INGEST_DATE, [])
    marker_at = bootstrap.upload_delivery(boto3.client("s3"), delivery, say=lambda message: None)

    found = bootstrap.find_execution(
        boto3.client("stepfunctions"),
        deployment.training_pipeline_arn,
        delivery.marker_key,
        since=marker_at,
        timeout_seconds=0.3,
        poll_seconds=0.1,
    )

    assert found is None
    message = bootstrap.no_execution_message(environment, delivery, marker_at)
    assert "EventBridge notifications or the raw-data rule did not start one" in message
    command = message.splitlines()[-1].strip()
    assert command.startswith(
        f"aws stepfunctions start-execution --region {REGION} "
        f"--state-machine-arn {deployment.training_pipeline_arn} --input '"
    )
    sent = json.loads(command.split("--input ", 1)[1].strip("'"))
    assert sent["object_key"] == MARKER
    assert sent["trigger"] == "new_raw_data"
    # and that input, started by hand, is a run the bootstrap recognises
    boto3.client("stepfunctions").start_execution(
        stateMachineArn=deployment.training_pipeline_arn, input=json.dumps(sent)
    )
    assert bootstrap.find_execution(
        boto3.client("stepfunctions"),
        deployment.training_pipeline_arn,
        delivery.marker_key,
        since=marker_at,
        timeout_seconds=0,
    )


def test_the_synthetic_data_holds_the_default_smoke_test_customer(tmp_path):
    from infra import smoke_test

    (data, _truth) = bootstrap.generate_synthetic_loans(Path(tmp_path), 200)

    ids = set(pq.read_table(data, columns=["id"]).column("id").to_pylist())
    assert smoke_test.DEFAULT_CUSTOMER_ID in ids


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["a/loans.csv", "b/loans.csv"], "would land under the same name"),
        (["_loans.csv"], "is not read as data"),
    ],
)
def test_a_delivery_whose_files_the_job_would_not_read_as_given_is_refused(paths, message):
    with pytest.raises(InvalidInputError, match=message):
        bootstrap.plan_delivery(RAW_BUCKET, INGEST_DATE, [Path(p) for p in paths])
