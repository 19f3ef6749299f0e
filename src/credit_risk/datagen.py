"""Synthetic raw loans that look like the real extracts, with a known truth.

The real data (777,715 loans, 24 columns, DESIGN.md "Raw loans") is not public, so
this module reproduces it: customers with stable attributes and about 20 loans each
over a few years, a ``status`` label drawn from a known default probability, and
the dirt real extracts carry, each kind at its own rate. The true probability of
every loan goes to a sidecar file so that the best achievable AUC is known.

Generation streams: customers are drawn in chunks of about ``CHUNK_LOANS`` loans,
each chunk written and dropped before the next, so memory stays flat as N grows.
The same seed and N give the same bytes.

How risk depends on the features (the model tests rely on these directions):
younger borrowers, a shorter time in the current job, a larger average amount of
previous loans and a long borrowing history raise the probability of default; owning
a car and a higher income lower it; a first loan (no history) carries extra risk.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from credit_risk import io, schemas
from credit_risk.errors import InvalidInputError

DEFAULT_LOANS = 777_715
DEFAULT_SEED = 42
CHUNK_LOANS = 100_000
MEAN_LOANS_PER_CUSTOMER = 20.0

# The extraction date: DAYS_BIRTH and DAYS_EMPLOYED count days back from it.
REFERENCE_DATE = date(2024, 1, 1)
FIRST_LOAN_DATE = date(2018, 1, 1)
LAST_LOAN_DATE = date(2023, 12, 31)
_EPOCH = date(1970, 1, 1)
# Borrowers are adults: 18 on the earliest loan date, six years before REFERENCE_DATE.
ADULT_AGE = 18
MIN_AGE_AT_REFERENCE = ADULT_AGE + (REFERENCE_DATE.year - FIRST_LOAN_DATE.year)

# Columns whose null makes a row unusable; the null dirt picks one of these.
NULL_DIRT_COLUMNS = (
    "id",
    "loan_id",
    "loan_date",
    "birthday",
    "loan_amount",
    "flag_own_car",
    "status",
)
BAD_DATES = ("2021-02-30", "31/12/2020", "not a date", "2020-13-01", "20191105")
BAD_FLAGS = ("y", "X", "1", "Yes", "n")
FORMATS = ("csv", "parquet")
Format = Literal["csv", "parquet"]


@dataclass(frozen=True)
class DirtRates:
    """Share of rows carrying each kind of dirt (independently of one another)."""

    null: float = 0.004
    duplicate_loan_id: float = 0.002
    bad_date: float = 0.002
    negative_amount: float = 0.002
    bad_flag: float = 0.002

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not 0.0 <= value <= 0.5:
                raise InvalidInputError(f"dirt rate {name}={value} is outside [0, 0.5]")

    @classmethod
    def none(cls) -> DirtRates:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class GeneratorConfig:
    loans: int = DEFAULT_LOANS
    seed: int = DEFAULT_SEED
    # Share of customers who are not employed (pensioners): their job start is the
    # far-future sentinel. About 17% in the source data.
    not_employed_rate: float = 0.17
    dirt: DirtRates = field(default_factory=DirtRates)

    def __post_init__(self) -> None:
        if self.loans < 1:
            raise InvalidInputError(f"the number of loans must be at least 1, got {self.loans}")
        if not 0.0 <= self.not_employed_rate <= 1.0:
            raise InvalidInputError(f"not_employed_rate={self.not_employed_rate} is outside [0, 1]")


def _days(d: date) -> int:
    return d.toordinal() - _EPOCH.toordinal()


def _whole_years(start: pa.Array, end: pa.Array) -> np.ndarray:
    """Whole calendar years from ``start`` to ``end`` (date32 arrays, no nulls):
    one less when the anniversary has not been reached in ``end``'s year."""
    years = pc.subtract(pc.year(end), pc.year(start)).to_numpy()
    end_md = pc.add(pc.multiply(pc.month(end), 100), pc.day(end)).to_numpy()
    start_md = pc.add(pc.multiply(pc.month(start), 100), pc.day(start)).to_numpy()
    return years - (end_md < start_md)


def _as_dates(days: np.ndarray) -> pa.Array:
    return pa.array(days.astype(np.int32), pa.date32())


