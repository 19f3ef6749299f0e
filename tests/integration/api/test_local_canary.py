"""The model release on this machine (``credit-risk release``, pipeline step 6): shadow,
canary steps and promotion, or a rollback, decided as in AWS, against one local
inference function following the registry's release record.

The champion and the candidates are the API tests' trained model under several
version names, in a copy of its registry per test (a release moves the champion);
the store is the local SQLite one.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from pathlib import Path

import pytest

from credit_risk import cli, rollback
from credit_risk.errors import InvalidInputError
from credit_risk.local_canary import CDK_JSON, LocalReleasePolicy, run_canary
from credit_risk.monitoring.records import SERVED, SHADOW, read_scoring_log
from credit_risk.registry import (
    CANARY,
    ENDED,
    PROMOTED,
    ROLLED_BACK,
    ConcurrentUpdateError,
    Registry,
    ReleaseState,
)
from credit_risk.release_report import STEPS_FILE
from credit_risk.rollback import CLOSED_RELEASE, RESTORED_CHAMPION
from credit_risk.settings import Settings
from credit_risk.store import create_store
from tests.integration.api.conftest import MODEL_NAME, Serving
from tests.integration.api.registries import promote, publish_variant

# Two steps, so that a healthy release shows shadow → 10% → 50% → promotion.
POLICY = LocalReleasePolicy(
    dataclasses.replace(
        LocalReleasePolicy.of_environment("dev").release,
        steps_percent=(10.0, 50.0),
        min_requests=5,
        shadow_min_requests=5,
    ),
    requests_per_step=150,
)


@pytest.fixture
def settings(registry_copy: Registry) -> Settings:
    return Settings()


@pytest.fixture
def customers(settings: Settings) -> list[str]:
    with create_store(settings) as store:
        return store.customer_ids(300)


def release(settings: Settings, version: str, customers: list[str], **options):
    return run_canary(
        settings, version, customers, options.pop("policy", POLICY), say=print, **options
    )


def report_of(outcome) -> dict:
    return json.loads(Path(outcome.report["report_json"]).read_text())


def records_of(log: Path, state: ReleaseState) -> list:
    """The release's score records in the scoring log at ``log``."""
    day: date = datetime.fromisoformat(state.started_at).date()
    return [r for r in read_scoring_log(str(log), day, day) if r.release_id == state.release_id]


