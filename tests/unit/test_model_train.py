"""The trained model: reproducible, early-stopped, calibrated, and behaving like the
data-generating function (directional tests)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from credit_risk import schemas
from credit_risk.model import synthetic
from credit_risk.model.data import Split, join_truth, split_out_of_time, to_dataset
from credit_risk.model.package import ModelPackage
from credit_risk.model.train import Hyperparameters, TrainedModel, train_model

NAN = math.nan
# A customer in the middle of the population; each test moves one feature.
REFERENCE = {
    "age": 40,
    "years_on_the_job": 5,
    "nb_previous_loans": 4,
    "avg_amount_loans_previous": 25_000.0,
    "flag_own_car": 0,
}


@pytest.fixture(scope="module")
def split_and_truth() -> tuple[Split, np.ndarray]:
    table, truth = synthetic.training_features(150_000, seed=5)
    split = split_out_of_time(to_dataset(table))
    true_pd = join_truth(
        {"loan_id": truth["loan_id"].to_numpy(), "true_pd": truth["true_pd"].to_numpy()},
        split.test.loan_ids,
    )
    return split, true_pd


@pytest.fixture(scope="module")
def trained(split_and_truth) -> TrainedModel:
    split, _ = split_and_truth
    return train_model(split.train, split.validation, Hyperparameters())


@pytest.fixture(scope="module")
def package(trained) -> ModelPackage:
    metadata = {
        "model_name": "credit-risk",
        "version": "test",
        "feature_names": list(schemas.FEATURE_NAMES),
        "threshold": {"value": 0.09},
    }
    return ModelPackage.from_bytes(trained.model_bytes(), metadata)


def _risk(package: ModelPackage, **changes) -> float:
    return float(package.predict([{**REFERENCE, **changes}])[0])


def test_same_inputs_give_a_byte_identical_model_file(split_and_truth, trained):
    # given the same data and hyperparameters
    split, _ = split_and_truth

    # when training again
    again = train_model(split.train, split.validation, Hyperparameters())

    # then the model file is the same, byte for byte
    assert again.model_bytes() == trained.model_bytes()
    # and another seed gives another model (the seed is really used)
    other = train_model(split.train, split.validation, replace(Hyperparameters(), seed=7))
    assert other.model_bytes() != trained.model_bytes()


def test_early_stopping_keeps_the_trees_up_to_the_best_round(trained):
    assert trained.rounds_trained > trained.best_iteration + 1
    assert trained.booster.num_boosted_rounds() == trained.best_iteration + 1


def test_probabilities_are_calibrated_on_the_test_period(split_and_truth, package):
    # given the later test period, never seen in training
    split, true_pd = split_and_truth

    # when scoring it
    predicted = package.predict(split.test.features)

    # then the mean prediction is within 5% of the observed default rate
    assert predicted.mean() == pytest.approx(split.test.default_rate, rel=0.05)
    # and of the true mean default probability (the generator's truth, free of the
    # sampling noise of the observed rate)
    assert predicted.mean() == pytest.approx(true_pd.mean(), rel=0.05)
    # and nowhere near what class reweighting would give
    assert predicted.mean() < 2 * split.test.default_rate


def test_model_ranks_nearly_as_well_as_the_truth(split_and_truth, package):
    from sklearn.metrics import roc_auc_score

    split, true_pd = split_and_truth
    model_auc = roc_auc_score(split.test.labels, package.predict(split.test.features))
    oracle_auc = roc_auc_score(split.test.labels, true_pd)
    assert model_auc >= 0.97 * oracle_auc


@pytest.mark.parametrize(
    ("feature", "riskier", "safer"),
    [
        ("age", 22, 45),
        ("years_on_the_job", 0, 12),
        ("avg_amount_loans_previous", 80_000.0, 8_000.0),
        ("flag_own_car", 0, 1),
        ("nb_previous_loans", 60, 4),
    ],
)
def test_risk_moves_with_a_feature_as_the_generator_says(package, feature, riskier, safer):
    # given two customers alike but for one feature, then the riskier one scores higher
    assert _risk(package, **{feature: riskier}) > _risk(package, **{feature: safer})


def test_a_first_loan_is_riskier_than_a_short_history(package):
    first = _risk(package, nb_previous_loans=0, avg_amount_loans_previous=None)
    assert first > _risk(package, nb_previous_loans=3)


def test_missing_tenure_is_not_read_as_zero_years(package):
    # the generator gives the not employed (null tenure) less risk than someone
    # who started a job this year; a model that filled nulls with 0 could not tell
    not_employed = _risk(package, years_on_the_job=None)
    just_started = _risk(package, years_on_the_job=0)
    assert not_employed < just_started
    assert _risk(package, years_on_the_job=NAN) == not_employed
