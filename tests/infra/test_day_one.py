"""Day one of an environment, in moto, from the synthesized dev templates.

The environment is what ``cdk deploy`` leaves (tests/infra/aws_world.py builds it
from the templates) and nothing else: no model, an empty feature store. The steps
below run in order on that one environment, as its first days would go:

1. the API answers, but with 503 no_model;
2. a first delivery of raw loans starts one training run, whose model is promoted
   without a shadow or canary stage (there is no champion to compare it with);
3. a code release (CloudFormation + CodeDeploy) keeps serving the same model;
4. a second delivery is a model release: shadow, the canary step, promotion, while
   clients keep calling the API; two more deliveries arrive while its run is in
   flight: one waits its turn, one is skipped;
5. a candidate that cannot start is rolled back, and nothing in service changes;
6. a candidate that fails every score is stopped in shadow by its alarm and its
   errors, and nothing in service changes;
7. a rollback on request puts the previous champion back, in one execution;
8. the run that waited goes once the one in flight has ended.

Every Lambda invocation runs our real handler; what the inference function prints
becomes CloudWatch metrics and scoring-log files as its log group sends them, and
the candidate alarm is evaluated on those metrics; the feature job runs with local
Spark; the feature store is the test PostgreSQL server.
"""

from __future__ import annotations

import csv
import json
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import boto3
import numpy as np
import pytest
import xgboost as xgb
from moto import mock_aws

from credit_risk import datagen, names
from credit_risk.monitoring.records import ScoreRecord, read_scoring_log
from credit_risk.registry import MODEL_FILE, Registry
from tests.infra.aws_world import MOTO_CONFIG, AwsWorld, Execution
from tests.integration.store.conftest import fresh_postgres_database

pytestmark = [pytest.mark.infra, pytest.mark.spark, pytest.mark.postgres]

# The deliveries: one generated extract cut into folders of the raw zone. A run reads
# the whole zone (the Glue job's input is the raw prefix), so later runs see more.
FIRST, SECOND, LATE = 8_000, 4_000, 300
SEED = 3
SMOKE_CUSTOMER = "1234567"  # the generator's first customer (DESIGN: smoke test)
# The model gate judges with the sampling error of its test loans: a model trained
# on a few thousand synthetic loans is tested on ~25 defaults, too few to show
# anything, and the gate answers "insufficient evidence". The runs take wide
# margins through the execution input, the pipeline's documented override (traced
# in each version's metadata), so that the releases behind the gate can be
# exercised at all.
LAPTOP_GATE = {
    "min_test_defaults": 10,
    "baseline_auc_margin": -0.5,
    "max_calibration_error": 0.5,
    "champion_auc_tolerance": 0.5,
    "slice_auc_floor": 0.3,
}
# Waiting runs ask again every few seconds rather than every minute.
RUN_OVERLAY = {"gate": LAPTOP_GATE, "admission_wait_seconds": 2}
# Serving functions re-read the registry every second here (30 s as deployed); a
# release waits a little longer for every instance to follow a change. moto has a
# metric as soon as it is put: a stage's check waits a second for its metrics.
LIVE_REFRESH_SECONDS = 1
RELEASE = {"live_refresh_seconds": LIVE_REFRESH_SECONDS + 1, "metric_lag_seconds": 1}
# Stages of a few seconds instead of minutes: long enough for the clients below to
# give the template's shadow_min_requests and min_requests (handler invocations
# here run one at a time, a few per second). The gates are the template's...
STAGES = {"shadow_seconds": 4, "wait_seconds": 4}
# ...but two: two models trained on a few thousand synthetic loans each (the first
# delivery, then both) score the same customers further apart than dev's score PSI
# allows (measured: 0.50 against 0.25), as the model gate's margins are loosened
# for the same reason; and a stage of a few seconds holds a few dozen requests, so
# its p99 is its slowest call: one scheduling pause of this shared machine (8 ms)
# against a champion scoring in under 0.5 ms reads as 16 times slower (measured).
# The release input's documented override carries both.
LAPTOP_RELEASE_GATES = {"max_score_psi": 1.0, "max_latency_ratio": 64.0}
RUN_TIMEOUT = 240
RELEASE_TIMEOUT = 120


