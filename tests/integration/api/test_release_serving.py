"""A model release inside the serving function: the function follows the registry's
release record, scores every customer with both models, answers each with the one
the keyed hash assigns and records the other's answer as a shadow score.

Over real HTTP on the local server (SQLite store) and through the Lambda entry point
(PostgreSQL store), on a copy of the API tests' registry."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from credit_risk import names
from credit_risk.monitoring.monitor import run_monitor
from credit_risk.monitoring.records import SERVED, SHADOW, read_scoring_log
from credit_risk.registry import CANARY, Registry
from credit_risk.release_metrics import ReleaseCounts, parse_emf, release_sums
from credit_risk.serving.assignment import CANDIDATE, assign
from credit_risk.serving.service import IdHasher
from credit_risk.settings import Settings
from credit_risk.store import create_store
from tests.integration.api.conftest import (
    ENV_FALLBACK,
    HASH_KEY,
    Configure,
    Serve,
    Serving,
    invoke,
    load_event,
    with_body,
)
from tests.integration.api.registries import publish_variant

RELEASE = "r-20261202T040000Z"
CUSTOMERS = 60
CALLS = 10


def today():
    return datetime.now(UTC).date()


def model_of(base_url: str, customer_id: str, http: requests.Session) -> str:
    response = http.post(f"{base_url}{names.ROUTE_SCORE}", json={"customer_id": customer_id})
    assert response.status_code == 200, response.text
    assert "x-lambda-alias" not in response.headers
    return response.json()["model_version"]


def test_over_http_each_customer_always_gets_one_model_and_keeps_it_as_the_share_rises(
    serve: Serve, serving: Serving, registry_copy: Registry
):
    # Given the local server and a release of the candidate at 10%
    base_url = serve()
    customers = serving.customer_ids[:CUSTOMERS]
    registry_copy.open_release(RELEASE, serving.candidate_version)
    registry_copy.move_release(RELEASE, CANARY, 10.0)
    with requests.Session() as http:
        at_10 = {c: model_of(base_url, c, http) for c in customers}
        # When the release moves to 50% and each customer calls ten times
        registry_copy.move_release(RELEASE, CANARY, 50.0)
        answers = defaultdict(set)
        for _ in range(CALLS):
            for customer in customers:
                answers[customer].add(model_of(base_url, customer, http))

    # Then every customer got one model version on every call
    assert all(len(versions) == 1 for versions in answers.values())
    at_50 = {customer: versions.pop() for customer, versions in answers.items()}
    # And it is the one the keyed hash assigns them: both models answer someone
    key = HASH_KEY.encode()
    expected = {
        c: serving.candidate_version
        if assign(key, RELEASE, c, 50.0) == CANDIDATE
        else serving.version
        for c in customers
    }
    assert at_50 == expected
    assert set(at_50.values()) == {serving.version, serving.candidate_version}
    # And nobody the candidate answered at 10% went back to the champion at 50%
    moved_at_10 = {c for c, v in at_10.items() if v == serving.candidate_version}
    assert all(at_50[c] == serving.candidate_version for c in moved_at_10)


@pytest.fixture
def release_handler(
    configure: Configure, registry_copy: Registry, features_url: str, tmp_path: Path
):
    """The handler as the template deploys it (serving the champion, no pinned model,
    re-reading the registry on every request) on the registry copy and the PostgreSQL
    store, its scoring log in ``tmp_path / "log"``."""
    return configure(
        **{
            names.ENV_REGISTRY_URI: registry_copy.root,
            names.ENV_MODEL_VERSION: None,
            ENV_FALLBACK: "true",
            names.ENV_MODEL_REFRESH_SECONDS: "0",
            names.ENV_DATABASE_URL: features_url,
            names.ENV_SCORING_LOG_URI: str(tmp_path / "log"),
        }
    )


@pytest.mark.postgres
def test_in_shadow_the_champion_answers_and_the_candidate_s_answer_is_recorded_beside_it(
    release_handler, registry_copy: Registry, serving: Serving, tmp_path: Path, features_url
):
    # Given a release of the candidate in shadow
    registry_copy.open_release(RELEASE, serving.candidate_version)
    # When a customer is scored
    answer = invoke(release_handler, load_event("inference_score"))
    # Then the client gets the champion's answer
    assert answer.status == 200
    assert answer.body["model_version"] == serving.version
    # And the scoring log holds the served answer and the candidate's shadow, one request
    served, shadow = read_scoring_log(str(tmp_path / "log"), today(), today())
    assert (served.role, shadow.role) == (SERVED, SHADOW)
    assert (served.model_version, shadow.model_version) == (
        serving.version,
        serving.candidate_version,
    )
    assert served.request_id == shadow.request_id
    assert served.customer_hash == shadow.customer_hash == IdHasher(HASH_KEY.encode())("5008804")
    assert served.release_id == shadow.release_id == RELEASE
    # The candidate is the same model file under another name: the same answer
    assert served.default_probability == shadow.default_probability

    # And the monitor counts the answers clients got, not the shadow scores
    settings = Settings(scoring_log_uri=str(tmp_path / "log"), database_url=features_url)
    with create_store(settings) as store:
        report = run_monitor(settings, end=today(), days=1, store=store)
    assert report.data["counts"]["scores"] == 1
    assert report.data["counts"]["by_model_version"] == {serving.version: 1}


@pytest.mark.postgres
def test_a_failing_candidate_fails_no_customer_and_every_failure_is_counted(
    release_handler, registry_copy: Registry, serving: Serving, capsys
):
    # Given a candidate that loads but cannot score, at 50% of the customers
    broken = publish_variant(registry_copy, serving, "broken-1", missing_feature=True)
    registry_copy.open_release(RELEASE, broken)
    key = HASH_KEY.encode()
    customers = serving.customer_ids[:40]
    on_candidate = [c for c in customers if assign(key, RELEASE, c, 50.0) == CANDIDATE]
    on_champion = [c for c in customers if c not in on_candidate]
    assert on_candidate
    assert on_champion

    # When in shadow every customer is scored, and then at 50%
    event = load_event("inference_score")
    in_shadow = [invoke(release_handler, with_body(event, {"customer_id": c})) for c in customers]
    registry_copy.move_release(RELEASE, CANARY, 50.0)
    capsys.readouterr()
    in_canary = {
        c: invoke(release_handler, with_body(event, {"customer_id": c})) for c in customers
    }

    # Then in shadow nobody noticed
    assert {a.status for a in in_shadow} == {200}
    assert {a.body["model_version"] for a in in_shadow} == {serving.version}
    # And at 50% the champion answers the candidate's customers too: a broken
    # candidate costs no customer an answer
    assert {a.status for a in in_canary.values()} == {200}
    assert {a.body["model_version"] for a in in_canary.values()} == {serving.version}
    # And every customer the candidate failed to score is counted for the release's
    # gates (and for its alarm), none as answered by it
    printed = capsys.readouterr().out.splitlines()
    counts = ReleaseCounts.from_metrics(release_sums(parse_emf(printed), RELEASE))
    assert counts.candidate_errors == len(customers)
    assert counts.candidate_served == 0
    assert counts.pairs == 0
    alarm_metric = [
        value
        for value in parse_emf(printed)
        if value.name == names.METRIC_CANDIDATE_ERRORS
        and dict(value.dimensions) == {"service": names.SERVICE_INFERENCE}
    ]
    assert len(alarm_metric) == len(customers)