class TestReleases:
    def test_a_healthy_candidate_goes_through_shadow_and_every_step_to_promotion(
        self, settings, customers, serving: Serving, registry_copy: Registry
    ):
        # When the candidate (the champion's model under another name) is released
        outcome = release(
            settings, serving.candidate_version, customers, release_id="local-healthy"
        )

        # Then it went shadow → 10% → 50% and was promoted
        assert outcome.promoted, outcome.reason
        assert [(s["stage"], s["percent"]) for s in outcome.stages] == [
            ("shadow", 0.0),
            ("canary", 10.0),
            ("canary", 50.0),
        ]
        assert [s["verdict"] for s in outcome.stages] == ["canary", "canary", "promote"]
        assert all(s["requests"] >= 5 for s in outcome.stages)
        assert outcome.reason == "shadow and every canary step passed (10%, 50%)"
        # And the registry says so: the champion, and the release record ended at 100%
        assert registry_copy.champion_version() == serving.candidate_version
        assert registry_copy.champion()["previous"] == serving.version
        state = registry_copy.release_state()
        assert (state.release_id, state.stage, state.percent, state.outcome) == (
            "local-healthy",
            ENDED,
            100.0,
            PROMOTED,
        )
        # And the report is beside the version, with every stage
        assert Path(outcome.report["report_html"]).is_file()
        report = report_of(outcome)
        assert report["outcome"] == PROMOTED
        assert len(report["stages"]) == 3
        assert report["totals"]["candidate_errors"] == 0
        assert report["totals"]["approval_rate_change"] == 0.0
        steps = registry_copy.read_report(serving.candidate_version, "local-healthy", STEPS_FILE)
        assert [entry["stage"] for entry in json.loads(steps)] == ["shadow", CANARY, CANARY]

    def test_a_candidate_that_fails_every_score_is_rolled_back_in_shadow(
        self, settings, customers, serving: Serving, registry_copy: Registry, tmp_path
    ):
        # Given a published version that loads but cannot score a single customer
        broken = publish_variant(registry_copy, serving, "broken-1", missing_feature=True)

        # When it is released
        log = tmp_path / "log"
        outcome = release(settings, broken, customers, scoring_log=str(log))

        # Then the shadow stage stopped it on the errors gate
        assert outcome.outcome == ROLLED_BACK
        assert outcome.reason.startswith("gates failed in shadow: errors: 150 candidate errors")
        assert [s["stage"] for s in outcome.stages] == ["shadow"]
        # And the champion never changed, and the release has ended
        assert registry_copy.champion_version() == serving.version
        state = registry_copy.release_state()
        assert (state.stage, state.outcome) == (ENDED, ROLLED_BACK)
        assert registry_copy.active_release() is None
        # And no customer ever got the candidate's answer
        records = records_of(log, state)
        assert records
        assert {(r.role, r.model_version) for r in records} == {(SERVED, serving.version)}
        assert report_of(outcome)["totals"]["candidate_served"] == 0

    def test_a_candidate_that_declines_far_more_is_stopped_before_anyone_gets_its_decision(
        self, settings, customers, serving: Serving, registry_copy: Registry, tmp_path
    ):
        # Given the champion's model with a much lower threshold: it declines far more
        strict = publish_variant(
            registry_copy, serving, "strict-1", threshold=serving.threshold / 3
        )

        # When it is released
        log = tmp_path / "log"
        outcome = release(settings, strict, customers, scoring_log=str(log))

        # Then the shadow stage stopped it on the approval rate
        assert outcome.outcome == ROLLED_BACK
        assert "approval_rate: approval rate" in outcome.reason
        assert outcome.reason.startswith("gates failed in shadow:")
        assert registry_copy.champion_version() == serving.version
        # And its decisions were recorded in shadow only, never served
        records = records_of(log, registry_copy.release_state())
        served = {r.model_version for r in records if r.role == SERVED}
        shadows = {r.model_version for r in records if r.role == SHADOW}
        assert (served, shadows) == ({serving.version}, {strict})
        # And the report shows customers whose decision it would have changed
        sample = report_of(outcome)["swap_sample"]
        assert sample
        assert {item["answered_by"] for item in sample} == {"champion"}
        assert {item["candidate"]["decision"] for item in sample} == {"decline"}

    def test_a_candidate_that_cannot_start_is_rolled_back(
        self, settings, customers, serving: Serving, registry_copy: Registry
    ):
        outcome = release(settings, serving.corrupt_version, customers)

        assert outcome.outcome == ROLLED_BACK
        assert outcome.reason.startswith("the candidate did not start:")
        assert "sha256" in outcome.reason
        assert outcome.stages == []
        assert registry_copy.champion_version() == serving.version
        assert registry_copy.release_state().outcome == ROLLED_BACK

    def test_without_a_champion_the_first_version_is_promoted_at_once(
        self, settings, customers, serving: Serving, registry_copy: Registry
    ):
        (Path(registry_copy.root) / MODEL_NAME / "champion.json").unlink()

        outcome = release(settings, serving.version, customers)

        assert outcome.promoted
        assert (
            outcome.reason == f"no champion to compare with: {serving.version} is the first model"
        )
        assert outcome.stages == []
        assert registry_copy.champion_version() == serving.version
        assert registry_copy.release_state().outcome == PROMOTED
        assert Path(outcome.report["report_json"]).is_file()

    def test_a_first_model_that_a_rollback_could_not_take_back_is_an_error(
        self, settings, customers, serving: Serving, registry_copy: Registry, monkeypatch
    ):
        # Given an empty registry, and a rollback on request that closes the first
        # release just after its promotion moved the champion
        (Path(registry_copy.root) / MODEL_NAME / "champion.json").unlink()
        close = Registry.close_release

        def rolled_back_first(self: Registry, release_id: str, outcome: str, reason: str):
            if outcome == PROMOTED:
                rollback.roll_back(registry_copy, "the operator's call", "rollback-1")
            return close(self, release_id, outcome, reason)

        monkeypatch.setattr(Registry, "close_release", rolled_back_first)
        # When it runs, then it fails saying that the model serves though rolled back
        # (no earlier champion to put back), rather than end as a quiet rollback
        with pytest.raises(ConcurrentUpdateError, match="no earlier one to put back"):
            release(settings, serving.version, customers)
        assert registry_copy.champion_version() == serving.version

    def test_a_release_interrupted_midway_is_not_left_in_progress(
        self, settings, customers, serving: Serving, registry_copy: Registry
    ):
        # Given an operator who presses Ctrl-C once the shadow stage has been judged
        def interrupted(line: str) -> None:
            if "shadow:" in line:
                raise KeyboardInterrupt

        # When the release is interrupted
        with pytest.raises(KeyboardInterrupt):
            run_canary(settings, serving.candidate_version, customers, POLICY, say=interrupted)

        # Then it ended as rolled back, and the champion never changed
        state = registry_copy.release_state()
        assert (state.stage, state.outcome) == (ENDED, ROLLED_BACK)
        assert state.reason == "the local release stopped: KeyboardInterrupt()"
        assert registry_copy.champion_version() == serving.version

    @pytest.mark.parametrize("after", ["shadow:", "canary 50%:"], ids=["shadow", "last-step"])
    def test_a_rollback_on_request_during_the_release_wins(
        self, settings, customers, serving: Serving, registry_copy: Registry, after
    ):
        # Given an operator who rolls back once a stage has been judged (after the last
        # step: between its promote verdict and the promotion)
        def rolled_back_meanwhile(line: str) -> None:
            if after in line:
                rollback.roll_back(registry_copy, "the operator's call", "rollback-1")

        # When the release goes on
        outcome = run_canary(
            settings, serving.candidate_version, customers, POLICY, say=rolled_back_meanwhile
        )

        # Then it ended as the rollback said, as in AWS, and its report says so
        assert (outcome.outcome, outcome.reason) == (
            ROLLED_BACK,
            "the operator's call (rollback rollback-1)",
        )
        assert report_of(outcome)["outcome"] == ROLLED_BACK
        assert registry_copy.champion_version() == serving.version
        assert registry_copy.release_state().reason == outcome.reason

    def test_a_version_that_failed_its_gate_is_refused_before_anything_changes(
        self, settings, customers, serving: Serving, registry_copy: Registry
    ):
        failed = publish_variant(registry_copy, serving, "failed-1")
        metadata = Path(registry_copy.root) / MODEL_NAME / failed / "metadata.json"
        metadata.write_text(
            json.dumps({**json.loads(metadata.read_text()), "gate": {"passed": False}})
        )

        with pytest.raises(InvalidInputError, match="did not pass the evaluation gate"):
            release(settings, failed, customers)

        assert registry_copy.release_state() is None

    def test_a_release_in_progress_refuses_another(
        self, settings, customers, serving: Serving, registry_copy: Registry
    ):
        registry_copy.open_release("other", serving.candidate_version)

        with pytest.raises(ConcurrentUpdateError, match="one model release at a time"):
            release(settings, serving.candidate_version, customers)

        assert registry_copy.active_release().release_id == "other"


