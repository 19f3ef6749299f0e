"""Training/serving skew: are the features served the features computed offline?

A seeded sample of served records is compared, value by value, with the offline
serving snapshot the store was loaded from (``<lake>/curated/<snapshot_id>/snapshot/``,
the feature job's output for that run). Customer ids in the snapshot are hashed with
the service's key to find each served customer. Integers must be equal, floats equal
to a relative 1e-9, nulls must be null on both sides; a served customer missing from
its snapshot, or served under another as-of date, is a mismatch too. Any mismatch
means the online path computes or loads something the offline path does not.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from credit_risk import io, names, schemas
from credit_risk.errors import CreditRiskError
from credit_risk.monitoring.report import ALERT, OK, WARN, skipped

if TYPE_CHECKING:
    from credit_risk.monitoring.records import ScoreRecord

RELATIVE_TOLERANCE = 1e-9
MAX_EXAMPLES = 20
AS_OF = "as_of"
MISSING_OFFLINE = "missing_offline"
_INTEGER_FEATURES = frozenset(
    name for name, kind in schemas.FEATURE_COLUMNS if kind == schemas.INT64
)


def snapshot_uri(lake: str, snapshot_id: str) -> str:
    """Where the feature job wrote the serving snapshot of run ``snapshot_id``."""
    return io.join(lake, names.CURATED_PREFIX, snapshot_id, "snapshot")


def same_value(name: str, served: float | None, offline: float | None) -> bool:
    """Equal under the skew rules: exact for integers, 1e-9 relative for floats."""
    if served is None or offline is None:
        return served is None and offline is None
    if name in _INTEGER_FEATURES:
        return served == offline
    return math.isclose(served, offline, rel_tol=RELATIVE_TOLERANCE, abs_tol=0.0)


def sample_records(records: Sequence[ScoreRecord], size: int, seed: int) -> list[ScoreRecord]:
    """Up to ``size`` records with a snapshot id, one per customer and snapshot,
    drawn reproducibly for a given ``seed``."""
    distinct: dict[tuple[str, str], ScoreRecord] = {}
    for record in records:
        if record.snapshot_id:
            distinct.setdefault((record.customer_hash, record.snapshot_id), record)
    candidates = list(distinct.values())
    if len(candidates) <= size:
        return candidates
    chosen = np.random.default_rng(seed).choice(len(candidates), size=size, replace=False)
    return [candidates[i] for i in sorted(chosen)]


@dataclass
class SkewResult:
    sampled: int = 0
    compared: int = 0
    mismatched_records: int = 0
    by_feature: Counter = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)
    unverifiable: dict[str, str] = field(default_factory=dict)  # snapshot id → why

    def mismatch(self, record: ScoreRecord, what: str, served: Any, offline: Any) -> None:
        self.by_feature[what] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(
                {
                    "customer_hash": record.customer_hash,
                    "snapshot_id": record.snapshot_id,
                    "feature": what,
                    "served": served,
                    "offline": offline,
                }
            )

    @property
    def mismatches(self) -> int:
        return sum(self.by_feature.values())

    def to_dict(self, sample_size: int) -> dict[str, Any]:
        if self.mismatches:
            status = ALERT
        elif self.unverifiable or not self.compared:
            status = WARN
        else:
            status = OK
        return {
            "status": status,
            "thresholds": {"sample_size": sample_size, "relative_tolerance": RELATIVE_TOLERANCE},
            "sampled": self.sampled,
            "compared": self.compared,
            "mismatches": self.mismatches,
            "mismatched_records": self.mismatched_records,
            "by_feature": dict(sorted(self.by_feature.items())),
            "examples": self.examples,
            "unverifiable_snapshots": self.unverifiable,
        }


def _offline_rows(
    lake: str, snapshot_id: str, wanted: set[str], hash_id: Callable[[str], str]
) -> dict[str, dict[str, Any]]:
    """The snapshot's rows of the ``wanted`` customer hashes, keyed by hash."""
    columns = ["customer_id", *schemas.FEATURE_NAMES, AS_OF]
    table = io.read_parquet(snapshot_uri(lake, snapshot_id), columns=columns)
    ids = table.column("customer_id").to_pylist()
    rows: dict[str, dict[str, Any]] = {}
    hits = [(i, h) for i, h in enumerate(map(hash_id, ids)) if h in wanted]
    if hits:
        picked = table.take([i for i, _ in hits]).to_pylist()
        rows = {h: row for (_, h), row in zip(hits, picked, strict=True)}
    return rows


def detect_skew(
    records: Sequence[ScoreRecord],
    lake: str,
    hash_id: Callable[[str], str],
    *,
    sample_size: int,
    seed: int,
) -> dict[str, Any]:
    """The skew section of the report for a window's ``records``."""
    sample = sample_records(records, sample_size, seed)
    if not sample:
        return skipped(
            "no served record names a snapshot",
            thresholds={"sample_size": sample_size, "relative_tolerance": RELATIVE_TOLERANCE},
            mismatches=0,
        )
    result = SkewResult(sampled=len(sample))
    by_snapshot: dict[str, list[ScoreRecord]] = defaultdict(list)
    for record in sample:
        by_snapshot[record.snapshot_id].append(record)
    for snapshot_id, served in sorted(by_snapshot.items()):
        try:
            offline = _offline_rows(lake, snapshot_id, {r.customer_hash for r in served}, hash_id)
        except CreditRiskError as exc:  # no such snapshot in the lake (any more)
            result.unverifiable[snapshot_id] = str(exc)
            continue
        for record in served:
            result.compared += 1
            row = offline.get(record.customer_hash)
            if row is None:
                result.mismatched_records += 1
                result.mismatch(record, MISSING_OFFLINE, True, False)
                continue
            before = result.mismatches
            if row[AS_OF] != record.features_as_of:
                result.mismatch(
                    record, AS_OF, record.features_as_of.isoformat(), row[AS_OF].isoformat()
                )
            for name in schemas.FEATURE_NAMES:
                served_value, offline_value = record.features.get(name), row[name]
                if not same_value(name, served_value, offline_value):
                    result.mismatch(record, name, served_value, offline_value)
            result.mismatched_records += result.mismatches > before
    return result.to_dict(sample_size)
