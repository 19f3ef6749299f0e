"""``credit-risk simulate-traffic`` on a local deployment: the API tests' champion model
and its customers in the SQLite store, a lake in a temporary folder."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from credit_risk import cli, names, schemas
from credit_risk.model.evaluate import metrics
from credit_risk.monitoring.records import read_scoring_log
from credit_risk.monitoring.reference import bin_proportions
from credit_risk.registry import Registry
from credit_risk.serving.service import IdHasher
from tests.integration.api.conftest import (  # noqa: F401 - fixtures shared with the API tests
    ENV_HASH_KEY,
    ENV_LOCAL_DIR,
    HASH_KEY,
    MODEL_NAME,
    Serving,
    local_dir,
    serving,
)

END = datetime.now(UTC).date() - timedelta(days=1)
DAYS = 3


@pytest.fixture
def lake(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    local_dir: Path,  # noqa: F811
    serving: Serving,  # noqa: F811
) -> Path:
    """The CLI's environment: the API tests' store and registry, a lake of its own."""
    for name, value in {
        ENV_LOCAL_DIR: str(local_dir),
        names.ENV_REGISTRY_URI: serving.registry_uri,
        names.ENV_MODEL_NAME: MODEL_NAME,
        names.ENV_LAKE_URI: str(tmp_path / "lake"),
        ENV_HASH_KEY: HASH_KEY,
    }.items():
        monkeypatch.setenv(name, value)
    for name in (names.ENV_DATABASE_URL, names.ENV_SCORING_LOG_URI, names.ENV_MODEL_VERSION):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "lake"


def simulate(capsys: pytest.CaptureFixture[str], *options: str) -> dict:
    argv = ["simulate-traffic", "--days", str(DAYS), "--end", END.isoformat(), *options]
    assert cli.main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def psi(expected: list[float], actual: np.ndarray) -> float:
    e, a = np.maximum(np.asarray(expected), 1e-4), np.maximum(actual, 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def test_scores_a_sample_over_the_days_and_writes_their_outcomes(
    lake: Path,
    serving: Serving,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
):
    # When 1000 customers are simulated over three days
    summary = simulate(capsys, "--customers", "1000", "--seed", "5")
    records = read_scoring_log(str(lake / "scoring-log"), END - timedelta(days=DAYS - 1), END)
    # Then each is scored once by the champion on the snapshot's features
    assert summary["scores"] == len(records) == 1000
    assert {r.model_version for r in records} == {serving.version}
    assert {r.snapshot_id for r in records} == {"local-tests"}
    assert {r.scored_at.date() for r in records} == {END - timedelta(days=n) for n in range(DAYS)}
    rows = {row["customer_id"]: row for row in serving.snapshot.to_pylist()}
    hash_id = IdHasher(HASH_KEY.encode())
    served = {hash_id(customer_id): row for customer_id, row in rows.items()}
    for record in records:
        row = served[record.customer_hash]
        assert record.features == {name: row[name] for name in schemas.FEATURE_NAMES}
    # And the labels file has the contract's columns, one outcome per scored customer
    labels = pq.read_table(summary["labels"])
    assert Path(summary["labels"]).parent == lake / "labels"
    assert Path(summary["labels"]).name.startswith(f"labels-{END.isoformat()}-")
    assert labels.schema == pa.schema(
        [("customer_id", pa.string()), ("decision_date", pa.date32()), ("status", pa.int64())]
    )
    assert labels.num_rows == 1000
    by_hash = {r.customer_hash: r for r in records}
    outcomes, scores = [], []
    for label in labels.to_pylist():
        record = by_hash[hash_id(label["customer_id"])]
        assert label["decision_date"] == record.scored_at.date()
        outcomes.append(label["status"])
        scores.append(record.default_probability)
    # And outcomes follow the true risk the model learnt: it ranks them well above chance
    assert 0 < sum(outcomes) < len(outcomes)
    assert metrics(np.array(outcomes), np.array(scores))["auc"] > 0.6


def test_the_same_command_replaces_its_traffic_instead_of_adding_to_it(
    lake: Path, capsys: pytest.CaptureFixture[str]
):
    first = simulate(capsys, "--customers", "200")
    second = simulate(capsys, "--customers", "200")
    assert first == second
    records = read_scoring_log(str(lake / "scoring-log"), END - timedelta(days=DAYS - 1), END)
    assert len(records) == 200


def test_a_shift_moves_the_served_population_away_from_the_reference(
    lake: Path,
    serving: Serving,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
):
    # Given the training reference of the champion's ages
    reference = Registry(serving.registry_uri, MODEL_NAME).metadata(serving.version)
    ages = reference["monitoring_reference"]["features"]["age"]
    window = (END - timedelta(days=DAYS - 1), END)

    def served_ages(name: str, *options: str) -> np.ndarray:
        log = lake / f"scoring-log-{name}"
        simulate(capsys, "--customers", "800", *options)
        (lake / "scoring-log").rename(log)
        return np.array([r.features["age"] for r in read_scoring_log(str(log), *window)], float)

    # When traffic is simulated as is, and with ages scaled by 0.6
    stable = served_ages("stable")
    shifted = served_ages("shifted", "--shift", "age=0.6")
    # Then the shifted ages are the stable ones scaled, and only they drift
    assert np.median(shifted) == pytest.approx(0.6 * np.median(stable), abs=1)
    assert psi(ages["proportions"], bin_proportions(stable, ages["edges"])) < 0.1
    assert psi(ages["proportions"], bin_proportions(shifted, ages["edges"])) > 0.25


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--shift", "income=2"], "FEATURE=FACTOR"),
        (["--shift", "age=-1"], ">= 0"),
        (["--shift", "age=much"], "not a number"),
        (["--customers", "0"], "--customers"),
        (["--days", "0"], "--days"),
        (["--model-version", "no-such-version"], "no-such-version"),
    ],
)
def test_bad_options_are_one_line_errors(
    lake: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
):
    assert cli.main(["simulate-traffic", *options]) == cli.EXIT_USER_ERROR
    error = capsys.readouterr().err
    assert message in error
    assert "Traceback" not in error
    assert not (lake / "labels").exists()


def test_traffic_in_the_future_is_refused(lake: Path, capsys: pytest.CaptureFixture[str]):
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    assert cli.main(["simulate-traffic", "--end", tomorrow.isoformat()]) == cli.EXIT_USER_ERROR
    assert "in the future" in capsys.readouterr().err
