"""The generator's contract: shape, determinism, dirt rates, truth, plausibility."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from credit_risk import datagen, io, schemas
from credit_risk.cli import main
from credit_risk.errors import InvalidInputError

RAW_SCHEMA = io.arrow_schema(schemas.RAW_LOAN_COLUMNS)


def read_raw(path) -> pa.Table:
    if str(path).endswith(".parquet"):
        return pq.read_table(path)
    return pa_csv.read_csv(
        path,
        convert_options=pa_csv.ConvertOptions(
            column_types=RAW_SCHEMA, strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )


def generate(tmp_path, name="loans.parquet", **config) -> tuple[pa.Table, pa.Table]:
    path = tmp_path / name
    datagen.generate(str(path), datagen.GeneratorConfig(**config))
    return read_raw(path), pq.read_table(schemas.truth_path_for(str(path)))


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[pa.Table, pa.Table]:
    """200k loans without dirt: the population the label is drawn from."""
    return generate(tmp_path_factory.mktemp("clean"), loans=200_000, dirt=datagen.DirtRates.none())


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> tuple[pa.Table, pa.Table]:
    """200k loans with every kind of dirt at 2%."""
    rates = datagen.DirtRates(0.02, 0.02, 0.02, 0.02, 0.02)
    return generate(tmp_path_factory.mktemp("dirty"), "loans.csv", loans=200_000, dirt=rates)


def unparseable(column: pa.ChunkedArray) -> np.ndarray:
    # Arrow's strptime rolls 2021-02-30 over to March: a date parses only when
    # formatting it again gives back the same text.
    parsed = pc.strptime(column, format=schemas.RAW_DATE_FORMAT, unit="s", error_is_null=True)
    same = pc.equal(pc.strftime(parsed, format=schemas.RAW_DATE_FORMAT), column)
    return ~pc.fill_null(same, False).to_numpy(zero_copy_only=False) & pc.is_valid(column).to_numpy(
        zero_copy_only=False
    )


def dirt_counts(raw: pa.Table) -> dict[str, int]:
    n = raw.num_rows
    nulls = np.zeros(n, dtype=bool)
    for name in datagen.NULL_DIRT_COLUMNS:
        nulls |= pc.is_null(raw.column(name)).to_numpy(zero_copy_only=False)
    bad_dates = np.zeros(n, dtype=bool)
    for name in schemas.RAW_DATE_COLUMNS:
        bad_dates |= unparseable(raw.column(name))
    bad_flags = np.zeros(n, dtype=bool)
    for name in ("flag_own_car", "flag_own_realty"):
        valid = pc.is_in(raw.column(name), pa.array(schemas.YES_NO))
        bad_flags |= ~valid.to_numpy(zero_copy_only=False) & pc.is_valid(raw.column(name)).to_numpy(
            zero_copy_only=False
        )
    loan_ids = raw.column("loan_id").drop_null()
    return {
        "null": int(nulls.sum()),
        "bad_date": int(bad_dates.sum()),
        "bad_flag": int(bad_flags.sum()),
        "negative_amount": int(pc.sum(pc.less(raw.column("loan_amount"), 0)).as_py() or 0),
        "duplicate_loan_id": len(loan_ids) - len(pc.unique(loan_ids)),
    }


# --- shape --------------------------------------------------------------------


def test_parquet_output_has_the_24_columns_with_their_types(clean):
    raw, _ = clean
    assert raw.schema == RAW_SCHEMA
    assert len(raw.column_names) == 24


def test_csv_output_has_the_24_columns_in_order_and_ids_keep_leading_zeros(dirty):
    raw, _ = dirty
    assert tuple(raw.column_names) == schemas.RAW_LOAN_COLUMN_NAMES
    ids = raw.column("id").drop_null()
    assert pc.all(pc.equal(pc.utf8_length(ids), 7)).as_py()
    assert pc.sum(pc.starts_with(ids, "0")).as_py() > 0


@pytest.mark.parametrize("loans", [1, 7, datagen.CHUNK_LOANS + 3])
def test_writes_exactly_the_requested_number_of_loans(tmp_path, loans):
    raw, truth = generate(tmp_path, loans=loans)
    assert raw.num_rows == truth.num_rows == loans


def test_loans_are_generated_and_written_a_chunk_at_a_time(tmp_path):
    # given more loans than one chunk holds
    path, written = tmp_path / "loans.parquet", []
    loans = datagen.CHUNK_LOANS + 3
    datagen.generate(str(path), datagen.GeneratorConfig(loans=loans), on_chunk=written.append)
    # then they are drawn and written in bounded chunks, never held all at once
    assert written == [datagen.CHUNK_LOANS, 3]
    assert pq.ParquetFile(path).metadata.num_row_groups == 2


# --- determinism --------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.csv", "a.parquet"])
def test_same_seed_gives_the_same_bytes(tmp_path, name):
    first, second = tmp_path / "1" / name, tmp_path / "2" / name
    for path in (first, second):
        datagen.generate(str(path), datagen.GeneratorConfig(loans=30_000, seed=7))
    assert first.read_bytes() == second.read_bytes()
    truth_first, truth_second = (Path(schemas.truth_path_for(str(p))) for p in (first, second))
    assert truth_first.read_bytes() == truth_second.read_bytes()


def test_another_seed_gives_other_data(tmp_path):
    a, _ = generate(tmp_path / "a", loans=5_000, seed=1)
    b, _ = generate(tmp_path / "b", loans=5_000, seed=2)
    assert not a.equals(b)


# --- dirt ---------------------------------------------------------------------


def test_without_dirt_there_is_none(clean):
    raw, _ = clean
    assert dirt_counts(raw) == dict.fromkeys(
        ("null", "bad_date", "bad_flag", "negative_amount", "duplicate_loan_id"), 0
    )


@pytest.mark.parametrize(
    "kind", ["null", "bad_date", "bad_flag", "negative_amount", "duplicate_loan_id"]
)
def test_each_dirt_rate_is_close_to_its_setting(dirty, kind):
    raw, _ = dirty
    observed = dirt_counts(raw)[kind] / raw.num_rows
    assert observed == pytest.approx(0.02, rel=0.15)


def test_duplicated_loan_ids_are_exact_copies_of_another_row(dirty):
    raw, truth = dirty
    table = raw.append_column("true_pd", truth.column("true_pd")).to_pandas()
    duplicated = table[table.duplicated("loan_id", keep=False) & table.loan_id.notna()]
    assert len(duplicated) > 0
    per_id = duplicated.groupby("loan_id").nunique(dropna=False)
    assert (per_id == 1).all().all()


def test_not_employed_customers_carry_the_far_future_sentinel(clean):
    raw, _ = clean
    frame = raw.select(["id", "days_employed", "job_start_date", "name_income_type"]).to_pandas()
    sentinel = frame.days_employed == schemas.NOT_EMPLOYED_DAYS_EMPLOYED
    assert (frame.job_start_date[sentinel].str[:4].astype(int) > 3000).all()
    assert (frame.name_income_type[sentinel] == "Pensioner").all()
    customers = frame.groupby("id").days_employed.first()
    share = (customers == schemas.NOT_EMPLOYED_DAYS_EMPLOYED).mean()
    assert share == pytest.approx(0.17, abs=0.02)


def test_the_sentinel_rate_is_configurable(tmp_path):
    raw, _ = generate(tmp_path, loans=20_000, not_employed_rate=0.0)
    assert schemas.NOT_EMPLOYED_DAYS_EMPLOYED not in raw.column("days_employed").to_pylist()


@pytest.mark.parametrize(
    "build",
    [
        lambda: datagen.GeneratorConfig(loans=0),
        lambda: datagen.GeneratorConfig(not_employed_rate=1.5),
        lambda: datagen.DirtRates(null=-0.1),
        lambda: datagen.DirtRates(bad_date=0.9),
    ],
    ids=["no-loans", "share-above-one", "negative-rate", "rate-too-high"],
)
def test_invalid_settings_are_refused(build):
    with pytest.raises(InvalidInputError):
        build()


# --- truth and plausibility ---------------------------------------------------


def test_truth_sidecar_is_aligned_with_the_raw_rows(clean):
    raw, truth = clean
    assert truth.schema == io.arrow_schema(schemas.TRUTH_COLUMNS)
    assert truth.column("loan_id").equals(raw.column("loan_id"))
    pd_ = truth.column("true_pd").to_numpy()
    assert ((pd_ > 0) & (pd_ < 1)).all()


def test_labels_follow_the_true_probabilities(clean):
    raw, truth = clean
    status = raw.column("status").to_numpy()
    pd_ = truth.column("true_pd").to_numpy()
    expected, sd = pd_.sum(), np.sqrt((pd_ * (1 - pd_)).sum())
    assert abs(status.sum() - expected) < 4 * sd
    # Higher true risk, more defaults: the top decile defaults far more than the bottom.
    order = np.argsort(pd_)
    tenth = len(order) // 10
    assert status[order[-tenth:]].mean() > 3 * status[order[:tenth]].mean()


def test_default_rate_and_loans_per_customer_are_plausible(clean):
    raw, _ = clean
    rate = pc.mean(raw.column("status")).as_py()
    assert 0.005 < rate < 0.05
    per_customer = raw.num_rows / len(pc.unique(raw.column("id")))
    assert 15 < per_customer < 25


def test_loan_dates_span_years_and_some_fall_on_the_same_day(clean):
    raw, _ = clean
    frame = raw.select(["id", "loan_date"]).to_pandas()
    years = frame.loan_date.str[:4].astype(int)
    assert years.max() - years.min() >= 4
    assert frame.duplicated(["id", "loan_date"]).sum() > 0


def test_day_counts_agree_with_the_dates(clean):
    raw, _ = clean
    frame = raw.select(["birthday", "days_birth", "job_start_date", "days_employed"]).to_pandas()
    ref = np.datetime64(datagen.REFERENCE_DATE)
    birthday = frame.birthday.astype("datetime64[s]").to_numpy().astype("datetime64[D]")
    assert ((birthday - ref).astype(int) == frame.days_birth).all()
    employed = frame.days_employed != schemas.NOT_EMPLOYED_DAYS_EMPLOYED
    start = frame.job_start_date[employed].astype("datetime64[s]").to_numpy()
    days = (start.astype("datetime64[D]") - ref).astype(int)
    assert (days == frame.days_employed[employed]).all()


def test_borrowers_are_adults_at_every_loan(clean):
    raw, _ = clean
    frame = raw.select(["birthday", "loan_date"]).to_pandas()
    born, lent = (frame[c].astype("datetime64[s]") for c in ("birthday", "loan_date"))
    not_reached = (lent.dt.month * 100 + lent.dt.day) < (born.dt.month * 100 + born.dt.day)
    age = lent.dt.year - born.dt.year - not_reached
    assert age.min() >= datagen.ADULT_AGE
    assert age.min() <= datagen.ADULT_AGE + 2  # and the young are there, not cut off


def test_customer_attributes_are_stable_except_buying_a_car(clean):
    raw, _ = clean
    frame = raw.to_pandas()
    stable = ["code_gender", "birthday", "job_start_date", "amt_income_total", "name_income_type"]
    assert (frame.groupby("id")[stable].nunique() == 1).all().all()
    changes = frame.groupby("id").flag_own_car.nunique()
    assert 0 < (changes > 1).mean() < 0.2


@pytest.mark.parametrize(
    ("feature", "low", "high", "direction"),
    [
        ("age", 22.0, 55.0, "down"),
        ("years_on_the_job", 0.0, 10.0, "down"),
        ("nb_previous_loans", 10.0, 60.0, "up"),
        ("avg_amount_loans_previous", 5_000.0, 80_000.0, "up"),
        ("flag_own_car", 0.0, 1.0, "down"),
    ],
)
def test_true_risk_moves_in_the_documented_direction(feature, low, high, direction):
    base = {
        "age": 40.0,
        "years_on_the_job": 3.0,
        "nb_previous_loans": 12.0,
        "avg_amount_loans_previous": 25_000.0,
        "flag_own_car": 0.0,
        "income": 160_000.0,
    }

    def pd_at(value: float) -> float:
        args = {k: np.array([v]) for k, v in {**base, feature: value}.items()}
        return float(datagen.default_probability(**args)[0])

    assert (pd_at(high) > pd_at(low)) == (direction == "up")


# --- the command --------------------------------------------------------------


def test_the_command_writes_the_file_and_its_sidecar(tmp_path, capsys):
    output = tmp_path / "raw" / "loans.parquet"
    code = main(["generate-data", "--loans", "1000", "--output", str(output), "--seed", "3"])
    assert code == 0
    assert pq.read_table(output).num_rows == 1000
    assert pq.read_table(schemas.truth_path_for(str(output))).num_rows == 1000
    assert str(output) in capsys.readouterr().out


def test_the_command_defaults_to_the_lakes_raw_zone(tmp_path, monkeypatch):
    monkeypatch.setenv("CREDIT_RISK_LOCAL_DIR", str(tmp_path))
    assert main(["generate-data", "--loans", "500"]) == 0
    files = list((tmp_path / "lake" / "raw" / "loans").glob(f"ingest_date={date.today()}/*"))
    assert sorted(f.name for f in files) == ["loans.csv", "loans.csv.truth.parquet"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--loans", "0"], "must be at least 1"),
        (["--loans", "many"], "not a whole number"),
        (["--null-rate", "0.7"], "within [0, 0.5]"),
        (["--output", "loans.txt"], "cannot tell the format"),
    ],
)
def test_bad_arguments_get_a_clear_error_and_a_non_zero_exit(tmp_path, capsys, argv, message):
    argv = [a.replace("loans.txt", str(tmp_path / "loans.txt")) for a in argv]
    try:
        code = main(["generate-data", *argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
