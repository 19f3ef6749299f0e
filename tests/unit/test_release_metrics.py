"""A release's counts: observed per request, added up, published as embedded-metric
documents and summed back, and the facts the gates read from them."""

from __future__ import annotations

import json

import pytest

from credit_risk import names
from credit_risk.release_metrics import (
    DIMENSION_RELEASE,
    LATENCY_BINS_MS,
    SCORE_BINS,
    Decided,
    ReleaseCounts,
    emf_document,
    parse_emf,
    release_sums,
)

RELEASE = "local-20261202T040000000000Z"
NAMESPACE = names.metric_namespace("local")
APPROVE, DECLINE = "approve", "decline"


def pair(champion: tuple[float, str], candidate: tuple[float, str]) -> tuple[Decided, Decided]:
    return Decided(*champion), Decided(*candidate)


# Four customers scored by both: one flips to decline, one to approve.
REQUEST = [
    pair((0.01, APPROVE), (0.012, APPROVE)),
    pair((0.04, APPROVE), (0.30, DECLINE)),
    pair((0.60, DECLINE), (0.08, APPROVE)),
    pair((0.90, DECLINE), (0.95, DECLINE)),
]


def test_a_request_is_observed_as_counts():
    counts = ReleaseCounts.observe(REQUEST, candidate_served=1, champion_ms=0.7, candidate_ms=3.0)

    assert (counts.pairs, counts.champion_approvals, counts.candidate_approvals) == (4, 2, 2)
    assert (counts.to_decline, counts.to_approve) == (1, 1)
    assert counts.candidate_served == 1
    assert counts.approval_rate_change == 0.0
    assert counts.swap_share == 0.5
    assert sum(counts.champion_scores) == sum(counts.candidate_scores) == 4
    assert counts.champion_scores[SCORE_BINS.index(0.01)] == 1  # a bound is in its bin
    assert counts.champion_latency[LATENCY_BINS_MS.index(1.0)] == 1
    assert counts.candidate_latency[LATENCY_BINS_MS.index(4.0)] == 1


def test_counts_add_up_and_survive_the_metric_round_trip():
    first = ReleaseCounts.observe(REQUEST, champion_ms=0.3, candidate_ms=0.4)
    failed = ReleaseCounts.observe(candidate_served=2, candidate_errors=3, champion_ms=0.3)

    total = ReleaseCounts.total([first, failed, first])

    assert total == first + failed + first
    assert total.pairs == 8
    assert total.candidate_errors == 3
    assert sum(total.champion_latency) == 3
    assert sum(total.candidate_latency) == 2
    assert ReleaseCounts.from_metrics(total.metrics()) == total
    assert set(total.metrics()) <= set(ReleaseCounts.metric_names())
    # Zeros are left out: a missing metric sums as zero.
    assert 0 not in total.metrics().values()


def test_emf_documents_of_many_requests_parse_back_to_the_release_s_sums():
    requests = [
        ReleaseCounts.observe(REQUEST[:2], champion_ms=0.2, candidate_ms=0.3),
        ReleaseCounts.observe(REQUEST[2:], candidate_served=2, champion_ms=0.2, candidate_ms=9),
    ]
    lines = [
        emf_document(counts, RELEASE, 1_700_000_000_000, namespace=NAMESPACE) for counts in requests
    ]
    other = emf_document(requests[0], "another-release", 1_700_000_000_000, namespace=NAMESPACE)
    console = [
        '{"level":"INFO","message":"scored"}',  # a log line, not a metric document
        *lines,
        other,
        "not json at all",
    ]

    values = list(parse_emf(console))
    sums = release_sums(values, RELEASE)

    assert ReleaseCounts.from_metrics(sums) == requests[0] + requests[1]
    document = json.loads(lines[0])
    directive = document["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == NAMESPACE
    assert directive["Dimensions"] == [["service", DIMENSION_RELEASE]]
    assert document[DIMENSION_RELEASE] == RELEASE
    assert {v.dimensions[DIMENSION_RELEASE] for v in values} == {RELEASE, "another-release"}


def test_a_request_with_nothing_to_count_prints_no_document():
    assert emf_document(ReleaseCounts(), RELEASE, 0, namespace=NAMESPACE) is None


@pytest.mark.parametrize(
    ("timings_ms", "p99"),
    [
        ([0.3] * 100, 0.5),
        ([0.3] * 99 + [50.0], 0.5),  # one slow request in a hundred is the 100th percentile
        ([0.3] * 98 + [50.0] * 2, 64.0),
        ([500.0] * 10, float("inf")),  # beyond the last bound: the open bin
    ],
)
def test_p99_is_the_upper_bound_of_the_bin_holding_it(timings_ms, p99):
    counts = ReleaseCounts.total(ReleaseCounts.observe(champion_ms=ms) for ms in timings_ms)

    assert counts.p99_ms(counts.champion_latency) == p99


def test_without_timings_there_is_no_p99():
    assert ReleaseCounts().p99_ms(ReleaseCounts().candidate_latency) is None


def test_the_score_psi_of_identical_distributions_is_zero_and_grows_with_a_shift():
    same = ReleaseCounts.observe([pair((p, APPROVE), (p, APPROVE)) for p in (0.01, 0.2, 0.7)])
    shifted = ReleaseCounts.observe(
        [pair((p, APPROVE), (p * 1.4, APPROVE)) for p in (0.01, 0.2, 0.7)]
    )

    assert same.score_psi == 0.0
    assert shifted.score_psi > 1.0


def test_facts_are_none_without_customers_scored_by_both():
    nothing = ReleaseCounts.observe(candidate_errors=1)

    assert nothing.approval_rate_change is None
    assert nothing.swap_share is None
    assert nothing.score_psi is None
    summary = nothing.summary()
    assert summary["candidate_errors"] == 1
    assert summary["candidate_p99_ms"] is None
    json.dumps(summary, allow_nan=False)  # the report's JSON allows no infinity
