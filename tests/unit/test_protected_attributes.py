"""No protected attribute is a model input: not as a feature, not in what serving
reads, not under a name that hides it."""

from __future__ import annotations

from credit_risk import schemas
from credit_risk.model.train import DEFAULT_MONOTONE


def test_protected_raw_columns_exist_in_the_raw_contract():
    # A renamed raw column would silently leave the list below guarding nothing.
    assert set(schemas.PROTECTED_RAW_COLUMNS) <= set(schemas.RAW_LOAN_COLUMN_NAMES)


def test_no_protected_attribute_is_a_model_feature_or_a_serving_column():
    protected = set(schemas.PROTECTED_RAW_COLUMNS)
    served = {name for name, _ in schemas.SNAPSHOT_COLUMNS}

    assert not protected & set(schemas.FEATURE_NAMES)
    # Serving has no use for them (the training data may carry them beside the
    # rows, for fairness checks only, never as inputs).
    assert not protected & served
    # Nor can a model be configured on one: the constraints name features only.
    assert set(DEFAULT_MONOTONE) == set(schemas.FEATURE_NAMES)


def test_no_feature_is_named_after_a_protected_attribute():
    # Catches a derived feature (e.g. "gender_flag", "is_married") added later.
    words = ("gender", "sex", "marital", "family_status", "married", "race", "religion")
    for feature in schemas.FEATURE_NAMES:
        assert not any(word in feature for word in words), feature
