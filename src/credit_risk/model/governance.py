"""Evidence a model validator asks for beyond the headline metrics.

**Permutation importance.** How much the model relies on each feature: shuffle
one feature's column across the test loans (breaking its link with the outcome
and with the other features, its distribution unchanged), score again, and measure
how much the AUC falls and the log loss rises. Model-agnostic (it only needs a
``predict`` function) and measured out of time, on the test period.

**Model age and performance.** How fast the model goes stale: the test loans
grouped by the model's age when each loan arrived (days since the end of the
data it was fitted on), with the AUC of each window and its interval.
``supported_model_age`` reads off that curve the age up to which performance
held, the evidence behind the monitor's ``max_model_age_days``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from credit_risk import schemas
from credit_risk.errors import InvalidInputError
from credit_risk.model import stats
from credit_risk.model.data import Dataset

Predict = Callable[[np.ndarray], np.ndarray]

# Probabilities are clipped before the log loss, as in ``evaluate.metrics``.
_EPSILON = 1e-15


def _scores(labels: np.ndarray, probabilities: np.ndarray) -> tuple[float, float]:
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64), _EPSILON, 1 - _EPSILON)
    return (
        float(roc_auc_score(labels, probabilities)),
        float(log_loss(labels, probabilities, labels=[0, 1])),
    )


def permutation_importance(
    predict: Predict, test: Dataset, *, repeats: int = 3, seed: int = 0
) -> list[dict]:
    """Permutation importance of every feature of ``schemas.FEATURE_NAMES`` on ``test``.

    ``predict`` maps a float feature matrix (model order, NaN for missing) to
    default probabilities. Each feature's column is shuffled ``repeats`` times
    (one ``numpy`` Generator seeded with ``seed``, features in model order, so
    the figures are reproducible) and the test AUC and log loss measured again.
    Per feature: the mean and standard deviation over the repeats of the AUC drop
    (AUC of the model minus AUC shuffled) and of the log-loss increase (shuffled
    minus model); positive means the model uses the feature. Rows are sorted by
    AUC drop, largest first (ties keep model order), each with its ``rank``.
    """
    if repeats < 1:
        raise InvalidInputError(f"repeats={repeats} must be at least 1")
    labels = np.asarray(test.labels)
    if labels.min() == labels.max():
        raise InvalidInputError("permutation importance needs both outcomes in the test loans")
    base_auc, base_loss = _scores(labels, predict(test.features))
    rng = np.random.default_rng(seed)
    shuffled = np.array(test.features, dtype=np.float64, copy=True)
    rows = []
    for column, name in enumerate(schemas.FEATURE_NAMES):
        original = shuffled[:, column].copy()
        auc_drops, loss_increases = [], []
        for _ in range(repeats):
            shuffled[:, column] = rng.permutation(original)
            auc, loss = _scores(labels, predict(shuffled))
            auc_drops.append(base_auc - auc)
            loss_increases.append(loss - base_loss)
        shuffled[:, column] = original
        rows.append(
            {
                "feature": name,
                "auc_drop": float(np.mean(auc_drops)),
                "auc_drop_std": float(np.std(auc_drops)),
                "log_loss_increase": float(np.mean(loss_increases)),
                "log_loss_increase_std": float(np.std(loss_increases)),
                "repeats": repeats,
                "model_auc": base_auc,
                "model_log_loss": base_loss,
            }
        )
    rows.sort(key=lambda row: -row["auc_drop"])
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def _note_not_judged(defaults: int, min_defaults: int) -> str:
    return f"not judged: {defaults} defaults (at least {min_defaults} needed)"


def staleness_curve(
    test: Dataset,
    probabilities: np.ndarray,
    data_end: date,
    *,
    window_days: int = 30,
    min_defaults: int = 20,
    confidence: float = 0.95,
) -> list[dict]:
    """Performance of the model on ``test`` by the model's age when each loan arrived.

    The age of a loan is the days from ``data_end`` (the first day the model had
    no data for: the test period's start, ``SplitBoundaries.test_start``) to its
    loan date. Windows are half-open ``[days_from, days_to)`` of ``window_days``
    days from age 0 up to the last test loan (the last window is cut at the last
    loan's age + 1); together they hold every test loan exactly once, empty
    windows included so that the age axis has no gaps.

    Per window: loans, defaults, observed and mean predicted default rates, the
    relative calibration error (mean predicted / observed - 1, None without a
    default) and the AUC with its ``confidence`` interval
    (``stats.auc_interval``). A window with fewer than ``min_defaults`` defaults is
    reported with ``"auc": None`` and a note: its AUC is too noisy to judge by.

    The age counts from the end of the data, not from the model's training date:
    a model serves only after it is trained, so this age is never smaller than
    the age the monitor measures from ``created_at``, and a limit supported here
    is conservative there.
    """
    if window_days < 1:
        raise InvalidInputError(f"window_days={window_days} must be at least 1")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(probabilities) != test.rows:
        raise InvalidInputError(f"{len(probabilities)} probabilities for {test.rows} test loans")
    if test.rows == 0:
        return []
    ages = (test.loan_dates.astype("datetime64[D]") - np.datetime64(data_end, "D")).astype(np.int64)
    if ages.min() < 0:
        raise InvalidInputError(
            f"test loans dated before data_end {data_end.isoformat()}: data_end must be the "
            "first day of the test period"
        )
    labels = np.asarray(test.labels)
    last_age = int(ages.max())
    curve = []
    for days_from in range(0, last_age + 1, window_days):
        days_to = min(days_from + window_days, last_age + 1)
        mask = (ages >= days_from) & (ages < days_to)
        loans, defaults = int(mask.sum()), int(labels[mask].sum())
        observed = float(labels[mask].mean()) if loans else None
        predicted = float(probabilities[mask].mean()) if loans else None
        row: dict = {
            "days_from": days_from,
            "days_to": days_to,
            "loans": loans,
            "defaults": defaults,
            "observed_rate": observed,
            "mean_predicted": predicted,
            "calibration_error": (predicted / observed - 1.0) if observed else None,
            "auc": None,
            "judged": False,
        }
        if defaults < min_defaults:
            row["note"] = _note_not_judged(defaults, min_defaults)
        else:
            interval = stats.auc_interval(labels[mask], probabilities[mask], confidence)
            if interval is None:
                row["note"] = "not judged: every loan of the window defaulted"
            else:
                row["auc"] = interval.to_dict()
                row["judged"] = True
        curve.append(row)
    return curve


def supported_model_age(curve: list[dict], *, tolerance: float) -> dict:
    """The largest model age (days) the curve shows performance holding to.

    The reference is the first judged window (the youngest model). Walking the
    judged windows by age, performance holds while each window's AUC estimate is
    at least the reference AUC minus ``tolerance`` (a rise is no staleness); the
    supported age is the end (``days_to``, exclusive) of the last judged window
    before the first one that falls below: performance held for every model age
    under it. Windows not judged (too few defaults) neither
    break nor extend it.

    The test period's length bounds what this can show: if no window falls below,
    the model held for as long as it was measured and the answer is "at least N
    days" (``at_least`` true), N the end of the last judged window, not evidence
    that it holds beyond. A longer test period (or an older champion's later
    loans) is the only way to learn more. Without any judged window there is no
    evidence at all (``supported_age_days`` None).

    The comparison is of point estimates, each noisy (a window of a few dozen
    defaults has an AUC interval of about ±0.08), so a single unlucky window ends
    the supported age: conservative on purpose, since the question is how long
    the model is shown to hold. ``first_breach`` says whether the fall is also
    significant (the breaching window's whole interval under the floor); wider
    windows or more test loans make the curve less noisy.
    """
    if tolerance < 0:
        raise InvalidInputError(f"tolerance={tolerance} must not be negative")
    judged = [row for row in curve if row.get("auc") is not None]
    measured_days = max((row["days_to"] for row in curve), default=0)
    result: dict = {
        "tolerance": tolerance,
        "measured_days": measured_days,
        "windows": len(curve),
        "windows_judged": len(judged),
        "judged": [
            {"days_from": r["days_from"], "days_to": r["days_to"], "auc": r["auc"]["estimate"]}
            for r in judged
        ],
        "reference": None,
        "reference_auc": None,
        "floor_auc": None,
        "first_breach": None,
        "supported_age_days": None,
        "at_least": False,
    }
    if not judged:
        result["statement"] = (
            f"no evidence: no window of the {measured_days}-day test period has enough "
            "defaults to judge its AUC"
        )
        return result
    reference = judged[0]
    reference_auc = reference["auc"]["estimate"]
    floor = reference_auc - tolerance
    supported = reference["days_to"]
    breach = None
    for row in judged[1:]:
        if row["auc"]["estimate"] < floor:
            breach = row
            break
        supported = row["days_to"]
    result.update(
        reference={"days_from": reference["days_from"], "days_to": reference["days_to"]},
        reference_auc=reference_auc,
        floor_auc=floor,
        supported_age_days=supported,
        at_least=breach is None,
    )
    if breach is None:
        result["statement"] = (
            f"at least {supported} days: the AUC stayed within {tolerance:.3f} of "
            f"{reference_auc:.4f} in every judged window; the test period ends there, so "
            "it cannot show how much longer the model holds"
        )
    else:
        high = breach["auc"].get("high")
        # Below the floor even at the top of its interval: not the luck of the sample.
        significant = high is not None and high < floor
        result["first_breach"] = {
            "days_from": breach["days_from"],
            "days_to": breach["days_to"],
            "auc": breach["auc"]["estimate"],
            "low": breach["auc"].get("low"),
            "high": high,
            "significant": significant,
        }
        result["statement"] = (
            f"{supported} days: from day {breach['days_from']} the AUC "
            f"{breach['auc']['estimate']:.4f} falls more than {tolerance:.3f} below "
            f"{reference_auc:.4f}"
            + (
                ""
                if significant
                else " (its interval reaches the floor: the fall may be sampling noise, "
                "but it is no evidence that the model holds)"
            )
        )
    return result
