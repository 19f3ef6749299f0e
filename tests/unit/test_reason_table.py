"""The reviewed reason table and the rules of adverse-action reasons (Regulation B):
at most four, none about age for an elderly applicant, at least one for a decline."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from credit_risk import schemas
from credit_risk.datagen import default_probability
from credit_risk.model.data import Dataset
from credit_risk.model.package import ModelPackage
from credit_risk.model.reasons import (
    MAX_REASONS,
    REASON_TABLE,
    REASON_TABLE_VERSION,
    REASON_TEXTS,
    REASONS_BY_CODE,
    YOUNG_BELOW,
    reason_code,
    reason_table_document,
    top_reasons,
)
from credit_risk.model.train import DEFAULT_MONOTONE, Hyperparameters, train_model

NAMES = schemas.FEATURE_NAMES
AGE = NAMES.index("age")
ELDERLY = schemas.ELDERLY_AGE
# Every kind of value a feature takes: null, zero, young, middle-aged, elderly, large,
# and the age boundaries of the wording.
BOUNDARIES = (YOUNG_BELOW - 1, YOUNG_BELOW, ELDERLY - 1, ELDERLY)
EDGE_VALUES = (math.nan, 0, 1, 21, 45, 70, 90_000, *BOUNDARIES)

# What each table version says, fingerprinted: a change of a code, a statement or a
# coverage without a new REASON_TABLE_VERSION fails here.
FINGERPRINTS = {"2": "99c2cd93df2d8c65"}


def _fingerprint() -> str:
    content = [(r.code, r.statement, sorted(r.features)) for r in REASON_TABLE]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:16]


# --- the table -------------------------------------------------------------------
def test_every_code_has_a_statement_model_features_and_a_direction():
    codes = [reason.code for reason in REASON_TABLE]
    assert len(codes) == len(set(codes))
    for reason in REASON_TABLE:
        assert reason.code.isupper()
        assert reason.statement.strip()
        assert reason.direction.strip()
        assert reason.features
        assert set(reason.features) <= set(NAMES), reason.code
    # the code -> statement mapping earlier model metadata recorded
    assert {reason.code: reason.statement for reason in REASON_TABLE} == REASON_TEXTS


def test_every_code_reason_code_returns_is_in_the_table_and_covers_its_feature():
    returned = set()
    for feature in NAMES:
        for value in EDGE_VALUES:
            code = reason_code(feature, float(value))
            if code is None:
                # the one exclusion: age, for an elderly applicant
                assert (feature, value >= ELDERLY) == ("age", True)
                continue
            assert feature in REASONS_BY_CODE[code].features, (feature, value, code)
            returned.add(code)
    # and no code of the table is dead wording
    assert returned == set(REASONS_BY_CODE)


def test_age_reasons_do_not_speak_of_the_elderly():
    assert "OLDER_AGE" not in REASONS_BY_CODE
    for reason in REASON_TABLE:
        if "age" in reason.features:
            words = f"{reason.statement} {reason.direction}".lower()
            assert not any(w in words for w in ("older", "elderly", "senior", "retire"))
    assert reason_code("age", 20) == "YOUNG_AGE"
    assert reason_code("age", ELDERLY - 1) == "AGE"


def test_a_feature_without_a_reviewed_code_is_refused():
    with pytest.raises(ValueError, match="add it to REASON_TABLE"):
        reason_code("income", 1.0)


def test_the_table_version_changes_with_its_content():
    assert FINGERPRINTS.get(REASON_TABLE_VERSION) == _fingerprint(), (
        "the reason table changed: bump REASON_TABLE_VERSION and record its fingerprint"
    )


def test_the_table_document_for_model_metadata_is_json():
    document = json.loads(json.dumps(reason_table_document()))
    assert document["version"] == REASON_TABLE_VERSION
    assert document["method"]["max_reasons"] == MAX_REASONS == 4
    assert document["method"]["no_age_reason_from_age"] == ELDERLY
    assert "pred_contribs" in document["method"]["contributions"]
    assert [c["code"] for c in document["codes"]] == [r.code for r in REASON_TABLE]
    assert set(document["codes"][0]) == {"code", "statement", "features", "direction"}


# --- the rules, on hand-built contributions ----------------------------------------
def _row(**values: float) -> np.ndarray:
    base = {"age": 40, "years_on_the_job": 5, "nb_previous_loans": 3}
    base |= {"avg_amount_loans_previous": 9_000.0, "flag_own_car": 0}
    return np.array([{**base, **values}[name] for name in NAMES], dtype=float)


def test_an_elderly_decline_pushed_up_by_age_alone_gets_one_other_reason():
    # given a 70-year-old declined, where only age raised the score
    values = _row(age=70)
    contributions = np.array([0.9, -0.3, -0.2, -0.05, -0.4])
    # then the one reason is the other feature that did the least to lower the risk
    [reason] = top_reasons(contributions, values, NAMES, decline=True)
    assert (reason.feature, reason.code) == ("avg_amount_loans_previous", "HIGH_PREVIOUS_AMOUNTS")
    # and an approval needs none
    assert top_reasons(contributions, values, NAMES, decline=False) == []


def test_a_decline_below_the_base_value_still_gets_a_reason():
    contributions = np.array([-0.1, -0.3, -0.2, -0.05, -0.4])
    [reason] = top_reasons(contributions, _row(age=25), NAMES, decline=True)
    assert reason.code == "HIGH_PREVIOUS_AMOUNTS"


def test_at_most_four_reasons_one_per_code_in_order_of_contribution():
    values = _row(age=22, years_on_the_job=math.nan, nb_previous_loans=0)
    values[NAMES.index("avg_amount_loans_previous")] = math.nan
    contributions = np.array([0.5, 0.4, 0.3, 0.35, 0.2])
    reasons = top_reasons(contributions, values, NAMES, decline=True)
    assert [r.code for r in reasons] == ["YOUNG_AGE", "NOT_EMPLOYED", "NO_CREDIT_HISTORY", "NO_CAR"]
    assert reasons[2].feature == "avg_amount_loans_previous"
    assert reasons[1].value is None
    assert len(top_reasons(contributions, values, NAMES, 2, decline=True)) == 2
    with pytest.raises(ValueError, match="between 1 and 4"):
        top_reasons(contributions, values, NAMES, 5, decline=True)


# --- the rules, on a real model --------------------------------------------------
def _loans(rows: int, seed: int) -> Dataset:
    """Loans with the generator's default probability, elderly applicants included."""
    rng = np.random.default_rng(seed)
    age = np.floor(np.clip(rng.normal(45, 15, rows), 21, 85))
    employed = rng.random(rows) >= 0.17
    years = np.where(employed, np.minimum(np.floor(rng.exponential(6.0, rows)), age - 18), np.nan)
    loans = rng.negative_binomial(2, 2.0 / 21.0, rows).astype(float)
    amount = np.where(loans > 0, np.exp(rng.normal(np.log(25_000), 0.7, rows)), np.nan)
    car = (rng.random(rows) < 0.38).astype(float)
    income = np.exp(rng.normal(np.log(160_000), 0.5, rows))
    probability = default_probability(age, years, loans, amount, car, income)
    return Dataset(
        features=np.column_stack([age, years, loans, amount, car]),
        labels=(rng.random(rows) < probability).astype(np.int8),
        loan_ids=np.arange(rows, dtype=np.int64),
        loan_dates=np.full(rows, np.datetime64("2020-01-01", "D")),
    )


