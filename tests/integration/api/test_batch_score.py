"""``credit-risk batch-score``: every customer of a snapshot scored into Parquet, each
score what the API answers for the same customer, model and snapshot; on the local
(SQLite) store and the real PostgreSQL server."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import requests

from credit_risk import cli, names
from credit_risk.batch_scoring import SUMMARY_FILE, reasons_top_k, run_batch
from credit_risk.errors import ConfigurationError
from credit_risk.local_api import LambdaContext
from credit_risk.registry import Registry
from credit_risk.settings import Settings
from credit_risk.store import create_store
from tests.integration.api.conftest import AS_OF, MODEL_NAME, Serve, Serving
from tests.integration.store.conftest import fresh_postgres_database
from tests.script_modules import load_module

PARITY_SAMPLE = 60


def batch_score(capsys, *args: str) -> tuple[int, dict | None, str]:
    """Runs the command as a user does; its exit code, summary (stdout) and stderr."""
    code = cli.main(["batch-score", *args])
    captured = capsys.readouterr()
    # The summary is the indented JSON document on stdout (a local API server in
    # the same process may print its log lines there too).
    lines = captured.out.splitlines()
    start = max((i for i, line in enumerate(lines) if line == "{"), default=None)
    summary = json.loads("\n".join(lines[start:])) if start is not None else None
    return code, summary, captured.err


def scores(output: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(part) for part in sorted(output.glob("part-*.parquet")))


def sqlite_store(local_dir: Path):
    return create_store(Settings(local_dir=local_dir))


# --- as the API answers --------------------------------------------------------------


@pytest.mark.usefixtures("local_deployment")
def test_each_batch_score_is_the_api_answer_for_that_customer(
    capsys, tmp_path, serve: Serve, serving: Serving
):
    # given the local API serving the champion on the same store
    base_url = serve()
    output = tmp_path / "run"
    # when
    code, summary, _ = batch_score(capsys, "--output", str(output), "--chunk-rows", "97")
    # then every customer is scored once, and a sample scores as the API scores it
    assert code == 0
    table = scores(output)
    assert sorted(table.column("customer_id").to_pylist()) == sorted(serving.customer_ids)
    assert summary["model_version"] == serving.version
    assert summary["snapshot_id"] == "local-tests"
    rows = {row["customer_id"]: row for row in table.to_pylist()}
    sample = serving.customer_ids[:: max(1, len(serving.customer_ids) // PARITY_SAMPLE)]
    for start in range(0, len(sample), names.MAX_BATCH_SIZE):
        response = requests.post(
            f"{base_url}{names.ROUTE_SCORE_BATCH}",
            json={"customer_ids": sample[start : start + names.MAX_BATCH_SIZE]},
            timeout=30,
        )
        assert response.status_code == 200
        for answer in response.json()["results"]:
            row = rows[answer["customer_id"]]
            assert row["default_probability"] == answer["default_probability"]
            assert row["decision"] == answer["decision"]
            assert row["reasons"] == answer["reasons"]
            assert row["threshold"] == answer["threshold"]
            assert row["model_version"] == answer["model_version"]
            assert row["features_as_of"].isoformat() == answer["features_as_of"]
            assert row["snapshot_id"] == "local-tests"
    assert {answer["decision"] for answer in map(rows.get, sample)} == {"approve", "decline"}


def test_chunks_and_partitions_do_not_change_the_scores(tmp_path, local_dir, serving: Serving):
    registry = Registry(serving.registry_uri, MODEL_NAME)
    outputs = {}
    with sqlite_store(local_dir) as store:
        for name, partitions, chunk_rows in (("one", 1, 100_000), ("many", 5, 7)):
            outputs[name] = tmp_path / name
            run_batch(
                store,
                registry,
                output=str(outputs[name]),
                run_id=name,
                partitions=partitions,
                chunk_rows=chunk_rows,
            )
    one, many = scores(outputs["one"]), scores(outputs["many"])
    assert len(list(outputs["many"].glob("part-*.parquet"))) == 5
    assert one.equals(many)
    assert one.column("customer_id").to_pylist() == sorted(serving.customer_ids)


def test_the_summary_figures_are_those_of_the_parquet(tmp_path, local_dir, serving: Serving):
    # given
    registry = Registry(serving.registry_uri, MODEL_NAME)
    with sqlite_store(local_dir) as store:
        summary = run_batch(
            store, registry, output=str(tmp_path / "run"), run_id="r", partitions=3, chunk_rows=50
        )
    # when
    table = scores(tmp_path / "run")
    written = json.loads((tmp_path / "run" / SUMMARY_FILE).read_text())
    probabilities = table.column("default_probability").to_numpy()
    declined = pc.sum(pc.equal(table.column("decision"), "decline")).as_py()
    # then
    assert written == summary
    assert summary["customers"] == summary["scored"] == table.num_rows == len(serving.customer_ids)
    assert (summary["declined"], summary["approved"]) == (declined, table.num_rows - declined)
    assert summary["approval_rate"] == round((table.num_rows - declined) / table.num_rows, 6)
    expected = np.quantile(probabilities, [q / 10 for q in range(1, 10)], method="inverted_cdf")
    assert list(summary["score_deciles"].values()) == pytest.approx(expected.tolist(), abs=1e-9)
    assert summary["min_probability"] == pytest.approx(probabilities.min(), abs=1e-9)
    assert summary["max_probability"] == pytest.approx(probabilities.max(), abs=1e-9)
    assert summary["mean_probability"] == pytest.approx(probabilities.mean(), abs=1e-6)
    assert summary["threshold"] == serving.threshold
    assert summary["features_as_of"] == AS_OF.isoformat()
    assert summary["parts"] == [f"part-0000{i}.parquet" for i in range(3)]
    # each page of 50 customers is one row group of its part
    groups = sum(pq.ParquetFile(p).num_row_groups for p in (tmp_path / "run").glob("part-*"))
    assert groups == sum(math.ceil(n / 50) for n in _part_sizes(tmp_path / "run"))


def _part_sizes(output: Path) -> list[int]:
    return [pq.ParquetFile(p).metadata.num_rows for p in sorted(output.glob("part-*"))]


# --- PostgreSQL ------------------------------------------------------------------------


@pytest.fixture
def poisoned_url(postgres_url: str, serving: Serving) -> Iterator[tuple[str, list[str]]]:
    """A PostgreSQL store holding the snapshot, two of whose rows hold NaN and infinity
    (written behind the loader's back, which refuses them)."""
    url, drop = fresh_postgres_database(postgres_url)
    with create_store(Settings(database_url=url)) as store:
        store.migrate()
        store.load_snapshot(serving.snapshot, "pg-batch", AS_OF)
    broken = serving.customer_ids[3:5]
    with psycopg.connect(url, autocommit=True) as conn:
        (table,) = conn.execute(
            "SELECT table_name FROM feature_snapshots WHERE snapshot_id = 'pg-batch'"
        ).fetchone()
        for customer_id, value in zip(broken, ("NaN", "Infinity"), strict=True):
            conn.execute(
                psycopg.sql.SQL(
                    "UPDATE {} SET avg_amount_loans_previous = %s::float8 WHERE customer_id = %s"
                ).format(psycopg.sql.Identifier(table)),
                (value, customer_id),
            )
    yield url, broken
    drop()


@pytest.mark.postgres
@pytest.mark.usefixtures("local_deployment")
def test_postgres_scores_equal_sqlite_and_unscorable_customers_are_counted_apart(
    capsys, tmp_path, local_dir, serving: Serving, poisoned_url
):
    # given the same snapshot in SQLite and in PostgreSQL, two rows of the latter broken
    url, broken = poisoned_url
    registry = Registry(serving.registry_uri, MODEL_NAME)
    with sqlite_store(local_dir) as store:
        run_batch(store, registry, output=str(tmp_path / "sqlite"), run_id="s", chunk_rows=64)
    # when
    code, summary, err = batch_score(
        capsys,
        *("--database-url", url, "--output", str(tmp_path / "pg")),
        *("--partitions", "4", "--chunk-rows", "64"),
    )
    # then
    assert code == 1
    assert "2 customers were not scored" in err
    assert summary["unscorable"] == 2
    assert sorted(summary["unscorable_customer_ids"]) == sorted(broken)
    assert summary["unscorable_features"] == ["avg_amount_loans_previous"]
    assert summary["customers"] == len(serving.customer_ids)
    assert summary["scored"] == len(serving.customer_ids) - 2
    expected = scores(tmp_path / "sqlite").filter(
        pc.invert(pc.is_in(pc.field("customer_id"), pa.array(broken)))
    )
    postgres = scores(tmp_path / "pg")
    assert postgres.drop(["snapshot_id"]).equals(expected.drop(["snapshot_id"]))
    assert set(postgres.column("snapshot_id").to_pylist()) == {"pg-batch"}


# --- which snapshot, which model ----------------------------------------------------------


@pytest.mark.usefixtures("local_deployment")
def test_a_kept_snapshot_and_a_named_version_are_scored_when_asked(
    capsys, tmp_path, monkeypatch, serving: Serving
):
    # given a store whose active snapshot is a newer one than the kept "old"
    monkeypatch.setenv(f"{names.ENV_PREFIX}LOCAL_DIR", str(tmp_path / "local"))
    with sqlite_store(tmp_path / "local") as store:
        store.migrate()
        store.load_snapshot(serving.snapshot, "old", AS_OF)
        store.load_snapshot(serving.snapshot.slice(0, 10), "new", AS_OF)
    # when
    code, kept, _ = batch_score(
        capsys,
        *("--snapshot", "old", "--model-version", serving.candidate_version),
        *("--output", str(tmp_path / "kept")),
    )
    code_active, active, _ = batch_score(capsys)
    # then
    assert (code, code_active) == (0, 0)
    assert (kept["snapshot_id"], kept["customers"]) == ("old", len(serving.customer_ids))
    assert kept["model_version"] == serving.candidate_version
    table = scores(tmp_path / "kept")
    assert set(table.column("model_version").to_pylist()) == {serving.candidate_version}
    # the default output: a fresh run folder under the lake, named after the snapshot
    assert (active["snapshot_id"], active["customers"]) == ("new", 10)
    assert active["model_version"] == serving.version
    run_folder = Path(active["output"])
    assert run_folder.parent == tmp_path / "local" / "lake" / "batch-scores"
    assert run_folder.name.endswith("-new")
    assert (run_folder / SUMMARY_FILE).is_file()


# --- refusals --------------------------------------------------------------------------


@pytest.mark.usefixtures("local_deployment")
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--snapshot", "no-such-snapshot"), "no retained snapshot 'no-such-snapshot'"),
        (("--snapshot", "../../etc"), "no retained snapshot"),
        (("--model-version", "no-such-version"), "no version 'no-such-version'"),
    ],
)
def test_an_unknown_snapshot_or_model_is_refused_clearly(capsys, tmp_path, arguments, message):
    code, summary, err = batch_score(capsys, *arguments, "--output", str(tmp_path / "out"))

    assert code == cli.EXIT_USER_ERROR
    assert summary is None
    assert err.startswith("credit-risk batch-score: error:")
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("local_deployment")
def test_an_output_holding_files_is_never_overwritten(capsys, tmp_path):
    output = tmp_path / "out"
    first, _, _ = batch_score(capsys, "--output", str(output))
    before = {p: p.stat().st_mtime_ns for p in output.rglob("*")}

    code, summary, err = batch_score(capsys, "--output", str(output))

    assert (first, code) == (0, cli.EXIT_USER_ERROR)
    assert summary is None
    assert "already holds files" in err
    assert {p: p.stat().st_mtime_ns for p in output.rglob("*")} == before


