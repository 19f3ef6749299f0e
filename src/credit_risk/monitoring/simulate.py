"""Scoring traffic and delayed outcomes on a laptop, for the monitor to read.

A sample of the active snapshot's customers is scored by the real
``ScoringService`` (the model, decision and records of the API), each at a time
spread over the chosen days, and the records go to the scoring log. Each customer
then gets an outcome, drawn from the generator's true risk model
(``credit_risk.datagen.default_probability``), in a labels file as the lender's
systems would deliver it weeks later. ``Shift`` scales a feature of the sampled
population before it is scored, to show what drift looks like to the monitor.
The offline snapshot keeps the unshifted values, so a shift also shows as
training/serving skew, as a broken feature pipeline would; in a real population
drift the snapshot would have moved too.

Where the outcomes differ from the generator's:
- the true model takes a loan's features at its loan date; a customer scored
  here gets those of the snapshot (as a new loan on its as-of date would),
  and after a shift the shifted ones: the population itself moved, so its risk
  follows it;
- it also takes the customer's income, which is no model input and not in the
  store. The generator makes loan amounts proportional to income, so income is
  drawn from its distribution given the customer's average previous amount
  (``income_given_amount``), or from the population when there is none;
- every scored customer gets an outcome, as if every loan had been granted. In a
  real portfolio only approved loans have one, and quality measured on them alone
  is lower than on the test period for that reason alone.
"""

from __future__ import annotations

import hashlib
import io as _io
import json
import math
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from credit_risk import datagen, io, names, schemas
from credit_risk.errors import InvalidInputError
from credit_risk.monitoring.records import ScoreRecord, partition
from credit_risk.serving.service import ScoringService
from credit_risk.store import CustomerFeatures

# Scored and looked up as the batch route would: at most this many per call.
BATCH = names.MAX_BATCH_SIZE
# Customers drawn from: the first ids of the snapshot (ids carry no order of risk).
MAX_POPULATION = 500_000
LABEL_SCHEMA = pa.schema(
    [("customer_id", pa.string()), ("decision_date", pa.date32()), ("status", pa.int64())]
)
# The generator's income and loan amounts (``datagen._ChunkGenerator._chunk``):
# log income ~ N(ln 160,000, 0.5); a customer's amount scale is income times
# exp(N(-1.8, 0.6)); each loan is the scale times exp(N(0, 0.45)).
LOG_INCOME_MEAN = math.log(160_000)
LOG_INCOME_SD = 0.5
LOG_SCALE_OFFSET = -1.8
LOG_SCALE_SD = 0.6
LOG_LOAN_SD = 0.45


