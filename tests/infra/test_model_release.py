"""The model release state machine as deployed, on the paths that need no traffic:
refusals before anything changes, a promotion someone else's overtakes, a live
function that cannot load the new champion, a rollback on request during a
release and one with nothing to return to, and a release whose execution was
stopped, closed by the rule that watches the executions.

The environment is the dev templates in moto (tests/infra/aws_world.py), every
Lambda invocation our real handler; the registry holds small real XGBoost models.
No customer calls the API here, so the inference function never opens its store:
shadow and canary stages with traffic are test_day_one.py's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from credit_risk import names, release_report
from credit_risk.registry import MODEL_FILE, Registry
from tests.conftest import EVENTS_DIR, use_fake_aws_credentials
from tests.infra.aws_world import MOTO_CONFIG, AwsWorld, Execution
from tests.infra.models import CANDIDATE, CHAMPION, no_spark, publish

pytestmark = pytest.mark.infra

# Serving functions re-read the registry every second here (30 s as deployed), and
# moto has a metric as soon as it is put: a check waits a second for its metrics.
REFRESH_SECONDS = 1
RELEASE = {"live_refresh_seconds": REFRESH_SECONDS + 2, "metric_lag_seconds": 1}
# A store the function is configured with and never reaches: nobody scores here.
NO_STORE = "postgresql://nobody@127.0.0.1:9/none?connect_timeout=1"
TIMEOUT = 90


@pytest.fixture
def world(dev, monkeypatch) -> Iterator[AwsWorld]:
    aws = AwsWorld(
        dev, database_url=NO_STORE, spark_session=no_spark, model_refresh_seconds=REFRESH_SECONDS
    )
    use_fake_aws_credentials(monkeypatch, aws.region)
    monkeypatch.setenv("AWS_REGION", aws.region)
    with mock_aws(config=MOTO_CONFIG):
        yield aws.build(monkeypatch)


def champion_and_candidate(models: Registry) -> None:
    """CHAMPION in service and CANDIDATE published beside it."""
    publish(models, CHAMPION, seed=1)
    publish(models, CANDIDATE, seed=2)
    models.promote(CHAMPION)


def release_input(model_version: str, **settings: Any) -> dict[str, Any]:
    """What the training pipeline sends, for ``model_version``."""
    sent = json.loads((EVENTS_DIR / "canary_release_input.json").read_text())
    return {**sent, "model_version": model_version, **RELEASE, **settings}


def start(world: AwsWorld, name: str, execution_input: dict[str, Any]) -> str:
    return boto3.client("stepfunctions").start_execution(
        stateMachineArn=world.machine(names.OUTPUT_CANARY_RELEASE_ARN),
        name=name,
        input=json.dumps(execution_input),
    )["executionArn"]


def actions(execution: Execution) -> list[str]:
    return [payload["action"] for payload in execution.lambda_payloads()]


def payload_of(execution: Execution, action: str) -> dict[str, Any]:
    (found,) = [p for p in execution.lambda_payloads() if p["action"] == action]
    return found


def entered(state: str) -> Any:
    return lambda execution: state in execution.entered()


def one_notification(world: AwsWorld) -> dict[str, str]:
    (notification,) = world.notifications()
    return notification


def test_settings_the_release_could_not_follow_open_nothing(world):
    models = world.registry()
    publish(models, CANDIDATE, seed=1)

    # given a release started by hand with a wait the Wait states could not take
    release = world.wait(
        start(world, "by-hand", release_input(CANDIDATE, canary={"wait_seconds": 90.5})), TIMEOUT
    )

    # then it is refused before the release record opens, and says nothing changed
    assert (release.status, release.error) == ("FAILED", "CanaryReleaseFailed")
    assert release.cause.startswith("InvalidInputError: "), release.cause
    assert "open_release.settings.wait_seconds" in release.cause
    assert actions(release) == ["admit_release", "open_release"]
    assert models.release_state() is None
    notification = one_notification(world)
    assert "not started" in notification["subject"]
    assert "nothing was changed" in notification["message"]
    # The other settings kept the environment's (cdk.json model_release).
    settings = payload_of(release, "open_release")["settings"]
    assert (settings["shadow_seconds"], settings["max_score_psi"]) == (300, 0.25)


def test_a_release_while_another_is_open_changes_nothing(world):
    models = world.registry()
    champion_and_candidate(models)
    other = models.open_release("someone-elses-release", CHAMPION)

    release = world.wait(start(world, "second-release", release_input(CANDIDATE)), TIMEOUT)

    assert (release.status, release.error) == ("FAILED", "CanaryReleaseFailed")
    assert "one model release at a time" in release.cause
    assert models.release_state() == other
    assert "not started" in one_notification(world)["subject"]


def test_a_promotion_someone_made_meanwhile_rolls_this_release_back(world):
    # given an empty environment's first release, all traffic already on the candidate
    models = world.registry()
    publish(models, CANDIDATE, seed=1)
    publish(models, CHAMPION, seed=2)
    arn = start(world, "first-release", release_input(CANDIDATE))
    world.wait(arn, TIMEOUT, until=entered("WaitForRefresh"))

    # when another version is promoted before the champion pointer moves
    models.promote(CHAMPION)
    release = world.wait(arn, TIMEOUT)

    # then the release refuses to replace it, closes and says why, with its report
    assert (release.status, release.error) == ("FAILED", "CanaryRolledBack")
    assert release.cause == (
        f"ConcurrentUpdateError: {CHAMPION} was promoted while release first-release ran "
        "on an empty registry"
    )
    assert models.champion_version() == CHAMPION
    ended = models.release_state()
    assert (ended.release_id, ended.outcome) == ("first-release", "rolled_back")
    notification = one_notification(world)
    assert "rolled back" in notification["subject"]
    assert f"/{CANDIDATE}/releases/first-release/report.html" in notification["message"]


def test_a_new_champion_live_cannot_load_is_reported_for_attention(world):
    # given the first release of an empty environment, its file damaged once live
    # has loaded it as the candidate
    models = world.registry()
    publish(models, CANDIDATE, seed=1)
    arn = start(world, "first-release", release_input(CANDIDATE))
    world.wait(arn, TIMEOUT, until=entered("WaitForRefresh"))
    bucket, _, key = models.uri(CANDIDATE, MODEL_FILE).removeprefix("s3://").partition("/")
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=b"not a model")

    release = world.wait(arn, TIMEOUT)

    # then the champion moved, live keeps what it served (nothing), and the
    # notification asks for a look instead of claiming a promotion
    assert (release.status, release.error) == ("FAILED", "CanaryReleaseFailed")
    assert release.cause.startswith("LiveNotServingChampion: the live function serves none")
    assert models.champion_version() == CANDIDATE
    notification = one_notification(world)
    assert "failed" in notification["subject"]
    assert "needs attention" in notification["message"]


def test_a_rollback_during_a_release_ends_it_and_keeps_the_champion(world):
    # given a release in shadow
    models = world.registry()
    champion_and_candidate(models)
    arn = start(world, "release", release_input(CANDIDATE, canary={"shadow_seconds": 6}))
    world.wait(arn, TIMEOUT, until=entered("ObserveShadow"))
    assert world.registry().active_release().stage == "shadow"

    # when a rollback is asked for
    request = json.loads((EVENTS_DIR / "canary_release_rollback_input.json").read_text())
    rollback = world.wait(start(world, "rollback", {**request, **RELEASE}), TIMEOUT)

    # then the rollback closes the release at once, live drops the candidate...
    assert rollback.status == "SUCCEEDED", (rollback.error, rollback.cause)
    assert rollback.output["did"] == "closed_release"
    assert (rollback.output["model_version"], rollback.output["release_id"]) == (
        CHAMPION,
        "release",
    )
    # ...and the release stops at its next action, closed with the rollback's reason
    release = world.wait(arn, TIMEOUT)
    assert (release.status, release.error) == ("FAILED", "CanaryRolledBack")
    reason = request["rollback"]["reason"]
    assert release.cause == f"{reason} (rollback rollback)"
    assert "Promote" not in release.entered()
    assert models.champion_version() == CHAMPION
    subjects = sorted(n["subject"] for n in world.notifications())
    assert subjects == ["credit-risk: model release rolled back", "credit-risk: rolled back"]


def test_a_rollback_with_nothing_to_return_to_fails_and_changes_nothing(world):
    models = world.registry()
    publish(models, CHAMPION, seed=1)
    models.promote(CHAMPION)

    request = json.loads((EVENTS_DIR / "canary_release_rollback_input.json").read_text())
    rollback = world.wait(start(world, "rollback", request), TIMEOUT)

    assert (rollback.status, rollback.error) == ("FAILED", "CanaryReleaseFailed")
    assert "there is no earlier one to roll back to" in rollback.cause
    assert models.champion_version() == CHAMPION
    assert "needs attention" in one_notification(world)["message"]


def test_an_input_that_asks_for_nothing_is_refused(world):
    execution = world.wait(start(world, "nothing", {"run_id": "x"}), TIMEOUT)

    assert (execution.status, execution.error) == ("FAILED", "InvalidInputError")
    assert "model_version" in execution.cause
    assert actions(execution) == []


def stop(world: AwsWorld, arn: str) -> Execution:
    boto3.client("stepfunctions").stop_execution(executionArn=arn, cause="stopped by hand")
    return world.wait(arn, TIMEOUT)


def test_a_release_left_open_by_a_stopped_execution_is_closed_by_the_rule(world):
    # given a release in shadow whose execution is stopped by hand
    models = world.registry()
    champion_and_candidate(models)
    arn = start(world, "stopped-release", release_input(CANDIDATE, canary={"shadow_seconds": 600}))
    world.wait(arn, TIMEOUT, until=entered("ObserveShadow"))
    assert stop(world, arn).status == "ABORTED"
    assert models.active_release().release_id == "stopped-release"

    # when Step Functions' status change reaches EventBridge
    world.deliver(world.status_change(arn))

    # then the rule's action closes that release, the champion untouched...
    (invocation,) = world.rule_invocations
    assert invocation["event"] == {
        "action": names.ACTION_CLOSE_ABANDONED_RELEASE,
        "execution_name": "stopped-release",
        "status": "ABORTED",
    }
    assert invocation["error"] is None, invocation["result"]
    ended = models.release_state()
    assert (ended.release_id, ended.active, ended.outcome) == (
        "stopped-release",
        False,
        "rolled_back",
    )
    assert "stopped-release" in ended.reason
    assert "ABORTED" in ended.reason
    assert models.champion_version() == CHAMPION
    # ...with its report, which says the release ended so
    report = json.loads(models.read_report(CANDIDATE, "stopped-release", release_report.JSON_FILE))
    assert (report["outcome"], report["reason"]) == ("rolled_back", ended.reason)
    assert report["swap_sample_read"]["files"] == 0
    # and a second delivery of the same event changes nothing
    world.deliver(world.status_change(arn))
    assert world.rule_invocations[-1]["result"]["closed"] is False
    assert models.release_state() == ended

    # and the next release is no longer refused: it opens
    following = start(world, "next-release", release_input(CANDIDATE))
    world.wait(following, TIMEOUT, until=entered("ObserveShadow"))
    assert models.active_release().release_id == "next-release"
    stop(world, following)


def test_another_executions_end_changes_no_release(world):
    # given a release in progress, and a second release refused while it runs
    models = world.registry()
    champion_and_candidate(models)
    other = models.open_release("release-in-progress", CANDIDATE)
    refused = world.wait(start(world, "refused-release", release_input(CANDIDATE)), TIMEOUT)
    assert refused.status == "FAILED"

    # when its failure reaches EventBridge
    world.deliver(world.status_change(refused.arn))

    # then the rule's action finds no release of that execution and changes nothing
    (invocation,) = world.rule_invocations
    assert invocation["event"]["execution_name"] == "refused-release"
    assert invocation["result"]["closed"] is False
    assert models.release_state() == other
    assert models.champion_version() == CHAMPION

    # and the end of another state machine's execution does not reach the rule
    event = world.status_change(refused.arn)
    event["detail"]["stateMachineArn"] = world.machine(names.OUTPUT_TRAINING_PIPELINE_ARN)
    world.deliver(event)
    assert len(world.rule_invocations) == 1
