"""The release's decisions: the one function the local release and the AWS release
follow (shadow → each canary step → promotion, every gate after every stage), and the
admissions that keep runs and releases apart."""

from __future__ import annotations

import json
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
    SHADOW,
    SKIP,
    WAIT,
    CanaryPolicy,
    Execution,
    Gates,
    StepCheck,
    admit_release,
    admit_run,
    decide,
    judge,
)
from credit_risk.release_metrics import Decided, ReleaseCounts

GATES = Gates(
    max_candidate_errors=0,
    max_latency_ratio=2.0,
    max_approval_rate_change=0.05,
    max_swap_share=0.10,
    max_score_psi=0.10,
)
POLICY = CanaryPolicy(
    steps_percent=(10.0, 50.0), min_requests=20, shadow_min_requests=30, gates=GATES
)
NEW, OLD = "20261202T010000Z-bbbbbbbb", "20261101T010000Z-aaaaaaaa"


def behaviour(
    customers: int = 100,
    *,
    champion_approvals: int = 80,
    candidate_approvals: int = 80,
    flips: int = 0,
    candidate_errors: int = 0,
    champion_ms: float = 0.4,
    candidate_ms: float = 0.4,
    shifted_scores: bool = False,
) -> ReleaseCounts:
    """The counts of ``customers`` scored by both models, one per request."""
    pairs = []
    for i in range(customers):
        champion = "approve" if i < champion_approvals else "decline"
        candidate = "approve" if i < candidate_approvals else "decline"
        if i < flips:  # approvals swapped both ways keep the rate
            candidate = "decline" if i % 2 else "approve"
            champion = "approve" if i % 2 else "decline"
        probability = 0.02 + (i % 10) / 100
        pairs.append(
            (
                Decided(probability, champion),
                Decided(min(probability * 8, 0.99) if shifted_scores else probability, candidate),
            )
        )
    per_request = [
        ReleaseCounts.observe([p], champion_ms=champion_ms, candidate_ms=candidate_ms)
        for p in pairs
    ]
    return ReleaseCounts.total(per_request) + ReleaseCounts.observe(
        candidate_errors=candidate_errors
    )


HEALTHY = behaviour()


def verdict(**facts):
    return decide(model_version=NEW, policy=POLICY, **{"champion": OLD, **facts})


def after_shadow(counts: ReleaseCounts = HEALTHY, requests: int = 100, alarms=()):
    return verdict(stage=SHADOW, check=StepCheck(alarms=alarms, requests=requests, counts=counts))


def after_step(step: int, counts: ReleaseCounts = HEALTHY, requests: int = 50, alarms=()):
    check = StepCheck(alarms=alarms, requests=requests, counts=counts)
    return verdict(stage=CANARY, step_index=step, check=check)


class TestBeforeAnyStage:
    def test_an_empty_environment_promotes_the_first_model_at_once(self):
        first = verdict(champion=None)

        assert first.action == PROMOTE
        assert first.reason == f"no champion to compare with: {NEW} is the first model"

    def test_a_candidate_that_did_not_start_rolls_back_even_without_a_champion(self):
        broken = verdict(champion=None, started=False, start_error="IntegrityError: sha256")

        assert broken.action == ROLL_BACK
        assert broken.reason == "the candidate did not start: IntegrityError: sha256"

    def test_a_release_of_the_champion_itself_is_a_promotion_with_nothing_to_do(self):
        assert verdict(champion=NEW).action == PROMOTE

    def test_with_a_champion_the_shadow_stage_begins(self):
        first = verdict()

        assert (first.action, first.step_index, first.percent) == (SHADOW, None, 0.0)