class TestPolicy:
    @pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
    def test_each_environment_s_model_release_settings_make_a_local_policy(self, environment):
        policy = LocalReleasePolicy.of_environment(environment, requests_per_step=50)

        assert policy.requests_per_step == 50
        block = json.loads(CDK_JSON.read_text())["context"][environment]["model_release"]
        assert list(policy.release.steps_percent) == block["steps_percent"]
        assert policy.release.gates.max_swap_share == block["max_swap_share"]

    def test_without_an_environment_the_policy_is_dev_s(self):
        assert LocalReleasePolicy.of_environment() == LocalReleasePolicy.of_environment("dev")

    def test_unknown_settings_are_refused(self):
        with pytest.raises(InvalidInputError, match="unknown model_release settings: max_gap"):
            LocalReleasePolicy.from_model_release({"max_gap": 3})

    @pytest.mark.parametrize(
        ("settings", "message"),
        [
            ({"steps_percent": [50, 10]}, "increasing"),
            ({"requests_per_step": 0}, "requests_per_step"),
            ({"max_swap_share": 2}, "max_swap_share"),
        ],
    )
    def test_a_policy_that_cannot_work_is_refused(self, settings, message):
        dev = json.loads(CDK_JSON.read_text())["context"]["dev"]["model_release"]
        requests = settings.pop("requests_per_step", None)
        with pytest.raises(InvalidInputError, match=message):
            LocalReleasePolicy.from_model_release({**dev, **settings}, requests_per_step=requests)


