"""The canary release state machine, executed by moto's Step Functions engine.

The release function's results come from the lambda-simple queue, one per action;
the verdicts queued are those of ``credit_risk.release.decide`` for the facts queued
before them, so these tests pin down how the definition follows the one decision
function: the order of the actions, the percentages, when it promotes and when it
rolls back. What the actions do to AWS is tested in test_release.py.
"""

from __future__ import annotations

import json

import pytest

from credit_risk import names, release
from tests.conftest import EVENTS_DIR
from tests.integration.orchestration.conftest import load_definition, moto_runnable

LIVE_VERSION, CANDIDATE_VERSION = "7", "8"
CHAMPION = "20231201T030000Z-aaaa1111"
ALARM = names.candidate_alarm_prefix("dev") + "errors"
ADMITTED = {"decision": "go", "reason": "no other release or deploy in flight", "ahead": []}


@pytest.fixture
def release_input() -> dict:
    return json.loads((EVENTS_DIR / "canary_release_input.json").read_text())


@pytest.fixture
def canary(world):
    definition = moto_runnable(load_definition("canary_release", world.values))
    return world.create_machine("credit-risk-dev-canary-release", definition)


def _published(model_version: str, champion: str | None = CHAMPION, error: str | None = None):
    return {
        "candidate_version": CANDIDATE_VERSION,
        "live_version": LIVE_VERSION,
        "champion": champion,
        "model_version": model_version,
        "started": error is None,
        "start_error": error,
    }


def _verdict(release_input: dict, published: dict, step_index=None, check=None) -> dict:
    """What the release function's ``decide`` answers for these facts."""
    canary = release_input["canary"]
    return release.decide(
        model_version=release_input["model_version"],
        champion=published["champion"],
        steps_percent=canary["steps_percent"],
        min_requests=canary["min_requests"],
        started=published["started"],
        start_error=published["start_error"],
        step_index=step_index,
        check=check,
    )


def _healthy(requests: int = 50) -> dict:
    return {"alarms": [], "requests": requests, "moved": []}


def _restored() -> tuple[dict, dict]:
    return {"removed": True}, {"aliases": {"candidate": LIVE_VERSION}}


def _promoted(model: str, previous: str | None = CHAMPION) -> tuple[dict, ...]:
    """The results of the promotion: all traffic to the candidate, the champion,
    live serving it, the canary gone, the candidate alias back on live's version."""
    return (
        {"percent": 100},
        {"champion": model, "previous": previous, "already": previous == model},
        {"model_version": model, "confirmed": True},
        *_restored(),
    )


PROMOTION = [
    {"action": "set_canary", "percent": 100},
    {"action": "promote_model", "model_version": "<model>", "expected_champion": "<champion>"},
    {"action": "confirm_live", "model_version": "<model>"},
    {"action": "remove_canary"},
    {"action": "point_aliases", "candidate": LIVE_VERSION},
]


def _promotion(model: str, champion: str | None) -> list[dict]:
    text = json.dumps(PROMOTION).replace('"<model>"', json.dumps(model))
    return json.loads(text.replace('"<champion>"', json.dumps(champion)))


def test_a_healthy_candidate_takes_every_step_and_is_promoted(world, canary, release_input):
    model = release_input["model_version"]
    published = _published(model)
    world.queue_results(
        ADMITTED,
        published,
        _verdict(release_input, published),
        {"percent": 10},
        _healthy(),
        _verdict(release_input, published, 0, _healthy()),
        {"percent": 50},
        _healthy(),
        _verdict(release_input, published, 1, _healthy()),
        *_promoted(model),
    )

    run = world.run(canary, release_input)

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.output == {
        "outcome": "promoted",
        "model_version": model,
        "inference_version": CANDIDATE_VERSION,
        "reason": "every canary step passed (10%, 50%)",
    }
    decide = {
        "action": "decide",
        "model_version": model,
        "champion": CHAMPION,
        "steps_percent": [10, 50],
        "min_requests": 20,
        "started": True,
        "start_error": None,
        "wait_seconds": 1,
        "live_refresh_seconds": 1,
    }
    check = {
        "action": "check_candidate",
        "window_seconds": 1,
        "candidate_version": CANDIDATE_VERSION,
        "live_version": LIVE_VERSION,
    }
    assert run.lambda_payloads() == [
        {"action": "admit_release", "execution_arn": run.arn, "attempt": 0},
        {"action": "publish_candidate", "model_version": model},
        decide,
        {"action": "set_canary", "percent": 10},
        check,
        {**decide, "step_index": 0, "check": _healthy()},
        {"action": "set_canary", "percent": 50},
        check,
        {**decide, "step_index": 1, "check": _healthy()},
        # Traffic moves fully to the new model before the champion changes, and back
        # to live (which serves the champion) only once live serves it.
        *_promotion(model, CHAMPION),
    ]
    assert run.entered().index("WaitForLive") < run.entered().index("ConfirmLive")
    assert run.entered().count("Observe") == 2
    (notification,) = world.notifications()
    assert "promoted" in notification["subject"]