@pytest.mark.usefixtures("local_deployment")
def test_no_model_or_no_snapshot_is_refused_with_what_to_do(capsys, tmp_path, monkeypatch):
    # an empty registry
    monkeypatch.setenv(names.ENV_REGISTRY_URI, str(tmp_path / "empty-registry"))
    code, _, err = batch_score(capsys, "--output", str(tmp_path / "a"))
    assert code == cli.EXIT_USER_ERROR
    assert "no champion" in err
    # an empty store
    monkeypatch.setenv(f"{names.ENV_PREFIX}LOCAL_DIR", str(tmp_path / "empty"))
    with sqlite_store(tmp_path / "empty") as store:
        store.migrate()
    code, _, err = batch_score(capsys, "--output", str(tmp_path / "b"))
    assert code == cli.EXIT_USER_ERROR
    assert "no active snapshot" in err


def test_bad_sizes_are_refused_by_the_command_line(capsys):
    for arguments in (("--partitions", "0"), ("--chunk-rows", "many")):
        with pytest.raises(SystemExit) as exited:
            cli.main(["batch-score", *arguments])
        assert exited.value.code == 2
        assert "Traceback" not in capsys.readouterr().err


def test_the_function_reports_a_bad_environment_as_its_configuration(monkeypatch):
    # A deployment's mistake, not the execution's input: the state machine's alert
    # must point at the function's settings.
    handler = load_module(
        "batch_scoring_handler_environment",
        Path(__file__).resolve().parents[3] / "lambdas" / "batch_scoring" / "handler.py",
    )
    monkeypatch.setenv("CREDIT_RISK_STORE_RETAINED_SNAPSHOTS", "99")
    with pytest.raises(ConfigurationError, match="invalid environment"):
        handler.lambda_handler(
            {"action": "plan", "run_id": "r1"}, LambdaContext(function_name="batch-scoring")
        )
    monkeypatch.delenv("CREDIT_RISK_STORE_RETAINED_SNAPSHOTS")
    monkeypatch.setenv("CREDIT_RISK_REASONS_TOP_K", "many")
    with pytest.raises(ConfigurationError, match="invalid environment"):
        reasons_top_k()
