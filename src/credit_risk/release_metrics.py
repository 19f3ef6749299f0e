"""What a model release observes, as counters that add up.

While a release runs, the serving function scores every request with both models
(``credit_risk.serving.service``) and counts, per request: the customers scored by
both, each model's approvals, the customers whose decision would flip (the swap
set), each model's scores and scoring times in fixed bins, the customers the
candidate answered and its failures. ``ReleaseCounts`` holds these; counts of many
requests add up, so the release judges the sum over any window without reading a
single record:

- in AWS each request's counts leave the function as one CloudWatch embedded-metric
  (EMF) document with the dimensions ``service`` and ``release``, and the release
  Lambda sums them with GetMetricData (``credit_risk.release.check_release``);
- locally the same documents, printed by the same handler, are parsed back by
  ``parse_emf`` (``credit_risk.local_canary``).

From the sums come the behaviour facts the gates read (approval-rate change,
swap-set share, score PSI between the two models on the same customers) and each
model's p99 scoring time, from its latency bins (so neither path needs percentile
statistics from CloudWatch). Pure: no clients, no clock.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Final

from credit_risk import names

# Probability bins (upper bounds) of the score distributions. Finer at the low end,
# where a portfolio's default probabilities crowd.
SCORE_BINS: Final = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)
# Scoring-time bins (upper bounds, milliseconds); the last is open. A p99 read from
# them is the upper bound of its bin: a factor of two at worst, which is the
# resolution the latency gate is set in.
LATENCY_BINS_MS: Final = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, float("inf"))
APPROVE: Final = "approve"
# The dimension that keeps each release's counts apart.
DIMENSION_RELEASE: Final = "release"

# metric name -> ReleaseCounts field, for the counts that are single numbers.
_SCALARS: Final = {
    "ReleasePairs": "pairs",
    "ReleaseChampionApprovals": "champion_approvals",
    "ReleaseCandidateApprovals": "candidate_approvals",
    "ReleaseSwapsToDecline": "to_decline",
    "ReleaseSwapsToApprove": "to_approve",
    "ReleaseCandidateServed": "candidate_served",
    "ReleaseCandidateErrors": "candidate_errors",
}
# metric name prefix -> ReleaseCounts field, for the binned counts (suffix: bin).
_BINNED: Final = {
    "ReleaseChampionScore_": "champion_scores",
    "ReleaseCandidateScore_": "candidate_scores",
    "ReleaseChampionLatency_": "champion_latency",
    "ReleaseCandidateLatency_": "candidate_latency",
}


def _bin(value: float, bounds: Sequence[float]) -> int:
    for index, upper in enumerate(bounds):
        if value <= upper:
            return index
    return len(bounds) - 1


def _zeros(bounds: Sequence[float]) -> tuple[int, ...]:
    return (0,) * len(bounds)


@dataclass(frozen=True)
class Decided:
    """One model's answer for one customer."""

    probability: float
    decision: str


