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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import xgboost as xgb

from credit_risk import schemas
from credit_risk.model.data import Dataset

# Directions the lender expects and regulators ask to explain: a longer time in
# the current job never raises risk, a larger past borrowing never lowers it, a
# car (collateral, stability) never raises it. Age and the number of previous
# loans are left free: risk falls with age and rises again late in life, and a
# first loan is riskier than a short history but a very long one is riskier still.
DEFAULT_MONOTONE = {
    "age": 0,
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