class TestTheOrderOfStages:
    def test_shadow_then_each_step_then_promotion(self):
        # Given a candidate that behaves like the champion at every check
        shadow = verdict()
        first = after_shadow()
        second = after_step(first.step_index)
        last = after_step(second.step_index)

        # Then the release goes shadow → 10% → 50% → promote
        assert [v.action for v in (shadow, first, second, last)] == [
            SHADOW,
            CANARY,
            CANARY,
            PROMOTE,
        ]
        assert [first.percent, second.percent] == [10.0, 50.0]
        assert last.reason == "shadow and every canary step passed (10%, 50%)"
        # And every verdict after a stage carries each gate's verdict
        assert {g.gate for g in last.gates} == {
            "alarms",
            "errors",
            "latency",
            "approval_rate",
            "swap_set",
            "score_psi",
        }
        assert all(g.passed for g in last.gates)


class TestEveryGate:
    @pytest.mark.parametrize("stage", ["shadow", "canary"])
    def test_a_candidate_alarm_rolls_back(self, stage):
        judged = (
            after_shadow(alarms=("candidate-errors",))
            if stage == SHADOW
            else after_step(0, alarms=("candidate-errors",))
        )

        assert judged.action == ROLL_BACK
        assert "alarms: candidate alarms in ALARM: candidate-errors" in judged.reason

    def test_one_candidate_error_beyond_the_limit_rolls_back(self):
        judged = after_shadow(behaviour(candidate_errors=1))

        assert judged.action == ROLL_BACK
        assert judged.reason.startswith("gates failed in shadow: errors: 1 candidate errors")

    def test_errors_within_the_limit_pass(self):
        tolerant = CanaryPolicy(steps_percent=(10.0,), gates=Gates(max_candidate_errors=2))
        counts = behaviour(candidate_errors=2)

        judged = decide(
            model_version=NEW,
            champion=OLD,
            policy=tolerant,
            stage=SHADOW,
            check=StepCheck(requests=100, counts=counts),
        )

        assert judged.action == CANARY

    def test_a_candidate_much_slower_than_the_champion_rolls_back(self):
        slow = behaviour(champion_ms=0.4, candidate_ms=3.0)  # 0.5 ms bin against 4 ms

        judged = after_step(0, slow)

        assert judged.action == ROLL_BACK
        assert "latency: candidate p99 ≤ 4 ms against champion p99 ≤ 0.5 ms" in judged.reason

    def test_a_candidate_slower_than_every_latency_bin_rolls_back_and_is_recorded(self):
        slow = behaviour(champion_ms=0.4, candidate_ms=500.0)

        judged = after_step(0, slow)

        assert judged.action == ROLL_BACK
        assert "latency: candidate p99 above 128 ms against champion p99 ≤ 0.5 ms" in (
            judged.reason
        )
        latency = next(g for g in judged.as_dict()["gates"] if g["gate"] == "latency")
        assert (latency["value"], latency["threshold"]) == (None, 1.0)
        json.dumps(judged.as_dict(), allow_nan=False)  # as the release writes it

    def test_a_candidate_beyond_every_bin_fails_even_beside_a_champion_as_slow(self):
        judged = after_step(0, behaviour(champion_ms=500.0, candidate_ms=900.0))

        assert judged.action == ROLL_BACK
        assert "candidate p99 above 128 ms against champion p99 above 128 ms" in judged.reason
        json.dumps(judged.as_dict(), allow_nan=False)

    def test_a_champion_slower_than_every_latency_bin_leaves_the_gate_passed(self):
        judged = after_step(0, behaviour(champion_ms=500.0, candidate_ms=0.4))

        assert judged.action == CANARY
        latency = next(g for g in judged.as_dict()["gates"] if g["gate"] == "latency")
        assert (latency["passed"], latency["value"], latency["threshold"]) == (True, 0.5, None)
        json.dumps(judged.as_dict(), allow_nan=False)

    def test_a_candidate_one_latency_bin_slower_passes(self):
        assert after_step(0, behaviour(champion_ms=0.4, candidate_ms=0.9)).action == CANARY

    def test_an_approval_rate_moved_beyond_the_threshold_rolls_back_in_shadow(self):
        stricter = behaviour(champion_approvals=80, candidate_approvals=70)

        judged = after_shadow(stricter)

        assert judged.action == ROLL_BACK
        assert "approval_rate: approval rate 80.0% → 70.0% on 100 customers" in judged.reason

    def test_a_large_swap_set_rolls_back_even_when_the_rate_holds(self):
        swapped = behaviour(flips=20)

        judged = after_shadow(swapped)

        assert swapped.approval_rate_change == 0.0
        assert judged.action == ROLL_BACK
        assert "swap_set: 10 approve→decline and 10 decline→approve of 100" in judged.reason

    def test_shifted_scores_roll_back_on_psi(self):
        shifted = behaviour(shifted_scores=True)

        judged = after_step(1, shifted)

        assert judged.action == ROLL_BACK
        assert "score_psi: score PSI" in judged.reason
        failed = {g.gate for g in judged.gates if not g.passed}
        assert "score_psi" in failed

    def test_without_customers_scored_by_both_only_the_counted_gates_are_judged(self):
        results = judge(StepCheck(), GATES)

        assert [r.gate for r in results] == ["alarms", "errors"]
        assert all(r.passed for r in results)


