"""Training data: read the training features, check them, split them out of time.

The split is by ``loan_date``, never by a random draw of loans: a customer's later
loans carry their earlier ones in ``nb_previous_loans`` and
``avg_amount_loans_previous``, so a random split would let the model see the
future. Train on the earliest loans, stop early on the next period, and measure on
the latest one, the way the model will meet new loans in service.

Beside the features, each period carries the audit columns (``schemas.AUDIT_COLUMNS``,
the applicant's gender) so that outcomes can be compared across groups. They never
enter ``Dataset.features``: no model is trained on them.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from credit_risk import io, schemas
from credit_risk.errors import InvalidInputError

# Where a feature run (credit_risk.features.job) puts its training features.
TRAINING_SUBFOLDER = "training"


@dataclass(frozen=True)
class TrainingData:
    """The training-feature table and a fingerprint of the files it came from."""

    table: pa.Table
    uri: str
    fingerprint: str
    files: int
    # Audit columns the files lacked (written before the column existed), read as
    # all null: a model trained on them cannot be compared across those groups.
    filled_audit_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """One period of the split, as the arrays the model and the metrics need."""

    features: np.ndarray  # float64 (rows, len(FEATURE_NAMES)), NaN where null
    labels: np.ndarray  # int8, 1 = defaulted
    loan_ids: np.ndarray  # int64
    loan_dates: np.ndarray  # datetime64[D]
    # Audit-only columns, by name (``schemas.AUDIT_COLUMN_NAMES``): object arrays,
    # None where null. Never a model input; empty when the caller has none.
    audit: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.labels)

    @property
    def default_rate(self) -> float:
        return float(self.labels.mean()) if self.rows else float("nan")

    def column(self, name: str) -> np.ndarray:
        return self.features[:, schemas.FEATURE_NAMES.index(name)]


@dataclass(frozen=True)
class SplitConfig:
    """Shares of loans (by count, oldest first) held out for validation and test."""

    validation_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 0.5:
                raise InvalidInputError(f"{name}={value} must be within (0, 0.5)")
        if self.validation_fraction + self.test_fraction >= 0.8:
            raise InvalidInputError("validation and test together must leave most loans to train")


@dataclass(frozen=True)
class SplitBoundaries:
    """Half-open periods: train is ``[first, validation_start)``, validation is
    ``[validation_start, test_start)``, test is ``[test_start, last]``."""

    first_loan_date: date
    validation_start: date
    test_start: date
    last_loan_date: date

    def to_dict(self) -> dict[str, str]:
        return {key: value.isoformat() for key, value in asdict(self).items()}


@dataclass(frozen=True)
class Split:
    boundaries: SplitBoundaries
    train: Dataset
    validation: Dataset
    test: Dataset

    def periods(self) -> dict[str, Dataset]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def resolve_training_uri(uri: str) -> str:
    """The training features of ``uri``: the ``training/`` folder when ``uri`` is the
    output folder of a feature run (which also holds the snapshot and quarantine),
    else ``uri`` itself."""
    candidate = io.join(uri, TRAINING_SUBFOLDER)
    try:
        return candidate if io.list_files(candidate, ".parquet") else uri
    except InvalidInputError:
        return uri


def read_training_features(uri: str) -> TrainingData:
    """Reads the training features under ``uri`` (a Parquet file or a folder of
    them, local or ``s3://``, or a feature run's output folder) and fingerprints
    the bytes it read.

    Every column of ``schemas.TRAINING_COLUMNS`` is required but the audit columns:
    feature runs written before those existed have none, and a model can still be
    trained from them. Their audit columns are read as all null (every applicant's
    gender unknown, so no group is judged) and named in ``filled_audit_columns``.
    """
    uri = resolve_training_uri(uri.rstrip("/"))
    files = io.list_files(uri, ".parquet")
    if not files:
        raise InvalidInputError(f"no Parquet files under {uri}")
    names = [name for name, _ in schemas.TRAINING_COLUMNS]
    required = [name for name in names if name not in schemas.AUDIT_COLUMN_NAMES]
    filled: set[str] = set()
    digest = hashlib.sha256()
    tables = []
    for file in files:
        data = io.read_bytes(file)
        # The relative name goes into the hash too: the same bytes split across
        # differently named files are a different delivery.
        digest.update(file.removeprefix(uri).encode())
        digest.update(hashlib.sha256(data).digest())
        try:
            table = pq.read_table(pa.BufferReader(data))
        except pa.ArrowInvalid as exc:
            raise InvalidInputError(f"{file} is not a readable Parquet file: {exc}") from exc
        missing = [name for name in required if name not in table.column_names]
        if missing:
            raise InvalidInputError(
                f"{file} lacks the training-feature columns {', '.join(missing)}"
            )
        absent = [name for name in schemas.AUDIT_COLUMN_NAMES if name not in table.column_names]
        filled.update(absent)
        tables.append(_conform(_with_nulls(table, absent).select(names), file))
    table = pa.concat_tables(tables)
    return TrainingData(
        table=table,
        uri=uri,
        fingerprint=digest.hexdigest(),
        files=len(files),
        filled_audit_columns=tuple(n for n in schemas.AUDIT_COLUMN_NAMES if n in filled),
    )


def _with_nulls(table: pa.Table, names: list[str]) -> pa.Table:
    """``table`` with an all-null column of the contract's type for each of ``names``."""
    schema = io.arrow_schema(schemas.TRAINING_COLUMNS)
    for name in names:
        table = table.append_column(
            schema.field(name), pa.nulls(table.num_rows, schema.field(name).type)
        )
    return table


def _conform(table: pa.Table, source: str) -> pa.Table:
    """Casts to the contract's types (Spark may write int32 where we say int64)."""
    schema = io.arrow_schema(schemas.TRAINING_COLUMNS)
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(
            f"{source} does not match the training-feature schema: {exc}"
        ) from exc


def to_dataset(table: pa.Table) -> Dataset:
    """The arrays of a training-feature table; nulls become NaN, never 0."""
    if table.num_rows == 0:
        raise InvalidInputError("the training features are empty")
    for name in ("loan_id", "loan_date", schemas.LABEL_COLUMN):
        if table.column(name).null_count:
            raise InvalidInputError(f"training features have nulls in {name!r}")
    # Nulls become NaN below, where they mean "missing": a NaN or an infinity that
    # is already there is no measurement, and training on it is refused.
    io.refuse_non_finite(table, "the training features")
    labels = table.column(schemas.LABEL_COLUMN).to_numpy()
    if not np.isin(labels, (0, 1)).all():
        raise InvalidInputError(f"{schemas.LABEL_COLUMN!r} must be 0 or 1")
    features = np.column_stack(
        [
            pc.cast(table.column(name), pa.float64()).to_numpy(zero_copy_only=False)
            for name in schemas.FEATURE_NAMES
        ]
    )
    return Dataset(
        features=np.ascontiguousarray(features, dtype=np.float64),
        labels=labels.astype(np.int8),
        loan_ids=table.column("loan_id").to_numpy(),
        loan_dates=table.column("loan_date").to_numpy().astype("datetime64[D]"),
        audit={name: _audit_values(table, name) for name in schemas.AUDIT_COLUMN_NAMES},
    )


def _audit_values(table: pa.Table, name: str) -> np.ndarray:
    """The audit column as an object array, None where null (or where the table,
    built before the column existed, has none)."""
    if name not in table.column_names:
        return np.full(table.num_rows, None, dtype=object)
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=object)