@pytest.fixture(scope="module")
def raw_extract(tmp_path_factory) -> list[str]:
    """Header and rows of one generated extract, as CSV lines."""
    path = tmp_path_factory.mktemp("extract") / "loans.csv"
    total = FIRST + SECOND + 2 * LATE
    datagen.generate(str(path), datagen.GeneratorConfig(loans=total, seed=SEED))
    return path.read_text().splitlines(keepends=True)


@pytest.fixture(scope="module")
def customers(raw_extract) -> list[str]:
    """Customer ids of the first delivery: every snapshot has their features."""
    rows = csv.DictReader(raw_extract[: FIRST + 1])
    return sorted({row["id"] for row in rows if row["id"] and row["id"].isdigit()})


def delivery(lines: list[str], start: int, stop: int) -> bytes:
    header, rows = lines[0], lines[1:]
    return (header + "".join(rows[start:stop])).encode()


@pytest.fixture(scope="module")
def world(dev, postgres_url) -> Iterator[AwsWorld]:
    database_url, drop = fresh_postgres_database(postgres_url)
    sessions: list[Any] = []

    def spark():
        # Built on the first feature run; not stopped here, since a feature test of
        # the same session may share it (getOrCreate).
        if not sessions:
            from credit_risk.features import build_local_session

            sessions.append(
                build_local_session(
                    "credit-risk-day-one",
                    master="local[2]",
                    shuffle_partitions=2,
                    driver_memory="1g",
                )
            )
        return sessions[0]

    aws = AwsWorld(
        dev,
        database_url=database_url,
        spark_session=spark,
        model_refresh_seconds=LIVE_REFRESH_SECONDS,
    )
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": aws.region,
            "AWS_REGION": aws.region,
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        with mock_aws(config=MOTO_CONFIG):
            yield aws.build(patch)
    drop()


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    """What one step leaves for the next."""
    return {}


# --- reading the world ------------------------------------------------------------


def inference(world: AwsWorld) -> str:
    return world.function(names.HANDLER_INFERENCE).name


def in_service(world: AwsWorld) -> dict[str, Any]:
    """Champion, live version, the model live serves and the release in progress."""
    status, health = world.api("GET", names.ROUTE_HEALTH)
    return {
        "champion": world.registry().champion_version(),
        "live": world.alias_version(inference(world), names.LIVE_ALIAS),
        "status": status,
        "model": health.get("model_version"),
        "error": health.get("error"),
        "release": world.registry().active_release(),
    }


def release_actions(execution: Execution) -> list[tuple[str, Any, Any]]:
    """(action, parameters, result payload) of each release-function task, in order."""
    found, pending = [], None
    for event in execution.events:
        scheduled = event.get("taskScheduledEventDetails")
        if scheduled and scheduled["resourceType"] == "lambda":
            pending = json.loads(scheduled["parameters"])["Payload"]
        succeeded = event.get("taskSucceededEventDetails")
        if succeeded and succeeded["resourceType"] == "lambda" and pending:
            result = json.loads(succeeded["output"]).get("Payload")
            found.append((pending.get("action"), pending, result))
            pending = None
    return found


def stages(execution: Execution) -> list[tuple[str, float]]:
    """(stage, percent) of each move of the release record, in order."""
    return [
        (parameters["stage"], parameters["percent"])
        for action, parameters, _ in release_actions(execution)
        if action == "move_release"
    ]


def admissions(execution: Execution) -> list[str]:
    found = release_actions(execution)
    return [result["decision"] for action, _, result in found if action == "admit_run"]


def state_name(step: str) -> str:
    """``names.PIPELINE_STEPS`` entry -> its state (``quality_gate`` -> QualityGate)."""
    return "".join(part.title() for part in step.split("_"))


def deliver(world: AwsWorld, folder: str, body: bytes) -> list[str]:
    """A delivery by the contract: the data file, then the empty marker. Every
    object's S3 event goes to EventBridge; returns the executions they started."""
    bucket = world.output("DataLake", names.OUTPUT_RAW_BUCKET)
    prefix = f"{names.RAW_LOANS_PREFIX}{folder}/"
    started = []
    for key, data in ((f"{prefix}loans.csv", body), (prefix + names.RAW_DELIVERY_MARKER, b"")):
        started += world.deliver(world.put_object(bucket, key, data), overlay=RUN_OVERLAY)
    return started


