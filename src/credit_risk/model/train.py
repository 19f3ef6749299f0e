"""Fitting the XGBoost classifier: reproducible, early-stopped, calibrated.

Reproducible means the same inputs give the same model file, byte for byte: the
``hist`` tree method with a fixed seed and a fixed thread count is deterministic,
and nothing time-dependent goes into the booster. The saved booster holds exactly
the trees up to the best validation round, so every reader (serving,
``pred_contribs``) sees the same model without an iteration range.

Probabilities are left as the log-loss objective gives them: no class reweighting,
which would inflate every probability by the reweighting factor (a model with a
mean prediction of 0.41 for a default rate of 0.012). The test-period calibration
check in ``credit_risk.model.evaluate`` and the gate hold the model to that.

Hyperparameters are chosen by a seeded random search (``search_hyperparameters``)
on the validation period alone; the test period stays unseen until evaluation.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import xgboost as xgb

from credit_risk import schemas
from credit_risk.errors import InvalidInputError
from credit_risk.model.data import Dataset

# Directions the lender expects and regulators ask to explain: a longer time in
# the current job never raises risk, a larger past borrowing never lowers it, a
# car (collateral, stability) never raises it. The number of previous loans is left
# free: a first loan is riskier than a short history, a very long one riskier still.
#
# Age never raises risk. Regulation B (12 CFR 1002.6(b)(2)(ii)) lets a scoring
# system use age only if an applicant of 62 or more is never given a less
# favourable value than the most favoured younger age class; a model free in age
# learns the rise of risk late in life that the data shows, which is exactly what
# the rule forbids. Non-increasing in age, every other feature held fixed (XGBoost
# enforces it on every tree), gives each elderly applicant at least the most
# favourable value of any younger age, by construction; ``credit_risk.model.fairness``
# verifies it on every run's test loans. The cost, the risk of the elderly held flat
# instead of rising, is measured in the model card.
DEFAULT_MONOTONE = {
    "age": -1,
    "years_on_the_job": -1,
    "nb_previous_loans": 0,
    "avg_amount_loans_previous": 1,
    "flag_own_car": -1,
}


@dataclass(frozen=True)
class Hyperparameters:
    max_depth: int = 4
    learning_rate: float = 0.1
    min_child_weight: float = 5.0
    subsample: float = 0.8
    reg_lambda: float = 1.0
    max_bin: int = 256
    num_boost_round: int = 1000
    early_stopping_rounds: int = 50
    seed: int = 42
    nthread: int = 2
    monotone_constraints: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MONOTONE))

    def to_dict(self) -> dict:
        return asdict(self)

    def xgb_params(self) -> dict:
        constraints = tuple(self.monotone_constraints.get(n, 0) for n in schemas.FEATURE_NAMES)
        return {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "lambda": self.reg_lambda,
            "max_bin": self.max_bin,
            "monotone_constraints": "(" + ",".join(str(c) for c in constraints) + ")",
            "seed": self.seed,
            "nthread": self.nthread,
        }


@dataclass(frozen=True)
class TrainedModel:
    booster: xgb.Booster
    best_iteration: int
    rounds_trained: int
    validation_logloss: float

    def model_bytes(self) -> bytes:
        """The booster in XGBoost's native UBJSON format, as the registry stores it."""
        return bytes(self.booster.save_raw(raw_format="ubj"))


def to_dmatrix(data: Dataset, nthread: int) -> xgb.DMatrix:
    return xgb.DMatrix(
        data.features,
        label=data.labels,
        missing=np.nan,
        feature_names=list(schemas.FEATURE_NAMES),
        nthread=nthread,
    )


def train_model(train: Dataset, validation: Dataset, params: Hyperparameters) -> TrainedModel:
    """Fits on ``train``, stops when the validation log loss has not improved for
    ``early_stopping_rounds`` rounds, and keeps the trees up to the best round."""
    dtrain = to_dmatrix(train, params.nthread)
    dvalid = to_dmatrix(validation, params.nthread)
    history: dict = {}
    booster = xgb.train(
        params.xgb_params(),
        dtrain,
        num_boost_round=params.num_boost_round,
        evals=[(dvalid, "validation")],
        early_stopping_rounds=params.early_stopping_rounds,
        evals_result=history,
        verbose_eval=False,
    )
    best = int(booster.best_iteration)
    rounds = booster.num_boosted_rounds()
    kept = booster[: best + 1]
    # Slicing keeps the trees but not the training attributes; the file then
    # depends on the trees and the configuration alone.
    return TrainedModel(
        booster=kept,
        best_iteration=best,
        rounds_trained=rounds,
        validation_logloss=float(history["validation"]["logloss"][best]),
    )


# --- hyperparameter search ------------------------------------------------------

