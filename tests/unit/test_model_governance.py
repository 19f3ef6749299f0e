"""Governance evidence: permutation importance, the seeded hyperparameter search,
and the model's performance by age (the evidence behind ``max_model_age_days``)."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from credit_risk import schemas
from credit_risk.errors import InvalidInputError
from credit_risk.model import synthetic
from credit_risk.model.data import Dataset, Split, split_out_of_time, to_dataset
from credit_risk.model.governance import (
    permutation_importance,
    staleness_curve,
    supported_model_age,
)
from credit_risk.model.train import (
    SEARCH_SPACE,
    Hyperparameters,
    SearchConfig,
    TrainedModel,
    _candidates,
    search_hyperparameters,
    train_model,
)

# Few rounds: these tests are about the machinery, not the model's quality.
BASE = replace(Hyperparameters(), num_boost_round=60, early_stopping_rounds=10)
NOISE = "flag_own_car"


def _predictor(model: TrainedModel):
    return lambda matrix: model.booster.inplace_predict(matrix, missing=np.nan)


@pytest.fixture(scope="module")
def split() -> Split:
    table, _ = synthetic.training_features(40_000, seed=11)
    return split_out_of_time(to_dataset(table))


@pytest.fixture(scope="module")
def model(split) -> TrainedModel:
    return train_model(split.train, split.validation, BASE)


# --- permutation importance ----------------------------------------------------------


def _with_noise(data: Dataset, rng: np.random.Generator) -> Dataset:
    features = data.features.copy()
    features[:, schemas.FEATURE_NAMES.index(NOISE)] = rng.integers(0, 2, data.rows)
    return replace(data, features=features)


def test_importance_ranks_informative_features_above_pure_noise(split):
    # given a model trained where one feature is a coin toss, unrelated to default
    rng = np.random.default_rng(3)
    train, validation, test = (_with_noise(d, rng) for d in split.periods().values())
    model = train_model(train, validation, BASE)

    # when measuring the permutation importance on the test period
    rows = permutation_importance(_predictor(model), test, repeats=2, seed=0)

    # then every feature is there once, sorted by AUC drop, ranked 1..n
    assert sorted(r["feature"] for r in rows) == sorted(schemas.FEATURE_NAMES)
    drops = [r["auc_drop"] for r in rows]
    assert drops == sorted(drops, reverse=True)
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    # and the noise comes last, far below the features the generator uses
    by_feature = {r["feature"]: r for r in rows}
    assert rows[-1]["feature"] == NOISE
    assert abs(by_feature[NOISE]["auc_drop"]) < 0.01
    for informative in ("age", "years_on_the_job"):
        assert by_feature[informative]["auc_drop"] > 0.02
        assert by_feature[informative]["log_loss_increase"] > 0
    # and the figures are plain JSON
    json.dumps(rows)


def test_importance_is_seeded_and_leaves_the_data_alone(split):
    # given a score that reads age alone
    age = schemas.FEATURE_NAMES.index("age")

    def predict(matrix: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp((matrix[:, age] - 40.0) / 10.0))

    before = split.test.features.copy()

    # when measuring twice with the same seed, and once with another
    first = permutation_importance(predict, split.test, repeats=3, seed=5)
    again = permutation_importance(predict, split.test, repeats=3, seed=5)
    other = permutation_importance(predict, split.test, repeats=3, seed=6)

    # then the same seed gives the same figures, another seed other shuffles
    assert first == again
    assert first[0]["feature"] == "age"
    assert other[0]["auc_drop"] != first[0]["auc_drop"]
    # and the features it does not read matter exactly nothing
    for row in first[1:]:
        assert row["auc_drop"] == row["auc_drop_std"] == row["log_loss_increase"] == 0.0
    # and the test matrix is untouched
    np.testing.assert_array_equal(split.test.features, before)


# --- hyperparameter search -------------------------------------------------------------


def test_search_is_deterministic_starts_from_base_and_keeps_the_lowest_loss(split):
    # when searching twice with the same seed
    first = search_hyperparameters(split.train, split.validation, BASE, trials=3, seed=7)
    again = search_hyperparameters(split.train, split.validation, BASE, trials=3, seed=7)

    # then both choose the same model, byte for byte, from the same trials
    assert first.model.model_bytes() == again.model.model_bytes()
    assert first.trials == again.trials
    assert first.chosen == again.chosen
    # and the configured hyperparameters are always the first trial
    assert len(first.trials) == 3
    assert first.trials[0]["parameters"] == {name: getattr(BASE, name) for name in SEARCH_SPACE}
    assert len({json.dumps(t["parameters"], sort_keys=True) for t in first.trials}) == 3
    # and the chosen one has the lowest validation log loss
    losses = [t["validation_log_loss"] for t in first.trials]
    assert first.chosen == int(np.argmin(losses))
    assert first.model.validation_logloss == min(losses)
    assert first.trials[first.chosen]["best_iteration"] == first.model.best_iteration
    # and only the searched settings moved: constraints, seed, threads, rounds stay
    chosen = first.hyperparameters
    for kept in (
        "monotone_constraints",
        "seed",
        "nthread",
        "max_bin",
        "num_boost_round",
        "early_stopping_rounds",
    ):
        assert getattr(chosen, kept) == getattr(BASE, kept)
    for name, value in first.trials[first.chosen]["parameters"].items():
        assert getattr(chosen, name) == value
    # and the record is the metadata entry the card reads
    record = json.loads(json.dumps(first.to_dict()))
    assert record["seed"] == 7
    assert record["chosen"] == first.chosen
    assert record["trials"] == first.trials


def test_one_trial_is_no_search(split, model):
    result = search_hyperparameters(split.train, split.validation, BASE, trials=1, seed=7)
    assert result.chosen == 0
    assert result.hyperparameters == BASE
    assert len(result.trials) == 1
    assert result.model.model_bytes() == model.model_bytes()


def test_the_seed_decides_the_trials_drawn():
    # given the draws alone (no training)
    same = _candidates(BASE, 6, seed=7)
    assert same == _candidates(BASE, 6, seed=7)
    assert same != _candidates(BASE, 6, seed=8)
    # then every draw lies in the documented space
    for params in same[1:]:
        for name, values in SEARCH_SPACE.items():
            assert getattr(params, name) in values


def test_search_settings_are_checked():
    assert SearchConfig() == SearchConfig(trials=8, seed=7)
    with pytest.raises(InvalidInputError, match="trials"):
        SearchConfig(trials=0)


# --- model age and performance --------------------------------------------------------


def _ages(test: Dataset, data_end: date) -> np.ndarray:
    return (test.loan_dates - np.datetime64(data_end, "D")).astype(np.int64)


def test_staleness_windows_partition_the_test_loans(split, model):
    # given the model's probabilities on the test period
    test, data_end = split.test, split.boundaries.test_start
    probabilities = _predictor(model)(test.features)

    # when grouping them by model age in 60-day windows
    curve = staleness_curve(test, probabilities, data_end, window_days=60, min_defaults=20)

    # then the windows run from age 0 to the last loan without gap or overlap
    ages = _ages(test, data_end)
    assert curve[0]["days_from"] == 0
    assert curve[-1]["days_to"] == ages.max() + 1
    for before, after in itertools.pairwise(curve):
        assert after["days_from"] == before["days_to"]
    # and each test loan falls in exactly one of them
    assert sum(w["loans"] for w in curve) == test.rows
    assert sum(w["defaults"] for w in curve) == int(test.labels.sum())
    judged = 0
    for window in curve:
        mask = (ages >= window["days_from"]) & (ages < window["days_to"])
        assert window["loans"] == int(mask.sum())
        # and the figures are those of the window's loans
        observed, predicted = test.labels[mask].mean(), probabilities[mask].mean()
        assert window["calibration_error"] == pytest.approx(predicted / observed - 1)
        if window["defaults"] < 20:
            assert window["auc"] is None
            assert "not judged" in window["note"]
            continue
        judged += 1
        auc = window["auc"]
        assert auc["estimate"] == pytest.approx(
            roc_auc_score(test.labels[mask], probabilities[mask]), abs=1e-6
        )
        assert auc["low"] <= auc["estimate"] <= auc["high"]
    assert judged >= 2
    json.dumps(curve)


def test_a_window_without_loans_is_reported_not_skipped(split, model):
    # given test loans none of which arrived between ages 30 and 59
    data_end = split.boundaries.test_start
    test = split.test
    ages = _ages(test, data_end)
    shifted = np.where((ages >= 30) & (ages < 60), ages + 30, ages)
    moved = replace(test, loan_dates=np.datetime64(data_end, "D") + shifted)
    probabilities = _predictor(model)(moved.features)

    curve = staleness_curve(moved, probabilities, data_end, window_days=30)

    assert curve[1]["days_from"] == 30
    assert curve[1]["loans"] == 0
    assert curve[1]["auc"] is None
    assert sum(w["loans"] for w in curve) == test.rows


def test_staleness_refuses_loans_from_before_the_end_of_the_data(split, model):
    probabilities = _predictor(model)(split.test.features)
    too_late = split.boundaries.test_start + timedelta(days=10)
    with pytest.raises(InvalidInputError, match="data_end"):
        staleness_curve(split.test, probabilities, too_late)


def _window(days_from: int, auc: float | None, *, days: int = 30) -> dict:
    return {
        "days_from": days_from,
        "days_to": days_from + days,
        "loans": 1000,
        "defaults": 40 if auc is not None else 5,
        "auc": None if auc is None else {"estimate": auc, "low": auc - 0.03, "high": auc + 0.03},
    }


def test_supported_age_ends_before_the_first_window_that_degrades():
    # given a curve that holds, skips an unjudged window, rises, then falls away
    curve = [
        _window(0, 0.80),
        _window(30, 0.79),
        _window(60, None),
        _window(90, 0.83),
        _window(120, 0.775),
        _window(150, 0.80),
    ]

    result = supported_model_age(curve, tolerance=0.02)

    # then the model held up to day 120, and the later recovery does not extend it
    assert result["supported_age_days"] == 120
    assert result["at_least"] is False
    assert result["reference_auc"] == 0.80
    assert result["floor_auc"] == pytest.approx(0.78)
    breach = result["first_breach"]
    assert (breach["days_from"], breach["days_to"], breach["auc"]) == (120, 150, 0.775)
    assert result["windows_judged"] == 5
    assert result["statement"].startswith("120 days")
    # and a fall whose interval still reaches the floor is said to be possibly noise
    assert breach["significant"] is False
    assert "may be sampling noise" in result["statement"]
    json.dumps(result)


def test_a_fall_beyond_its_interval_is_significant():
    curve = [_window(0, 0.80), _window(30, 0.79), _window(60, 0.70)]
    result = supported_model_age(curve, tolerance=0.02)
    assert result["supported_age_days"] == 60
    assert result["first_breach"]["significant"] is True
    assert "noise" not in result["statement"]


def test_a_curve_that_never_degrades_supports_at_least_the_test_period():
    curve = [_window(0, 0.80), _window(30, 0.795), _window(60, 0.81), _window(90, None)]

    result = supported_model_age(curve, tolerance=0.02)

    # then the answer is bounded by the judged part of the test period, and says so
    assert result["supported_age_days"] == 90
    assert result["at_least"] is True
    assert result["first_breach"] is None
    assert result["measured_days"] == 120
    assert result["statement"].startswith("at least 90 days")


def test_no_judged_window_is_no_evidence():
    result = supported_model_age([_window(0, None), _window(30, None)], tolerance=0.02)
    assert result["supported_age_days"] is None
    assert result["statement"].startswith("no evidence")
    assert supported_model_age([], tolerance=0.02)["supported_age_days"] is None