class TestCommands:
    def run_cli(self, capsys, *arguments: str) -> tuple[int, dict | None, str]:
        code = cli.main(["release", *arguments])
        captured = capsys.readouterr()
        return code, json.loads(captured.out) if captured.out else None, captured.err

    def test_rollback_after_promotion_restores_the_previous_champion_one_step_at_a_time(
        self, capsys, serving: Serving, registry_copy: Registry
    ):
        # Given champions V then X, and the candidate released by the command
        earlier = publish_variant(registry_copy, serving, "earlier-1")
        promote(registry_copy, earlier)
        code, summary, _ = self.run_cli(
            capsys, "run", serving.candidate_version, "--requests-per-step", "100"
        )
        assert code == 0, summary
        assert summary["outcome"] == PROMOTED
        assert Path(summary["report_html"]).is_file()
        assert registry_copy.champion_version() == serving.candidate_version

        # When rolled back once
        code, first, err = self.run_cli(capsys, "rollback", "--reason", "declines too many")
        # Then the champion before it serves again, in one call
        assert code == 0
        assert (first["did"], first["model_version"]) == (RESTORED_CHAMPION, earlier)
        assert first["rolled_back_from"] == serving.candidate_version
        assert registry_copy.champion()["reason"] == "declines too many"
        # And the report of the release that promoted it is named
        assert Path(first["report_html"]) == Path(summary["report_html"])
        assert f"champion is now {earlier}" in err

        # When rolled back again: one further back, not forward
        code, second, _ = self.run_cli(capsys, "rollback")
        assert code == 0
        assert second["model_version"] == serving.version
        assert registry_copy.champion_version() == serving.version

        # When there is nothing left to roll back to: a clear error
        code, nothing, err = self.run_cli(capsys, "rollback")
        assert code == cli.EXIT_USER_ERROR
        assert nothing is None
        assert err.startswith("credit-risk release: error:")
        assert "no earlier one to roll back to" in err
        assert registry_copy.champion_version() == serving.version

    def test_rollback_during_a_release_ends_it_and_leaves_the_champion(
        self, capsys, serving: Serving, registry_copy: Registry
    ):
        registry_copy.open_release("in-flight", serving.candidate_version)
        registry_copy.move_release("in-flight", CANARY, 10.0)

        code, done, err = self.run_cli(capsys, "rollback")

        assert code == 0
        assert (done["did"], done["release_id"]) == (CLOSED_RELEASE, "in-flight")
        assert done["model_version"] == serving.version
        assert registry_copy.active_release() is None
        assert registry_copy.release_state().outcome == ROLLED_BACK
        assert registry_copy.champion_version() == serving.version
        assert Path(done["report_html"]).is_file()
        assert "rolled back" in err

    def test_rollback_in_an_empty_registry_is_a_clear_error(self, capsys, registry_copy: Registry):
        (Path(registry_copy.root) / MODEL_NAME / "champion.json").unlink()

        code, done, err = self.run_cli(capsys, "rollback")

        assert code == cli.EXIT_USER_ERROR
        assert done is None
        assert err == (
            f"credit-risk release: error: {MODEL_NAME} has no champion and no release "
            "in progress to roll back\n"
        )
        assert registry_copy.champion() is None

    def test_a_rolled_back_release_exits_non_zero(
        self, capsys, serving: Serving, registry_copy: Registry
    ):
        broken = publish_variant(registry_copy, serving, "broken-1", missing_feature=True)

        code, summary, _ = self.run_cli(capsys, "run", broken, "--requests-per-step", "50")

        assert code == 1
        assert summary["outcome"] == ROLLED_BACK
        assert summary["stages"][0]["verdict"] == "roll_back"

    def test_status_shows_the_champion_and_the_release_record(
        self, capsys, serving: Serving, registry_copy: Registry
    ):
        code, empty, _ = self.run_cli(capsys, "status")
        assert code == 0
        assert empty["release"] is None
        assert empty["champion"]["version"] == serving.version

        registry_copy.open_release("in-flight", serving.candidate_version)
        _, status, _ = self.run_cli(capsys, "status")
        assert status["release"]["release_id"] == "in-flight"
        assert status["release"]["stage"] == "shadow"

    def test_an_unknown_version_is_a_clear_error(self, capsys, registry_copy: Registry):
        code, summary, err = self.run_cli(capsys, "run", "20990101T000000Z-deadbeef")

        assert code == cli.EXIT_USER_ERROR
        assert summary is None
        assert "20990101T000000Z-deadbeef" in err
        assert registry_copy.release_state() is None
