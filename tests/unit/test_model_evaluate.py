"""Metrics, calibration table, slices, threshold and oracle figures."""

from __future__ import annotations

import numpy as np
import pytest

from credit_risk.model.data import Dataset
from credit_risk.model.evaluate import (
    ThresholdPolicy,
    calibration_table,
    evaluate,
    ks_statistic,
    metrics,
    slice_masks,
)


def _dataset(features: np.ndarray, labels: np.ndarray) -> Dataset:
    n = len(labels)
    return Dataset(
        features=features,
        labels=labels.astype(np.int8),
        loan_ids=np.arange(n),
        loan_dates=np.full(n, np.datetime64("2023-01-01")),
    )


def test_perfect_ranking_has_auc_and_ks_of_one():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    figures = metrics(labels, scores)
    assert figures["auc"] == 1.0
    assert figures["ks"] == 1.0
    assert ks_statistic(labels, scores[::-1]) < 0.5


def test_calibration_error_is_relative_to_the_observed_rate():
    # given 2 defaults in 100 loans and a flat prediction of 2.1%
    labels = np.zeros(100, dtype=int)
    labels[:2] = 1
    figures = metrics(labels, np.full(100, 0.021))

    # then the mean prediction is 5% above the observed rate
    assert figures["observed_rate"] == 0.02
    assert figures["calibration_error"] == pytest.approx(0.05)
    assert figures["brier"] == pytest.approx(np.mean((0.021 - labels) ** 2))
    # and the AUC of a constant score is one half
    assert figures["auc"] == 0.5


def test_auc_is_none_when_one_outcome_is_absent():
    figures = metrics(np.zeros(10, dtype=int), np.linspace(0, 1, 10))
    assert figures["auc"] is None
    assert figures["ks"] is None
    assert figures["calibration_error"] is None


def test_calibration_table_has_deciles_of_equal_size_in_order():
    rng = np.random.default_rng(0)
    scores = rng.random(1000)
    labels = (rng.random(1000) < scores).astype(int)
    table = calibration_table(labels, scores)
    assert [row["bin"] for row in table] == list(range(1, 11))
    assert all(row["loans"] == 100 for row in table)
    means = [row["mean_predicted"] for row in table]
    assert means == sorted(means)
    # a calibrated score: each decile's observed rate is near its mean prediction
    assert all(abs(r["observed_rate"] - r["mean_predicted"]) < 0.15 for r in table)


def test_slices_cover_car_age_bands_and_first_loans():
    # given four loans: age 22 no car first loan, 30 car, 55 no car, 70 car
    features = np.array(
        [
            [22, 1, 0, np.nan, 0],
            [30, 3, 2, 1000.0, 1],
            [55, np.nan, 5, 2000.0, 0],
            [70, np.nan, 9, 3000.0, 1],
        ]
    )
    masks = slice_masks(_dataset(features, np.array([1, 0, 0, 1])))
    assert masks["flag_own_car=1"].tolist() == [False, True, False, True]
    assert masks["age under 25"].tolist() == [True, False, False, False]
    assert masks["age 25-34"].tolist() == [False, True, False, False]
    assert masks["age 50-61"].tolist() == [False, False, True, False]
    assert masks["age 62+"].tolist() == [False, False, False, True]
    assert masks["no previous loans"].tolist() == [True, False, False, False]


def test_threshold_follows_from_the_two_costs():
    # given a default costing ten times a declined good customer
    policy = ThresholdPolicy(cost_of_default=1.0, cost_of_declined_good=0.1)

    # then decline above 1/11, and say so
    assert policy.threshold == pytest.approx(1 / 11)
    labels = np.array([0, 0, 1, 1])
    described = policy.describe(labels, np.array([0.01, 0.2, 0.05, 0.5]))
    assert described["method"] == "expected cost"
    assert described["test_decline_rate"] == 0.5
    assert described["test_defaults_declined_share"] == 0.5
    assert described["test_default_rate_approved"] == 0.5


def test_oracle_auc_and_ratio_come_from_the_same_rows():
    # given a model as good as the truth on the loans the truth knows
    labels = np.array([0, 1, 0, 1, 0, 1])
    model = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7])
    truth = np.array([0.1, 0.9, 0.2, 0.8, np.nan, np.nan])
    features = np.tile([40, 5, 3, 1000.0, 1], (6, 1))
    report = evaluate(_dataset(features, labels), model, ThresholdPolicy(), truth)
    assert report["oracle"]["coverage"] == pytest.approx(4 / 6)
    assert report["oracle"]["auc"] == 1.0
    assert report["oracle"]["ratio"] == 1.0
    assert set(report) == {"test", "calibration_table", "slices", "threshold", "oracle"}
