"""Figures of a batch-scoring run, counted while it scores and merged across its ranges.

Each range of a run keeps a ``Tally``: customers read, scored, approved, declined,
the unscorable ones, and the distribution of the probabilities written. The
probabilities are those the API returns, rounded to ``PROBABILITY_DECIMALS``, so a
histogram with one bin per representable value (a fixed 8 MB whatever the number
of customers) gives exact quantiles of the output in constant memory. A range's
tally travels as JSON (its histogram sparse); the run's summary adds them up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from credit_risk import names
from credit_risk.errors import InvalidInputError

# The API rounds every probability it returns to 6 decimals (serving.service); the
# batch output carries the same values, which is what makes one bin per value exact.
PROBABILITY_DECIMALS = names.PROBABILITY_DECIMALS
BINS = 10**PROBABILITY_DECIMALS + 1
# Unscorable customers named in a summary; the count is always complete.
MAX_LISTED_UNSCORABLE = 100
DECILES = tuple(range(10, 100, 10))


@dataclass
class Tally:
    """Running counts of one range (or, merged, of a whole run)."""

    customers: int = 0
    approved: int = 0
    declined: int = 0
    unscorable: int = 0
    unscorable_customer_ids: list[str] = field(default_factory=list)
    unscorable_features: set[str] = field(default_factory=set)
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(BINS, dtype=np.int64))

    @property
    def scored(self) -> int:
        return self.approved + self.declined

    def add_scores(self, probabilities: list[float], decisions: list[str]) -> None:
        """Counts scores already rounded to ``PROBABILITY_DECIMALS``."""
        declined = decisions.count("decline")
        self.declined += declined
        self.approved += len(decisions) - declined
        bins = np.rint(np.asarray(probabilities, dtype=np.float64) * 10**PROBABILITY_DECIMALS)
        np.add.at(self.histogram, bins.astype(np.int64), 1)

    def add_unscorable(self, customer_id: str, features: list[str]) -> None:
        self.unscorable += 1
        self.unscorable_features.update(features)
        if len(self.unscorable_customer_ids) < MAX_LISTED_UNSCORABLE:
            self.unscorable_customer_ids.append(customer_id)

    def merge(self, other: Tally) -> None:
        self.customers += other.customers
        self.approved += other.approved
        self.declined += other.declined
        self.unscorable += other.unscorable
        room = MAX_LISTED_UNSCORABLE - len(self.unscorable_customer_ids)
        self.unscorable_customer_ids += other.unscorable_customer_ids[: max(room, 0)]
        self.unscorable_features |= other.unscorable_features
        self.histogram += other.histogram

    def to_dict(self) -> dict[str, Any]:
        bins = np.flatnonzero(self.histogram)
        return {
            "customers": self.customers,
            "approved": self.approved,
            "declined": self.declined,
            "unscorable": self.unscorable,
            "unscorable_customer_ids": list(self.unscorable_customer_ids),
            "unscorable_features": sorted(self.unscorable_features),
            "histogram": {
                "bins": bins.tolist(),
                "counts": self.histogram[bins].tolist(),
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tally:
        try:
            tally = cls(
                customers=int(data["customers"]),
                approved=int(data["approved"]),
                declined=int(data["declined"]),
                unscorable=int(data["unscorable"]),
                unscorable_customer_ids=list(data["unscorable_customer_ids"]),
                unscorable_features=set(data["unscorable_features"]),
            )
            bins = np.asarray(data["histogram"]["bins"], dtype=np.int64)
            counts = np.asarray(data["histogram"]["counts"], dtype=np.int64)
            np.add.at(tally.histogram, bins, counts)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InvalidInputError(f"not a batch-scoring tally: {exc!r}") from None
        return tally

    def figures(self) -> dict[str, Any]:
        """Counts, approval rate and the score distribution, as the summary reports them."""
        scored = self.scored
        figures: dict[str, Any] = {
            "customers": self.customers,
            "scored": scored,
            "approved": self.approved,
            "declined": self.declined,
            "approval_rate": round(self.approved / scored, 6) if scored else None,
            "unscorable": self.unscorable,
            "unscorable_customer_ids": list(self.unscorable_customer_ids),
            "unscorable_features": sorted(self.unscorable_features),
        }
        return figures | score_distribution(self.histogram)


def score_distribution(histogram: np.ndarray) -> dict[str, Any]:
    """Minimum, maximum, mean and deciles of the probabilities counted in ``histogram``.

    A decile is the smallest probability at or below which at least that share of
    customers falls (the inverted empirical distribution: every decile is a
    probability some customer got).
    """
    total = int(histogram.sum())
    if total == 0:
        return {
            "min_probability": None,
            "max_probability": None,
            "mean_probability": None,
            "score_deciles": None,
        }
    scale = 10**PROBABILITY_DECIMALS
    present = np.flatnonzero(histogram)
    cumulative = np.cumsum(histogram)
    deciles = {}
    for percent in DECILES:
        rank = math.ceil(total * percent / 100)
        deciles[f"p{percent}"] = _probability(int(np.searchsorted(cumulative, rank)), scale)
    mean = float(np.dot(present, histogram[present])) / total / scale
    return {
        "min_probability": _probability(int(present[0]), scale),
        "max_probability": _probability(int(present[-1]), scale),
        "mean_probability": round(mean, PROBABILITY_DECIMALS),
        "score_deciles": deciles,
    }


def _probability(bin_index: int, scale: int) -> float:
    return round(bin_index / scale, PROBABILITY_DECIMALS)
