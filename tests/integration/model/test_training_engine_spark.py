"""The distributed training engine (XGBoost's Spark estimator, Spark in local mode)
against the single-machine one on the same features: the same artefacts out, a
model of the same quality."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from credit_risk import names, schemas
from credit_risk.model import engine, synthetic
from credit_risk.model.data import read_training_features, split_out_of_time, to_dataset
from credit_risk.model.evaluate import metrics
from credit_risk.model.package import ModelPackage
from credit_risk.model.pipeline import TrainingConfig, run_training
from credit_risk.model.train import Hyperparameters, SearchConfig
from credit_risk.registry import CARD_FILE, MODEL_FILE, Registry

pytestmark = pytest.mark.spark

MODEL = "credit-risk"
# Small enough for two local cores, large enough for a test period with defaults.
LOANS = 30_000
PARAMS = Hyperparameters(num_boost_round=300, early_stopping_rounds=20)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """The run's session if the feature tests started one, else a small local one."""
    from pyspark.sql import SparkSession

    from credit_risk.features import build_local_session

    active = SparkSession.getActiveSession()
    session = active or build_local_session(
        "credit-risk-engine-tests", master="local[2]", shuffle_partitions=2, driver_memory="1g"
    )
    yield session
    if active is None:
        session.stop()


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    table, _ = synthetic.training_features(LOANS, seed=5)
    folder = tmp_path_factory.mktemp("features") / "training"
    folder.mkdir()
    # Two files, as Spark writes them: the engine reads the folder, not one file.
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), folder / "part-00000.parquet")
    pq.write_table(table.slice(half), folder / "part-00001.parquet")
    return folder


@pytest.fixture(scope="module")
def runs(spark, features, tmp_path_factory) -> dict[str, Any]:
    """One registered version per engine, from the same features, each in its own
    registry (so that neither is the other's champion)."""
    results = {}
    for name in names.TRAINING_ENGINES:
        registry = tmp_path_factory.mktemp(f"registry-{name}")
        config = TrainingConfig(
            hyperparameters=PARAMS,
            search=SearchConfig(trials=1),
            engine=name,
            engine_workers=2 if name == names.TRAINING_ENGINE_SPARK else None,
        )
        result = run_training(
            str(features), str(registry), MODEL, config=config, run_id=f"run-{name}"
        )
        results[name] = (result, registry)
    return results


def test_the_spark_engine_registers_a_model_serving_loads_and_scores(runs, features):
    # given a version the Spark engine trained and registered
    result, registry = runs[names.TRAINING_ENGINE_SPARK]

    # when serving loads it from the registry (sha256 checked) and scores
    package = Registry(str(registry), MODEL).load(result.version)
    split = split_out_of_time(to_dataset(read_training_features(str(features)).table))
    probabilities = package.predict(split.test.features)
    score = package.score([dict(zip(schemas.FEATURE_NAMES, split.test.features[0], strict=True))])

    # then it is an XGBoost UBJ file with the five features, scoring finite probabilities
    model_file = registry / MODEL / result.version / MODEL_FILE
    assert model_file.read_bytes()[:1] == b"{"  # UBJSON object
    assert isinstance(package, ModelPackage)
    assert package.feature_names == schemas.FEATURE_NAMES
    assert np.isfinite(probabilities).all()
    assert 0.0 < score[0].default_probability < 1.0
    # and the booster is the one cut at the best round, as the single engine's
    assert result.metadata["rounds_trained"] > result.metadata["best_iteration"]


def test_the_spark_engine_writes_the_same_metadata_gate_and_card(runs):
    # given one version per engine from the same features
    spark_result, spark_registry = runs[names.TRAINING_ENGINE_SPARK]
    single_result, _ = runs[names.TRAINING_ENGINE_SINGLE]

    # then the Spark version's metadata has every entry the single engine's has
    assert set(spark_result.metadata) == set(single_result.metadata)
    assert spark_result.metadata["training_engine"]["name"] == names.TRAINING_ENGINE_SPARK
    assert single_result.metadata["training_engine"]["name"] == names.TRAINING_ENGINE_SINGLE
    assert "pyspark" in spark_result.metadata["framework"]
    # the same hyperparameters (the seeded search's base point, monotone constraints
    # included) and the same split
    assert spark_result.metadata["hyperparameters"] == single_result.metadata["hyperparameters"]
    assert spark_result.metadata["split"] == single_result.metadata["split"]
    # and the same gate was judged, with the same checks, and a card written
    spark_checks = [c["check"] for c in spark_result.summary()["gate"]["reasons"]]
    single_checks = [c["check"] for c in single_result.summary()["gate"]["reasons"]]
    assert spark_checks == single_checks
    assert (spark_registry / MODEL / spark_result.version / CARD_FILE).is_file()
    # the age rule (Regulation B) holds for the Spark booster too: monotone in age
    assert spark_result.metadata["age_treatment"]["passed"] is True


def test_the_spark_engine_is_as_good_as_the_single_machine_one(runs):
    # given one version per engine from the same features
    spark_auc = runs[names.TRAINING_ENGINE_SPARK][0].metadata["metrics"]["auc"]
    single_auc = runs[names.TRAINING_ENGINE_SINGLE][0].metadata["metrics"]["auc"]

    # then their test AUCs are close: two workers see their own halves of the
    # histogram sketch, so the trees differ a little, not the model's quality
    assert abs(spark_auc - single_auc) < 0.02


def test_the_spark_fit_keeps_the_single_engines_early_stopping(spark, features):
    # given the train and validation periods as the single engine and Spark see them
    split = split_out_of_time(to_dataset(read_training_features(str(features)).table))
    frame = engine.training_frame(
        spark, str(features), split.boundaries.validation_start, split.boundaries.test_start
    )

    # when one worker fits (no sketch to merge: the same histogram as one machine)
    trained = engine.fit_spark(frame, PARAMS, workers=1)

    # then its validation log loss at the best round is the one the driver measures
    probabilities = trained.booster.inplace_predict(split.validation.features, missing=np.nan)
    measured = metrics(split.validation.labels, probabilities)["log_loss"]
    assert trained.validation_logloss == pytest.approx(measured, rel=1e-3)
    assert trained.booster.num_boosted_rounds() == trained.best_iteration + 1
    assert frame.count() == split.train.rows + split.validation.rows