def default_probability(
    age: np.ndarray,
    years_on_the_job: np.ndarray,
    nb_previous_loans: np.ndarray,
    avg_amount_loans_previous: np.ndarray,
    flag_own_car: np.ndarray,
    income: np.ndarray,
) -> np.ndarray:
    """The true probability of default of a loan from its point-in-time features.

    ``years_on_the_job`` and ``avg_amount_loans_previous`` are NaN where the
    contract makes them null (not employed / no previous loan).
    """
    young = 2.0 * np.exp(-(age - 18.0) / 8.0) + 0.04 * np.maximum(age - 62.0, 0.0)
    employed = ~np.isnan(years_on_the_job)
    tenure = np.where(employed, 1.6 * np.exp(-np.nan_to_num(years_on_the_job) / 3.0), 0.5)
    first_loan = 0.8 * (nb_previous_loans == 0)
    history = 0.9 * np.maximum(np.log1p(nb_previous_loans) - 2.0, 0.0)
    has_avg = ~np.isnan(avg_amount_loans_previous)
    amount = np.where(
        has_avg,
        np.tanh(np.log(np.maximum(np.nan_to_num(avg_amount_loans_previous), 1.0) / 25_000)),
        0.0,
    )
    car = -0.8 * flag_own_car
    wealth = -0.15 * np.log(income / 160_000.0)
    logit = -5.6 + young + tenure + first_loan + history + amount + car + wealth
    return 1.0 / (1.0 + np.exp(-logit))


