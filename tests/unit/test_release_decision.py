"""The release's decisions: the one function the local canary and the AWS release follow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from credit_risk.errors import InvalidInputError
from credit_risk.release_decision import (
    CANARY,
    GO,
    MAX_RELEASE_WAITS,
    MAX_RUN_WAITS,
    PROMOTE,
    REFUSE,
    ROLL_BACK,
    SKIP,
    WAIT,
    CanaryPolicy,
    Execution,
    StepCheck,
    admit_release,
    admit_run,
    decide,
)

POLICY = CanaryPolicy(steps_percent=(10.0, 50.0), min_requests=20)
NEW, OLD = "20261202T010000Z-bbbbbbbb", "20261101T010000Z-aaaaaaaa"


def verdict(**facts):
    return decide(model_version=NEW, policy=POLICY, **{"champion": OLD, **facts})


class TestBeforeAnyTraffic:
    def test_an_empty_environment_promotes_the_first_model_at_once(self):
        first = verdict(champion=None)

        assert first.action == PROMOTE
        assert "no champion" in first.reason

    def test_a_candidate_that_did_not_start_rolls_back_even_without_a_champion(self):
        broken = verdict(champion=None, started=False, start_error="IntegrityError: sha256")

        assert broken.action == ROLL_BACK
        assert broken.reason == "the candidate did not start: IntegrityError: sha256"

    def test_a_release_of_the_champion_itself_is_a_promotion_with_nothing_to_do(self):
        assert verdict(champion=NEW).action == PROMOTE

    def test_with_a_champion_the_first_step_begins(self):
        first = verdict()

        assert (first.action, first.step_index, first.percent) == (CANARY, 0, 10.0)


class TestAfterAStep:
    def test_a_healthy_step_leads_to_the_next_and_the_last_to_promotion(self):
        healthy = StepCheck(alarms=(), requests=50)

        second = verdict(step_index=0, check=healthy)
        last = verdict(step_index=1, check=healthy)

        assert (second.action, second.step_index, second.percent) == (CANARY, 1, 50.0)
        assert last.action == PROMOTE
        assert last.reason == "every canary step passed (10%, 50%)"

    def test_any_candidate_alarm_rolls_back(self):
        alarmed = verdict(step_index=0, check=StepCheck(alarms=("x-errors",), requests=500))

        assert alarmed.action == ROLL_BACK
        assert alarmed.reason == 'candidate alarms in ALARM at 10%: ["x-errors"]'

    def test_aliases_moved_by_anything_but_the_release_roll_it_back(self):
        moved = StepCheck(requests=500, moved=("live is on version 9, not 7",))

        verdict_ = verdict(step_index=0, check=moved)

        assert verdict_.action == ROLL_BACK
        assert "live is on version 9, not 7" in verdict_.reason

    def test_silence_is_no_proof(self):
        silent = verdict(step_index=1, check=StepCheck(requests=19))

        assert silent.action == ROLL_BACK
        assert (
            silent.reason == "the candidate served 19 requests at 50%, fewer than the 20 required"
        )

    def test_a_step_outside_the_policy_or_without_its_check_is_refused(self):
        with pytest.raises(InvalidInputError, match="not one of"):
            verdict(step_index=2, check=StepCheck(requests=50))
        with pytest.raises(InvalidInputError, match="needs its check"):
            verdict(step_index=0)


@pytest.mark.parametrize(
    ("steps", "min_requests", "message"),
    [
        ((50.0, 10.0), 5, "increasing"),
        ((), 5, "increasing"),
        ((100.0,), 5, "between"),
        ((10.0,), 0, "positive"),
    ],
)
def test_a_policy_that_cannot_work_is_refused(steps, min_requests, message):
    with pytest.raises(InvalidInputError, match=message):
        CanaryPolicy(steps_percent=steps, min_requests=min_requests)


T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


def runs(*names: str) -> list[Execution]:
    return [Execution(name, T0 + timedelta(minutes=i)) for i, name in enumerate(names)]


class TestTrainingRunAdmission:
    def test_alone_it_goes(self):
        assert admit_run("a", runs("a")).decision == GO

    def test_behind_one_run_it_waits_and_goes_once_that_run_ended(self):
        waiting = admit_run("b", runs("a", "b"))

        assert (waiting.decision, waiting.ahead) == (WAIT, ["a"])
        assert admit_run("b", runs("b")).decision == GO

    def test_behind_a_waiting_run_it_is_skipped(self):
        third = admit_run("c", runs("a", "b", "c"))

        assert (third.decision, third.ahead) == (SKIP, ["a", "b"])

    def test_a_run_not_listed_yet_asks_again_rather_than_go_alone(self):
        # ListExecutions is eventually consistent: an empty list proves nothing.
        assert admit_run("c", runs("a")).decision == WAIT
        assert admit_run("c", []).decision == WAIT

    def test_later_runs_do_not_hold_an_earlier_one_back(self):
        assert admit_run("a", runs("a", "b", "c")).decision == GO

    def test_it_stops_waiting_after_the_limit(self):
        assert admit_run("b", runs("a", "b"), attempt=MAX_RUN_WAITS).decision == REFUSE


class TestReleaseAdmission:
    def test_alone_and_with_the_stack_at_rest_it_goes(self):
        assert admit_release("r", runs("r"), "UPDATE_COMPLETE").decision == GO
        assert admit_release("r", runs("r"), None).decision == GO

    def test_another_release_in_flight_refuses_it_whichever_started_first(self):
        assert admit_release("r2", runs("r1", "r2"), "UPDATE_COMPLETE").decision == REFUSE
        assert admit_release("r1", runs("r1", "r2"), "UPDATE_COMPLETE").decision == REFUSE

    @pytest.mark.parametrize("status", ["UPDATE_IN_PROGRESS", "UPDATE_ROLLBACK_IN_PROGRESS"])
    def test_a_code_deploy_in_progress_makes_it_wait_then_refuse(self, status):
        assert admit_release("r", runs("r"), status).decision == WAIT
        assert admit_release("r", runs("r"), status, attempt=MAX_RELEASE_WAITS).decision == REFUSE