@dataclass(frozen=True)
class ReleaseCounts:
    pairs: int = 0
    champion_approvals: int = 0
    candidate_approvals: int = 0
    to_decline: int = 0  # approved by the champion, declined by the candidate
    to_approve: int = 0  # declined by the champion, approved by the candidate
    candidate_served: int = 0
    candidate_errors: int = 0
    champion_scores: tuple[int, ...] = field(default_factory=lambda: _zeros(SCORE_BINS))
    candidate_scores: tuple[int, ...] = field(default_factory=lambda: _zeros(SCORE_BINS))
    champion_latency: tuple[int, ...] = field(default_factory=lambda: _zeros(LATENCY_BINS_MS))
    candidate_latency: tuple[int, ...] = field(default_factory=lambda: _zeros(LATENCY_BINS_MS))

    # --- building --------------------------------------------------------------
    @classmethod
    def observe(
        cls,
        pairs: Sequence[tuple[Decided, Decided]] = (),
        *,
        candidate_served: int = 0,
        candidate_errors: int = 0,
        champion_ms: float | None = None,
        candidate_ms: float | None = None,
    ) -> ReleaseCounts:
        """The counts of one request: (champion, candidate) answers per customer
        scored by both, and each model's scoring time for the request."""
        champion_scores, candidate_scores = [0] * len(SCORE_BINS), [0] * len(SCORE_BINS)
        for champion, candidate in pairs:
            champion_scores[_bin(champion.probability, SCORE_BINS)] += 1
            candidate_scores[_bin(candidate.probability, SCORE_BINS)] += 1
        return cls(
            pairs=len(pairs),
            champion_approvals=sum(c.decision == APPROVE for c, _ in pairs),
            candidate_approvals=sum(c.decision == APPROVE for _, c in pairs),
            to_decline=sum(a.decision == APPROVE != b.decision for a, b in pairs),
            to_approve=sum(b.decision == APPROVE != a.decision for a, b in pairs),
            candidate_served=candidate_served,
            candidate_errors=candidate_errors,
            champion_scores=tuple(champion_scores),
            candidate_scores=tuple(candidate_scores),
            champion_latency=_timed(champion_ms),
            candidate_latency=_timed(candidate_ms),
        )

    def __add__(self, other: ReleaseCounts) -> ReleaseCounts:
        summed: dict[str, object] = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, tuple):
                summed[f.name] = tuple(a + b for a, b in zip(mine, theirs, strict=True))
            else:
                summed[f.name] = mine + theirs
        return ReleaseCounts(**summed)  # type: ignore[arg-type]

    @classmethod
    def total(cls, counts: Iterable[ReleaseCounts]) -> ReleaseCounts:
        result = cls()
        for item in counts:
            result = result + item
        return result

    # --- as metrics ------------------------------------------------------------
    def metrics(self) -> dict[str, int]:
        """Metric name -> count, zeros left out (a missing count sums as zero)."""
        values = {name: getattr(self, attr) for name, attr in _SCALARS.items()}
        for prefix, attr in _BINNED.items():
            values.update({f"{prefix}{i}": n for i, n in enumerate(getattr(self, attr))})
        return {name: value for name, value in values.items() if value}

    @staticmethod
    def metric_names() -> list[str]:
        """Every metric a release's counts can be published under."""
        binned = [
            f"{prefix}{i}"
            for prefix, attr in _BINNED.items()
            for i in range(len(SCORE_BINS if "Score" in prefix else LATENCY_BINS_MS))
        ]
        return [*_SCALARS, *binned]

    @classmethod
    def from_metrics(cls, sums: Mapping[str, float]) -> ReleaseCounts:
        """The counts whose metrics summed to ``sums`` (unknown names ignored)."""
        values: dict[str, object] = {
            attr: round(sums.get(name, 0)) for name, attr in _SCALARS.items()
        }
        for prefix, attr in _BINNED.items():
            size = len(SCORE_BINS if "Score" in prefix else LATENCY_BINS_MS)
            values[attr] = tuple(round(sums.get(f"{prefix}{i}", 0)) for i in range(size))
        return cls(**values)  # type: ignore[arg-type]

    # --- facts -----------------------------------------------------------------
    @property
    def champion_approval_rate(self) -> float | None:
        return self.champion_approvals / self.pairs if self.pairs else None

    @property
    def candidate_approval_rate(self) -> float | None:
        return self.candidate_approvals / self.pairs if self.pairs else None

    @property
    def approval_rate_change(self) -> float | None:
        """Candidate minus champion approval rate on the same customers (a fraction)."""
        if not self.pairs:
            return None
        return (self.candidate_approvals - self.champion_approvals) / self.pairs

    @property
    def swap_share(self) -> float | None:
        """The share of customers whose decision the candidate would change."""
        return (self.to_decline + self.to_approve) / self.pairs if self.pairs else None

    @property
    def score_psi(self) -> float | None:
        """PSI of the candidate's score distribution against the champion's."""
        if not self.pairs:
            return None
        from credit_risk.monitoring.psi import population_stability_index

        return population_stability_index(
            [n / self.pairs for n in self.champion_scores],
            [n / self.pairs for n in self.candidate_scores],
        )

    def p99_ms(self, latency: Sequence[int]) -> float | None:
        """The upper bound of the bin holding the 99th percentile of ``latency``."""
        total = sum(latency)
        if not total:
            return None
        seen = 0
        for count, upper in zip(latency, LATENCY_BINS_MS, strict=True):
            seen += count
            if seen >= 0.99 * total:
                return upper
        return LATENCY_BINS_MS[-1]

    def summary(self) -> dict[str, object]:
        """The facts as the report and the notifications show them."""
        return {
            "pairs": self.pairs,
            "candidate_served": self.candidate_served,
            "candidate_errors": self.candidate_errors,
            "champion_approval_rate": self.champion_approval_rate,
            "candidate_approval_rate": self.candidate_approval_rate,
            "approval_rate_change": self.approval_rate_change,
            "swaps_to_decline": self.to_decline,
            "swaps_to_approve": self.to_approve,
            "swap_share": self.swap_share,
            "score_psi": self.score_psi,
            "champion_p99_ms": json_number(self.p99_ms(self.champion_latency)),
            "candidate_p99_ms": json_number(self.p99_ms(self.candidate_latency)),
            "score_bins": list(SCORE_BINS),
            "champion_scores": list(self.champion_scores),
            "candidate_scores": list(self.candidate_scores),
        }


