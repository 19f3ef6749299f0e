"""The training reference: bins, shares, null rates, domains, and their JSON form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from credit_risk.errors import InvalidInputError
from credit_risk.monitoring.reference import (
    MAX_CATEGORICAL_VALUES,
    bin_proportions,
    build_reference,
    feature_reference,
)

NAN = np.nan


# --- bin_proportions -------------------------------------------------------------
def test_bins_are_closed_below_and_open_above_and_nulls_are_left_out():
    # Given five values, a null, and edges 2 and 4
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, NAN])
    # When they are binned
    shares = bin_proportions(values, [2.0, 4.0])
    # Then (-inf, 2) holds 1, [2, 4) holds 2 and 3, [4, inf) holds 4 and 5: of five
    assert shares.tolist() == pytest.approx([0.2, 0.4, 0.4])


def test_values_beyond_every_edge_land_in_the_outer_bins():
    shares = bin_proportions(np.array([-1e9, -np.inf, 1e9, np.inf]), [0.0, 1.0])
    assert shares.tolist() == pytest.approx([0.5, 0.0, 0.5])


def test_no_edges_is_one_bin_holding_everything():
    assert bin_proportions(np.array([3.0, 7.0]), []).tolist() == [1.0]


def test_nothing_to_bin_gives_zero_shares():
    assert bin_proportions(np.array([NAN, NAN]), [1.0]).tolist() == [0.0, 0.0]
    assert bin_proportions(np.array([]), [1.0, 2.0]).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("edges", [[2.0, 1.0], [1.0, 1.0], [0.0, NAN], [[1.0], [2.0]]])
def test_edges_must_be_finite_and_increasing(edges):
    with pytest.raises(InvalidInputError, match="edges"):
        bin_proportions(np.array([1.0]), edges)


# --- numeric features ------------------------------------------------------------
def test_numeric_feature_gets_decile_edges_with_a_tenth_in_each_bin():
    # Given the float values 1..100 (linear deciles: 1 + q * 99)
    entry = feature_reference("avg_amount_loans_previous", np.arange(1.0, 101.0))
    # Then the edges are the nine deciles and each bin holds ten values
    assert entry["edges"] == pytest.approx([10.9, 20.8, 30.7, 40.6, 50.5, 60.4, 70.3, 80.2, 90.1])
    assert entry["proportions"] == pytest.approx([0.1] * 10)
    assert entry["domain"] is None
    assert (entry["min"], entry["max"], entry["null_rate"]) == (1.0, 100.0, 0.0)


def test_repeated_deciles_collapse_and_no_bin_lies_below_the_minimum():
    # Given an integer count with many zeros and more than a dozen values
    values = np.array([0.0] * 60 + list(range(1, 41)))
    entry = feature_reference("nb_previous_loans", values)
    # Then edges are distinct, all above the minimum, and the first bin holds the zeros
    assert entry["domain"] is None
    assert len(set(entry["edges"])) == len(entry["edges"])
    assert min(entry["edges"]) > 0.0
    assert entry["proportions"][0] == pytest.approx(0.6)
    assert sum(entry["proportions"]) == pytest.approx(1.0)
    assert len(entry["proportions"]) == len(entry["edges"]) + 1


def test_null_rate_counts_nulls_over_all_rows_and_shares_only_values():
    entry = feature_reference("years_on_the_job", np.array([1.0, NAN, 3.0, NAN]))
    assert entry["null_rate"] == 0.5
    assert sum(entry["proportions"]) == pytest.approx(1.0)
    assert (entry["min"], entry["max"]) == (1.0, 3.0)


def test_a_feature_without_any_value_has_one_empty_bin_and_no_range():
    entry = feature_reference("years_on_the_job", np.array([NAN, NAN]))
    assert entry == {
        "edges": [],
        "proportions": [0.0],
        "null_rate": 1.0,
        "min": None,
        "max": None,
        "domain": None,
    }


# --- categorical features --------------------------------------------------------
def test_a_flag_is_categorical_with_midpoint_edges():
    # Given a flag with a null
    entry = feature_reference("flag_own_car", np.array([0.0, 0.0, 1.0, NAN]))
    # Then its domain is its values, the edge sits between them, shares per value
    assert entry["domain"] == [0, 1]
    assert entry["edges"] == [0.5]
    assert entry["proportions"] == pytest.approx([2 / 3, 1 / 3])
    assert entry["null_rate"] == 0.25


def test_an_integer_feature_with_few_values_is_categorical():
    entry = feature_reference("nb_previous_loans", np.array([0.0, 1.0, 2.0, 2.0, 5.0]))
    assert entry["domain"] == [0, 1, 2, 5]
    assert entry["edges"] == [0.5, 1.5, 3.5]
    assert entry["proportions"] == pytest.approx([0.2, 0.2, 0.4, 0.2])


def test_integer_features_stop_being_categorical_beyond_the_limit():
    few = np.arange(float(MAX_CATEGORICAL_VALUES))
    many = np.arange(float(MAX_CATEGORICAL_VALUES + 1))
    assert feature_reference("age", few)["domain"] == list(range(MAX_CATEGORICAL_VALUES))
    assert feature_reference("age", many)["domain"] is None


def test_a_float_feature_with_few_round_values_stays_numeric():
    entry = feature_reference("avg_amount_loans_previous", np.array([1000.0, 2000.0, 2000.0]))
    assert entry["domain"] is None


def test_a_feature_outside_the_contract_is_categorical_when_its_values_are_whole():
    assert feature_reference("new_flag", np.array([0.0, 1.0]))["domain"] == [0, 1]
    assert feature_reference("new_ratio", np.array([0.5, 1.0]))["domain"] is None


# --- the whole reference ---------------------------------------------------------
def _reference() -> tuple[dict, dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    rows = 2_000
    age = rng.integers(21, 70, rows).astype(float)
    years = np.where(rng.random(rows) < 0.2, NAN, rng.integers(0, 30, rows).astype(float))
    features = {
        "age": age,
        "years_on_the_job": years,
        "nb_previous_loans": rng.poisson(8, rows).astype(float),
        "avg_amount_loans_previous": rng.lognormal(10, 0.5, rows),
        "flag_own_car": (rng.random(rows) < 0.4).astype(float),
    }
    return build_reference(features, rng.beta(1, 20, rows)), features


def test_reference_holds_every_feature_and_the_score_distribution():
    reference, features = _reference()
    assert reference["rows"] == 2_000
    assert set(reference["features"]) == set(features)
    assert reference["features"]["flag_own_car"]["domain"] == [0, 1]
    assert reference["features"]["years_on_the_job"]["null_rate"] == pytest.approx(0.2, abs=0.03)
    score = reference["score"]
    assert len(score["edges"]) == 9
    assert score["proportions"] == pytest.approx([0.1] * 10, abs=0.001)


def test_the_monitor_rebinning_training_values_gets_the_reference_shares():
    # Given a reference and the very values it was built from
    reference, features = _reference()
    # When they are binned again over the stored edges, as the monitor bins served values
    for name, column in features.items():
        entry = reference["features"][name]
        again = bin_proportions(column, entry["edges"])
        # Then the shares are the same
        assert again.tolist() == pytest.approx(entry["proportions"]), name


def test_reference_survives_strict_json():
    reference, _ = _reference()
    text = json.dumps(reference, allow_nan=False)
    assert json.loads(text) == reference


@pytest.mark.parametrize(
    ("features", "probabilities", "message"),
    [
        ({"age": np.array([30.0, 40.0])}, np.array([0.1]), "age"),
        ({"age": np.array([30.0])}, np.array([1.5]), r"\[0, 1\]"),
        ({"age": np.array([])}, np.array([]), "non-empty"),
        ({"age": np.array([30.0])}, np.array([[0.1]]), "1-D"),
    ],
)
def test_inconsistent_inputs_are_refused(features, probabilities, message):
    with pytest.raises(InvalidInputError, match=message):
        build_reference(features, probabilities)
