"""A training run end to end: features in, a registered, gated version out; through
the library, the CLI and the training Lambda (S3 in moto)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, replace
from pathlib import Path

import boto3
import joblib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from credit_risk import schemas
from credit_risk.cli import main
from credit_risk.errors import InvalidInputError
from credit_risk.model import synthetic
from credit_risk.model.gate import GateConfig
from credit_risk.model.pipeline import TrainingConfig, run_training
from credit_risk.model.train import Hyperparameters, SearchConfig
from credit_risk.registry import Registry
from tests.conftest import EVENTS_DIR

MODEL = "credit-risk"
# The gate as deployed: its checks weigh the sampling error of these test periods
# (a few hundred defaults) themselves.
GATE = GateConfig()


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> tuple[Path, Path]:
    table, truth = synthetic.training_features(80_000, seed=21)
    folder = tmp_path_factory.mktemp("features")
    pq.write_table(table, folder / "part-00000.parquet")
    pq.write_table(truth, folder.parent / "loans.parquet.truth.parquet")
    return folder, folder.parent / "loans.parquet.truth.parquet"


def test_a_run_registers_a_complete_gated_version(tmp_path, features):
    # given training features and the generator's truth
    folder, truth = features

    # when training
    result = run_training(
        str(folder),
        str(tmp_path),
        MODEL,
        config=TrainingConfig(gate=GATE),
        truth_uri=str(truth),
        run_id="run-1",
        code_version="abc1234",
    )

    # then the version holds every file of DESIGN.md's layout
    version_dir = tmp_path / MODEL / result.version
    assert sorted(p.name for p in version_dir.iterdir()) == [
        "baseline.joblib",
        "calibration.png",
        "fairness.png",
        "importance.png",
        "metadata.json",
        "model.ubj",
        "model_card.md",
        "roc.png",
        "staleness.png",
    ]
    meta = json.loads((version_dir / "metadata.json").read_text())
    assert meta["feature_names"] == list(schemas.FEATURE_NAMES)
    assert meta["training_data"]["uri"] == str(folder)
    assert len(meta["training_data"]["fingerprint"]) == 64
    assert meta["code_version"] == "abc1234"
    assert meta["run_id"] == "run-1"
    assert meta["seed"] == meta["hyperparameters"]["seed"] == 42
    assert meta["threshold"]["method"] == "expected cost"
    assert set(meta["slices"]) >= {"flag_own_car=0", "flag_own_car=1", "no previous loans"}
    assert meta["oracle"]["coverage"] == 1.0
    assert meta["oracle"]["ratio"] > 0.95
    assert meta["gate"]["passed"] is True, meta["gate"]["reasons"]
    assert result.gate.passed
    # and every gate check carries its outcome, the statistical ones their interval
    checks = {c["check"]: c for c in meta["gate"]["reasons"]}
    for name in ("baseline", "calibration"):
        assert checks[name]["low"] <= checks[name]["estimate"] <= checks[name]["high"]
    assert {"adverse_impact gender", "adverse_impact age_band", "age_treatment"} <= set(checks)
    assert meta["gate"]["overrides"] == {}
    assert meta["metrics"]["auc_interval"]["low"] < meta["metrics"]["auc"]
    # and the fair-lending evidence: both groupings, the elderly never worse off
    groupings = meta["fairness"]["groupings"]
    assert set(groupings["gender"]["groups"]) == {"F", "M"}
    assert "62+" in groupings["age_band"]["groups"]
    assert meta["age_treatment"]["passed"]
    assert meta["age_treatment"]["applicants_checked"] > 0
    # and the governance pack: reasons, importance, search, model age
    assert meta["reason_table"]["codes"]
    assert sum(r["declines"] for r in meta["reason_frequencies"]) >= 1
    assert {row["feature"] for row in meta["importance"]} == set(schemas.FEATURE_NAMES)
    assert len(meta["hyperparameter_search"]["trials"]) > 1
    assert meta["staleness"]["curve"]
    # and the card shows the plots, stored beside it
    card = (version_dir / "model_card.md").read_text()
    assert f"# Model card: {MODEL} {result.version}" in card
    for plot in ("roc.png", "calibration.png", "fairness.png", "importance.png", "staleness.png"):
        assert f"]({plot})" in card
        assert (version_dir / plot).read_bytes().startswith(b"\x89PNG")
    # and the baseline kept for audit is scikit-learn's, in joblib's format
    baseline = joblib.load(version_dir / "baseline.joblib")
    assert baseline.predict_proba(np.zeros((1, len(schemas.FEATURE_NAMES)))).shape == (1, 2)
    # and the summary is what the CLI and the Lambda return
    summary = result.summary()
    assert summary["model_version"] == result.version
    assert summary["gate"]["passed"] is True
    assert summary["metrics"]["oracle_ratio"] == meta["oracle"]["ratio"]


def test_a_regressed_candidate_fails_against_the_champion(tmp_path, features):
    # given a good model, promoted
    folder, _ = features
    champion = run_training(str(folder), str(tmp_path), MODEL, config=TrainingConfig(gate=GATE))
    Registry(str(tmp_path), MODEL).promote(champion.version)

    # when a much weaker model is trained on the same data
    weak = TrainingConfig(
        gate=GATE,
        hyperparameters=replace(Hyperparameters(), max_depth=1, num_boost_round=3),
        search=SearchConfig(trials=1),
    )
    candidate = run_training(str(folder), str(tmp_path), MODEL, config=weak)

    # then the gate says it regressed against the champion, measured on the same loans
    failed = {c.check for c in candidate.gate.checks if not c.passed}
    assert "champion_auc" in failed
    comparison = candidate.metadata["champion_comparison"]
    assert comparison["version"] == champion.version
    assert comparison["metrics"]["loans"] == candidate.metadata["metrics"]["loans"]
    # and it cannot be promoted by mistake
    with pytest.raises(InvalidInputError, match="did not pass"):
        Registry(str(tmp_path), MODEL).promote(candidate.version)


def test_cli_trains_lists_shows_and_promotes(tmp_path, features, capsys):
    folder, truth = features
    registry = str(tmp_path / "registry")

    # when training from the command line
    code = main(
        [
            "train",
            "--features",
            str(folder),
            "--registry",
            registry,
            "--truth",
            str(truth),
            "--max-calibration-error",
            "0.15",
            "--json",
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    version = summary["model_version"]
    assert summary["metrics"]["oracle_auc"] > 0.7

    # then the registry commands see it, and promote it
    assert main(["registry", "--registry", registry, "list"]) == 0
    listing = capsys.readouterr().out
    assert version in listing
    assert "no champion yet" in listing
    assert main(["registry", "--registry", registry, "promote", version]) == 0
    assert f"champion is now {version}" in capsys.readouterr().out
    assert main(["registry", "--registry", registry, "show"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == version

    # and a second run naming that version is refused before it trains
    again = ["train", "--features", str(folder), "--registry", registry, "--version", version]
    assert main(again) == 2
    assert "already exists" in capsys.readouterr().err


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    code = main(["train", "--features", str(tmp_path / "nowhere"), "--registry", str(tmp_path)])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("credit-risk train: error: no such file or folder")
    assert main(["registry", "--registry", str(tmp_path), "promote", "v404"]) == 2
    assert "no version 'v404'" in capsys.readouterr().err


@dataclass
class _Context:
    function_name: str = "training"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:training"
    aws_request_id: str = "req-1"


def _put_parquet(bucket: str, key: str, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def test_lambda_trains_from_a_feature_run_on_s3(aws):
    from lambdas.training.handler import lambda_handler

    # given a feature run's outputs in the lake, and an empty registry bucket
    event = json.loads((EVENTS_DIR / "training_run.json").read_text())
    s3 = boto3.client("s3")
    for bucket in ("credit-risk-lake-test", "credit-risk-registry-test"):
        s3.create_bucket(Bucket=bucket)
    table, _ = synthetic.training_features(80_000, seed=21)
    run = "curated/run_date=2024-06-01"
    _put_parquet("credit-risk-lake-test", f"{run}/training/part-00000.parquet", table)
    # the snapshot beside it has other columns and must not be read as training data
    _put_parquet(
        "credit-risk-lake-test",
        f"{run}/snapshot/part-00000.parquet",
        pa.table({"customer_id": ["1"]}),
    )

    # when the training step runs
    response = lambda_handler({**event, "gate": {"max_calibration_error": 0.15}}, _Context())

    # then it answers the state machine and the version is in the S3 registry
    assert set(response) == {"model_version", "metrics", "gate"}
    assert set(response["gate"]) == {"passed", "outcome", "reasons"}
    registry = Registry(event["registry_uri"], MODEL)
    assert registry.versions() == [response["model_version"]]
    meta = registry.metadata(response["model_version"])
    assert meta["run_id"] == event["run_id"]
    assert meta["training_data"]["uri"].endswith("/training")
    # and the execution input's gate setting is traced in the version it let through
    assert meta["gate"]["overrides"] == {"max_calibration_error": {"value": 0.15, "default": 0.05}}
    assert registry.load(response["model_version"]).version == response["model_version"]


def test_lambda_refuses_an_invalid_event(aws):
    from lambdas.training.handler import lambda_handler

    event = json.loads((EVENTS_DIR / "training_invalid.json").read_text())
    with pytest.raises(InvalidInputError, match="invalid training event"):
        lambda_handler(event, _Context())


def test_the_monitoring_reference_is_the_serving_snapshot_when_there_is_one(tmp_path, features):
    # given the serving snapshot of the same feature run (one row per customer)
    from datetime import date

    from tests.integration.api.conftest import snapshot_of

    folder, _ = features
    snapshot = snapshot_of(pq.read_table(folder), date(2024, 6, 30))
    (tmp_path / "snapshot").mkdir()
    pq.write_table(snapshot, tmp_path / "snapshot" / "part-00000.parquet")

    # when training with it, and without it
    with_snapshot = run_training(
        str(folder),
        str(tmp_path / "a"),
        MODEL,
        config=TrainingConfig(gate=GATE),
        serving_snapshot_uri=str(tmp_path / "snapshot"),
    )
    without = run_training(
        str(folder), str(tmp_path / "b"), MODEL, config=TrainingConfig(gate=GATE)
    )

    # then the reference describes the served population, scored by the model
    reference = with_snapshot.metadata["monitoring_reference"]
    assert reference["source"] == str(tmp_path / "snapshot")
    assert reference["rows"] == snapshot.num_rows
    assert set(reference["features"]) == set(schemas.FEATURE_NAMES)
    assert sum(reference["score"]["proportions"]) == pytest.approx(1.0)
    assert without.metadata["monitoring_reference"]["source"] == "test split"
    assert without.metadata["monitoring_reference"]["rows"] < pq.read_table(folder).num_rows