def test_the_first_model_of_an_empty_environment_is_promoted_without_steps(
    world, canary, release_input
):
    model = release_input["model_version"]
    published = _published(model, champion=None)
    world.queue_results(
        ADMITTED,
        published,
        _verdict(release_input, published),
        *_promoted(model, previous=None),
    )

    run = world.run(canary, release_input)

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert "SetCanary" not in run.entered()
    assert run.lambda_payloads()[-5:] == _promotion(model, None)
    assert "no champion to compare with" in run.output["reason"]


def test_a_candidate_that_does_not_start_is_rolled_back_before_any_traffic(
    world, canary, release_input
):
    published = _published(release_input["model_version"], error="IntegrityError: sha256")
    world.queue_results(ADMITTED, published, _verdict(release_input, published), *_restored())

    run = world.run(canary, release_input)

    assert run.status == "FAILED"
    assert run.error == "CanaryRolledBack"
    assert run.cause == "the candidate did not start: IntegrityError: sha256"
    assert "SetCanary" not in run.entered()
    assert "PromoteModel" not in run.entered()


def test_a_candidate_alarm_rolls_back_at_once(world, canary, release_input):
    published = _published(release_input["model_version"])
    alarmed = {"alarms": [ALARM], "requests": 80, "moved": []}
    world.queue_results(
        ADMITTED,
        published,
        _verdict(release_input, published),
        {"percent": 10},
        alarmed,
        _verdict(release_input, published, 0, alarmed),
        *_restored(),
    )

    run = world.run(canary, release_input)

    assert run.status == "FAILED"
    assert run.error == "CanaryRolledBack"
    assert ALARM in run.cause
    assert run.lambda_payloads()[-2:] == [
        {"action": "remove_canary"},
        {"action": "point_aliases", "candidate": LIVE_VERSION},
    ]
    assert "PromoteModel" not in run.entered()
    (notification,) = world.notifications()
    assert "rolled back" in notification["subject"]
    assert ALARM in notification["message"]


def test_too_little_traffic_is_no_proof_and_rolls_back(world, canary, release_input):
    published = _published(release_input["model_version"])
    world.queue_results(
        ADMITTED,
        published,
        _verdict(release_input, published),
        {"percent": 10},
        _healthy(),
        _verdict(release_input, published, 0, _healthy()),
        {"percent": 50},
        _healthy(requests=3),
        _verdict(release_input, published, 1, _healthy(requests=3)),
        *_restored(),
    )

    run = world.run(canary, release_input)

    assert run.status == "FAILED"
    assert run.error == "CanaryRolledBack"
    assert run.cause == "the candidate served 3 requests at 50%, fewer than the 20 required"
    assert "PromoteModel" not in run.entered()


def test_a_refused_promotion_rolls_back_with_nothing_in_service_changed(
    world, canary, release_input
):
    release_input["canary"]["steps_percent"] = [25]
    published = _published(release_input["model_version"])
    world.queue_results(
        ADMITTED,
        published,
        _verdict(release_input, published),
        {"percent": 25},
        _healthy(),
        _verdict(release_input, published, 0, _healthy()),
        {"percent": 100},
        {"errorType": "ConcurrentUpdateError", "errorMessage": "the champion changed"},
    )
    # The promote result lacks "champion", so its selector fails the task, as the
    # refused promotion fails it in AWS; all traffic went to the candidate already,
    # so it must come back to live.
    world.queue_results(*_restored())

    run = world.run(canary, release_input)

    assert run.status == "FAILED"
    assert run.error == "CanaryRolledBack"
    assert run.entered()[-7:] == [
        "FullTraffic",
        "PromoteModel",
        "ErrorDuringCanary",
        "RemoveCanary",
        "RestoreAliases",
        "NotifyRolledBack",
        "RolledBack",
    ]
    assert run.lambda_payloads()[-1] == {"action": "point_aliases", "candidate": LIVE_VERSION}