def _timed(milliseconds: float | None) -> tuple[int, ...]:
    bins = [0] * len(LATENCY_BINS_MS)
    if milliseconds is not None:
        bins[_bin(milliseconds, LATENCY_BINS_MS)] = 1
    return tuple(bins)


def json_number(value: float | None) -> float | None:
    """``value`` as JSON can hold it: JSON has no infinity (a p99 in the open last
    latency bin, "above the last bound") and no NaN, which are written null."""
    return value if value is not None and math.isfinite(value) else None


# --- embedded metric format -------------------------------------------------------
def emf_document(
    counts: ReleaseCounts,
    release_id: str,
    timestamp_ms: int,
    *,
    namespace: str,
    service: str = names.SERVICE_INFERENCE,
) -> str | None:
    """One EMF line carrying a request's release counts (None when all are zero), in
    ``namespace``: the publishing deployment's (``names.metric_namespace``)."""
    values = counts.metrics()
    if not values:
        return None
    dimensions = {"service": service, DIMENSION_RELEASE: release_id}
    return json.dumps(
        {
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [
                    {
                        "Namespace": namespace,
                        "Dimensions": [list(dimensions)],
                        "Metrics": [{"Name": name, "Unit": "Count"} for name in values],
                    }
                ],
            },
            **dimensions,
            **values,
        },
        separators=(",", ":"),
    )


@dataclass(frozen=True)
class EmfValue:
    namespace: str
    dimensions: Mapping[str, str]
    name: str
    values: tuple[float, ...]
    unit: str
    timestamp_ms: int


def parse_emf(lines: Iterable[str]) -> Iterator[EmfValue]:
    """The metric values of the EMF documents among ``lines`` (others skipped), as
    CloudWatch extracts them: one value per metric and declared dimension set."""
    for line in lines:
        line = line.strip()
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        try:
            document = json.loads(line)
            directives = document["_aws"]["CloudWatchMetrics"]
            timestamp = int(document["_aws"]["Timestamp"])
        except (ValueError, KeyError, TypeError):
            continue
        for directive in directives:
            for dimension_set in directive.get("Dimensions", []):
                dimensions = {name: str(document[name]) for name in dimension_set}
                for metric in directive.get("Metrics", []):
                    raw = document.get(metric["Name"])
                    values = raw if isinstance(raw, list) else [raw]
                    yield EmfValue(
                        directive["Namespace"],
                        dimensions,
                        metric["Name"],
                        tuple(float(v) for v in values if isinstance(v, int | float)),
                        metric.get("Unit", "None"),
                        timestamp,
                    )


def release_sums(values: Iterable[EmfValue], release_id: str) -> dict[str, float]:
    """Metric name -> sum of the release counts of ``release_id`` among ``values``."""
    sums: dict[str, float] = {}
    for value in values:
        if value.dimensions.get(DIMENSION_RELEASE) == release_id:
            sums[value.name] = sums.get(value.name, 0.0) + sum(value.values)
    return sums