class TestVolume:
    def test_too_few_customers_in_shadow_is_no_evidence(self):
        judged = after_shadow(requests=29)

        assert judged.action == ROLL_BACK
        assert judged.reason == (
            "29 customers scored by both models in shadow, fewer than the 30 required: "
            "no evidence to go on"
        )

    def test_too_few_customers_answered_in_a_step_is_no_evidence(self):
        judged = after_step(1, requests=19)

        assert judged.action == ROLL_BACK
        assert judged.reason == (
            "19 customers answered by the candidate at 50%, fewer than the 20 required: "
            "no evidence to go on"
        )

    def test_a_failed_gate_is_named_before_the_missing_volume(self):
        judged = after_shadow(behaviour(candidate_errors=3), requests=0)

        assert judged.reason.startswith("gates failed in shadow: errors:")


class TestBadInputs:
    def test_a_step_outside_the_policy_or_without_its_check_is_refused(self):
        with pytest.raises(InvalidInputError, match="not one of"):
            after_step(2)
        with pytest.raises(InvalidInputError, match="not one of"):
            verdict(stage=CANARY, check=StepCheck(requests=50))
        with pytest.raises(InvalidInputError, match="needs its check"):
            verdict(stage=SHADOW)

    def test_an_unknown_stage_is_refused(self):
        with pytest.raises(InvalidInputError, match="unknown release stage"):
            verdict(stage="ended", check=StepCheck(requests=50))

    @pytest.mark.parametrize(
        ("steps", "min_requests", "message"),
        [
            ((50.0, 10.0), 5, "increasing"),
            ((10.0, 10.0), 5, "increasing"),
            ((), 5, "increasing"),
            ((100.0,), 5, "between"),
            ((0.0, 10.0), 5, "between"),
            ((10.0,), 0, "positive"),
        ],
    )
    def test_a_policy_that_cannot_work_is_refused(self, steps, min_requests, message):
        with pytest.raises(InvalidInputError, match=message):
            CanaryPolicy(steps_percent=steps, min_requests=min_requests)

    def test_a_shadow_stage_without_a_volume_is_refused(self):
        with pytest.raises(InvalidInputError, match="positive"):
            CanaryPolicy(shadow_min_requests=0)

    @pytest.mark.parametrize(
        ("gates", "message"),
        [
            ({"max_candidate_errors": -1}, "max_candidate_errors"),
            ({"max_latency_ratio": 0.5}, "max_latency_ratio"),
            ({"max_approval_rate_change": 0.0}, "max_approval_rate_change"),
            ({"max_swap_share": 1.5}, "max_swap_share"),
            ({"max_score_psi": 0.0}, "max_score_psi"),
        ],
    )
    def test_gates_that_cannot_work_are_refused(self, gates, message):
        with pytest.raises(InvalidInputError, match=message):
            Gates(**gates)


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