# Age non-increasing (today's models) and age free (models trained before, which
# learn the late-life rise of risk and so give the elderly positive age contributions).
@pytest.fixture(scope="module", params=[DEFAULT_MONOTONE["age"], 0], ids=["monotone", "age-free"])
def age_constraint(request) -> int:
    return request.param


@pytest.fixture(scope="module")
def package(age_constraint) -> ModelPackage:
    constraints = {**DEFAULT_MONOTONE, "age": age_constraint}
    params = Hyperparameters(monotone_constraints=constraints)
    trained = train_model(_loans(12_000, seed=1), _loans(4_000, seed=2), params)
    probabilities = trained.booster.inplace_predict(_loans(3_000, seed=3).features)
    # A threshold below the base rate: some declines are at or below the base value.
    metadata = {
        "model_name": "credit-risk",
        "version": "test",
        "feature_names": list(NAMES),
        "threshold": {"value": float(np.quantile(probabilities, 0.4))},
    }
    return ModelPackage(trained.booster, metadata)


def test_every_decline_of_a_real_model_gets_one_to_four_lawful_reasons(package):
    rows = _loans(3_000, seed=3).features
    contributions = package.contributions(rows)
    scores = package.score(rows)
    declines = {i for i, score in enumerate(scores) if score.decision == "decline"}
    elderly = rows[:, AGE] >= ELDERLY
    at_or_below_base = contributions[:, :-1].sum(axis=1) <= 0
    # the sample holds the hard cases
    decline_mask = np.isin(np.arange(len(rows)), list(declines))
    assert (elderly & decline_mask).sum() > 20
    assert (at_or_below_base & decline_mask).sum() > 20
    for i, score in enumerate(scores):
        codes = [reason.code for reason in score.reasons]
        assert (1 if i in declines else 0) <= len(codes) <= MAX_REASONS
        assert len(set(codes)) == len(codes)
        pushes = [reason.contribution for reason in score.reasons]
        assert pushes == sorted(pushes, reverse=True)
        for reason in score.reasons:
            index = NAMES.index(reason.feature)
            assert reason.contribution == pytest.approx(contributions[i, index])
            assert reason.text == REASON_TEXTS[reason.code]
            assert not (elderly[i] and reason.feature == "age")
        # a non-positive contribution only as a decline's single fallback reason
        if any(push <= 0 for push in pushes):
            assert i in declines
            assert len(codes) == 1


def test_the_elderly_rule_is_needed_for_models_free_in_age(package, age_constraint):
    # an age-free model pushes some elderly applicants up for their age: without the
    # rule they would read about it; a model non-increasing in age does not
    rows = _loans(3_000, seed=3).features
    elderly_age_push = package.contributions(rows)[rows[:, AGE] >= ELDERLY, AGE]
    assert (elderly_age_push > 0).any() == (age_constraint == 0)
