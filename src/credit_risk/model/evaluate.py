"""Measuring a model on a period: discrimination, calibration, slices, threshold.

Everything here works on arrays of predicted probabilities and labels, so the same
code measures the candidate, the baseline, the champion and the true
probabilities of the generator (the oracle) on the very same test rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score, roc_curve

from credit_risk import schemas
from credit_risk.model import stats
from credit_risk.model.data import Dataset
from credit_risk.model.groups import band_name

CALIBRATION_BINS = 10


def _auc(labels: np.ndarray, probabilities: np.ndarray) -> float | None:
    """AUC, or None when only one outcome is present (it is undefined there)."""
    if labels.min() == labels.max():
        return None
    return float(roc_auc_score(labels, probabilities))


def ks_statistic(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Kolmogorov-Smirnov: the largest gap between the score distributions of
    defaulters and repayers, i.e. max(TPR - FPR) over thresholds."""
    fpr, tpr, _ = roc_curve(labels, probabilities)
    return float(np.max(tpr - fpr))


def calibration_table(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS
) -> list[dict]:
    """Equal-count bins of predicted probability (deciles by default), each with
    its mean prediction and observed default rate."""
    order = np.argsort(probabilities, kind="stable")
    rows = []
    for index, part in enumerate(np.array_split(order, bins)):
        if len(part) == 0:
            continue
        rows.append(
            {
                "bin": index + 1,
                "loans": len(part),
                "min_predicted": float(probabilities[part].min()),
                "max_predicted": float(probabilities[part].max()),
                "mean_predicted": float(probabilities[part].mean()),
                "observed_rate": float(labels[part].mean()),
            }
        )
    return rows


def metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """The headline figures of one set of predictions.

    ``calibration_error`` is relative: mean prediction / observed rate - 1, the
    figure the acceptance criterion bounds (within ±5% on the test period).
    """
    labels = np.asarray(labels)
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-15, 1 - 1e-15)
    observed = float(labels.mean())
    predicted = float(probabilities.mean())
    two_outcomes = labels.min() != labels.max()
    auc = stats.auc_interval(labels, probabilities)
    calibration = stats.calibration_test(labels, probabilities)
    return {
        "loans": len(labels),
        "defaults": int(labels.sum()),
        # DeLong's AUC is the rank AUC itself: one pass gives the figure and its interval.
        "auc": auc.estimate if auc else None,
        # 95% intervals: what the figures above can tell on this many loans.
        "auc_interval": auc.to_dict() if auc else None,
        "calibration_test": calibration.to_dict(),
        "log_loss": float(log_loss(labels, probabilities, labels=[0, 1])),
        "brier": float(brier_score_loss(labels, probabilities)),
        "ks": ks_statistic(labels, probabilities) if two_outcomes else None,
        "mean_predicted": predicted,
        "observed_rate": observed,
        "calibration_error": (predicted / observed - 1.0) if observed > 0 else None,
    }


def slice_masks(data: Dataset) -> dict[str, np.ndarray]:
    """The segments the model must also work for, by name."""
    car = data.column("flag_own_car")
    age = data.column("age")
    masks = {"flag_own_car=1": car == 1, "flag_own_car=0": car == 0}
    for low, high in schemas.AGE_BANDS:
        masks[f"age {band_name(low, high)}"] = (age >= low) & (age < high)
    masks["no previous loans"] = data.column("nb_previous_loans") == 0
    return masks


def slice_metrics(data: Dataset, probabilities: np.ndarray) -> dict[str, dict]:
    result = {}
    for name, mask in slice_masks(data).items():
        if mask.any():
            result[name] = metrics(data.labels[mask], probabilities[mask])
    return result


@dataclass(frozen=True)
class ThresholdPolicy:
    """Decline when the expected loss of lending exceeds that of declining.

    With calibrated probabilities the cut-off follows from two costs, with no
    fitting: lending to a borrower who defaults loses ``cost_of_default`` (per unit
    lent), declining one who would have repaid forgoes ``cost_of_declined_good``.
    Decline when ``p · cost_of_default > (1 - p) · cost_of_declined_good``.
    """

    cost_of_default: float = 1.0
    cost_of_declined_good: float = 0.1

    @property
    def threshold(self) -> float:
        return self.cost_of_declined_good / (self.cost_of_declined_good + self.cost_of_default)

    def describe(self, labels: np.ndarray, probabilities: np.ndarray) -> dict:
        """The threshold, how it was chosen, and what it does on a period."""
        declined = probabilities >= self.threshold
        approved = ~declined
        return {
            "value": self.threshold,
            "method": "expected cost",
            "rule": (
                "decline when default_probability >= cost_of_declined_good / "
                "(cost_of_declined_good + cost_of_default)"
            ),
            "cost_of_default": self.cost_of_default,
            "cost_of_declined_good": self.cost_of_declined_good,
            "test_decline_rate": float(declined.mean()),
            "test_default_rate_approved": float(labels[approved].mean())
            if approved.any()
            else None,
            "test_defaults_declined_share": (
                float(labels[declined].sum() / labels.sum()) if labels.sum() else None
            ),
        }


def evaluate(
    test: Dataset,
    probabilities: np.ndarray,
    policy: ThresholdPolicy,
    true_pd: np.ndarray | None = None,
) -> dict:
    """Everything the model card, the metadata and the gate need about one model
    on the test period. ``true_pd`` (aligned with ``test``, NaN where unknown) adds
    the oracle AUC: the AUC of the true probabilities on the same rows."""
    report = {
        "test": metrics(test.labels, probabilities),
        "calibration_table": calibration_table(test.labels, probabilities),
        "slices": slice_metrics(test, probabilities),
        "threshold": policy.describe(test.labels, probabilities),
    }
    if true_pd is not None:
        report["oracle"] = oracle_report(test.labels, probabilities, true_pd)
    return report


def oracle_report(labels: np.ndarray, probabilities: np.ndarray, true_pd: np.ndarray) -> dict:
    known = ~np.isnan(true_pd)
    if not known.any():
        return {"coverage": 0.0, "auc": None, "model_auc": None, "ratio": None}
    oracle_auc = _auc(labels[known], true_pd[known])
    model_auc = _auc(labels[known], probabilities[known])
    ratio = model_auc / oracle_auc if oracle_auc and model_auc is not None else None
    return {
        "coverage": float(known.mean()),
        "auc": oracle_auc,
        "model_auc": model_auc,
        "ratio": ratio,
        "true_mean_pd": float(true_pd[known].mean()),
    }
