"""The choice of training engine, one function for the local runner and (by the
same comparison) the state machine, and the search shared by both engines."""

from __future__ import annotations

import pytest

from credit_risk import names
from credit_risk.errors import InvalidInputError
from credit_risk.model import engine, train
from credit_risk.model.train import Hyperparameters, TrainedModel, _candidates


@pytest.mark.parametrize(
    ("rows", "threshold", "expected"),
    [
        (999, 1000, names.TRAINING_ENGINE_SINGLE),
        (1000, 1000, names.TRAINING_ENGINE_SPARK),  # from the threshold on, inclusive
        (10**9, 1000, names.TRAINING_ENGINE_SPARK),
        (0, 1, names.TRAINING_ENGINE_SINGLE),
        (10**9, None, names.TRAINING_ENGINE_SINGLE),  # no threshold: never distributed
    ],
)
def test_the_engine_follows_the_training_rows_against_the_threshold(rows, threshold, expected):
    assert engine.choose_engine(rows, threshold) == expected


@pytest.mark.parametrize(("rows", "threshold"), [(-1, 10), (10, 0)])
def test_a_nonsensical_count_or_threshold_is_refused(rows, threshold):
    with pytest.raises(InvalidInputError):
        engine.choose_engine(rows, threshold)


def test_an_unknown_engine_is_refused():
    with pytest.raises(InvalidInputError, match="unknown training engine"):
        engine.check_engine("lightgbm")


def test_the_search_with_another_fit_tries_the_same_candidates_and_keeps_the_best():
    # given a fit whose validation loss we choose per trial
    base = Hyperparameters()
    losses = iter([0.30, 0.20, 0.20, 0.25])
    tried = []

    def fit(params: Hyperparameters) -> TrainedModel:
        tried.append(params)
        return TrainedModel(
            booster=None, best_iteration=3, rounds_trained=9, validation_logloss=next(losses)
        )

    # when searching four trials
    result = train.search_with(fit, base, trials=4, seed=7)

    # then the candidates are the single engine's, and the first lowest loss wins
    assert tried == _candidates(base, 4, 7)
    assert result.chosen == 1
    assert [t["validation_log_loss"] for t in result.trials] == [0.30, 0.20, 0.20, 0.25]


def test_the_single_engine_records_no_spark_version():
    assert set(engine.framework(names.TRAINING_ENGINE_SINGLE)) == {"xgboost"}


def test_the_local_runner_chooses_as_dev_does():
    import json
    from pathlib import Path

    from credit_risk.pipeline import PipelineRun

    context = json.loads((Path(__file__).parents[2] / "cdk.json").read_text())["context"]
    dev = context["dev"]["training"]["distributed_from_rows"]
    assert dev == names.DEFAULT_DISTRIBUTED_FROM_ROWS
    assert PipelineRun.__dataclass_fields__["distributed_from_rows"].default == dev
