"""Fairness on served decisions: which groups are judged, against whom, and when a
ratio below the floor warns or alerts."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from credit_risk.model.groups import AGE_BAND, GENDER, UNKNOWN
from credit_risk.monitoring.fairness import assess_fairness, judge_grouping
from credit_risk.monitoring.records import ScoreRecord
from credit_risk.monitoring.report import ALERT, OK, SKIPPED, WARN

FLOOR = 0.8


def _decisions(**groups: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Approval flags and group names: ``name=(approvals, decisions)`` per group."""
    approved, names = [], []
    for name, (approvals, decisions) in groups.items():
        approved += [True] * approvals + [False] * (decisions - approvals)
        names += [name] * decisions
    return np.array(approved), np.array(names, dtype=object)


def _judge(min_decisions: int = 100, **groups: tuple[int, int]) -> dict:
    approved, names = _decisions(**groups)
    return judge_grouping(approved, names, GENDER, floor=FLOOR, min_decisions=min_decisions)


def test_equal_approval_rates_are_ok_against_the_most_favoured_group():
    result = _judge(F=(900, 1000), M=(880, 1000))

    assert result["status"] == OK
    assert result["most_favoured"] == "F"
    assert result["below_floor"] == []
    assert result["groups"]["M"]["adverse_impact_ratio"]["estimate"] == pytest.approx(0.88 / 0.9)
    # the reference itself: a ratio of one
    assert result["groups"]["F"]["adverse_impact_ratio"]["estimate"] == pytest.approx(1.0)


def test_a_ratio_below_the_floor_warns_while_chance_could_explain_it():
    # 0.75 of the favoured rate, on groups too small to rule out 0.8
    result = _judge(F=(100, 125), M=(90, 150))

    ratio = result["groups"]["M"]["adverse_impact_ratio"]
    assert ratio["estimate"] == pytest.approx(0.75)
    assert ratio["high"] >= FLOOR
    assert result["groups"]["M"]["status"] == WARN
    assert result["status"] == WARN
    assert result["below_floor"] == ["M"]


def test_a_ratio_below_the_floor_beyond_chance_alerts():
    result = _judge(F=(3000, 4000), M=(2000, 4000))

    assert result["groups"]["M"]["adverse_impact_ratio"]["high"] < FLOOR
    assert result["groups"]["M"]["status"] == ALERT
    assert result["status"] == ALERT


def test_a_judged_group_without_any_approval_alerts():
    result = _judge(F=(150, 200), M=(0, 150))

    assert result["groups"]["M"]["adverse_impact_ratio"]["estimate"] == 0.0
    assert result["groups"]["M"]["status"] == ALERT


def test_unknown_and_small_groups_are_reported_but_never_judged_nor_the_reference():
    # unknown has the highest rate, X is small: M is judged against F only
    result = _judge(F=(800, 1000), M=(780, 1000), X=(5, 50), **{UNKNOWN: (300, 300)})

    assert result["most_favoured"] == "F"
    assert not result["groups"][UNKNOWN]["judged"]
    assert result["groups"][UNKNOWN]["adverse_impact_ratio"] is None
    assert result["groups"][UNKNOWN]["status"] == SKIPPED
    assert not result["groups"]["X"]["judged"]
    assert result["groups"]["X"]["status"] == SKIPPED
    # a small group's ratio is still shown, for people, without a verdict
    assert result["groups"]["X"]["adverse_impact_ratio"]["estimate"] == pytest.approx(0.125)
    assert result["status"] == OK


def test_one_judged_group_has_nothing_to_compare_with():
    result = _judge(F=(800, 1000), M=(10, 50))

    assert result["status"] == SKIPPED
    assert "no group to judge" in result["reason"]
    assert result["groups"]["M"]["decisions"] == 50


def _record(n: int, age: int, decision: str) -> ScoreRecord:
    return ScoreRecord(
        request_id=f"req-{n}",
        customer_hash=f"{n:024x}",
        model_version="v1",
        snapshot_id="run-1",
        features_as_of=date(2026, 1, 1),
        features={
            "age": age,
            "years_on_the_job": None,
            "nb_previous_loans": 0,
            "avg_amount_loans_previous": None,
            "flag_own_car": 0,
        },
        default_probability=0.2 if decision == "decline" else 0.05,
        decision=decision,
        scored_at=datetime(2026, 1, 2, tzinfo=UTC),
        environment="test",
    )


def test_without_an_id_hash_key_only_age_bands_are_judged(tmp_path):
    # given elderly applicants declined far more often than 40-year-olds, and young
    # ones too (age is a model input: a younger band is reported, not judged)
    records = [_record(n, 70, "decline" if n % 2 else "approve") for n in range(200)]
    records += [_record(1000 + n, 40, "approve") for n in range(200)]
    records += [_record(2000 + n, 22, "decline" if n % 2 else "approve") for n in range(200)]

    section = assess_fairness(records, str(tmp_path), None, floor=FLOOR, min_decisions=100)

    assert section["groupings"][GENDER]["status"] == SKIPPED
    assert "hash key" in section["groupings"][GENDER]["reason"]
    bands = section["groupings"][AGE_BAND]
    assert bands["below_floor"] == ["62+"]
    assert bands["groups"]["under 25"]["status"] == SKIPPED
    assert bands["groups"]["under 25"]["adverse_impact_ratio"]["estimate"] == pytest.approx(0.5)
    assert section["status"] == ALERT
    assert (section["alerts"], section["flags"]) == (1, 1)
    assert (section["decisions"], section["approvals"]) == (600, 400)
