"""Sampling uncertainty for the figures the gate judges a model by.

A test period is one sample of loans. An AUC of 0.751 against a champion's 0.748,
or a mean prediction 3% above the observed default rate, may be nothing but the
luck of that sample. Every estimate here therefore comes with an interval (and a
standard error where one is defined), so the gate can tell a real difference from
noise and the model card can say how precise each figure is.

Only numpy and the standard library are used (``statistics.NormalDist`` for the
normal quantiles), so the inference image and the release tooling can import this
module without scikit-learn or scipy.

Conventions: labels are 0/1 (1 = default) and a higher score means a higher risk,
as everywhere in ``credit_risk.model``. Intervals are two-sided; ``confidence`` is
their nominal coverage (0.95 for a 95% interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

_STANDARD_NORMAL = NormalDist()


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided confidence interval.

    ``se`` is the standard error of ``estimate`` on its own scale, or None when
    it cannot be estimated. The interval need not be ``estimate ± z·se``: it may be
    clipped to the possible range or built on another scale (log, Wilson).
    """

    estimate: float
    low: float
    high: float
    confidence: float
    se: float | None = None

    def to_dict(self) -> dict:
        """Plain floats rounded to 6 decimals, ready for JSON. A non-finite bound
        (an unbounded interval) becomes None, which strict JSON can carry."""
        return {
            "estimate": _plain(self.estimate),
            "low": _plain(self.low),
            "high": _plain(self.high),
            "confidence": _plain(self.confidence),
            "se": _plain(self.se),
        }

    def describe(self, digits: int = 4) -> str:
        """For example ``0.7512 (95% CI 0.7401 to 0.7623)``."""
        level = f"{round(self.confidence * 100, 4):g}%"
        return (
            f"{self.estimate:.{digits}f} "
            f"({level} CI {self.low:.{digits}f} to {self.high:.{digits}f})"
        )


def _plain(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 6)


def z_value(confidence: float) -> float:
    """The two-sided normal critical value: 0.95 gives 1.959964."""
    # `not (0 < c < 1)` also refuses NaN, which every comparison fails.
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    return _STANDARD_NORMAL.inv_cdf(0.5 + confidence / 2.0)


# --- Input checks --------------------------------------------------------------------


def _as_labels(labels: ArrayLike) -> np.ndarray:
    """A boolean vector (True = default); anything but 0/1 is refused rather than
    silently thresholded, since a 2 or a -1 means the caller passed the wrong column."""
    values = np.asarray(labels)
    if values.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {values.shape}")
    if values.dtype == np.bool_:
        return values
    if not np.all((values == 0) | (values == 1)):
        raise ValueError("labels must be 0 or 1")
    return values == 1


def _as_scores(scores: ArrayLike, size: int, name: str) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    if values.shape != (size,):
        raise ValueError(f"{name} has shape {values.shape}, the labels have ({size},)")
    # A NaN has no place in a ranking: sorting would put it last, silently.
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite")
    return values


# --- AUC: DeLong (1988), computed the fast way of Sun & Xu (2014) ----------------------


def _sorted_midranks(ordered: np.ndarray) -> np.ndarray:
    """1-based ranks of an ascending array, tied values sharing the mean of their
    ranks (mid-ranks): a tie between a default and a repayer then counts 1/2."""
    size = len(ordered)
    if size == 0:
        return np.empty(0)
    starts_group = np.empty(size, dtype=bool)
    starts_group[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts_group[1:])
    starts = np.flatnonzero(starts_group)
    ends = np.append(starts[1:], size)  # exclusive, 0-based
    # Ranks start+1 .. end, whose mean is (start + 1 + end) / 2.
    group_rank = (starts + 1 + ends) / 2.0
    return group_rank[np.cumsum(starts_group) - 1]