class _ChunkGenerator:
    """Draws customers and their loans; one ``next_chunk`` call per output chunk."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.next_customer = 0
        self.next_loan_id = 1
        self.ref = _days(REFERENCE_DATE)

    def chunks(self) -> Iterator[tuple[pa.Table, pa.Table]]:
        remaining = self.config.loans
        while remaining > 0:
            size = min(CHUNK_LOANS, remaining)
            yield self._chunk(size)
            remaining -= size

    def _loan_counts(self, total: int) -> np.ndarray:
        # 1 + negative binomial: mean MEAN_LOANS_PER_CUSTOMER, overdispersed like
        # real portfolios (many occasional borrowers, a few very frequent ones).
        p = 2.0 / (2.0 + MEAN_LOANS_PER_CUSTOMER - 1.0)
        counts = 1 + self.rng.negative_binomial(2, p, size=total // 10 + 16)
        while counts.sum() < total:
            counts = np.concatenate([counts, 1 + self.rng.negative_binomial(2, p, size=16)])
        cut = int(np.searchsorted(np.cumsum(counts), total))
        counts = counts[: cut + 1].copy()
        counts[-1] -= counts.sum() - total
        return counts

    def _chunk(self, size: int) -> tuple[pa.Table, pa.Table]:
        rng, ref = self.rng, self.ref
        counts = self._loan_counts(size)
        n_cust = len(counts)
        cust = np.repeat(np.arange(n_cust), counts)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        index_in_customer = np.arange(size) - starts

        # Customer ids: a bijection of the running customer number onto 7 digits,
        # so ids are unique across chunks and ~10% of them start with a zero.
        numbers = (
            np.arange(self.next_customer, self.next_customer + n_cust) * 7_654_321 + 1_234_567
        ) % 10_000_000
        self.next_customer += n_cust
        customer_ids = pa.array(np.char.zfill(numbers.astype(str), 7))

        # --- customer attributes ---
        not_employed = rng.random(n_cust) < self.config.not_employed_rate
        income_type = np.where(
            not_employed,
            schemas.INCOME_TYPES.index("Pensioner"),
            rng.choice([0, 1, 3, 4], size=n_cust, p=[0.63, 0.27, 0.0996, 0.0004]),
        )
        age_at_ref = np.where(
            not_employed,
            rng.uniform(52, 70, n_cust),
            np.clip(rng.normal(40, 11, n_cust), MIN_AGE_AT_REFERENCE, 67),
        )
        birthday = ref - np.round(age_at_ref * 365.25).astype(np.int64)
        tenure_at_ref = np.minimum(rng.exponential(6.0, n_cust), age_at_ref - 18.0)
        job_start = np.where(
            not_employed,
            ref + schemas.NOT_EMPLOYED_DAYS_EMPLOYED,
            ref - np.round(tenure_at_ref * 365.25).astype(np.int64),
        )
        income = np.round(np.exp(rng.normal(np.log(160_000), 0.5, n_cust)), -2)
        owns_car = rng.random(n_cust) < 0.38
        # Some customers buy a car during their history: attributes can change, and
        # the snapshot must take them from the latest loan.
        buys_car_at = np.where(
            ~owns_car & (rng.random(n_cust) < 0.10),
            rng.integers(1, np.maximum(counts, 2)),
            np.iinfo(np.int64).max,
        )
        children = np.minimum(rng.poisson(0.45, n_cust), 5)
        married = rng.random(n_cust) < 0.68
        family_status = np.where(
            married,
            rng.choice([0, 2], size=n_cust, p=[0.9, 0.1]),
            rng.choice([1, 3, 4], size=n_cust, p=[0.7, 0.15, 0.15]),
        )
        occupation = rng.integers(0, len(schemas.OCCUPATION_TYPES), n_cust)
        occupation_known = ~not_employed & (rng.random(n_cust) < 0.8)
        amount_scale = income * np.exp(rng.normal(-1.8, 0.6, n_cust))

        # --- loans: dates sorted within each customer, ties on the same day happen ---
        onboard = rng.integers(_days(FIRST_LOAN_DATE), _days(date(2023, 6, 30)), n_cust)
        span = _days(LAST_LOAN_DATE) - onboard
        offsets = np.floor(rng.random(size) * (span[cust] + 1)).astype(np.int64)
        order = np.lexsort((offsets, cust))
        loan_day = onboard[cust] + offsets[order]
        loan_ids = np.arange(self.next_loan_id, self.next_loan_id + size)
        self.next_loan_id += size
        amount = np.round(amount_scale[cust] * np.exp(rng.normal(0, 0.45, size)), 2)
        amount = np.clip(amount, 500.0, None)
        car_now = (owns_car[cust] | (index_in_customer >= buys_car_at[cust])).astype(np.int64)

        # --- point-in-time truth (same definitions as DESIGN.md "Features") ---
        loan_dates = _as_dates(loan_day)
        age = _whole_years(_as_dates(birthday[cust]), loan_dates).astype(float)
        employed_at_loan = ~not_employed[cust] & (job_start[cust] <= loan_day)
        yoj = np.where(
            employed_at_loan,
            _whole_years(_as_dates(np.minimum(job_start[cust], loan_day)), loan_dates),
            np.nan,
        )
        running = np.cumsum(amount) - amount  # sum of all earlier amounts in the chunk
        before = running - running[starts]  # ... of this customer's earlier loans only
        with np.errstate(invalid="ignore", divide="ignore"):
            avg_prev = np.where(index_in_customer > 0, before / index_in_customer, np.nan)
        true_pd = default_probability(
            age,
            yoj,
            index_in_customer.astype(float),
            avg_prev,
            car_now.astype(float),
            income[cust],
        )
        status = (rng.random(size) < true_pd).astype(np.int64)

        columns: dict[str, pa.Array | np.ndarray] = {
            "loan_id": loan_ids,
            "id": customer_ids.take(pa.array(cust)),
            "code_gender": np.where(rng.random(n_cust) < 0.67, "F", "M")[cust],
            "flag_own_car": np.where(car_now == 1, "Y", "N"),
            "flag_own_realty": np.where(rng.random(n_cust) < 0.67, "Y", "N")[cust],
            "cnt_children": children[cust],
            "amt_income_total": income[cust],
            "name_income_type": np.array(schemas.INCOME_TYPES)[income_type][cust],
            "name_education_type": rng.choice(
                np.array(schemas.EDUCATION_TYPES),
                size=n_cust,
                p=[0.68, 0.27, 0.035, 0.0135, 0.0015],
            )[cust],
            "name_family_status": np.array(schemas.FAMILY_STATUSES)[family_status][cust],
            "name_housing_type": rng.choice(
                np.array(schemas.HOUSING_TYPES),
                size=n_cust,
                p=[0.89, 0.045, 0.03, 0.015, 0.01, 0.01],
            )[cust],
            "days_birth": (birthday - ref)[cust],
            "days_employed": np.where(
                not_employed, schemas.NOT_EMPLOYED_DAYS_EMPLOYED, job_start - ref
            )[cust],
            "flag_mobil": np.ones(size, dtype=np.int64),
            "flag_work_phone": (rng.random(n_cust) < 0.22).astype(np.int64)[cust],
            "flag_phone": (rng.random(n_cust) < 0.29).astype(np.int64)[cust],
            "flag_email": (rng.random(n_cust) < 0.09).astype(np.int64)[cust],
            "occupation_type": pa.array(
                np.array(schemas.OCCUPATION_TYPES)[occupation][cust],
                mask=~occupation_known[cust],
            ),
            "cnt_fam_members": (children + 1 + married).astype(float)[cust],
            "status": status,
            "birthday": _as_dates(birthday[cust]).cast(pa.string()),
            "job_start_date": _as_dates(job_start[cust]).cast(pa.string()),
            "loan_date": loan_dates.cast(pa.string()),
            "loan_amount": amount,
        }
        raw = pa.table(columns, schema=io.arrow_schema(schemas.RAW_LOAN_COLUMNS))
        truth = pa.table(
            {"loan_id": loan_ids, "true_pd": true_pd}, schema=io.arrow_schema(schemas.TRUTH_COLUMNS)
        )
        raw, truth = self._add_dirt(raw, truth)
        # Extracts are not ordered by customer: shuffle within the chunk.
        shuffle = pa.array(rng.permutation(size))
        return raw.take(shuffle), truth.take(shuffle)

    def _add_dirt(self, raw: pa.Table, truth: pa.Table) -> tuple[pa.Table, pa.Table]:
        rng, rates, n = self.rng, self.config.dirt, raw.num_rows
        cols = {name: raw.column(name).combine_chunks() for name in raw.column_names}

        def hit(rate: float) -> np.ndarray:
            return rng.random(n) < rate

        rows = hit(rates.null)
        which = rng.integers(0, len(NULL_DIRT_COLUMNS), n)
        for k, name in enumerate(NULL_DIRT_COLUMNS):
            mask = pa.array(rows & (which == k))
            cols[name] = pc.if_else(mask, pa.scalar(None, cols[name].type), cols[name])

        rows = hit(rates.bad_date)
        which = rng.integers(0, len(schemas.RAW_DATE_COLUMNS), n)
        garbage = pa.array(np.array(BAD_DATES)[rng.integers(0, len(BAD_DATES), n)])
        for k, name in enumerate(schemas.RAW_DATE_COLUMNS):
            cols[name] = pc.if_else(pa.array(rows & (which == k)), garbage, cols[name])

        mask = pa.array(hit(rates.negative_amount))
        cols["loan_amount"] = pc.if_else(mask, pc.negate(cols["loan_amount"]), cols["loan_amount"])

        rows = hit(rates.bad_flag)
        which = rng.random(n) < 0.75  # mostly the flag that becomes a feature
        bad = pa.array(np.array(BAD_FLAGS)[rng.integers(0, len(BAD_FLAGS), n)])
        for name, pick in (("flag_own_car", which), ("flag_own_realty", ~which)):
            cols[name] = pc.if_else(pa.array(rows & pick), bad, cols[name])

        raw = pa.table(cols, schema=raw.schema)
        # Re-delivered records: a row replaced by an exact copy of an earlier one.
        rows = hit(rates.duplicate_loan_id)
        rows[0] = False
        source = np.arange(n)
        positions = np.flatnonzero(rows)
        source[positions] = np.floor(rng.random(len(positions)) * positions).astype(np.int64)
        take = pa.array(source)
        return raw.take(take), truth.take(take)


def default_output(lake: str, fmt: Format, ingest_date: date | None = None) -> str:
    """Where a new extract lands in the lake's raw zone (DESIGN.md "Flow of data")."""
    day = (ingest_date or date.today()).isoformat()
    return io.join(lake, "raw", "loans", f"ingest_date={day}", f"loans.{fmt}")


