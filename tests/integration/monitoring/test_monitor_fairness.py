"""Fairness on served decisions, on a local deployment: approval rates by gender
(the feature run's audit output, joined on the hashed customer ids of the scoring
log) and by age band, judged against the adverse impact floor."""

from __future__ import annotations

import numpy as np

from credit_risk import names
from credit_risk.model.groups import AGE_BAND, ELDERLY_BAND, GENDER
from credit_risk.monitoring.html import render_html
from credit_risk.monitoring.monitor import run_monitor
from credit_risk.monitoring.report import ALERT, OK, SKIPPED
from tests.integration.monitoring.world import (
    END,
    SNAPSHOT_ID,
    WINDOW_DAYS,
    Served,
)

PER_DAY = 400


def _declined(served: list[Served]) -> set[str]:
    return {item.customer_id for item in served if item.record.decision == "decline"}


def test_a_served_population_skewed_against_one_gender_alerts(world, store):
    # given a window of traffic in which every customer the model declines is a man,
    # and one in ten of the approved ones
    served = world.traffic(store, world.customers(), PER_DAY)
    world.write_log(served)
    declined, rng = _declined(served), np.random.default_rng(3)
    world.publish_audit(
        {c: "M" if c in declined or rng.random() < 0.1 else "F" for c in world.customers()}
    )
    # and outcomes of those scores, drawn from the served probabilities
    world.write_labels(served, lambda p: int(rng.random() < p))

    # when the monitor runs
    report = run_monitor(world.settings(), end=END, hash_id=world.hash_id)

    # then men are judged against women, the most favoured, and found below the floor
    # beyond chance: the whole interval of their ratio is under 0.8
    fairness = report.checks["fairness"]
    gender = fairness["groupings"][GENDER]
    assert gender["most_favoured"] == "F"
    assert gender["below_floor"] == ["M"]
    men = gender["groups"]["M"]
    assert men["judged"]
    assert men["status"] == ALERT
    assert men["adverse_impact_ratio"]["high"] < 0.8
    assert sum(g["decisions"] for g in gender["groups"].values()) == WINDOW_DAYS * PER_DAY
    assert fairness["status"] == ALERT
    assert report.status == ALERT
    # and the alert count is published for the alarm
    points = {p.name: p.value for p in report.metric_points() if "feature" not in p.dimensions}
    assert points[names.METRIC_FAIRNESS_ALERTS] == fairness["alerts"] >= 1
    # and with labels, each group's live calibration and AUC are reported beside
    labelled = gender["labelled"]
    assert set(labelled) == {"F", "M"}
    assert sum(g["scores"] for g in labelled.values()) == report.checks["quality"]["labelled"]
    assert labelled["F"]["auc"]["low"] <= labelled["F"]["auc"]["estimate"]
    # and the page shows the section
    page = render_html(report)
    assert "Fairness on served decisions" in page
    assert "adverse impact ratio" in page


def test_a_balanced_served_population_flags_no_gender(world, store):
    # given the same traffic, gender drawn independently of what the model decides
    served = world.traffic(store, world.customers(), PER_DAY)
    world.write_log(served)
    rng = np.random.default_rng(5)
    world.publish_audit({c: "F" if rng.random() < 0.67 else "M" for c in world.customers()})

    report = run_monitor(world.settings(), end=END, hash_id=world.hash_id)

    # then both genders are judged and neither is below the floor
    gender = report.checks["fairness"]["groupings"][GENDER]
    assert gender["status"] == OK
    assert gender["below_floor"] == []
    assert {name for name, g in gender["groups"].items() if g["judged"]} == {"F", "M"}
    other = "M" if gender["most_favoured"] == "F" else "F"
    assert gender["groups"][other]["adverse_impact_ratio"]["estimate"] > 0.9


def test_age_bands_are_judged_and_gender_skipped_without_an_audit_output(world, store):
    # given a feature run written before the audit output existed (none in the lake)
    world.write_log(world.traffic(store, world.customers(), PER_DAY))

    report = run_monitor(world.settings(), end=END, hash_id=world.hash_id)

    # then gender cannot be judged, and the report says which audit is missing
    fairness = report.checks["fairness"]
    assert fairness["groupings"][GENDER]["status"] == SKIPPED
    assert list(fairness["unavailable_audits"]) == [SNAPSHOT_ID]
    # while the age bands of the served ages are still reported, each with its
    # ratio to the most favoured band; only the elderly band can be judged, and
    # only with 100 decisions (this window has fewer: nothing is judged)
    bands = fairness["groupings"][AGE_BAND]
    assert sum(g["decisions"] for g in bands["groups"].values()) == WINDOW_DAYS * PER_DAY
    assert all(g["adverse_impact_ratio"] for g in bands["groups"].values())
    elderly = bands["groups"][ELDERLY_BAND]
    assert elderly["decisions"] < 100
    assert not any(g["judged"] for g in bands["groups"].values())
    assert bands["status"] == SKIPPED


def test_a_window_without_scores_skips_fairness(world, store):
    report = run_monitor(world.settings(), end=END, hash_id=world.hash_id)

    assert report.checks["fairness"]["status"] == SKIPPED
    assert "no scores" in report.checks["fairness"]["reason"]