@dataclass(frozen=True)
class Shift:
    """Multiply one feature of the served population by ``factor``."""

    feature: str
    factor: float

    @classmethod
    def parse(cls, text: str) -> Shift:
        feature, sep, factor = text.partition("=")
        if not sep or feature not in schemas.FEATURE_NAMES:
            raise InvalidInputError(
                f"--shift {text!r}: expected FEATURE=FACTOR with FEATURE one of "
                f"{', '.join(schemas.FEATURE_NAMES)}"
            )
        try:
            value = float(factor)
        except ValueError:
            raise InvalidInputError(f"--shift {text!r}: {factor!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise InvalidInputError(f"--shift {text!r}: the factor must be a number >= 0")
        return cls(feature, value)

    def apply(self, row: CustomerFeatures) -> CustomerFeatures:
        value = getattr(row, self.feature)
        if value is None:
            return row
        shifted = value * self.factor
        if dict(schemas.FEATURE_COLUMNS)[self.feature] == schemas.INT64:
            # Integer features stay integers, and a flag stays a flag.
            shifted = round(shifted) if self.feature != "flag_own_car" else min(round(shifted), 1)
        return replace(row, **{self.feature: shifted})

    def __str__(self) -> str:
        return f"{self.feature}={self.factor:g}"


@dataclass(frozen=True)
class TrafficConfig:
    customers: int = 1000
    days: int = 7
    end: date = field(default_factory=lambda: datetime.now(UTC).date())
    seed: int = 7
    shifts: tuple[Shift, ...] = ()

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise InvalidInputError(f"--customers must be at least 1, got {self.customers}")
        if not 1 <= self.days <= 366:
            raise InvalidInputError(f"--days must be within 1..366, got {self.days}")
        if self.end > datetime.now(UTC).date():
            raise InvalidInputError(f"--end {self.end} is in the future: nothing is scored yet")

    @property
    def start(self) -> date:
        return self.end - timedelta(days=self.days - 1)

    def tag(self) -> str:
        """A name for this run's files: the same command writes the same files, so
        running it again replaces its traffic instead of doubling it."""
        text = json.dumps(
            [
                self.customers,
                self.days,
                self.end.isoformat(),
                self.seed,
                [str(s) for s in self.shifts],
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TrafficResult:
    scores: int
    defaults: int
    declined: int
    start: date
    end: date
    model_version: str
    snapshot_id: str
    score_files: list[str]
    labels_uri: str
    shifts: tuple[Shift, ...]

    def summary(self) -> dict[str, Any]:
        return {
            "scores": self.scores,
            "declined": self.declined,
            "defaults": self.defaults,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "model_version": self.model_version,
            "snapshot_id": self.snapshot_id,
            "score_files": self.score_files,
            "labels": self.labels_uri,
            "shifts": [str(shift) for shift in self.shifts],
        }


def income_given_amount(
    avg_amount: np.ndarray, previous_loans: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Incomes drawn from the generator's distribution given each customer's
    average previous loan amount (NaN: no previous loan, the population's).

    In logs, that average is income + offset + scale noise + the mean of
    ``n`` loans' noise; the posterior of log income is normal (conjugate prior).
    The average of the loans' lognormal noise is taken at its mean, exp(σ²/2).
    """
    known = ~np.isnan(avg_amount)
    n = np.maximum(np.nan_to_num(previous_loans, nan=1.0), 1.0)
    observed_var = LOG_SCALE_SD**2 + LOG_LOAN_SD**2 / n
    observed = np.log(np.maximum(np.nan_to_num(avg_amount, nan=1.0), 1.0))
    implied = observed - LOG_SCALE_OFFSET - LOG_LOAN_SD**2 / 2
    prior_precision = 1.0 / LOG_INCOME_SD**2
    precision = np.where(known, prior_precision + 1.0 / observed_var, prior_precision)
    mean = np.where(
        known,
        (LOG_INCOME_MEAN * prior_precision + implied / observed_var) / precision,
        LOG_INCOME_MEAN,
    )
    return np.exp(rng.normal(mean, 1.0 / np.sqrt(precision)))


def true_default_probability(rows: list[CustomerFeatures], rng: np.random.Generator) -> np.ndarray:
    """The generator's probability of default for customers with these features."""

    def column(name: str) -> np.ndarray:
        return np.array([getattr(r, name) for r in rows], dtype=np.float64)

    avg_amount, previous = column("avg_amount_loans_previous"), column("nb_previous_loans")
    return datagen.default_probability(
        age=column("age"),
        years_on_the_job=column("years_on_the_job"),
        nb_previous_loans=np.nan_to_num(previous),
        avg_amount_loans_previous=avg_amount,
        flag_own_car=np.nan_to_num(column("flag_own_car")),
        income=income_given_amount(avg_amount, previous, rng),
    )


def _sample(service: ScoringService, count: int, rng: np.random.Generator) -> list[str]:
    snapshot = service.store.active_snapshot()
    if snapshot is None or snapshot.row_count == 0:
        raise InvalidInputError("the feature store has no active snapshot with customers")
    population = service.store.customer_ids(min(snapshot.row_count, MAX_POPULATION))
    chosen = rng.choice(len(population), size=min(count, len(population)), replace=False)
    return [population[i] for i in sorted(chosen)]


def _times(config: TrafficConfig, count: int, rng: np.random.Generator) -> list[datetime]:
    """Uniform over the window, never later than now."""
    first = datetime.combine(config.start, time(), UTC)
    last = min(datetime.combine(config.end + timedelta(days=1), time(), UTC), datetime.now(UTC))
    offsets = np.sort(rng.uniform(0.0, (last - first).total_seconds(), count))
    return [first + timedelta(seconds=float(s)) for s in offsets]


def simulate_traffic(
    service: ScoringService, config: TrafficConfig, *, scoring_log_uri: str, labels_root: str
) -> TrafficResult:
    """Scores a sample of customers over ``config.days`` days up to ``config.end``,
    writes their records under ``scoring_log_uri`` and their outcomes to
    ``<labels_root>/labels-<end>-<tag>.parquet`` (``TrafficConfig.tag``)."""
    rng = np.random.default_rng(config.seed)
    customer_ids = _sample(service, config.customers, rng)
    rows: list[CustomerFeatures] = []
    for start in range(0, len(customer_ids), BATCH):
        found = service.store.get_many(customer_ids[start : start + BATCH])
        rows.extend(found[cid] for cid in customer_ids[start : start + BATCH] if cid in found)
    for shift in config.shifts:
        rows = [shift.apply(row) for row in rows]
    # Traffic arrives in random order: who is scored when is drawn, not sorted by id.
    rows = [rows[i] for i in rng.permutation(len(rows))]
    served = [
        item for i in range(0, len(rows), BATCH) for item in service.score_rows(rows[i : i + BATCH])
    ]

    records: list[ScoreRecord] = []
    for item, scored_at in zip(served, _times(config, len(served), rng), strict=True):
        request_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        records.extend(service.score_records([item], request_id, scored_at))
    score_files = _write_records(scoring_log_uri, records, config.tag())

    outcomes = rng.random(len(rows)) < true_default_probability(rows, rng)
    labels = pa.table(
        {
            "customer_id": [row.customer_id for row in rows],
            "decision_date": [record.scored_at.date() for record in records],
            "status": outcomes.astype(np.int64),
        },
        schema=LABEL_SCHEMA,
    )
    labels_uri = io.join(labels_root, f"labels-{config.end.isoformat()}-{config.tag()}.parquet")
    buffer = _io.BytesIO()
    pq.write_table(labels, buffer)
    io.write_bytes(labels_uri, buffer.getvalue())
    return TrafficResult(
        scores=len(records),
        defaults=int(outcomes.sum()),
        declined=sum(record.decision == "decline" for record in records),
        start=config.start,
        end=config.end,
        model_version=service.model_version,
        snapshot_id=rows[0].snapshot_id if rows else "",
        score_files=score_files,
        labels_uri=labels_uri,
        shifts=config.shifts,
    )


def _write_records(root: str, records: list[ScoreRecord], tag: str) -> list[str]:
    """One file per day, ``<root>/date=YYYY-MM-DD/simulated-<tag>.jsonl``, written
    whole (so on S3 too, where the local sink's appends cannot go)."""
    by_day: dict[date, list[str]] = {}
    for record in records:
        by_day.setdefault(record.scored_at.date(), []).append(f"{record.to_json()}\n")
    files = []
    for day, lines in sorted(by_day.items()):
        uri = io.join(root, partition(day), f"simulated-{tag}.jsonl")
        io.write_bytes(uri, "".join(lines).encode("utf-8"))
        files.append(uri)
    return files