def format_of(path: str) -> Format:
    suffix = Path(path).suffix.lstrip(".").lower()
    if suffix not in FORMATS:
        raise InvalidInputError(
            f"cannot tell the format of {path!r} from its suffix; use .csv or .parquet "
            "or pass --format"
        )
    return suffix  # type: ignore[return-value]


class _Writer:
    def __init__(self, path: Path, fmt: Format) -> None:
        schema = io.arrow_schema(schemas.RAW_LOAN_COLUMNS)
        self._raw = (
            pa_csv.CSVWriter(str(path), schema)
            if fmt == "csv"
            else pq.ParquetWriter(str(path), schema, compression="zstd")
        )
        self._truth = pq.ParquetWriter(
            schemas.truth_path_for(str(path)),
            io.arrow_schema(schemas.TRUTH_COLUMNS),
            compression="zstd",
        )

    def write(self, raw: pa.Table, truth: pa.Table) -> None:
        self._raw.write_table(raw)
        self._truth.write_table(truth)

    def close(self) -> None:
        self._raw.close()
        self._truth.close()


def generate(
    output: str,
    config: GeneratorConfig | None = None,
    fmt: Format | None = None,
    on_chunk=None,
) -> str:
    """Writes ``config.loans`` raw loans to ``output`` (a local path or ``s3://`` URI)
    and the truth sidecar beside it; returns ``output``. ``on_chunk(rows)`` is called
    after each written chunk, for progress reporting."""
    config = config or GeneratorConfig()
    fmt = fmt or format_of(output)
    if fmt not in FORMATS:
        raise InvalidInputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    staging = Path(tempfile.mkdtemp(prefix="credit-risk-gen-")) if io.is_s3(output) else None
    target = staging / Path(output).name if staging else Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = _Writer(target, fmt)
    try:
        for raw, truth in _ChunkGenerator(config).chunks():
            writer.write(raw, truth)
            if on_chunk:
                on_chunk(raw.num_rows)
    finally:
        writer.close()
    if staging:
        try:
            io.upload_file(str(target), output)
            truth_file = schemas.truth_path_for(str(target))
            io.upload_file(truth_file, schemas.truth_path_for(output))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return output