# The space the random search draws from: a few values per setting around the
# defaults, wide enough to move the model (shallow to deep trees, slow to fast
# learning, light to strong regularisation), small enough to be listed here in
# full. Everything else (monotone constraints, seed, threads, bins, rounds, early
# stopping) comes from the base hyperparameters unchanged.
SEARCH_SPACE: dict[str, tuple[float, ...]] = {
    "max_depth": (2, 3, 4, 5, 6),
    "learning_rate": (0.03, 0.05, 0.1, 0.2),
    "min_child_weight": (1.0, 5.0, 20.0, 50.0),
    "subsample": (0.6, 0.8, 1.0),
    "reg_lambda": (0.5, 1.0, 5.0, 20.0),
}
SEARCH_CRITERION = "lowest validation log loss at the best round (ties: the earlier trial)"


@dataclass(frozen=True)
class SearchConfig:
    """How many trials the search runs (the base hyperparameters included: 1 means
    no search) and the seed of the draws."""

    trials: int = 8
    seed: int = 7

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise InvalidInputError(f"trials={self.trials} must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SearchResult:
    """The chosen model and hyperparameters, and every trial with its figures."""

    model: TrainedModel
    hyperparameters: Hyperparameters
    trials: list[dict]
    chosen: int
    seed: int

    def to_dict(self) -> dict:
        """The ``hyperparameter_search`` entry of the metadata (JSON-able)."""
        return {
            "seed": self.seed,
            "method": "random search",
            "criterion": SEARCH_CRITERION,
            "space": {name: list(values) for name, values in SEARCH_SPACE.items()},
            "trials": self.trials,
            "chosen": self.chosen,
        }


def _searched(params: Hyperparameters) -> dict:
    return {name: getattr(params, name) for name in SEARCH_SPACE}


def _candidates(base: Hyperparameters, count: int, seed: int) -> list[Hyperparameters]:
    """``base`` then up to ``count - 1`` distinct points of the space, drawn without
    replacement in an order fixed by ``seed`` (the base point itself is skipped)."""
    grid = list(itertools.product(*SEARCH_SPACE.values()))
    order = np.random.default_rng(seed).permutation(len(grid))
    base_point = tuple(_searched(base).values())
    candidates = [base]
    for index in order:
        if len(candidates) == count:
            break
        point = grid[int(index)]
        if point == base_point:
            continue
        values = dict(zip(SEARCH_SPACE, point, strict=True))
        values["max_depth"] = int(values["max_depth"])
        candidates.append(replace(base, **values))
    return candidates


def search_hyperparameters(
    train: Dataset,
    validation: Dataset,
    base: Hyperparameters,
    *,
    trials: int,
    seed: int,
) -> SearchResult:
    """Seeded random search over ``SEARCH_SPACE``; ``base`` is always trial 0.

    Each trial is fitted with ``train_model`` on ``train`` (early-stopped on
    ``validation``) and scored by its validation log loss at the best round; the
    lowest wins, the earlier trial on a tie. Only the training and validation
    periods are used: the test period plays no part in the choice, so its
    figures stay an out-of-time measurement of the chosen model. (The validation
    period also stops each trial early, so the chosen trial's validation loss is
    optimistic; the test figures are not.)

    Deterministic: the same data, base and ``seed`` draw the same trials and give a
    byte-identical chosen model. ``trials=1`` is no search: the base alone.
    """
    return search_with(
        lambda params: train_model(train, validation, params), base, trials=trials, seed=seed
    )


def search_with(
    fit: Callable[[Hyperparameters], TrainedModel],
    base: Hyperparameters,
    *,
    trials: int,
    seed: int,
) -> SearchResult:
    """The search with any fit (one machine, or Spark: ``credit_risk.model.engine``):
    the same candidates in the same order, the same criterion, the same records."""
    if trials < 1:
        raise InvalidInputError(f"trials={trials} must be at least 1")
    records: list[dict] = []
    best: tuple[int, Hyperparameters, TrainedModel] | None = None
    for index, params in enumerate(_candidates(base, trials, seed)):
        model = fit(params)
        records.append(
            {
                "trial": index,
                "parameters": _searched(params),
                "validation_log_loss": model.validation_logloss,
                "best_iteration": model.best_iteration,
                "rounds_trained": model.rounds_trained,
            }
        )
        # Strictly lower: on a tie the earlier trial (the base first) stays.
        if best is None or model.validation_logloss < best[2].validation_logloss:
            best = (index, params, model)
    assert best is not None  # the base trial always runs
    chosen, chosen_params, best_model = best
    return SearchResult(
        model=best_model,
        hyperparameters=chosen_params,
        trials=records,
        chosen=chosen,
        seed=seed,
    )
