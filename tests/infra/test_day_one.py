"""Day one of an environment, in moto, from the synthesized dev templates.

The environment is what ``cdk deploy`` leaves (tests/infra/aws_world.py builds it
from the templates) and nothing else: no model, an empty feature store. The steps
below run in order on that one environment, as its first days would go:

1. the API answers, but with 503 no_model;
2. a first delivery of raw loans starts one training run, whose model is promoted
   without canary steps (there is no champion to compare it with);
3. a code release (CloudFormation + CodeDeploy) keeps serving the same model;
4. a second delivery is a model release with canary steps; two more deliveries
   arrive while its run is in flight: one waits its turn, one is skipped;
5. a candidate that cannot start is rolled back, and nothing in service changes;
6. the run that waited goes once the one in flight has ended.

Every Lambda invocation runs our real handler; the feature job runs with local Spark;
the feature store is the test PostgreSQL server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from credit_risk import datagen, names
from credit_risk.registry import MODEL_FILE, Registry
from tests.infra.aws_world import MOTO_CONFIG, AwsWorld, Execution
from tests.integration.store.conftest import fresh_postgres_database

pytestmark = [pytest.mark.infra, pytest.mark.spark, pytest.mark.postgres]

# The deliveries: one generated extract cut into folders of the raw zone. A run reads
# the whole zone (the Glue job's input is the raw prefix), so later runs see more.
FIRST, SECOND, LATE = 8_000, 4_000, 300
SEED = 3
SMOKE_CUSTOMER = "1234567"  # the generator's first customer (DESIGN: smoke test)
# The model gate's margins are set for the full extract; a model trained on a few
# thousand synthetic loans does not beat the logistic baseline by 0.01 AUC nor keep
# calibration within 5% (measured: 20,000 and 50,000 loans fail both). The runs
# take looser margins through the execution input, the pipeline's documented
# override, so that the releases behind the gate can be exercised at all.
LAPTOP_GATE = {
    "baseline_auc_margin": -0.05,
    "max_calibration_error": 0.5,
    "champion_auc_tolerance": 0.05,
    "champion_calibration_tolerance": 0.5,
    "slice_auc_floor": 0.5,
}
# Waiting runs ask again every few seconds rather than every minute.
RUN_OVERLAY = {"gate": LAPTOP_GATE, "admission_wait_seconds": 2}
# Serving functions re-read the champion every second here (60 s as deployed); a
# release waits a little longer before live takes the traffic back.
LIVE_REFRESH_SECONDS = 1
RELEASE = {"live_refresh_seconds": LIVE_REFRESH_SECONDS + 1}
CANARY = {"wait_seconds": 1}
# A canary step lasts long enough for the candidate to serve the template's
# min_requests: handler invocations here run one at a time, a few per second.
CANARY_STEPS = {"wait_seconds": 3}
RUN_TIMEOUT = 240


@pytest.fixture(scope="module")
def raw_extract(tmp_path_factory) -> list[str]:
    """Header and rows of one generated extract, as CSV lines."""
    path = tmp_path_factory.mktemp("extract") / "loans.csv"
    total = FIRST + SECOND + 2 * LATE
    datagen.generate(str(path), datagen.GeneratorConfig(loans=total, seed=SEED))
    return path.read_text().splitlines(keepends=True)


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


def registry(world: AwsWorld) -> Registry:
    env = world.lambda_environment(world.function(names.HANDLER_RELEASE).name)
    return Registry(env[names.ENV_REGISTRY_URI], env[names.ENV_MODEL_NAME])


def inference(world: AwsWorld) -> str:
    return world.function(names.HANDLER_INFERENCE).name


def in_service(world: AwsWorld) -> dict[str, Any]:
    """Champion, live version, the live alias's model and the stage's canary."""
    status, health = world.api("GET", names.ROUTE_HEALTH)
    return {
        "champion": registry(world).champion_version(),
        "live": world.alias_version(inference(world), names.LIVE_ALIAS),
        "status": status,
        "model": health.get("model_version"),
        "error": health.get("error"),
        "canary": world.stage().get("canarySettings"),
    }


def release_actions(execution: Execution) -> list[tuple[str, Any]]:
    """(action, result payload) of each release-function task, in order."""
    found, pending = [], None
    for event in execution.events:
        scheduled = event.get("taskScheduledEventDetails")
        if scheduled and scheduled["resourceType"] == "lambda":
            pending = json.loads(scheduled["parameters"])["Payload"].get("action")
        succeeded = event.get("taskSucceededEventDetails")
        if succeeded and succeeded["resourceType"] == "lambda" and pending:
            found.append((pending, json.loads(succeeded["output"]).get("Payload")))
            pending = None
    return found


def canary_percents(execution: Execution) -> list[float]:
    """The stage canary's share at each ``set_canary`` of a release, in order."""
    return [
        result["percent"] for action, result in release_actions(execution) if action == "set_canary"
    ]


def admissions(execution: Execution) -> list[str]:
    return [
        result["decision"] for action, result in release_actions(execution) if action == "admit_run"
    ]


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