def split_out_of_time(data: Dataset, config: SplitConfig | None = None) -> Split:
    """Splits by loan date into train, validation and test periods.

    Boundaries are dates taken at the loan-count quantiles, so all loans of one day
    fall in the same period. Each period must hold both outcomes, or its metrics
    (and early stopping) would mean nothing.
    """
    config = config or SplitConfig()
    ordered = np.sort(data.loan_dates)
    n = len(ordered)
    validation_start = ordered[int(n * (1.0 - config.validation_fraction - config.test_fraction))]
    test_start = ordered[int(n * (1.0 - config.test_fraction))]
    boundaries = SplitBoundaries(
        first_loan_date=_as_date(ordered[0]),
        validation_start=_as_date(validation_start),
        test_start=_as_date(test_start),
        last_loan_date=_as_date(ordered[-1]),
    )
    masks = {
        "train": data.loan_dates < validation_start,
        "validation": (data.loan_dates >= validation_start) & (data.loan_dates < test_start),
        "test": data.loan_dates >= test_start,
    }
    periods = {}
    for period, mask in masks.items():
        subset = _take(data, mask)
        positives = int(subset.labels.sum())
        if positives == 0 or positives == subset.rows:
            raise InvalidInputError(
                f"the {period} period ({subset.rows} loans from "
                f"{boundaries.to_dict()}) does not hold both defaults and repaid loans; "
                "more data or other split fractions are needed"
            )
        periods[period] = subset
    return Split(boundaries=boundaries, **periods)


def _take(data: Dataset, mask: np.ndarray) -> Dataset:
    return Dataset(
        features=data.features[mask],
        labels=data.labels[mask],
        loan_ids=data.loan_ids[mask],
        loan_dates=data.loan_dates[mask],
        audit={name: values[mask] for name, values in data.audit.items()},
    )


def _as_date(value: np.datetime64) -> date:
    return value.astype("datetime64[D]").item()


def read_truth(uri: str) -> dict[str, np.ndarray]:
    """The generator's truth sidecar as sorted, de-duplicated ``loan_id``/``true_pd``
    arrays (re-delivered rows repeat a loan with the same probability)."""
    try:
        table = io.read_parquet(uri, columns=[name for name, _ in schemas.TRUTH_COLUMNS])
    except (pa.ArrowInvalid, KeyError) as exc:
        raise InvalidInputError(f"{uri} is not a truth sidecar (loan_id, true_pd): {exc}") from exc
    loan_ids = table.column("loan_id").to_numpy(zero_copy_only=False)
    true_pd = table.column("true_pd").to_numpy(zero_copy_only=False)
    loan_ids, first = np.unique(loan_ids, return_index=True)
    return {"loan_id": loan_ids, "true_pd": true_pd[first]}


def join_truth(truth: dict[str, np.ndarray], loan_ids: np.ndarray) -> np.ndarray:
    """True probabilities for ``loan_ids``, NaN where the sidecar has no row."""
    known = truth["loan_id"]
    if len(known) == 0:
        return np.full(len(loan_ids), np.nan)
    pos = np.clip(np.searchsorted(known, loan_ids), 0, len(known) - 1)
    found = known[pos] == loan_ids
    return np.where(found, truth["true_pd"][pos], np.nan)
