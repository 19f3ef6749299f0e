"""The distributed training engine in the synthesized templates: the Glue job that
runs it, and the training state machine's Choice between it and the Lambda, with
the threshold of cdk.json."""

from __future__ import annotations

import json

import pytest

from credit_risk import names
from infra.stacks.features import TRAINING_PYTHON_MODULES

pytestmark = pytest.mark.infra


def _jobs(synth) -> dict[str, dict]:
    return {
        json.dumps(r["Properties"]["Name"]): r["Properties"]
        for r in synth.resources("Features", "AWS::Glue::Job").values()
    }


def _training_job(synth) -> dict:
    name = f"credit-risk-{synth.environment}-{names.TRAINING_JOB}"
    (job,) = [props for key, props in _jobs(synth).items() if json.loads(key) == name]
    return job


def _pipeline(synth) -> dict:
    (machine,) = [
        m["Properties"]
        for m in synth.resources("Orchestration", "AWS::StepFunctions::StateMachine").values()
        if m["Properties"]["StateMachineName"].endswith("-training-pipeline")
    ]
    return machine


def test_the_training_job_runs_the_training_script_with_the_configured_workers(
    every_environment, cdk_context
):
    settings = cdk_context[every_environment.environment]["training"]["glue"]
    job = _training_job(every_environment)
    arguments = job["DefaultArguments"]

    assert job["GlueVersion"] == "5.1"
    assert job["Command"]["Name"] == "glueetl"
    assert (job["WorkerType"], job["NumberOfWorkers"]) == (
        settings["worker_type"],
        settings["number_of_workers"],
    )
    assert job["Timeout"] == settings["timeout_minutes"]
    # the library as the wheel, what Glue lacks pip-installed at the locked versions
    assert json.dumps(arguments["--extra-py-files"]).endswith('.whl"]]}')
    assert arguments["--additional-python-modules"] == ",".join(TRAINING_PYTHON_MODULES)
    assert "xgboost-cpu==3.2.0" in TRAINING_PYTHON_MODULES
    # one XGBoost worker per executor core: the driver's worker runs no executor
    vcpus = {"G.1X": 4, "G.2X": 8, "G.4X": 16, "G.8X": 32}[settings["worker_type"]]
    workers = (settings["number_of_workers"] - 1) * vcpus
    assert arguments[f"--{names.GLUE_ARG_WORKERS}"] == str(workers)
    # the training Lambda's settings: the card judges the model age the monitor enforces
    monitoring = cdk_context[every_environment.environment]["monitoring"]
    settings_argument = json.dumps(arguments[f"--{names.GLUE_ARG_SETTINGS}"])
    assert "CREDIT_RISK_MAX_MODEL_AGE_DAYS" in settings_argument
    assert str(monitoring["max_model_age_days"]) in settings_argument
    assert job["SecurityConfiguration"]


def test_the_training_job_records_the_same_commit_as_the_training_lambda(dev):
    (training,) = [
        f["Properties"]["Environment"]["Variables"]
        for f in dev.resources("Ml", "AWS::Lambda::Function").values()
        if f["Properties"]["ImageConfig"]["Command"] == [names.HANDLER_TRAINING]
    ]
    commit = training[names.ENV_CODE_VERSION]
    settings = json.dumps(_training_job(dev)["DefaultArguments"][f"--{names.GLUE_ARG_SETTINGS}"])

    assert commit
    assert f'\\"{names.ENV_CODE_VERSION}\\": \\"{commit}\\"' in settings


def test_the_training_choice_compares_training_rows_with_the_configured_threshold(
    every_environment, cdk_context
):
    threshold = cdk_context[every_environment.environment]["training"]["distributed_from_rows"]
    machine = _pipeline(every_environment)
    substitutions = machine["DefinitionSubstitutions"]
    definition = json.loads(machine["DefinitionString"])
    states = definition["States"]

    # The threshold is the run's default, from the substitution of cdk.json's setting
    default = states["Defaults"]["Parameters"]["distributed_from_rows.$"]
    assert default == "States.StringToJson('${DistributedFromRows}')"
    assert json.loads(substitutions["DistributedFromRows"]) == threshold
    # and the Choice sends a report of that many training rows or more to Glue
    (choice,) = states["Train"]["Choices"]
    present, compared = choice["And"]
    assert present == {"Variable": "$.quality.report.${TrainingRowsField}", "IsPresent": True}
    assert compared["NumericGreaterThanEqualsPath"] == "$.run.distributed_from_rows"
    assert substitutions["TrainingRowsField"] == names.TRAINING_ROWS_FIELD
    assert choice["Next"] == "TrainDistributed"
    assert states["Train"]["Default"] == "TrainOnLambda"
    # the Glue task starts the training job, awaited, and both branches reach the gate
    assert states["TrainDistributed"]["Resource"] == "arn:aws:states:::glue:startJobRun.sync"
    assert substitutions["TrainingJobName"] == (
        f"credit-risk-{every_environment.environment}-{names.TRAINING_JOB}"
    )
    assert states["DistributedModel"]["ResultPath"] == states["TrainOnLambda"]["ResultPath"]
    assert states["DistributedModel"]["Next"] == states["TrainOnLambda"]["Next"] == "ModelGate"


def test_the_pipeline_may_start_the_training_job_and_only_its_own_jobs(dev):
    statements = [
        statement
        for policy in dev.resources("Orchestration", "AWS::IAM::Policy").values()
        if "TrainingPipeline" in json.dumps(policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    (glue,) = [s for s in statements if "glue:StartJobRun" in json.dumps(s["Action"])]
    resources = json.dumps(glue["Resource"])
    assert f"job/credit-risk-dev-{names.TRAINING_JOB}" in resources
    assert "job/*" not in resources