def assert_trained(world: AwsWorld, run: Execution) -> None:
    assert not world.feature_job.errors, world.feature_job.errors
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    entered = run.entered()
    assert [state_name(s) for s in names.PIPELINE_STEPS if state_name(s) in entered] == [
        state_name(s) for s in names.PIPELINE_STEPS
    ]


def start_release(world: AwsWorld, name: str, execution_input: dict[str, Any]) -> str:
    return boto3.client("stepfunctions").start_execution(
        stateMachineArn=world.machine(names.OUTPUT_CANARY_RELEASE_ARN),
        name=name,
        input=json.dumps(execution_input),
    )["executionArn"]


@contextmanager
def clients_calling(world: AwsWorld, customers: list[str]) -> Iterator[list[tuple[int, Any]]]:
    """Clients scoring random customers through the API for as long as the block
    runs (a release's stages wait for traffic to judge); (status, model) of each."""
    answers: list[tuple[int, Any]] = []
    done = threading.Event()
    rng = random.Random(SEED)

    def call() -> None:
        while not done.is_set():
            status, body = world.api(
                "POST", names.ROUTE_SCORE, {"customer_id": rng.choice(customers)}
            )
            answers.append((status, body.get("model_version")))
            done.wait(0.02)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    try:
        yield answers
    finally:
        done.set()
        thread.join()


def scoring_log(world: AwsWorld, release_id: str) -> list[ScoreRecord]:
    """The release's records in the scoring log, where the monitor reads it."""
    lake = world.lambda_environment(world.function(names.HANDLER_MONITOR).name)[names.ENV_LAKE_URI]
    today = datetime.now(UTC).date()
    records = read_scoring_log(f"{lake}/{names.SCORING_LOG_PREFIX.rstrip('/')}", today, today)
    return [record for record in records if record.release_id == release_id]


def report_of(link: str) -> bytes:
    bucket, _, key = link.removeprefix("s3://").partition("/")
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def notified(world: AwsWorld, subject: str) -> dict[str, str]:
    (notification,) = [n for n in world.notifications() if subject in (n["subject"] or "")]
    return notification


def unscorable_candidate(models: Registry) -> str:
    """A real model version that loads and verifies but cannot score: trained on one
    more input than the feature store serves, which its metadata names."""
    champion = models.champion_version()
    metadata = models.metadata(champion)
    features = [*metadata["feature_names"], "months_since_last_default"]
    rng = np.random.default_rng(SEED)
    inputs = rng.normal(size=(200, len(features)))
    labels = (inputs[:, 0] + rng.normal(size=200) > 0).astype(int)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2},
        xgb.DMatrix(inputs, label=labels),
        num_boost_round=5,
    )
    version = f"{champion}-unscorable"
    models.publish(version, bytes(booster.save_raw("ubj")), {**metadata, "feature_names": features})
    return version


# --- the scenario ---------------------------------------------------------------


def test_an_empty_environment_answers_no_model(world):
    status, body = world.api("GET", names.ROUTE_HEALTH)
    assert status == 503, body
    assert body["error"] == "no_model"
    status, body = world.api("POST", names.ROUTE_SCORE, {"customer_id": SMOKE_CUSTOMER})
    assert (status, body["error"]) == (503, "no_model")


def test_the_first_delivery_trains_and_promotes_without_a_stage(world, raw_extract, state):
    training = world.machine(names.OUTPUT_TRAINING_PIPELINE_ARN)
    started = deliver(world, "ingest_date=2024-01-01", delivery(raw_extract, 0, FIRST))
    assert len(started) == 1, "only the marker starts a run"
    assert started[0].startswith(training.replace(":stateMachine:", ":execution:"))

    run = world.wait(started[0], RUN_TIMEOUT)
    assert_trained(world, run)
    assert admissions(run) == ["go"]
    model = run.output["model"]["model_version"]
    live_before = in_service(world)["live"]
    # The execution input's gate settings are in the version they let through.
    gate = world.registry().metadata(model)["gate"]
    assert {name: o["value"] for name, o in gate["overrides"].items()} == LAPTOP_GATE

    release = world.wait(world.start_recorded_release(run, **RELEASE), RELEASE_TIMEOUT)
    assert release.status == "SUCCEEDED", (release.error, release.cause)
    actions = [action for action, _, _ in release_actions(release)]
    assert "check_release" not in actions, "no champion: nothing to compare with"
    assert stages(release) == [("canary", 100)], "only the promotion's: everyone on it"

    now = in_service(world)
    assert (now["champion"], now["status"], now["model"], now["release"]) == (
        model,
        200,
        model,
        None,
    )
    # live is CloudFormation's version, unpinned: it serves the champion.
    assert now["live"] == live_before
    assert names.ENV_MODEL_VERSION not in world.lambda_environment(inference(world), now["live"])
    status, score = world.api("POST", names.ROUTE_SCORE, {"customer_id": SMOKE_CUSTOMER})
    assert status == 200, score
    assert score["model_version"] == model
    assert "no champion to compare with" in notified(world, "promoted")["message"]
    state["first_model"] = model


