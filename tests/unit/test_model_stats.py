"""Intervals for the gate's figures: exact on small cases, honest in simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from credit_risk.model.stats import (
    CalibrationTest,
    Interval,
    auc_interval,
    calibration_test,
    paired_auc_difference,
    proportion_interval,
    ratio_interval,
    z_value,
)

# --- Brute-force references: O(m·n) over every (default, repayer) pair -------------------


def _pair_wins(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """psi[i, j]: 1 if default i outscores repayer j, 1/2 on a tie, else 0."""
    defaults, repayers = scores[labels == 1], scores[labels == 0]
    diff = defaults[:, None] - repayers[None, :]
    return (diff > 0) + 0.5 * (diff == 0)


def _brute_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(_pair_wins(labels, scores).mean())


def _brute_delong_components(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    wins = _pair_wins(labels, scores)
    return wins.mean(axis=1), wins.mean(axis=0)


def _brute_delong_variance(labels, scores) -> float:
    v10, v01 = _brute_delong_components(labels, scores)
    return np.var(v10, ddof=1) / len(v10) + np.var(v01, ddof=1) / len(v01)


def _tied_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores on a coarse grid, so that ties within and across classes abound."""
    labels = (rng.random(size) < 0.3).astype(int)
    scores = np.round(rng.normal(labels * 0.8, 1.0) * 2) / 2
    return labels, scores


# --- z_value and Interval ----------------------------------------------------------------


def test_z_value_is_the_two_sided_normal_quantile():
    assert z_value(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert z_value(0.99) == pytest.approx(2.575829, abs=1e-6)
    assert z_value(0.90) == pytest.approx(1.644854, abs=1e-6)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5, 95, math.nan])
def test_confidence_outside_the_open_unit_interval_is_refused(confidence):
    with pytest.raises(ValueError, match="confidence"):
        z_value(confidence)


