"""The local canary release: promote after every step, or roll back (pipeline step 6).

The champion and the candidates are the API tests' registry (copied per test,
because a canary moves the champion); the store is the local SQLite one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from credit_risk import names
from credit_risk.errors import InvalidInputError
from credit_risk.local_canary import CanaryPolicy, run_canary
from credit_risk.registry import Registry
from credit_risk.settings import Settings
from credit_risk.store import create_store
from tests.integration.api.conftest import ENV_LOCAL_DIR, MODEL_NAME


@pytest.fixture
def settings(monkeypatch, tmp_path, local_dir, serving) -> Settings:
    registry = tmp_path / "registry"
    shutil.copytree(serving.registry_uri, registry)
    # Only versions that passed their gate reach a canary; the small training set
    # of these tests may miss one, so the copies are marked as having passed.
    for version in (serving.version, serving.candidate_version):
        path = registry / MODEL_NAME / version / "metadata.json"
        metadata = json.loads(path.read_text())
        metadata["gate"]["passed"] = True
        path.write_text(json.dumps(metadata))
    for name, value in {
        ENV_LOCAL_DIR: str(local_dir),
        names.ENV_REGISTRY_URI: str(registry),
        names.ENV_MODEL_NAME: MODEL_NAME,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(names.ENV_DATABASE_URL, raising=False)
    return Settings()


@pytest.fixture
def customers(settings) -> list[str]:
    with create_store(settings) as store:
        return store.customer_ids(200)


def champion(settings: Settings) -> str | None:
    return Registry(settings.registry, settings.model_name).champion_version()


def test_a_healthy_candidate_is_promoted_after_every_step(settings, customers, serving):
    policy = CanaryPolicy(steps_percent=(10.0, 50.0), requests_per_step=120, min_requests=5)

    outcome = run_canary(settings, serving.candidate_version, customers, policy, say=print)

    assert outcome.promoted, outcome.reason
    assert [step["percent"] for step in outcome.steps] == [10.0, 50.0]
    assert all(step["candidate_requests"] >= 5 for step in outcome.steps)
    assert all(step["candidate_errors"] == 0 for step in outcome.steps)
    # More traffic reaches the candidate as the steps rise.
    assert outcome.steps[1]["candidate_requests"] > outcome.steps[0]["candidate_requests"]
    assert champion(settings) == serving.candidate_version


def test_a_candidate_that_cannot_start_is_rolled_back(settings, customers, serving):
    outcome = run_canary(settings, serving.corrupt_version, customers, say=print)

    assert not outcome.promoted
    assert "did not start" in outcome.reason
    assert champion(settings) == serving.version


def test_a_step_with_too_little_candidate_traffic_rolls_back(settings, customers, serving):
    silent = CanaryPolicy(steps_percent=(1.0,), requests_per_step=10, min_requests=5)

    outcome = run_canary(settings, serving.candidate_version, customers, silent, say=print)

    assert not outcome.promoted
    # The words of the AWS release: one decision function for both.
    assert outcome.reason.startswith("the candidate served ")
    assert outcome.reason.endswith("requests at 1%, fewer than the 5 required")
    assert champion(settings) == serving.version


def test_without_a_champion_the_first_version_is_promoted_at_once(settings, customers, serving):
    (Path(settings.registry) / MODEL_NAME / "champion.json").unlink()

    outcome = run_canary(settings, serving.version, customers, say=print)

    assert outcome.promoted
    assert outcome.steps == []
    assert champion(settings) == serving.version


def test_steps_must_rise_strictly():
    with pytest.raises(InvalidInputError, match="increasing"):
        CanaryPolicy(steps_percent=(50.0, 10.0))