def test_a_code_release_keeps_the_model_in_service(world, state):
    before = in_service(world)
    version = world.deploy_code(code_version="next-commit")

    after = in_service(world)
    assert after["live"] == version != before["live"]
    assert names.ENV_MODEL_VERSION not in world.lambda_environment(inference(world), version)
    assert (after["status"], after["model"], after["champion"]) == (
        200,
        state["first_model"],
        state["first_model"],
    )
    status, score = world.api("POST", names.ROUTE_SCORE, {"customer_id": SMOKE_CUSTOMER})
    assert (status, score["model_version"]) == (200, state["first_model"])
    state["code_version"] = version


def test_a_model_release_goes_shadow_then_canary_then_promoted_while_deliveries_queue(
    world, raw_extract, customers, state
):
    training = world.machine(names.OUTPUT_TRAINING_PIPELINE_ARN)
    (first,) = deliver(
        world, "ingest_date=2024-02-01", delivery(raw_extract, FIRST, FIRST + SECOND)
    )
    world.wait(first, 60, until=lambda e: "go" in admissions(e))
    # Two more deliveries while that run is in flight.
    offset = FIRST + SECOND
    (waiting,) = deliver(
        world, "ingest_date=2024-02-02", delivery(raw_extract, offset, offset + LATE)
    )
    (skipped,) = deliver(
        world, "ingest_date=2024-02-03", delivery(raw_extract, offset + LATE, offset + 2 * LATE)
    )
    skipped_run = world.wait(skipped, 60)
    assert admissions(skipped_run) == ["skip"]
    assert "wait" in admissions(world.wait(waiting, 60, until=lambda e: bool(admissions(e))))
    state["waiting"] = waiting

    run = world.wait(first, RUN_TIMEOUT)
    assert_trained(world, run)
    model = run.output["model"]["model_version"]
    assert len(world.executions(training)) == 4
    # In AWS the run in flight ends with its release (Release waits for it); here
    # the release is started below, after the run, so the waiting run is let
    # through first, as it would be once the release had ended.
    state["waited"] = world.wait(waiting, RUN_TIMEOUT)

    with clients_calling(world, customers) as answers:
        release = world.wait(
            world.start_recorded_release(run, {**STAGES, **LAPTOP_RELEASE_GATES}, **RELEASE),
            RELEASE_TIMEOUT,
        )
    assert release.status == "SUCCEEDED", (release.error, release.cause)
    # Shadow, the template's one step, then everyone on the new model for the promotion.
    assert stages(release) == [("shadow", 0), ("canary", 50), ("canary", 100)]
    judged = [result for action, _, result in release_actions(release) if action == "judge"]
    assert [verdict["action"] for verdict in judged] == ["canary", "promote"]
    for verdict in judged:
        assert all(gate["passed"] for gate in verdict["gates"]), verdict["gates"]
        assert {gate["gate"] for gate in verdict["gates"]} >= {
            "alarms",
            "errors",
            "approval_rate",
            "swap_set",
            "score_psi",
        }

    # Clients were answered throughout, by the champion, then by both, then by the new one.
    assert {status for status, _ in answers} == {200}, answers
    served = [model_version for _, model_version in answers]
    assert served[0] == state["first_model"]
    assert served[-1] == model
    now = in_service(world)
    assert (now["champion"], now["model"], now["release"]) == (model, model, None)
    assert model != state["first_model"]
    # The code release's version still serves: a model release never moves live.
    assert now["live"] == state["code_version"]

    message = notified(world, "promoted")["message"]
    link = message.rsplit("Report: ", 1)[1]
    assert link.endswith(f"/{model}/releases/{release.arn.rsplit(':', 1)[1]}/report.html")
    report = json.loads(report_of(link.removesuffix(".html") + ".json"))
    assert report["outcome"] == "promoted"
    assert [(s["stage"], s["percent"]) for s in report["stages"]] == [("shadow", 0), ("canary", 50)]
    assert report["totals"]["pairs"] >= 2 * 5
    # Both models' answers reached the scoring log: what the report's sample reads.
    roles = {record.role for record in scoring_log(world, release.arn.rsplit(":", 1)[1])}
    assert roles == {"served", "shadow"}
    state["second_model"] = model


