"""The serving package: predictions, reason codes and what it refuses."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from credit_risk import schemas
from credit_risk.errors import InvalidInputError
from credit_risk.model import synthetic
from credit_risk.model.data import split_out_of_time, to_dataset
from credit_risk.model.package import ModelOutputError, ModelPackage
from credit_risk.model.reasons import REASON_TEXTS, reason_code, top_reasons
from credit_risk.model.train import Hyperparameters, train_model

METADATA = {
    "model_name": "credit-risk",
    "version": "20240101T000000Z-abcdef12",
    "feature_names": list(schemas.FEATURE_NAMES),
    "threshold": {"value": 0.02},
}
RISKY = {
    "age": 21,
    "years_on_the_job": None,
    "nb_previous_loans": 0,
    "avg_amount_loans_previous": None,
    "flag_own_car": 0,
}
SAFE = {
    "age": 45,
    "years_on_the_job": 15,
    "nb_previous_loans": 3,
    "avg_amount_loans_previous": 9_000.0,
    "flag_own_car": 1,
}


@pytest.fixture(scope="module")
def package() -> ModelPackage:
    table, _ = synthetic.training_features(60_000, seed=3)
    split = split_out_of_time(to_dataset(table))
    trained = train_model(split.train, split.validation, Hyperparameters())
    return ModelPackage.from_bytes(trained.model_bytes(), METADATA)


@pytest.fixture(scope="module")
def sample_rows() -> np.ndarray:
    table, _ = synthetic.training_features(500, seed=99)
    return to_dataset(table).features


def test_contributions_plus_base_value_sum_to_the_margin(package, sample_rows):
    # when splitting predictions into per-feature contributions
    contributions = package.contributions(sample_rows)

    # then each row's contributions and base value (last column) add up to its margin
    assert contributions.shape == (len(sample_rows), len(schemas.FEATURE_NAMES) + 1)
    margin = package.margin(sample_rows)
    np.testing.assert_allclose(contributions.sum(axis=1), margin, atol=1e-4)
    # and the margin is the log-odds of the predicted probability
    probability = package.predict(sample_rows)
    np.testing.assert_allclose(np.log(probability / (1 - probability)), margin, atol=1e-5)


def test_reasons_are_the_features_that_raised_the_risk_in_words(package):
    # given a young first-time borrower, not employed, without a car
    [reasons] = package.reasons([RISKY])

    # then the reasons say so, strongest first, each with a positive contribution
    codes = [reason.code for reason in reasons]
    assert 1 <= len(codes) <= 4
    assert set(codes) <= {"YOUNG_AGE", "NO_CREDIT_HISTORY", "NO_CAR", "NOT_EMPLOYED"}
    contributions = [reason.contribution for reason in reasons]
    assert all(c > 0 for c in contributions)
    assert contributions == sorted(contributions, reverse=True)
    assert all(reason.text == REASON_TEXTS[reason.code] for reason in reasons)


def test_score_gives_probability_decision_and_reasons(package):
    risky, safe = package.score([RISKY, SAFE])
    assert risky.default_probability > safe.default_probability
    assert risky.decision == "decline"
    assert safe.decision == "approve"
    assert risky.default_probability == pytest.approx(package.predict([RISKY])[0])
    assert risky.reasons[0].to_dict()["code"] == risky.reasons[0].code


def test_mapping_rows_and_matrix_rows_give_the_same_probabilities(package):
    matrix = np.array(
        [[row[name] for name in schemas.FEATURE_NAMES] for row in (RISKY, SAFE)], dtype=float
    )
    np.testing.assert_array_equal(package.predict([RISKY, SAFE]), package.predict(matrix))
    assert package.predict([]).shape == (0,)
    assert package.reasons([]) == []


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"age": 30}], "lacks 'years_on_the_job'"),
        ([{**SAFE, "age": "old"}], "must be numbers or null"),
        (np.zeros((2, 4)), "expected rows of 5 features"),
    ],
)
def test_bad_feature_rows_are_clear_errors(package, rows, message):
    with pytest.raises(InvalidInputError, match=message):
        package.predict(rows)


def test_a_model_giving_nan_for_finite_features_scores_no_one(package):
    # given the model file with one tree's leaves broken to NaN (a corrupt file)
    document = json.loads(bytes(package._booster.save_raw(raw_format="json")))
    tree = document["learner"]["gradient_booster"]["model"]["trees"][0]
    tree["split_conditions"] = [
        math.nan if left == -1 else value
        for value, left in zip(tree["split_conditions"], tree["left_children"], strict=True)
    ]
    broken = ModelPackage.from_bytes(json.dumps(document).encode(), METADATA)

    # then no probability comes out: NaN >= threshold would have read as an approval
    for call in (broken.predict, broken.score):
        with pytest.raises(ModelOutputError, match="non-finite score"):
            call([SAFE])


def test_package_refuses_incomplete_metadata_and_non_model_bytes(package):
    with pytest.raises(InvalidInputError, match="metadata is incomplete"):
        ModelPackage.from_bytes(bytes(package._booster.save_raw("ubj")), {"version": "x"})
    with pytest.raises(InvalidInputError, match="not an XGBoost model file"):
        ModelPackage.from_bytes(b"\x80\x04pickle?", METADATA)
    assert package.threshold == 0.02
    assert package.version == METADATA["version"]
    assert package.feature_names == schemas.FEATURE_NAMES


@pytest.mark.parametrize(
    ("feature", "value", "code"),
    [
        ("years_on_the_job", math.nan, "NOT_EMPLOYED"),
        ("years_on_the_job", 1, "SHORT_JOB_TENURE"),
        ("nb_previous_loans", 0, "NO_CREDIT_HISTORY"),
        ("avg_amount_loans_previous", math.nan, "NO_CREDIT_HISTORY"),
        ("nb_previous_loans", 40, "MANY_PREVIOUS_LOANS"),
        ("avg_amount_loans_previous", 90_000, "HIGH_PREVIOUS_AMOUNTS"),
        ("age", 22, "YOUNG_AGE"),
        ("age", 45, "AGE"),
        ("flag_own_car", 0, "NO_CAR"),
    ],
)
def test_wording_depends_on_the_value(feature, value, code):
    assert reason_code(feature, value) == code
    assert code in REASON_TEXTS


def test_age_is_no_reason_for_an_elderly_applicant():
    # Regulation B: no negative factor for the age of an applicant of 62 or more
    assert reason_code("age", schemas.ELDERLY_AGE) is None
    assert reason_code("age", 68) is None


def test_two_features_telling_the_same_story_give_one_reason():
    # given a first loan: both the count and the null average raise the risk
    names = schemas.FEATURE_NAMES
    values = np.array([40, 5, 0, np.nan, 1])
    contributions = np.array([-0.1, -0.2, 0.5, 0.3, 0.2])
    reasons = top_reasons(contributions, values, names, top_k=3, decline=True)
    assert [r.code for r in reasons] == ["NO_CREDIT_HISTORY", "CAR"]
    assert reasons[0].feature == "nb_previous_loans"


def test_the_serving_path_imports_neither_training_libraries_nor_pickles():
    # when a fresh interpreter imports what the inference Lambda imports (xgboost
    # itself imports scikit-learn when it is installed, as here; the inference image
    # does not install it)
    code = (
        "import sys, credit_risk.registry, credit_risk.model.package;"
        "heavy = {'matplotlib', 'credit_risk.model.train', 'credit_risk.model.card',"
        " 'credit_risk.model.evaluate', 'credit_risk.model.baseline', 'pyspark'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    # then none of the training-side modules came along
    assert output.strip() == "[]"
