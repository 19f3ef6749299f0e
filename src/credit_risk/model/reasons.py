"""Reason codes: which features pushed a customer's risk up, in plain words.

XGBoost splits every prediction into per-feature contributions on the log-odds
scale (``pred_contribs``, TreeSHAP): the contributions plus the base value add up
to the model's margin, and ``sigmoid(margin)`` is the probability. The features
with the largest positive contributions are the reasons; their wording depends on
the value (no job at all reads differently from a short time in the job).

Serving imports this module: numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_TOP_K = 3
YOUNG_BELOW = 30
OLDER_FROM = 60

# Every code a model can return, with its wording; recorded in the metadata of
# each model version so that a decision can be explained after the fact.
REASON_TEXTS: dict[str, str] = {
    "YOUNG_AGE": "young applicant",
    "OLDER_AGE": "older applicant",
    "AGE": "age group with higher risk",
    "NOT_EMPLOYED": "not currently employed",
    "SHORT_JOB_TENURE": "short time in current job",
    "NO_CREDIT_HISTORY": "no previous loans",
    "MANY_PREVIOUS_LOANS": "many previous loans",
    "HIGH_PREVIOUS_AMOUNTS": "large average amount of previous loans",
    "NO_CAR": "does not own a car",
    "CAR": "car ownership",
    "MISSING_VALUE": "missing information",
}


@dataclass(frozen=True)
class Reason:
    code: str
    text: str
    feature: str
    value: float | None
    contribution: float  # log-odds added by this feature

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "text": self.text,
            "feature": self.feature,
            "value": self.value,
            "contribution": round(self.contribution, 6),
        }


def reason_code(feature: str, value: float) -> str:
    """The code for a feature that raised the risk, given its value (NaN = null)."""
    missing = math.isnan(value)
    if feature == "years_on_the_job":
        return "NOT_EMPLOYED" if missing else "SHORT_JOB_TENURE"
    if feature in ("nb_previous_loans", "avg_amount_loans_previous"):
        # A null average means no previous loan: the same story as a zero count.
        if missing or (feature == "nb_previous_loans" and value == 0):
            return "NO_CREDIT_HISTORY"
        return "MANY_PREVIOUS_LOANS" if feature == "nb_previous_loans" else "HIGH_PREVIOUS_AMOUNTS"
    if missing:
        return "MISSING_VALUE"
    if feature == "age":
        if value < YOUNG_BELOW:
            return "YOUNG_AGE"
        return "OLDER_AGE" if value >= OLDER_FROM else "AGE"
    if feature == "flag_own_car":
        return "NO_CAR" if value == 0 else "CAR"
    return feature.upper()


def top_reasons(
    contributions: np.ndarray,
    values: np.ndarray,
    feature_names: tuple[str, ...],
    top_k: int = DEFAULT_TOP_K,
) -> list[Reason]:
    """The (at most ``top_k``) features with the largest positive contributions of
    one row, one reason per code (two features telling the same story count once,
    with the larger contribution)."""
    reasons: list[Reason] = []
    seen: set[str] = set()
    for index in np.argsort(-contributions, kind="stable"):
        contribution = float(contributions[index])
        if contribution <= 0 or len(reasons) == top_k:
            break
        feature, value = feature_names[index], float(values[index])
        code = reason_code(feature, value)
        if code in seen:
            continue
        seen.add(code)
        reasons.append(
            Reason(
                code=code,
                text=REASON_TEXTS.get(code, feature.replace("_", " ")),
                feature=feature,
                value=None if math.isnan(value) else value,
                contribution=contribution,
            )
        )
    return reasons
