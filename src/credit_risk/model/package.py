"""The model as serving uses it: XGBoost's native file plus its metadata.

Loading never unpickles anything: the booster comes from ``model.ubj`` (UBJSON,
data only) and everything else from ``metadata.json``. This module imports only
numpy and xgboost, so the inference Lambda's cold start stays short; checking the
file's sha256 against the metadata is the registry's job before it builds a
package (``credit_risk.registry``).

Prediction is built for small batches (one customer, or a hundred): the rows
become one float matrix; ``predict`` uses ``inplace_predict`` (no DMatrix), and
``score`` takes the probability and the reason codes from one ``pred_contribs`` pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

from credit_risk.errors import CreditRiskError, InvalidInputError
from credit_risk.model.reasons import MAX_REASONS, Reason, top_reasons

# One thread: for a few rows, thread start-up costs more than it saves, and a
# Lambda has few vCPUs anyway.
SERVING_NTHREAD = 1

FeatureRows = np.ndarray | Sequence[Mapping[str, Any]]


class ModelOutputError(CreditRiskError):
    """The model gave a non-finite score for finite features."""

    def __init__(self, version: str) -> None:
        super().__init__(f"model {version} returned a non-finite score for finite features")


@dataclass(frozen=True)
class Score:
    default_probability: float
    decision: str  # "approve" | "decline"
    reasons: list[Reason]


class ModelPackage:
    """A trained model ready to score: probabilities, decisions and reasons."""

    def __init__(self, booster: xgb.Booster, metadata: Mapping[str, Any]) -> None:
        self._booster = booster
        self.metadata = dict(metadata)
        try:
            self.feature_names: tuple[str, ...] = tuple(metadata["feature_names"])
            self.threshold: float = float(metadata["threshold"]["value"])
            self.version: str = str(metadata["version"])
            self.model_name: str = str(metadata["model_name"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"model metadata is incomplete: {exc!r}") from exc
        if booster.num_features() != len(self.feature_names):
            raise InvalidInputError(
                f"the model file expects {booster.num_features()} features, the metadata "
                f"lists {len(self.feature_names)}"
            )

    @classmethod
    def from_bytes(cls, model_bytes: bytes, metadata: Mapping[str, Any]) -> ModelPackage:
        booster = xgb.Booster(params={"nthread": SERVING_NTHREAD})
        try:
            booster.load_model(bytearray(model_bytes))
        except xgb.core.XGBoostError as exc:
            raise InvalidInputError(f"not an XGBoost model file: {exc}") from exc
        booster.set_param({"nthread": SERVING_NTHREAD})
        return cls(booster, metadata)

    def to_matrix(self, rows: FeatureRows) -> np.ndarray:
        """Feature rows (mappings by feature name, None for null, or a float matrix
        in model order) as a float64 matrix with NaN for missing values."""
        if isinstance(rows, np.ndarray):
            matrix = rows.astype(np.float64, copy=False)
        elif len(rows) == 0:
            matrix = np.empty((0, len(self.feature_names)))
        else:
            try:
                matrix = np.array(
                    [[row[name] for name in self.feature_names] for row in rows],
                    dtype=np.float64,
                )
            except KeyError as exc:
                raise InvalidInputError(f"a feature row lacks {exc.args[0]!r}") from None
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(f"feature values must be numbers or null: {exc}") from None
        if matrix.ndim != 2 or matrix.shape[1] != len(self.feature_names):
            raise InvalidInputError(
                f"expected rows of {len(self.feature_names)} features "
                f"({', '.join(self.feature_names)}), got shape {matrix.shape}"
            )
        return matrix

    def margin(self, rows: FeatureRows) -> np.ndarray:
        """Log-odds of default, before the sigmoid."""
        matrix = self.to_matrix(rows)
        if len(matrix) == 0:
            return np.empty(0)
        margin = self._booster.inplace_predict(matrix, predict_type="margin", missing=np.nan)
        return self._finite(margin)

    def predict(self, rows: FeatureRows) -> np.ndarray:
        """Probabilities of default, one per row."""
        return 1.0 / (1.0 + np.exp(-self.margin(rows)))

    def contributions(self, rows: FeatureRows) -> np.ndarray:
        """Per-feature log-odds contributions; the last column is the base value.
        Each row sums to the row's margin."""
        matrix = self.to_matrix(rows)
        if len(matrix) == 0:
            return np.empty((0, len(self.feature_names) + 1))
        # One thread here too: building even a one-row DMatrix on the default
        # thread pool costs milliseconds when the CPU is shared.
        dmatrix = xgb.DMatrix(
            matrix,
            missing=np.nan,
            feature_names=list(self.feature_names),
            nthread=SERVING_NTHREAD,
        )
        return self._finite(self._booster.predict(dmatrix, pred_contribs=True))

    def _finite(self, values: np.ndarray) -> np.ndarray:
        """The model's output, refused when not finite. Inputs are finite by then
        (the store's rows are checked), so a NaN here is a broken model file; it
        must not pass as a score: ``NaN >= threshold`` is false, an approval."""
        if not np.isfinite(values).all():
            raise ModelOutputError(self.version)
        return values

    def reasons(self, rows: FeatureRows, top_k: int = MAX_REASONS) -> list[list[Reason]]:
        """For each row, the features that raised its risk the most, in words (a
        decline always has one; which reasons depends on the decision)."""
        return [score.reasons for score in self.score(rows, top_k)]

    def decide(self, probabilities: np.ndarray) -> list[str]:
        return ["decline" if p >= self.threshold else "approve" for p in probabilities]

    def score(self, rows: FeatureRows, top_k: int = MAX_REASONS) -> list[Score]:
        """Probability, decision and reasons per row."""
        matrix = self.to_matrix(rows)
        contributions = self.contributions(matrix)
        # The contributions add up to the margin: one pass over the trees gives both
        # the probability and the reasons.
        probabilities = 1.0 / (1.0 + np.exp(-contributions.sum(axis=1)))
        decisions = self.decide(probabilities)
        return [
            Score(
                default_probability=float(probabilities[i]),
                decision=decisions[i],
                reasons=top_reasons(
                    contributions[i, :-1],
                    matrix[i],
                    self.feature_names,
                    top_k,
                    decline=decisions[i] == "decline",
                ),
            )
            for i in range(len(matrix))
        ]
