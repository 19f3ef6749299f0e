"""The training pipeline state machine, executed by moto's Step Functions engine.

The Glue job is started (not run) and each test writes the data-quality report the
job would have written; the feature-loader and training results come from the
lambda-simple queue. The release is recorded, not started (see conftest.py); the
canary machine is executed on its own in tests/infra/test_model_release.py.
"""

from __future__ import annotations

import json

import boto3
import pytest
from moto.moto_api import state_manager

from credit_risk import names
from credit_risk.pipeline import PipelineStopped, quality_gate_message
from tests.conftest import EVENTS_DIR
from tests.integration.orchestration.conftest import (
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


@pytest.fixture
def pipeline(world):
    definition = moto_runnable(load_definition("training_pipeline", world.values))
    return world.create_machine("credit-risk-dev-training-pipeline", definition)


def test_a_clean_run_loads_trains_and_starts_the_canary_release(world, pipeline):
    report = write_report(RUN_ID, quarantined_fraction=0.01)
    world.queue_results(
        ADMITTED, {"rows": 1000, "snapshot_id": RUN_ID}, training_result(passed=True)
    )

    run = world.run(pipeline, {"as_of": AS_OF, "run_id": RUN_ID})

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    (glue_run,) = run.scheduled("glue")
    assert glue_run["Arguments"] == {
        f"--{names.GLUE_ARG_INPUT}": f"s3://{world.values['RawBucket']}/{names.RAW_LOANS_PREFIX}",
        f"--{names.GLUE_ARG_OUTPUT}": run_folder(RUN_ID),
        f"--{names.GLUE_ARG_AS_OF}": AS_OF,
        f"--{names.GLUE_ARG_RUN_ID}": RUN_ID,
    }
    admission, loader, training = run.lambda_payloads()
    assert admission == {"action": "admit_run", "execution_arn": run.arn, "attempt": 0}
    assert loader == {
        "snapshot_uri": report["outputs"]["snapshot"],
        "snapshot_id": RUN_ID,
        "as_of": AS_OF,
    }
    assert training == {
        "features_uri": report["outputs"]["training"],
        "snapshot_uri": report["outputs"]["snapshot"],
        "registry_uri": world.values["RegistryUri"],
        "run_id": RUN_ID,
        "gate": {},
    }
    release = run.output["release"]["request"]
    assert release["StateMachineArn"] == world.values["CanaryReleaseStateMachineArn"]
    assert release["Name"] == RUN_ID
    assert release["Input"]["model_version"] == MODEL_VERSION
    assert release["Input"]["canary"] == {
        "steps_percent": [50],
        "wait_seconds": 300,
        "min_requests": 5,
    }
    (notification,) = world.notifications()
    assert "released a new model" in notification["subject"]
    assert MODEL_VERSION in notification["message"]


def test_the_schedule_input_gets_the_event_date_and_a_fresh_run_id(world, pipeline):
    scheduled = json.loads((EVENTS_DIR / "training_pipeline_schedule.json").read_text())

    # No report exists for a run id nobody knew in advance: the run fails after Glue.
    world.queue_results(ADMITTED)
    run = world.run(pipeline, scheduled)

    (glue_run,) = run.scheduled("glue")
    assert glue_run["Arguments"][f"--{names.GLUE_ARG_AS_OF}"] == "2024-01-01"
    assert glue_run["Arguments"][f"--{names.GLUE_ARG_RUN_ID}"].startswith("training-2024-01-01-")
    assert run.status == "FAILED"
    assert "NotifyFailure" in run.entered()
    assert "LoadFeatures" not in run.entered()


def test_too_many_quarantined_rows_stop_the_run_before_the_store(world, pipeline):
    report = write_report(RUN_ID, quarantined_fraction=0.2)
    world.queue_results(ADMITTED)

    run = world.run(pipeline, {"as_of": AS_OF, "run_id": RUN_ID})

    assert run.status == "FAILED"
    assert run.error == "PipelineStopped"
    # The local runner stops with the very same message.
    local = PipelineStopped("quality_gate", quality_gate_message(report, 0.05), {})
    assert run.cause == str(local)
    assert [p["action"] for p in run.lambda_payloads()] == ["admit_run"]
    (notification,) = world.notifications()
    assert "stopped by a gate" in notification["subject"]
    assert str(local) in notification["message"]


def test_the_execution_input_may_raise_the_quality_limit(world, pipeline):
    write_report(RUN_ID, quarantined_fraction=0.2)
    world.queue_results(ADMITTED, {"rows": 800}, training_result(passed=True))

    run = world.run(pipeline, {"as_of": AS_OF, "run_id": RUN_ID, "max_quarantined_fraction": 0.25})

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert "LoadFeatures" in run.entered()


def test_a_rejected_model_stops_the_run_with_the_failed_checks(world, pipeline):
    write_report(RUN_ID, quarantined_fraction=0.01)
    rejected = training_result(passed=False)
    world.queue_results(ADMITTED, {"rows": 1000}, rejected)

    run = world.run(pipeline, {"as_of": AS_OF, "run_id": RUN_ID})

    assert run.status == "FAILED"
    assert run.error == "PipelineStopped"
    failed = [r["message"] for r in rejected["gate"]["reasons"] if not r["passed"]]
    message = names.MODEL_GATE_MESSAGE.format(
        MODEL_VERSION, rejected["gate"]["outcome"], json.dumps(failed, separators=(",", ":"))
    )
    assert run.cause == str(PipelineStopped("model_gate", message, {}))
    assert "Release" not in run.entered()
    (notification,) = world.notifications()
    assert "stopped by a gate" in notification["subject"]


def test_a_feature_job_that_keeps_colliding_fails_after_its_retries(world, pipeline):
    # Another run of the job is in progress (and stays so) while the pipeline starts its own.
    state_manager.set_transition(
        model_name="glue::job_run", transition={"progression": "manual", "times": 10_000}
    )
    try:
        boto3.client("glue", region_name=REGION).start_job_run(
            JobName=world.values["FeatureJobName"]
        )
        world.queue_results(ADMITTED)
        run = world.run(pipeline, {"as_of": AS_OF, "run_id": RUN_ID})
    finally:
        state_manager.unset_transition("glue::job_run")

    assert run.status == "FAILED"
    assert run.error == "TrainingPipelineFailed"
    assert run.cause.startswith("Glue.ConcurrentRunsExceededException: ")
    attempts = [e for e in run.events if e["type"] == "TaskFailed"]
    retrier = load_definition("training_pipeline", world.values)["States"]["Features"]["Retry"][0]
    assert len(attempts) == 1 + retrier["MaxAttempts"]
    assert run.entered()[-3:] == ["NotifyFailure", "DescribeFailure", "Failed"]
    assert "ReadQualityReport" not in run.entered()
    (notification,) = world.notifications()
    assert "training pipeline failed" in notification["subject"]
    assert "ConcurrentRunsExceeded" in notification["message"]


def test_an_input_without_a_date_fails_with_a_clear_cause(world, pipeline):
    run = world.run(pipeline, {"run_id": RUN_ID})

    assert run.status == "FAILED"
    assert run.error == "TrainingPipelineFailed"
    assert run.cause.startswith("InvalidInputError: the execution input needs as_of")
    assert run.scheduled("glue") == []


def test_a_run_behind_another_waits_for_its_turn_then_goes(world, pipeline):
    write_report(RUN_ID, quarantined_fraction=0.01)
    behind = {"decision": "wait", "reason": "waiting for run first to end", "ahead": ["first"]}
    world.queue_results(
        behind,
        behind,
        ADMITTED,
        {"rows": 1000, "snapshot_id": RUN_ID},
        training_result(passed=True),
    )

    run = world.run(pipeline, {"as_of": AS_OF, "run_id": RUN_ID, "admission_wait_seconds": 1})

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    admissions = [p for p in run.lambda_payloads() if p.get("action") == "admit_run"]
    assert [p["attempt"] for p in admissions] == [0, 1, 2]
    assert run.entered().count("WaitForRun") == 2
    assert run.entered().index("Features") > run.entered().index("WaitForRun")


def test_a_run_behind_a_waiting_one_is_skipped_without_touching_anything(world, pipeline):
    skipped = {
        "decision": "skip",
        "reason": "run second is already waiting behind first and will read this delivery too",
        "ahead": ["first", "second"],
    }
    world.queue_results(skipped)

    run = world.run(pipeline, {"as_of": AS_OF, "run_id": RUN_ID})

    assert run.status == "SUCCEEDED"
    assert run.scheduled("glue") == []
    assert [p["action"] for p in run.lambda_payloads()] == ["admit_run"]
    (notification,) = world.notifications()
    assert "skipped" in notification["subject"]
    assert skipped["reason"] in notification["message"]
