"""The canary release state machine, executed by moto's Step Functions engine.

The release function's results come from the lambda-simple queue, one per action, so
these tests pin down the decisions of the definition: the order of the actions, the
percentages, when it promotes and when it rolls back. What the actions do to AWS is
tested in test_release.py.
"""

from __future__ import annotations

import json

import pytest

from credit_risk import names
from tests.conftest import EVENTS_DIR
from tests.integration.orchestration.conftest import load_definition, moto_runnable

LIVE_VERSION, CANDIDATE_VERSION = "7", "8"
CHAMPION = "20231201T030000Z-aaaa1111"
ALARM = names.candidate_alarm_prefix("dev") + "errors"


@pytest.fixture
def release_input() -> dict:
    return json.loads((EVENTS_DIR / "canary_release_input.json").read_text())


@pytest.fixture
def canary(world):
    definition = moto_runnable(load_definition("canary_release", world.values))
    return world.create_machine("credit-risk-dev-canary-release", definition)


def _published(model_version: str) -> dict:
    return {
        "candidate_version": CANDIDATE_VERSION,
        "live_version": LIVE_VERSION,
        "champion": CHAMPION,
        "model_version": model_version,
    }


def _healthy(requests: int = 50) -> dict:
    return {"alarms": [], "requests": requests}


def test_a_healthy_candidate_takes_every_step_and_is_promoted(world, canary, release_input):
    model = release_input["model_version"]
    world.queue_results(
        _published(model),
        {"percent": 10},
        _healthy(),
        {"percent": 50},
        _healthy(),
        {"champion": model, "previous": CHAMPION, "already": False},
        {"aliases": {"live": CANDIDATE_VERSION}},
        {"removed": True},
    )

    run = world.run(canary, release_input)

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.output == {
        "outcome": "promoted",
        "model_version": model,
        "inference_version": CANDIDATE_VERSION,
    }
    assert run.lambda_payloads() == [
        {"action": "publish_candidate", "model_version": model},
        {"action": "set_canary", "percent": 10},
        {"action": "check_candidate", "window_seconds": 1},
        {"action": "set_canary", "percent": 50},
        {"action": "check_candidate", "window_seconds": 1},
        {"action": "promote_model", "model_version": model, "expected_champion": CHAMPION},
        {"action": "point_aliases", "live": CANDIDATE_VERSION},
        {"action": "remove_canary"},
    ]
    assert run.entered().count("Observe") == 2
    (notification,) = world.notifications()
    assert "promoted" in notification["subject"]


def test_a_candidate_alarm_rolls_back_at_once(world, canary, release_input):
    world.queue_results(
        _published(release_input["model_version"]),
        {"percent": 10},
        {"alarms": [ALARM], "requests": 80},
        {"removed": True},
        {"aliases": {"live": LIVE_VERSION, "candidate": LIVE_VERSION}},
    )

    run = world.run(canary, release_input)

    assert run.status == "FAILED"
    assert run.error == "CanaryRolledBack"
    assert ALARM in run.cause
    assert run.lambda_payloads()[-2:] == [
        {"action": "remove_canary"},
        {"action": "point_aliases", "live": LIVE_VERSION, "candidate": LIVE_VERSION},
    ]
    assert "PromoteModel" not in run.entered()
    (notification,) = world.notifications()
    assert "rolled back" in notification["subject"]
    assert ALARM in notification["message"]


def test_too_little_traffic_is_no_proof_and_rolls_back(world, canary, release_input):
    world.queue_results(
        _published(release_input["model_version"]),
        {"percent": 10},
        _healthy(),
        {"percent": 50},
        _healthy(requests=3),
        {"removed": True},
        {"aliases": {"live": LIVE_VERSION, "candidate": LIVE_VERSION}},
    )

    run = world.run(canary, release_input)

    assert run.status == "FAILED"
    assert run.error == "CanaryRolledBack"
    assert run.cause == "the candidate served 3 requests at 50%, fewer than the 20 required"
    assert "PromoteModel" not in run.entered()


def test_a_refused_promotion_rolls_back(world, canary, release_input):
    release_input["canary"]["steps_percent"] = [25]
    world.queue_results(
        _published(release_input["model_version"]),
        {"percent": 25},
        _healthy(),
        {"errorType": "ConcurrentUpdateError", "errorMessage": "the champion changed"},
    )
    # The promote result lacks "champion", so its selector fails the task, as the
    # refused promotion fails it in AWS; the release must still roll back.
    world.queue_results(
        {"removed": True}, {"aliases": {"live": LIVE_VERSION, "candidate": LIVE_VERSION}}
    )

    run = world.run(canary, release_input)

    assert run.status == "FAILED"
    assert run.error == "CanaryRolledBack"
    assert run.entered()[-5:] == [
        "ErrorDuringCanary",
        "RemoveCanary",
        "RestoreAliases",
        "NotifyRolledBack",
        "RolledBack",
    ]
    assert "MoveLive" not in run.entered()
