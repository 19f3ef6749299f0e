"""Which model answers a customer during a release: a keyed hash of the customer id,
sticky as the candidate's share rises (DESIGN.md "Releases")."""

from __future__ import annotations

import math

import pytest

from credit_risk.serving.assignment import (
    BUCKETS,
    CANDIDATE,
    CHAMPION,
    assign,
    bucket,
    on_candidate,
)

KEY = b"environment-id-hash-key"
RELEASE = "20261202T040000Z-release"
CUSTOMERS = [f"{5_000_000 + i}" for i in range(10_000)]
STEPS = (10.0, 50.0, 100.0)


def on_candidate_at(percent: float, release: str = RELEASE, key: bytes = KEY) -> set[str]:
    return {c for c in CUSTOMERS if assign(key, release, c, percent) == CANDIDATE}


def within_sampling_error(observed: int, percent: float, n: int = len(CUSTOMERS)) -> bool:
    """Within four standard deviations of a binomial draw of ``n`` at ``percent``."""
    p = percent / 100
    return abs(observed - n * p) <= 4 * math.sqrt(n * p * (1 - p)) + 1


def test_no_customer_goes_back_to_the_champion_as_the_share_rises():
    # When the release moves 10 → 50 → 100
    moved = [on_candidate_at(percent) for percent in STEPS]
    # Then each step keeps every customer the step before had moved
    assert moved[0] <= moved[1] <= moved[2]
    assert moved[2] == set(CUSTOMERS)


@pytest.mark.parametrize("percent", STEPS[:-1])
def test_the_share_on_the_candidate_is_the_step_give_or_take_chance(percent):
    observed = len(on_candidate_at(percent))

    assert within_sampling_error(observed, percent), (observed, percent)


def test_repeated_calls_agree_for_every_customer():
    for customer in CUSTOMERS[:1_000]:
        answers = {assign(KEY, RELEASE, customer, 50.0) for _ in range(10)}
        assert len(answers) == 1


def test_each_release_draws_its_own_customers_first():
    first = on_candidate_at(10.0, release="release-a")
    second = on_candidate_at(10.0, release="release-b")

    # Independent draws of 10% overlap on about 1% of the customers, not 10%.
    assert within_sampling_error(len(first & second), 1.0)
    assert first != second


def test_without_the_key_the_assignment_is_another_one():
    assert on_candidate_at(10.0, key=b"another key") != on_candidate_at(10.0)


def test_no_share_and_the_whole_share_are_exact():
    assert on_candidate_at(0.0) == set()
    assert on_candidate_at(100.0) == set(CUSTOMERS)
    assert assign(KEY, RELEASE, CUSTOMERS[0], 0.0) == CHAMPION


def test_buckets_cover_the_range_and_shares_fall_on_bucket_bounds():
    buckets = [bucket(KEY, RELEASE, customer) for customer in CUSTOMERS]

    assert all(0 <= b < BUCKETS for b in buckets)
    # A share of 0.01% is one bucket: the lowest bucket only.
    assert on_candidate(0, 0.01)
    assert not on_candidate(1, 0.01)
    assert on_candidate(BUCKETS - 1, 100.0)