def test_a_candidate_that_cannot_start_is_rolled_back(world, state):
    """A registered version whose model file is corrupt: live cannot load it when
    the release opens, before any stage."""
    models = world.registry()
    champion = models.champion_version()
    broken = f"{champion}-broken"
    models.publish(broken, models.read_file(champion, MODEL_FILE), models.metadata(champion))
    bucket, _, key = models.uri(broken, MODEL_FILE).removeprefix("s3://").partition("/")
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=b"not a model")
    before = in_service(world)

    release = world.wait(
        start_release(
            world,
            "broken-candidate",
            {"model_version": broken, "run_id": "broken-candidate", "canary": STAGES, **RELEASE},
        ),
        RELEASE_TIMEOUT,
    )

    assert (release.status, release.error) == ("FAILED", "CanaryRolledBack")
    assert release.cause.startswith("the candidate did not start: "), release.cause
    assert stages(release) == []
    assert in_service(world) == before
    assert models.release_state().outcome == "rolled_back"
    assert "Report: s3://" in notified(world, "rolled back")["message"]


def test_a_candidate_that_fails_every_score_is_stopped_in_shadow(world, customers, state):
    models = world.registry()
    champion = models.champion_version()
    candidate = unscorable_candidate(models)
    before = in_service(world)

    with clients_calling(world, customers) as answers:
        release = world.wait(
            start_release(
                world,
                "unscorable-candidate",
                {"model_version": candidate, "canary": STAGES, **RELEASE},
            ),
            RELEASE_TIMEOUT,
        )

    # It loaded, so it started; in shadow it failed every customer, whom the champion
    # answered; the alarm on CandidateErrors fired and the errors gate failed.
    assert (release.status, release.error) == ("FAILED", "CanaryRolledBack"), release.cause
    assert stages(release) == [("shadow", 0)]
    alarm = names.candidate_alarm_prefix("dev") + "errors"
    assert release.cause.startswith("gates failed in shadow: "), release.cause
    assert f"alarms: candidate alarms in ALARM: {alarm}" in release.cause
    assert "errors: " in release.cause
    assert {status for status, _ in answers} == {200}
    assert {model for _, model in answers} == {champion}
    assert in_service(world) == before
    assert models.champion_version() == champion
    message = notified(world, "rolled back")["message"]
    assert alarm in message
    link = message.rsplit("Report: ", 1)[1]
    report = json.loads(report_of(link.removesuffix(".html") + ".json"))
    assert report["outcome"] == "rolled_back"
    assert report["totals"]["candidate_errors"] > 0
    assert b"rolled_back" in report_of(link)


def test_a_rollback_on_request_restores_the_previous_champion_in_one_execution(world, state):
    assert world.registry().champion_version() == state["second_model"]

    rollback = world.wait(
        start_release(
            world,
            "rollback-after-promotion",
            {"rollback": {"reason": "approvals dropped after the promotion"}, **RELEASE},
        ),
        RELEASE_TIMEOUT,
    )

    assert rollback.status == "SUCCEEDED", (rollback.error, rollback.cause)
    assert [action for action, _, _ in release_actions(rollback)] == ["roll_back", "confirm_live"]
    assert rollback.output["did"] == "restored_champion"
    now = in_service(world)
    assert (now["champion"], now["model"]) == (state["first_model"], state["first_model"])
    assert world.registry().champion()["rolled_back_from"] == state["second_model"]
    message = notified(world, "rolled back")["message"]
    assert "approvals dropped after the promotion" in message
    assert state["first_model"] in message


def test_the_waiting_run_goes_once_the_run_in_flight_has_ended(world, state):
    run = state["waited"]
    decisions = admissions(run)
    assert decisions[0] == "wait", decisions
    assert decisions[-1] == "go", decisions
    assert_trained(world, run)
