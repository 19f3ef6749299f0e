"""Live quality on delayed labels: AUC, calibration, the verdict and the labels files."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest

from credit_risk.errors import InvalidInputError
from credit_risk.monitoring import quality
from credit_risk.monitoring.report import ALERT, OK, SKIPPED

OFFLINE = {"auc": 0.75, "calibration_error": 0.01}
TOLERANCES = {"auc_drop_tolerance": 0.05, "calibration_tolerance": 0.25, "min_labelled": 200}


def _joined(outcomes: np.ndarray, probabilities: np.ndarray) -> quality.Joined:
    return quality.Joined(probabilities, outcomes, other_versions=0, unmatched=0)


def _binormal(n: int, separation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes half 0, half 1, with scores N(0, 1) and N(separation, 1) squashed to
    (0, 1): the AUC of such scores is Phi(separation / sqrt 2)."""
    rng = np.random.default_rng(seed)
    outcomes = np.repeat([0, 1], n // 2)
    raw = rng.normal(0.0, 1.0, n) + separation * outcomes
    return outcomes, 1 / (1 + np.exp(-raw))


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_live_auc_of_a_generated_outcome_set_matches_its_known_value():
    # given 40,000 outcomes whose scores separate with a known AUC
    outcomes, probabilities = _binormal(40_000, separation=1.0, seed=3)
    known = _phi(1.0 / math.sqrt(2))  # 0.7602

    # when live quality is assessed against an offline AUC of that value
    section = quality.assess_quality(_joined(outcomes, probabilities), {"auc": known}, **TOLERANCES)

    # then the live AUC is the known one (within sampling error) and no drop alerts
    assert section["live_auc"] == pytest.approx(known, abs=0.01)
    assert section["auc_status"] == OK
    assert section["labelled"] == 40_000


def test_auc_of_a_small_hand_made_set():
    # given 4 loans: one of the 4 (default, repaid) pairs is ranked the wrong way
    outcomes = np.array([0, 0, 1, 1] * 60)
    probabilities = np.array([0.1, 0.4, 0.35, 0.8] * 60)

    section = quality.assess_quality(_joined(outcomes, probabilities), OFFLINE, **TOLERANCES)

    # then AUC = 3/4 (ties between the copies count a half each way)
    assert section["live_auc"] == pytest.approx(0.75)
    assert section["auc_drop"] == pytest.approx(0.0)


def test_an_auc_drop_beyond_tolerance_alerts():
    # given a live ranking much weaker than the offline AUC of 0.75
    outcomes, probabilities = _binormal(2_000, separation=0.3, seed=5)

    section = quality.assess_quality(_joined(outcomes, probabilities), OFFLINE, **TOLERANCES)

    assert section["auc_drop"] > 0.05
    assert section["auc_status"] == ALERT
    assert section["status"] == ALERT


def test_calibration_compares_mean_prediction_with_the_observed_rate():
    # given 1,000 loans predicted at 10% of which 100 defaulted, ranked well
    outcomes = np.zeros(1_000, dtype=np.int64)
    outcomes[:100] = 1
    probabilities = np.where(outcomes == 1, 0.19, 0.09)  # mean 0.1

    section = quality.assess_quality(_joined(outcomes, probabilities), OFFLINE, **TOLERANCES)

    # then the prediction matches the outcome and the verdict is ok
    assert section["calibration"]["mean_predicted"] == pytest.approx(0.1)
    assert section["calibration"]["observed_rate"] == pytest.approx(0.1)
    assert section["calibration"]["relative_error"] == pytest.approx(0.0, abs=1e-9)
    assert section["calibration"]["status"] == OK
    assert section["status"] == OK


def test_underpredicting_the_default_rate_alerts_when_beyond_noise():
    # given 20% observed defaults on loans predicted at 10%
    outcomes = np.zeros(1_000, dtype=np.int64)
    outcomes[:200] = 1
    probabilities = np.where(outcomes == 1, 0.14, 0.09)  # mean 0.1, ranked perfectly

    section = quality.assess_quality(_joined(outcomes, probabilities), OFFLINE, **TOLERANCES)

    # then relative error -50%: 100 defaults short, ~10.6 standard deviations
    assert section["calibration"]["relative_error"] == pytest.approx(-0.5)
    assert section["calibration"]["z"] == pytest.approx(100 / math.sqrt(1_000 * 0.0909), rel=0.05)
    assert section["calibration"]["status"] == ALERT
    assert section["status"] == ALERT


def test_calibration_z_is_observed_minus_expected_in_standard_deviations():
    outcomes = np.array([1, 0, 0, 0])
    probabilities = np.array([0.5, 0.5, 0.5, 0.5])
    # expected 2 defaults, variance 4 * 0.25 = 1, observed 1
    assert quality.calibration_z(outcomes, probabilities) == pytest.approx(-1.0)


def test_too_few_labels_are_not_judged():
    outcomes, probabilities = _binormal(100, separation=0.0, seed=1)

    section = quality.assess_quality(_joined(outcomes, probabilities), OFFLINE, **TOLERANCES)

    assert section["status"] == SKIPPED
    assert "100 labelled scores" in section["reason"]


def test_a_single_outcome_is_not_judged():
    outcomes = np.zeros(300, dtype=np.int64)
    probabilities = np.full(300, 0.1)

    section = quality.assess_quality(_joined(outcomes, probabilities), OFFLINE, **TOLERANCES)

    assert section["status"] == SKIPPED
    assert "single outcome" in section["reason"]


def test_labels_are_read_from_csv_and_parquet_and_filtered_by_decision_date(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # given one CSV and one Parquet labels file
    (tmp_path / "batch-1.csv").write_text(
        "customer_id,decision_date,status\n0012345,2024-05-01,1\n0012346,2024-05-20,0\n"
    )
    pq.write_table(
        pa.table(
            {
                "customer_id": ["0099999"],
                "decision_date": pa.array([date(2024, 6, 1)], pa.date32()),
                "status": pa.array([0], pa.int64()),
            }
        ),
        tmp_path / "batch-2.parquet",
    )

    labels = quality.read_labels(str(tmp_path))
    recent = quality.labels_between(labels, date(2024, 5, 10), date(2024, 6, 1))

    # then ids keep their leading zeros and only decisions in the range remain
    assert len(labels) == 3
    assert recent.customer_ids == ["0012346", "0099999"]
    assert recent.status.tolist() == [0, 0]


def test_an_absent_labels_folder_is_no_labels(tmp_path):
    assert len(quality.read_labels(str(tmp_path / "labels"))) == 0


@pytest.mark.parametrize(
    "content",
    [
        "customer_id,decision_date,status\n1,2024-05-01,2\n",
        "customer_id,decision_date,status\n1,not-a-date,1\n",
        "customer_id,when,status\n1,2024-05-01,1\n",
        "customer_id,decision_date,status\n1,,1\n",
    ],
    ids=["status-not-binary", "bad-date", "missing-column", "empty-value"],
)
def test_a_malformed_labels_file_is_refused_with_its_name(tmp_path, content):
    (tmp_path / "bad.csv").write_text(content)

    with pytest.raises(InvalidInputError, match="labels"):
        quality.read_labels(str(tmp_path))