def test_live_not_serving_the_new_champion_keeps_the_traffic_on_the_candidate(
    world, canary, release_input
):
    model = release_input["model_version"]
    published = _published(model, champion=None)
    world.queue_results(
        ADMITTED,
        published,
        _verdict(release_input, published),
        {"percent": 100},
        {"champion": model, "previous": None, "already": False},
        {"model_version": "20230101T000000Z-00000000", "confirmed": False},
    )

    run = world.run(canary, release_input)

    assert run.status == "FAILED"
    assert "LiveNotServingChampion" in run.cause
    # Consistent: the champion is the new model and every request goes to it.
    assert "RemoveCanary" not in run.entered()
    assert "EndCanary" not in run.entered()
    (notification,) = world.notifications()
    assert "failed" in notification["subject"]


def test_a_release_behind_a_code_deploy_waits_then_goes(world, canary, release_input):
    release_input["admission_wait_seconds"] = 1
    model = release_input["model_version"]
    published = _published(model, champion=model)
    deploying = {"decision": "wait", "reason": "a code deploy is in progress", "ahead": []}
    world.queue_results(
        deploying,
        ADMITTED,
        published,
        _verdict(release_input, published),
        *_promoted(model, previous=model),
    )

    run = world.run(canary, release_input)

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.entered().count("WaitForDeploy") == 1
    admissions = [p for p in run.lambda_payloads() if p.get("action") == "admit_release"]
    assert [p["attempt"] for p in admissions] == [0, 1]


def test_a_release_while_another_runs_is_refused_and_changes_nothing(world, canary, release_input):
    refused = {
        "decision": "refuse",
        "reason": "release other is in progress: one model release at a time",
        "ahead": ["other"],
    }
    world.queue_results(refused)

    run = world.run(canary, release_input)

    assert run.status == "FAILED"
    assert run.error == "CanaryReleaseFailed"
    assert "one model release at a time" in run.cause
    assert [p["action"] for p in run.lambda_payloads()] == ["admit_release"]
    (notification,) = world.notifications()
    assert "not started" in notification["subject"]


def test_a_canary_given_in_part_keeps_the_other_settings_of_the_environment(
    world, canary, release_input
):
    release_input["canary"] = {"wait_seconds": 1}
    published = _published(release_input["model_version"], error="IntegrityError: sha256")
    world.queue_results(ADMITTED, published)
    world.queue_results(
        {"action": "roll_back", "reason": "stop here", "step_index": None, "percent": None}
    )
    world.queue_results(*_restored())

    run = world.run(canary, release_input)

    decide = next(p for p in run.lambda_payloads() if p.get("action") == "decide")
    defaults = load_definition("canary_release", world.values)["States"]["Defaults"]
    configured = {
        key.removesuffix(".$"): json.loads(value.removeprefix("States.StringToJson('")[:-2])
        for key, value in defaults["Parameters"]["canary"].items()
    }
    assert decide["steps_percent"] == configured["steps_percent"]
    assert decide["min_requests"] == configured["min_requests"]
    assert run.cause == "stop here"


def test_aliases_moved_by_a_deploy_during_a_step_roll_the_release_back(
    world, canary, release_input
):
    published = _published(release_input["model_version"])
    moved = {**_healthy(), "moved": ["candidate is on version 9, not 8"]}
    world.queue_results(
        ADMITTED,
        published,
        _verdict(release_input, published),
        {"percent": 10},
        moved,
        _verdict(release_input, published, 0, moved),
        *_restored(),
    )

    run = world.run(canary, release_input)

    assert run.status == "FAILED"
    assert run.error == "CanaryRolledBack"
    assert (
        run.cause == "the aliases changed during the step at 10%: candidate is on version 9, not 8"
    )
    assert "PromoteModel" not in run.entered()