# --- the scenario ---------------------------------------------------------------


def test_an_empty_environment_answers_no_model(world):
    status, body = world.api("GET", names.ROUTE_HEALTH)
    assert status == 503, body
    assert body["error"] == "no_model"
    status, body = world.api("POST", names.ROUTE_SCORE, {"customer_id": SMOKE_CUSTOMER})
    assert (status, body["error"]) == (503, "no_model")


def test_the_first_delivery_trains_and_promotes_without_canary_steps(world, raw_extract, state):
    training = world.machine(names.OUTPUT_TRAINING_PIPELINE_ARN)
    started = deliver(world, "ingest_date=2024-01-01", delivery(raw_extract, 0, FIRST))
    assert len(started) == 1, "only the marker starts a run"
    assert started[0].startswith(training.replace(":stateMachine:", ":execution:"))

    run = world.wait(started[0], RUN_TIMEOUT)
    assert_trained(world, run)
    assert admissions(run) == ["go"]
    model = run.output["model"]["model_version"]
    live_before = in_service(world)["live"]

    release = world.wait(world.start_recorded_release(run, CANARY, **RELEASE), 60)
    assert release.status == "SUCCEEDED", (release.error, release.cause)
    actions = [action for action, _ in release_actions(release)]
    assert "check_candidate" not in actions, "no champion: nothing to compare a canary with"
    assert canary_percents(release) == [100], "only the promotion's: all traffic on it"

    now = in_service(world)
    assert (now["champion"], now["status"], now["model"]) == (model, 200, model), now
    # live is CloudFormation's version, unpinned: it serves the champion.
    assert now["live"] == live_before
    assert names.ENV_MODEL_VERSION not in world.lambda_environment(inference(world), now["live"])
    assert world.alias_version(inference(world), names.CANDIDATE_ALIAS) == now["live"]
    status, score = world.api("POST", names.ROUTE_SCORE, {"customer_id": SMOKE_CUSTOMER})
    assert status == 200, score
    assert score["model_version"] == model
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


def test_a_model_release_takes_canary_steps_while_later_deliveries_queue(world, raw_extract, state):
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

    # Traffic the stage canary sends to the candidate alias while it is on.
    done = threading.Event()

    def canary_traffic() -> None:
        while not done.is_set():
            if world.stage().get("canarySettings"):
                world.api("GET", names.ROUTE_HEALTH, alias=names.CANDIDATE_ALIAS)
            done.wait(0.05)

    traffic = threading.Thread(target=canary_traffic, daemon=True)
    traffic.start()
    try:
        release = world.wait(world.start_recorded_release(run, CANARY_STEPS, **RELEASE), 120)
    finally:
        done.set()
        traffic.join()
    assert release.status == "SUCCEEDED", (release.error, release.cause)
    steps = canary_percents(release)
    # The configured steps, then all traffic on the new model for the promotion.
    assert steps[-1] == 100, steps
    assert len(steps) > 1, steps

    now = in_service(world)
    assert (now["champion"], now["model"], now["canary"]) == (model, model, None)
    assert model != state["first_model"]
    # The code release's version still serves: a model release never moves live.
    assert now["live"] == state["code_version"]
    assert world.alias_version(inference(world), names.CANDIDATE_ALIAS) == now["live"]
    state["second_model"] = model


def test_a_candidate_that_cannot_start_is_rolled_back(world, state):
    """A registered version whose model file is corrupt: its function version raises
    at start, before any customer reaches it."""
    models = registry(world)
    champion = models.champion_version()
    broken = f"{champion}-broken"
    models.publish(broken, models.read_file(champion, MODEL_FILE), models.metadata(champion))
    bucket, _, key = models.uri(broken, MODEL_FILE).removeprefix("s3://").partition("/")
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=b"not a model")
    before = in_service(world)
    candidate_before = world.alias_version(inference(world), names.CANDIDATE_ALIAS)

    canary = world.machine(names.OUTPUT_CANARY_RELEASE_ARN)
    execution = boto3.client("stepfunctions").start_execution(
        stateMachineArn=canary,
        name="broken-candidate",
        input=json.dumps(
            {"model_version": broken, "run_id": "broken-candidate", "canary": CANARY, **RELEASE}
        ),
    )["executionArn"]
    release = world.wait(execution, 60)

    assert (release.status, release.error) == ("FAILED", "CanaryRolledBack")
    assert release.cause.startswith("the candidate did not start: "), release.cause
    assert "set_canary" not in [action for action, _ in release_actions(release)]
    assert in_service(world) == before
    assert world.alias_version(inference(world), names.CANDIDATE_ALIAS) in (
        candidate_before,
        before["live"],
    )
    subjects = [n["subject"] for n in world.notifications()]
    assert any("rolled back" in (subject or "") for subject in subjects), subjects


def test_the_waiting_run_goes_once_the_run_in_flight_has_ended(world, state):
    run = state["waited"]
    decisions = admissions(run)
    assert decisions[0] == "wait", decisions
    assert decisions[-1] == "go", decisions
    assert_trained(world, run)
