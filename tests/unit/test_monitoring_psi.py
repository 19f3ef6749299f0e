"""Population stability index against hand-computed values, and its verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from credit_risk.monitoring import psi
from credit_risk.monitoring.report import ALERT, OK, SKIPPED, WARN


def test_identical_distributions_have_a_psi_of_zero():
    assert psi.population_stability_index([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_psi_of_two_bins_by_hand():
    # (0.7 - 0.5) ln(0.7 / 0.5) + (0.3 - 0.5) ln(0.3 / 0.5)
    by_hand = 0.2 * math.log(1.4) + (-0.2) * math.log(0.6)
    assert by_hand == pytest.approx(0.169459, abs=1e-6)
    assert psi.population_stability_index([0.5, 0.5], [0.7, 0.3]) == pytest.approx(by_hand)


def test_psi_of_four_bins_by_hand():
    expected = [0.25, 0.25, 0.25, 0.25]
    actual = [0.10, 0.20, 0.30, 0.40]
    by_hand = sum((a - e) * math.log(a / e) for e, a in zip(expected, actual, strict=True))
    assert by_hand == pytest.approx(0.228217, abs=1e-6)
    assert psi.population_stability_index(expected, actual) == pytest.approx(by_hand)


def test_psi_is_symmetric_in_its_two_distributions():
    a, b = [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]
    assert psi.population_stability_index(a, b) == pytest.approx(
        psi.population_stability_index(b, a)
    )


def test_an_empty_bin_counts_as_epsilon_not_as_infinity():
    # given a bin training never saw that now holds a tenth of the values
    value = psi.population_stability_index([0.5, 0.5, 0.0], [0.5, 0.4, 0.1])
    # then (0.4 - 0.5) ln(0.8) + (0.1 - 1e-4) ln(0.1 / 1e-4)
    by_hand = (-0.1) * math.log(0.8) + (0.1 - 1e-4) * math.log(0.1 / 1e-4)
    assert value == pytest.approx(by_hand)
    assert value == pytest.approx(0.712399, abs=1e-6)


def test_bins_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="one length"):
        psi.population_stability_index([0.5, 0.5], [1.0])


@pytest.mark.parametrize(
    ("value", "status"),
    [(0.0, OK), (0.099, OK), (0.1, WARN), (0.2, WARN), (0.25, ALERT), (3.0, ALERT)],
)
def test_thresholds_classify_psi(value, status):
    assert psi.classify(value, warn=0.1, alert=0.25) == status


REFERENCE = {"edges": [10.0, 20.0, 30.0], "proportions": [0.25, 0.25, 0.25, 0.25]}


def test_served_values_are_binned_on_the_reference_edges_with_nulls_left_out():
    # given 8 values, two per bin (edges belong to the bin they open), and 2 nulls
    values = np.array([1, 9.9, 10, 19, 20, 29, 30, 99, np.nan, np.nan])

    drift = psi.distribution_drift("x", REFERENCE, values, warn=0.1, alert=0.25, min_count=5)

    assert drift.actual == (0.25, 0.25, 0.25, 0.25)
    assert drift.served == 8
    assert drift.psi == 0.0
    assert drift.status == OK


def test_a_shifted_feature_alerts_with_the_hand_computed_psi():
    # given every served value in the top two bins, half each
    values = np.array([25.0] * 50 + [35.0] * 50)

    drift = psi.distribution_drift("x", REFERENCE, values, warn=0.1, alert=0.25, min_count=5)

    by_hand = 2 * (1e-4 - 0.25) * math.log(1e-4 / 0.25) + 2 * 0.25 * math.log(0.5 / 0.25)
    assert drift.psi == pytest.approx(by_hand)
    assert drift.status == ALERT


def test_too_few_values_are_not_judged():
    drift = psi.distribution_drift(
        "x", REFERENCE, np.array([1.0, 2.0, np.nan]), warn=0.1, alert=0.25, min_count=5
    )
    assert drift.status == SKIPPED
    assert drift.psi is None
    assert "2 non-null values" in drift.reason


def test_drift_counts_alerts_over_features_and_the_score():
    reference = {
        "features": {"a": REFERENCE, "b": REFERENCE},
        "score": {"edges": [0.5], "proportions": [0.5, 0.5]},
    }
    features = {"a": np.array([5.0, 15, 25, 35] * 10), "b": np.full(40, 35.0)}
    scores = np.full(40, 0.9)

    result = psi.measure_drift(reference, features, scores, warn=0.1, alert=0.25, min_count=10)

    assert result.features["a"].status == OK
    assert result.features["b"].status == ALERT
    assert result.score.status == ALERT
    assert result.alerts == 2
    assert result.status == ALERT
    section = result.to_dict()
    assert section["thresholds"] == {"psi_warn": 0.1, "psi_alert": 0.25}
    assert section["score"]["psi"] == pytest.approx(result.score.psi, abs=1e-6)