def test_every_function_refuses_a_bad_confidence():
    labels, scores = np.array([0, 1, 0, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    calls = [
        lambda: auc_interval(labels, scores, confidence=1.0),
        lambda: paired_auc_difference(labels, scores, scores, confidence=0.0),
        lambda: calibration_test(labels, scores, confidence=95),
        lambda: proportion_interval(5, 10, confidence=1.2),
        lambda: ratio_interval(5, 10, 6, 10, confidence=-0.1),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="confidence"):
            call()


def test_interval_describes_itself_and_serialises_to_plain_rounded_floats():
    interval = Interval(
        estimate=np.float64(0.75123456789), low=0.7401, high=0.7623, confidence=0.95, se=0.0057
    )
    assert interval.describe() == "0.7512 (95% CI 0.7401 to 0.7623)"
    assert interval.describe(digits=2) == "0.75 (95% CI 0.74 to 0.76)"
    assert Interval(0.5, 0.4, 0.6, 0.975).describe(1) == "0.5 (97.5% CI 0.4 to 0.6)"
    figures = interval.to_dict()
    assert figures == {
        "estimate": 0.751235,
        "low": 0.7401,
        "high": 0.7623,
        "confidence": 0.95,
        "se": 0.0057,
    }
    assert all(type(value) is float for value in figures.values())


def test_an_unbounded_interval_serialises_its_infinite_bound_as_none():
    figures = Interval(0.1, -0.2, math.inf, 0.95).to_dict()
    assert figures["high"] is None
    assert figures["se"] is None


# --- AUC ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_the_pairwise_count_with_ties_counted_half(seed):
    labels, scores = _tied_sample(np.random.default_rng(seed), 60)
    result = auc_interval(labels, scores)
    assert result.estimate == pytest.approx(_brute_auc(labels, scores), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_fast_delong_variance_equals_the_pairwise_definition(seed):
    labels, scores = _tied_sample(np.random.default_rng(100 + seed), 80)
    result = auc_interval(labels, scores)
    assert result.se**2 == pytest.approx(_brute_delong_variance(labels, scores), rel=1e-10)
    assert result.low == pytest.approx(result.estimate - 1.959964 * result.se, abs=1e-6)
    assert result.high == pytest.approx(result.estimate + 1.959964 * result.se, abs=1e-6)


def test_a_hand_worked_auc():
    # 2 defaults x 3 repayers = 6 pairs: default 0.8 beats all 3; default 0.4 beats
    # 0.1, ties 0.4 and loses to 0.6, so 1.5; AUC = 4.5 / 6.
    labels = np.array([1, 0, 1, 0, 0])
    scores = np.array([0.8, 0.1, 0.4, 0.4, 0.6])
    result = auc_interval(labels, scores)
    assert result.estimate == pytest.approx(0.75)
    # Placements: defaults (1, 0.5), repayers (1, 0.75, 0.5): 0.125/2 + 0.0625/3.
    assert result.se**2 == pytest.approx(0.125 / 2 + 0.0625 / 3)
    assert result.confidence == 0.95


def test_auc_does_not_depend_on_row_order_or_label_dtype():
    labels, scores = _tied_sample(np.random.default_rng(7), 500)
    permutation = np.random.default_rng(8).permutation(500)
    plain = auc_interval(labels, scores)
    shuffled = auc_interval(labels[permutation], scores[permutation])
    assert shuffled.estimate == pytest.approx(plain.estimate, abs=1e-12)
    assert shuffled.se == pytest.approx(plain.se, rel=1e-12)
    assert auc_interval(labels.astype(bool), scores) == plain
    assert auc_interval(labels.astype(np.int8).tolist(), scores.tolist()) == plain


def test_delong_se_agrees_with_a_bootstrap():
    rng = np.random.default_rng(2024)
    size = 4_000
    labels = (rng.random(size) < 0.15).astype(int)
    scores = rng.normal(labels * 1.0, 1.0)
    delong = auc_interval(labels, scores)

    # Stratified: DeLong's variance is conditional on the counts of each class.
    defaults, repayers = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    replicas = []
    for _ in range(800):
        rows = np.concatenate(
            [
                rng.choice(defaults, len(defaults)),
                rng.choice(repayers, len(repayers)),
            ]
        )
        replicas.append(auc_interval(labels[rows], scores[rows]).estimate)
    bootstrap_se = float(np.std(replicas, ddof=1))
    assert delong.se == pytest.approx(bootstrap_se, rel=0.10)


def test_auc_is_undefined_with_one_outcome():
    scores = np.array([0.1, 0.2, 0.3])
    assert auc_interval(np.zeros(3, dtype=int), scores) is None
    assert auc_interval(np.ones(3, dtype=int), scores) is None
    assert auc_interval(np.array([], dtype=int), np.array([])) is None
    assert paired_auc_difference(np.zeros(3, dtype=int), scores, scores) is None


def test_a_single_default_gives_the_whole_range():
    # One default: the AUC exists but its variance cannot be estimated.
    result = auc_interval(np.array([0, 0, 1, 0]), np.array([0.1, 0.5, 0.4, 0.2]))
    assert result.estimate == pytest.approx(2 / 3)
    assert (result.low, result.high, result.se) == (0.0, 1.0, None)


def test_perfect_separation_is_clipped_to_one():
    labels = np.array([0, 0, 0, 1, 1])
    result = auc_interval(labels, np.array([0.1, 0.2, 0.3, 0.8, 0.9]))
    assert (result.estimate, result.high) == (1.0, 1.0)
    # Noisy but strong: the Wald bound would pass 1, the interval must not.
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], [40, 8])
    strong = auc_interval(labels, labels * 3.0 + rng.normal(0, 1, 48))
    assert strong.high <= 1.0
    assert strong.low >= 0.0


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], "0 or 1"),
        ([0, 1, -1], [0.1, 0.2, 0.3], "0 or 1"),
        ([0, 1, 1], [0.1, 0.2], "shape"),
        ([0, 1, 1], [0.1, math.nan, 0.3], "finite"),
        ([0, 1, 1], [0.1, math.inf, 0.3], "finite"),
        ([[0, 1], [1, 0]], [0.1, 0.2], "one-dimensional"),
    ],
)
def test_malformed_inputs_are_refused(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        auc_interval(labels, scores)


# --- Paired difference ---------------------------------------------------------------------


def test_identical_scores_differ_by_exactly_zero():
    labels, scores = _tied_sample(np.random.default_rng(21), 400)
    result = paired_auc_difference(labels, scores, scores.copy())
    assert (result.estimate, result.se, result.low, result.high) == (0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("seed", range(3))
def test_paired_variance_equals_the_pairwise_definition(seed):
    rng = np.random.default_rng(300 + seed)
    labels, scores_a = _tied_sample(rng, 90)
    scores_b = np.round(scores_a + rng.normal(0, 0.7, 90))
    result = paired_auc_difference(labels, scores_a, scores_b)

    a10, a01 = _brute_delong_components(labels, scores_a)
    b10, b01 = _brute_delong_components(labels, scores_b)
    m, n = len(a10), len(a01)
    var_a = np.var(a10, ddof=1) / m + np.var(a01, ddof=1) / n
    var_b = np.var(b10, ddof=1) / m + np.var(b01, ddof=1) / n
    cov = np.cov(a10, b10)[0, 1] / m + np.cov(a01, b01)[0, 1] / n
    assert result.estimate == pytest.approx(
        _brute_auc(labels, scores_a) - _brute_auc(labels, scores_b), abs=1e-12
    )
    assert result.se**2 == pytest.approx(var_a + var_b - 2 * cov, rel=1e-9)


def test_pairing_shrinks_the_se_of_correlated_scores():
    rng = np.random.default_rng(31)
    size = 5_000
    labels = (rng.random(size) < 0.1).astype(int)
    shared = rng.normal(labels * 1.0, 1.0)
    scores_a = shared + rng.normal(0, 0.3, size)
    scores_b = shared + rng.normal(0, 0.3, size)
    paired = paired_auc_difference(labels, scores_a, scores_b)
    unpaired_se = math.hypot(auc_interval(labels, scores_a).se, auc_interval(labels, scores_b).se)
    assert paired.se < 0.5 * unpaired_se
    assert paired.estimate == pytest.approx(
        auc_interval(labels, scores_a).estimate - auc_interval(labels, scores_b).estimate
    )


def test_paired_difference_detects_a_better_model():
    rng = np.random.default_rng(41)
    size = 20_000
    labels = (rng.random(size) < 0.05).astype(int)
    signal = rng.normal(labels * 1.0, 1.0)
    better, worse = signal + rng.normal(0, 0.3, size), signal + rng.normal(0, 1.0, size)
    result = paired_auc_difference(labels, better, worse)
    assert result.low > 0
    reversed_result = paired_auc_difference(labels, worse, better)
    assert reversed_result.estimate == pytest.approx(-result.estimate)
    assert reversed_result.se == pytest.approx(result.se)


# --- Calibration ---------------------------------------------------------------------------


def test_a_hand_worked_calibration_test():
    # O = 1, E = 2, V = 4 · 0.25 = 1: z = -1; 1 ± 1.96 puts a negative count in
    # the denominator, so the relative error is unbounded above.
    result = calibration_test([1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5])
    assert isinstance(result, CalibrationTest)
    assert (result.defaults, result.expected, result.z) == (1, 2.0, -1.0)
    assert result.p_value == pytest.approx(0.317311, abs=1e-6)
    error = result.relative_error
    assert error.estimate == pytest.approx(1.0)
    assert error.low == pytest.approx(2 / (1 + 1.959964) - 1, abs=1e-6)
    assert error.high == math.inf
    assert result.to_dict()["relative_error"]["high"] is None


def test_relative_error_is_mean_predicted_over_observed_minus_one():
    rng = np.random.default_rng(51)
    p = rng.uniform(0.01, 0.05, 50_000)
    labels = (rng.random(50_000) < p).astype(int)
    result = calibration_test(labels, p)
    error = result.relative_error
    assert error.estimate == pytest.approx(p.mean() / labels.mean() - 1)
    spread = 1.959964 * math.sqrt(np.sum(p * (1 - p)))
    assert error.low == pytest.approx(p.sum() / (labels.sum() + spread) - 1, rel=1e-6)
    assert error.high == pytest.approx(p.sum() / (labels.sum() - spread) - 1, rel=1e-6)
    assert error.low < error.estimate < error.high
    assert error.se > 0


def test_no_defaults_leaves_the_relative_error_undefined():
    result = calibration_test(np.zeros(100, dtype=int), np.full(100, 0.02))
    assert result.defaults == 0
    assert result.relative_error is None
    assert result.z == pytest.approx(-2 / math.sqrt(100 * 0.02 * 0.98))
    assert result.to_dict()["relative_error"] is None


def test_certain_predictions_have_no_variance():
    assert calibration_test([1, 0], [1.0, 0.0]).z == 0.0
    missed = calibration_test([0, 0], [1.0, 0.0])
    assert missed.z == -math.inf
    assert missed.p_value == 0.0


def test_probabilities_outside_the_unit_interval_are_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibration_test([0, 1], [0.5, 1.2])


def test_calibration_to_dict_is_plain():
    figures = calibration_test([1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]).to_dict()
    assert figures["defaults"] == 1
    assert figures["p_value"] == 0.317311
    assert set(figures) == {"defaults", "expected", "z", "p_value", "relative_error"}


def _simulated_rejection_rate(scale: float, simulations: int = 200, size: int = 20_000) -> float:
    """Share of seeded test periods in which the 95% test rejects a model that
    predicts ``scale`` times the true default probability."""
    rng = np.random.default_rng(61)
    rejected = 0
    for _ in range(simulations):
        truth = rng.beta(0.8, 39.2, size)  # mean 2%, skewed like real PDs
        labels = rng.random(size) < truth
        result = calibration_test(labels, np.clip(truth * scale, 0.0, 1.0))
        rejected += result.p_value < 0.05
    return rejected / simulations


def test_the_calibration_test_holds_its_size_for_a_calibrated_model():
    assert 0.01 <= _simulated_rejection_rate(1.0) <= 0.11


def test_the_calibration_test_rejects_a_model_thirty_percent_too_high():
    assert _simulated_rejection_rate(1.3) >= 0.95


# --- Proportions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        (5, 10, 0.2366, 0.7634),
        (0, 10, 0.0, 0.2775),
        # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3.
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_published_values(successes, trials, low, high):
    result = proportion_interval(successes, trials)
    assert result.estimate == successes / trials
    assert result.low == pytest.approx(low, abs=5e-5)
    assert result.high == pytest.approx(high, abs=5e-5)


def test_wilson_interval_edges():
    assert proportion_interval(0, 0) is None
    everything = proportion_interval(10, 10)
    assert everything.high == 1.0
    assert everything.low == pytest.approx(1 - 0.2775, abs=5e-5)
    assert everything.se == 0.0
    assert proportion_interval(5, 10, confidence=0.99).low < proportion_interval(5, 10).low
    for successes, trials in [(11, 10), (-1, 10), (0, -1)]:
        with pytest.raises(ValueError, match="successes"):
            proportion_interval(successes, trials)


def test_ratio_interval_by_hand():
    # 40/100 over 50/100: ratio 0.8, se(log) = √(1/40 - 1/100 + 1/50 - 1/100).
    result = ratio_interval(40, 100, 50, 100)
    log_se = math.sqrt(0.025)
    assert result.estimate == pytest.approx(0.8)
    assert result.low == pytest.approx(0.8 * math.exp(-1.959964 * log_se), rel=1e-6)
    assert result.high == pytest.approx(0.8 * math.exp(1.959964 * log_se), rel=1e-6)
    assert result.low < 0.8 < result.high
    assert result.se == pytest.approx(0.8 * log_se)


def test_ratio_interval_covers_the_true_ratio():
    # Approval rates of 60% and 75%: true adverse impact ratio 0.8.
    rng = np.random.default_rng(71)
    approved_a = rng.binomial(400, 0.60, 1_000)
    approved_b = rng.binomial(600, 0.75, 1_000)
    covered = [
        (interval := ratio_interval(int(a), 400, int(b), 600)).low <= 0.8 <= interval.high
        for a, b in zip(approved_a, approved_b, strict=True)
    ]
    assert 0.93 <= np.mean(covered) <= 0.97


def test_ratio_interval_is_undefined_without_successes_or_trials():
    assert ratio_interval(0, 100, 50, 100) is None
    assert ratio_interval(40, 100, 0, 100) is None
    assert ratio_interval(0, 0, 50, 100) is None
    assert ratio_interval(40, 100, 0, 0) is None
    with pytest.raises(ValueError, match="successes"):
        ratio_interval(101, 100, 50, 100)
