"""Fair-lending checks: outcomes by group, and Regulation B's age rule on real models."""

from __future__ import annotations

import numpy as np
import pytest

from credit_risk import schemas
from credit_risk.model import fairness, groups
from credit_risk.model.data import Dataset
from credit_risk.model.train import DEFAULT_MONOTONE, Hyperparameters, train_model

THRESHOLD = 0.1


def _decisions(approval_rates: dict[str, tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Group names and probabilities giving each group (loans, approval rate)."""
    names, probabilities = [], []
    for name, (loans, rate) in approval_rates.items():
        approved = round(loans * rate)
        names += [name] * loans
        probabilities += [0.02] * approved + [0.5] * (loans - approved)
    return np.array(names, dtype=object), np.array(probabilities)


def test_the_adverse_impact_ratio_is_against_the_most_favoured_judged_group():
    names, probabilities = _decisions(
        {"F": (1_000, 0.70), "M": (1_000, 0.95), "unknown": (500, 1.0), "tiny": (20, 0.2)}
    )
    labels = (probabilities > 0.1).astype(np.int8)
    outcomes = fairness.group_outcomes(
        labels, probabilities, THRESHOLD, {"gender": names}, fairness.FairnessConfig()
    )

    gender = outcomes["groupings"]["gender"]
    # unknown approves everyone but is never the reference; tiny is too small to judge
    assert gender["most_favoured"] == "M"
    f = gender["groups"]["F"]
    assert f["approval_rate"]["estimate"] == pytest.approx(0.70)
    assert f["adverse_impact_ratio"]["estimate"] == pytest.approx(0.70 / 0.95, abs=1e-6)
    assert f["adverse_impact_ratio"]["low"] < f["adverse_impact_ratio"]["estimate"]
    assert not gender["groups"]["tiny"]["judged"]
    assert not gender["groups"]["unknown"]["judged"]
    assert gender["groups"]["unknown"]["adverse_impact_ratio"] is None
    assert fairness.below_floor(outcomes, "gender") == [("F", pytest.approx(0.7368, abs=1e-4))]


def test_groups_within_four_fifths_are_not_flagged():
    names, probabilities = _decisions({"F": (1_000, 0.90), "M": (1_000, 0.95)})
    labels = np.zeros(len(names), dtype=np.int8)
    labels[::50] = 1
    outcomes = fairness.group_outcomes(
        labels, probabilities, THRESHOLD, {"gender": names}, fairness.FairnessConfig()
    )
    assert fairness.below_floor(outcomes, "gender") == []


def test_age_bands_and_genders_become_group_names():
    bands = groups.age_bands(np.array([18, 24, 25, 61, 62, 90, np.nan]))
    assert bands.tolist() == ["under 25", "under 25", "25-34", "50-61", "62+", "62+", "unknown"]
    assert groups.ELDERLY_BAND == "62+"
    assert groups.genders(np.array(["F", "M", None, "X"], dtype=object)).tolist() == [
        "F",
        "M",
        "unknown",
        "unknown",
    ]


def _late_rising_risk(n: int, seed: int) -> tuple[Dataset, Dataset]:
    """Loans whose true risk falls with age and then rises steeply after 62 (far
    more than the generator's), other features as the contract has them."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, n).astype(np.float64)
    tenure = np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 30, n))
    previous = rng.integers(0, 12, n).astype(np.float64)
    amount = np.where(previous == 0, np.nan, rng.lognormal(10, 0.6, n))
    car = rng.integers(0, 2, n).astype(np.float64)
    logit = (
        -4.0
        + 2.0 * np.exp(-(age - 18) / 8)
        + 0.12 * np.maximum(age - 62, 0)
        + np.where(np.isnan(tenure), 0.5, 1.2 * np.exp(-np.nan_to_num(tenure) / 3))
        - 0.6 * car
    )
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    features = np.column_stack([age, tenure, previous, amount, car])
    dates = np.datetime64("2024-01-01") + np.arange(n).astype("timedelta64[m]").astype(
        "timedelta64[D]"
    )
    data = Dataset(features, labels, np.arange(n), dates)
    half = n * 3 // 4
    take = lambda mask: Dataset(  # noqa: E731
        features[mask], labels[mask], data.loan_ids[mask], dates[mask]
    )
    index = np.arange(n)
    return take(index < half), take(index >= half)


@pytest.fixture(scope="module")
def late_rising() -> tuple[Dataset, Dataset]:
    return _late_rising_risk(20_000, seed=3)


def _fit(train: Dataset, validation: Dataset, age_constraint: int):
    params = Hyperparameters(
        num_boost_round=200,
        monotone_constraints={**DEFAULT_MONOTONE, "age": age_constraint},
    )
    booster = train_model(train, validation, params).booster
    return lambda matrix: booster.inplace_predict(matrix, missing=np.nan)


def test_a_model_trained_where_risk_rises_after_62_still_passes_the_age_check(late_rising):
    train, test = late_rising
    assert DEFAULT_MONOTONE["age"] == -1

    result = fairness.age_counterfactual(_fit(train, test, -1), test.features)

    elderly = int((test.column("age") >= schemas.ELDERLY_AGE).sum())
    assert result["applicants_checked"] == elderly > 500
    assert result["ages_tried"] == [18, 61]
    assert result["passed"]
    assert result["violations"] == 0


def test_the_age_check_catches_a_model_free_in_age(late_rising):
    # The check does not trust the constraint: without it the same data gives a
    # model that scores the elderly worse than a younger twin.
    train, test = late_rising
    result = fairness.age_counterfactual(_fit(train, test, 0), test.features)
    assert not result["passed"]
    assert result["violations"] > 0
    assert result["largest_increase"] > 0
