"""The training state machine chooses its training engine from the feature run's
``training_rows``, as ``credit_risk.model.engine.choose_engine`` does for the local
runner; moto's Step Functions engine runs it (see conftest.py: the Glue runs are
started, not awaited, so each test writes what the job would have written)."""

from __future__ import annotations

import json

import boto3
import pytest

from credit_risk import names
from credit_risk.model.engine import choose_engine
from tests.integration.orchestration.conftest import (
    CURATED_BUCKET,
    REGION,
    load_definition,
    moto_runnable,
)
from tests.integration.orchestration.runs import (
    ADMITTED,
    AS_OF,
    MODEL_VERSION,
    RUN_ID,
    run_folder,
    training_result,
    write_report,
)

TRAINING_JOB = "credit-risk-dev-training"


@pytest.fixture
def pipeline(world):
    boto3.client("glue", region_name=REGION).create_job(
        Name=TRAINING_JOB,
        Role=world.role_arn,
        Command={"Name": "glueetl", "ScriptLocation": f"s3://{CURATED_BUCKET}/train.py"},
        ExecutionProperty={"MaxConcurrentRuns": 1},
    )
    assert world.values["TrainingJobName"] == TRAINING_JOB
    definition = moto_runnable(load_definition("training_pipeline", world.values))
    return world.create_machine("credit-risk-dev-training-pipeline", definition)


def _with_training_rows(run_id: str, rows: int) -> dict:
    """The report of ``write_report`` with the feature job's ``training_rows``."""
    report = write_report(run_id, quarantined_fraction=0.01)
    report[names.TRAINING_ROWS_FIELD] = rows
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=CURATED_BUCKET,
        Key=f"{names.CURATED_PREFIX}{run_id}/{names.QUALITY_REPORT_FILE}",
        Body=json.dumps(report).encode(),
    )
    return report


def _write_training_result(run_id: str, passed: bool) -> None:
    """What glue_jobs/model_training.py writes when it ends: the Lambda's summary."""
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=CURATED_BUCKET,
        Key=f"{names.CURATED_PREFIX}{run_id}/{names.TRAINING_RESULT_FILE}",
        Body=json.dumps(training_result(passed)).encode(),
    )


def test_from_the_threshold_on_the_glue_job_trains_with_the_lambdas_arguments(world, pipeline):
    # given a feature run with exactly the environment's threshold of training rows
    threshold = json.loads(world.values["DistributedFromRows"])
    assert choose_engine(threshold, threshold) == names.TRAINING_ENGINE_SPARK
    report = _with_training_rows(RUN_ID, threshold)
    _write_training_result(RUN_ID, passed=True)
    world.queue_results(ADMITTED, {"rows": 1000, "snapshot_id": RUN_ID})

    # when the pipeline runs
    run = world.run(pipeline, {"as_of": AS_OF, "run_id": RUN_ID, "gate": {"confidence": 0.9}})

    # then the Glue job trained, with the training Lambda's arguments, and the
    # Lambda did not
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert "TrainDistributed" in run.entered()
    assert "TrainOnLambda" not in run.entered()
    assert [p.get("action") for p in run.lambda_payloads()] == ["admit_run", None]
    _features_run, training_run = run.scheduled("glue")
    assert training_run["JobName"] == TRAINING_JOB
    assert training_run["Arguments"] == {
        f"--{names.GLUE_ARG_FEATURES}": report["outputs"]["training"],
        f"--{names.GLUE_ARG_SNAPSHOT}": report["outputs"]["snapshot"],
        f"--{names.GLUE_ARG_REGISTRY}": world.values["RegistryUri"],
        f"--{names.GLUE_ARG_RUN_ID}": RUN_ID,
        f"--{names.GLUE_ARG_GATE}": json.dumps({"confidence": 0.9}, separators=(",", ":")),
        f"--{names.GLUE_ARG_RESULT}": f"{run_folder(RUN_ID)}/{names.TRAINING_RESULT_FILE}",
    }
    # and its summary reached the model gate in the Lambda's shape: released
    assert run.output["model"] == {
        "model_version": MODEL_VERSION,
        "metrics": training_result(True)["metrics"],
        "gate": training_result(True)["gate"],
    }
    assert run.output["release"]["request"]["Input"]["model_version"] == MODEL_VERSION


def test_a_distributed_candidate_that_fails_its_gate_stops_as_a_lambda_one_would(world, pipeline):
    threshold = json.loads(world.values["DistributedFromRows"])
    _with_training_rows(RUN_ID, threshold * 2)
    _write_training_result(RUN_ID, passed=False)
    world.queue_results(ADMITTED, {"rows": 1000, "snapshot_id": RUN_ID})

    run = world.run(pipeline, {"as_of": AS_OF, "run_id": RUN_ID})

    assert run.status == "FAILED"
    assert run.error == "PipelineStopped"
    assert run.cause.startswith(f"model_gate: candidate {MODEL_VERSION} was not promoted")
    assert "TrainDistributed" in run.entered()


@pytest.mark.parametrize("rows", [0, "one below"])
def test_below_the_threshold_the_training_lambda_trains(world, pipeline, rows):
    threshold = json.loads(world.values["DistributedFromRows"])
    count = threshold - 1 if rows == "one below" else rows
    assert choose_engine(count, threshold) == names.TRAINING_ENGINE_SINGLE
    _with_training_rows(RUN_ID, count)
    world.queue_results(
        ADMITTED, {"rows": 1000, "snapshot_id": RUN_ID}, training_result(passed=True)
    )

    run = world.run(pipeline, {"as_of": AS_OF, "run_id": RUN_ID})

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert "TrainOnLambda" in run.entered()
    assert "TrainDistributed" not in run.entered()
    assert len(run.scheduled("glue")) == 1  # the feature job only


def test_the_execution_input_can_move_the_threshold(world, pipeline):
    # given a small run, and a threshold the operator lowers for this run
    _with_training_rows(RUN_ID, 1000)
    _write_training_result(RUN_ID, passed=True)
    world.queue_results(ADMITTED, {"rows": 1000, "snapshot_id": RUN_ID})

    run = world.run(pipeline, {"as_of": AS_OF, "run_id": RUN_ID, "distributed_from_rows": 1000})

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert "TrainDistributed" in run.entered()