def _structural_components(
    defaulted: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's placement values, in the original row order of each class.

    ``v10[i]``: share of repayers that default ``i`` outranks (ties count 1/2).
    ``v01[j]``: share of defaults that outrank repayer ``j``.
    Both average to the AUC; their spread gives its variance. One sort suffices:
    within the sorted scores each class is already sorted, so its own mid-ranks
    need no second sort, and a default's rank among everybody less its rank among
    the defaults is the count of repayers below it.
    """
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    is_default = defaulted[order]
    defaults = int(is_default.sum())
    repayers = len(scores) - defaults

    rank_all = _sorted_midranks(ordered)
    placement = np.empty(len(scores))
    placement[is_default] = (
        rank_all[is_default] - _sorted_midranks(ordered[is_default])
    ) / repayers
    placement[~is_default] = (
        1.0 - (rank_all[~is_default] - _sorted_midranks(ordered[~is_default])) / defaults
    )
    # Back to row order, so that two models' components pair up row by row.
    in_rows = np.empty_like(placement)
    in_rows[order] = placement
    return in_rows[defaulted], in_rows[~defaulted]


def _two_outcomes(defaulted: np.ndarray) -> bool:
    return bool(defaulted.any()) and not bool(defaulted.all())


def _variance_of_mean(v10: np.ndarray, v01: np.ndarray) -> float | None:
    """DeLong's variance S10/m + S01/n; None with a single default or a single
    repayer, where a sample variance of one value does not exist."""
    if len(v10) < 2 or len(v01) < 2:
        return None
    return float(np.var(v10, ddof=1) / len(v10) + np.var(v01, ddof=1) / len(v01))


def _wald(
    estimate: float, variance: float | None, confidence: float, bounds: tuple[float, float]
) -> Interval:
    """estimate ± z·se, clipped to the values the quantity can take. Without a
    variance the honest interval is the whole range."""
    if variance is None:
        return Interval(estimate, bounds[0], bounds[1], confidence, None)
    se = math.sqrt(max(variance, 0.0))
    half = z_value(confidence) * se
    low = max(bounds[0], estimate - half)
    high = min(bounds[1], estimate + half)
    return Interval(estimate, low, high, confidence, se)


def auc_interval(labels: ArrayLike, scores: ArrayLike, confidence: float = 0.95) -> Interval | None:
    """The AUC with its DeLong standard error and Wald interval (clipped to [0, 1]).

    None when only one outcome is present: the AUC is undefined there. With a
    single default or a single repayer the variance cannot be estimated and the
    interval is [0, 1] with ``se`` None. O(n log n): one sort of the scores.
    """
    z_value(confidence)  # refuse a bad confidence before any work
    defaulted = _as_labels(labels)
    values = _as_scores(scores, len(defaulted), "scores")
    if not _two_outcomes(defaulted):
        return None
    v10, v01 = _structural_components(defaulted, values)
    return _wald(float(v10.mean()), _variance_of_mean(v10, v01), confidence, (0.0, 1.0))


def paired_auc_difference(
    labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike, confidence: float = 0.95
) -> Interval | None:
    """AUC(a) - AUC(b) measured on the same rows, with DeLong's paired variance.

    Two models scored on the same loans make correlated errors; treating their AUCs
    as independent overstates the noise in the difference. The variance
    ``var_a + var_b - 2·cov_ab`` is computed as the variance of the row-wise
    differences of the placement values, which is the same quantity but cannot come
    out negative and is exactly 0 for identical scores. The interval is clipped to
    [-1, 1]; None when only one outcome is present.
    """
    z_value(confidence)
    defaulted = _as_labels(labels)
    a = _as_scores(scores_a, len(defaulted), "scores_a")
    b = _as_scores(scores_b, len(defaulted), "scores_b")
    if not _two_outcomes(defaulted):
        return None
    v10_a, v01_a = _structural_components(defaulted, a)
    v10_b, v01_b = _structural_components(defaulted, b)
    estimate = float(v10_a.mean()) - float(v10_b.mean())
    variance = _variance_of_mean(v10_a - v10_b, v01_a - v01_b)
    return _wald(estimate, variance, confidence, (-1.0, 1.0))


# --- Calibration in the large ----------------------------------------------------------


@dataclass(frozen=True)
class CalibrationTest:
    """Observed defaults against the sum of predicted probabilities.

    If the model is calibrated, each loan defaults with its predicted probability,
    so the count of defaults O has mean E = Σp and variance V = Σp(1-p) and, on a
    test period of thousands of loans, is close to normal: ``z = (O - E) / √V``.
    """

    defaults: int
    expected: float
    z: float
    p_value: float
    relative_error: Interval | None

    def to_dict(self) -> dict:
        error = self.relative_error
        return {
            "defaults": self.defaults,
            "expected": _plain(self.expected),
            "z": _plain(self.z),
            # Significant digits, not decimals: a p-value of 3e-9 is not 0.
            "p_value": float(f"{self.p_value:.6g}"),
            "relative_error": None if error is None else error.to_dict(),
        }


def calibration_test(
    labels: ArrayLike, probabilities: ArrayLike, confidence: float = 0.95
) -> CalibrationTest:
    """Is the mean prediction consistent with the observed default rate?

    ``relative_error`` is E / O - 1, the figure the gate bounds (mean predicted /
    observed rate - 1). Its interval comes from the uncertainty of the observed
    count: O ± z·√V put in the denominator. When the lower count O - z·√V is not
    positive the upper bound is +inf: too few defaults to bound the error above.
    None when there are no defaults (the ratio is undefined).
    """
    critical = z_value(confidence)
    defaulted = _as_labels(labels)
    p = _as_scores(probabilities, len(defaulted), "probabilities")
    if np.any((p < 0.0) | (p > 1.0)):
        raise ValueError("probabilities must lie in [0, 1]")

    observed = int(defaulted.sum())
    expected = float(p.sum())
    variance = float(np.sum(p * (1.0 - p)))
    z = _z_statistic(observed - expected, variance)
    p_value = 2.0 * _STANDARD_NORMAL.cdf(-abs(z))
    return CalibrationTest(
        defaults=observed,
        expected=expected,
        z=z,
        p_value=p_value,
        relative_error=_relative_error(observed, expected, variance, confidence, critical),
    )


def _z_statistic(difference: float, variance: float) -> float:
    # Zero variance means every prediction is 0 or 1: then any miss is certain proof.
    if variance > 0.0:
        return difference / math.sqrt(variance)
    if difference == 0.0:
        return 0.0
    return math.copysign(math.inf, difference)


def _relative_error(
    observed: int, expected: float, variance: float, confidence: float, critical: float
) -> Interval | None:
    if observed == 0:
        return None
    spread = critical * math.sqrt(variance)
    low_count, high_count = observed - spread, observed + spread
    # More defaults than observed means a smaller E / O: the high count gives the low bound.
    low = expected / high_count - 1.0
    high = expected / low_count - 1.0 if low_count > 0.0 else math.inf
    # Delta method: d(E/O)/dO = -E/O², with sd(O) = √V.
    se = expected * math.sqrt(variance) / observed**2
    return Interval(expected / observed - 1.0, low, high, confidence, se)


# --- Proportions -------------------------------------------------------------------------


def _check_counts(successes: int, trials: int) -> None:
    if not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")


def proportion_interval(successes: int, trials: int, confidence: float = 0.95) -> Interval | None:
    """A proportion with its Wilson score interval; None when there are no trials.

    Wilson rather than estimate ± z·se: it stays inside [0, 1] and keeps its
    coverage for rare events (a default rate of 2%, or 0 of 10) where the Wald
    interval collapses to a point. ``se`` is the usual √(p(1-p)/n).
    """
    critical = z_value(confidence)
    _check_counts(successes, trials)
    if trials == 0:
        return None
    share = successes / trials
    z2_n = critical * critical / trials
    centre = (share + z2_n / 2.0) / (1.0 + z2_n)
    half = critical / (1.0 + z2_n) * math.sqrt(share * (1.0 - share) / trials + z2_n / (4 * trials))
    se = math.sqrt(share * (1.0 - share) / trials)
    # The bounds touch 0 or 1 exactly at 0 or n successes; clip the rounding.
    return Interval(share, max(0.0, centre - half), min(1.0, centre + half), confidence, se)


def ratio_interval(
    successes_a: int,
    trials_a: int,
    successes_b: int,
    trials_b: int,
    confidence: float = 0.95,
) -> Interval | None:
    """p_a / p_b for two independent proportions, Katz's log interval.

    Used for the adverse impact ratio: a group's approval rate over the most
    favoured group's. The log of a ratio is close to normal where the ratio is not,
    with se² = 1/a - 1/n_a + 1/b - 1/n_b. None when either proportion is 0 or has
    no trials (the log is undefined). ``se`` is the delta-method standard error of
    the ratio itself, ratio · se(log ratio).
    """
    critical = z_value(confidence)
    _check_counts(successes_a, trials_a)
    _check_counts(successes_b, trials_b)
    if 0 in (successes_a, trials_a, successes_b, trials_b):
        return None
    ratio = (successes_a / trials_a) / (successes_b / trials_b)
    log_se = math.sqrt(1 / successes_a - 1 / trials_a + 1 / successes_b - 1 / trials_b)
    spread = math.exp(critical * log_se)
    return Interval(ratio, ratio / spread, ratio * spread, confidence, ratio * log_se)
