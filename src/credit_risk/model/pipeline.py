"""One training run, start to finish: read → split → train → evaluate → gate →
register. The CLI, the training Lambda and the benchmark all call ``run_training``.

Every run is registered, the rejected ones too: the registry is the audit trail,
and ``promote`` refuses a version whose gate failed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import xgboost as xgb

from credit_risk import __version__, io, schemas
from credit_risk.errors import InvalidInputError
from credit_risk.model import baseline as baseline_model
from credit_risk.model import card
from credit_risk.model.data import (
    Dataset,
    SplitConfig,
    join_truth,
    read_training_features,
    read_truth,
    split_out_of_time,
    to_dataset,
)
from credit_risk.model.evaluate import ThresholdPolicy, evaluate, metrics
from credit_risk.model.gate import GateConfig, GateVerdict, evaluate_gate
from credit_risk.model.reasons import REASON_TEXTS
from credit_risk.model.train import Hyperparameters, train_model
from credit_risk.monitoring.reference import build_reference
from credit_risk.registry import BASELINE_FILE, CARD_FILE, Registry, new_version, sha256


@dataclass(frozen=True)
class TrainingConfig:
    split: SplitConfig = field(default_factory=SplitConfig)
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    gate: GateConfig = field(default_factory=GateConfig)
    threshold: ThresholdPolicy = field(default_factory=ThresholdPolicy)


@dataclass(frozen=True)
class TrainingResult:
    version: str
    metadata: dict
    gate: GateVerdict
    seconds: dict[str, float]

    def summary(self) -> dict:
        """What the CLI prints and the training Lambda returns."""
        test = self.metadata["metrics"]
        oracle = self.metadata.get("oracle") or {}
        return {
            "model_version": self.version,
            "metrics": {
                "auc": test["auc"],
                "log_loss": test["log_loss"],
                "brier": test["brier"],
                "ks": test["ks"],
                "mean_predicted": test["mean_predicted"],
                "observed_rate": test["observed_rate"],
                "calibration_error": test["calibration_error"],
                "baseline_auc": self.metadata["baseline"]["metrics"]["auc"],
                "oracle_auc": oracle.get("auc"),
                "oracle_ratio": oracle.get("ratio"),
                "threshold": self.metadata["threshold"]["value"],
            },
            "gate": self.gate.to_dict(),
        }


def _period_summary(data: Dataset) -> dict:
    return {
        "loans": data.rows,
        "defaults": int(data.labels.sum()),
        "default_rate": data.default_rate,
    }


def _predict(booster: xgb.Booster, data: Dataset) -> np.ndarray:
    return booster.inplace_predict(data.features, missing=np.nan)


def _monitoring_reference(
    booster: xgb.Booster,
    test: Dataset,
    test_probabilities: np.ndarray,
    serving_snapshot_uri: str | None,
) -> dict:
    """What the monitor compares served inputs and scores with.

    The serving snapshot of the same feature run when there is one: it is the
    population the model serves first, with features as of the run date, which is
    what every later scoring-log record carries (loan-time training features are
    younger: their ages and job tenures would read as drift on day one). Without
    it, the test period's loans, the latest ones, scored out of sample.
    """
    if serving_snapshot_uri is None:
        reference = build_reference(
            {name: test.column(name) for name in schemas.FEATURE_NAMES}, test_probabilities
        )
        return {**reference, "source": "test split"}
    snapshot = io.read_parquet(serving_snapshot_uri, columns=list(schemas.FEATURE_NAMES))
    columns = {
        name: snapshot.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        for name in schemas.FEATURE_NAMES
    }
    matrix = np.column_stack([columns[name] for name in schemas.FEATURE_NAMES])
    scores = booster.inplace_predict(matrix, missing=np.nan)
    return {**build_reference(columns, scores), "source": serving_snapshot_uri}


def _champion_metrics(registry: Registry, test: Dataset) -> dict | None:
    """The champion, measured on the candidate's test loans (a fair comparison:
    its own recorded metrics come from another period)."""
    version = registry.champion_version()
    if version is None:
        return None
    champion = registry.load(version)
    missing = [name for name in champion.feature_names if name not in schemas.FEATURE_NAMES]
    if missing:
        raise InvalidInputError(
            f"champion {version} needs features {missing} that the training data lacks"
        )
    columns = [schemas.FEATURE_NAMES.index(name) for name in champion.feature_names]
    probabilities = champion.predict(test.features[:, columns])
    return {"version": version, "metrics": metrics(test.labels, probabilities)}


def run_training(
    features_uri: str,
    registry_uri: str,
    model_name: str,
    *,
    config: TrainingConfig | None = None,
    truth_uri: str | None = None,
    run_id: str | None = None,
    version: str | None = None,
    code_version: str | None = None,
    serving_snapshot_uri: str | None = None,
) -> TrainingResult:
    config = config or TrainingConfig()
    registry = Registry(registry_uri, model_name)
    if version is not None:
        registry.check_new_version(version)
    clock: dict[str, float] = {}
    started = time.perf_counter()

    source = read_training_features(features_uri)
    split = split_out_of_time(to_dataset(source.table), config.split)
    clock["read_and_split"] = time.perf_counter() - started

    mark = time.perf_counter()
    trained = train_model(split.train, split.validation, config.hyperparameters)
    clock["train_xgboost"] = time.perf_counter() - mark

    mark = time.perf_counter()
    baseline = baseline_model.fit_baseline(split.train)
    baseline_probabilities = baseline_model.predict_baseline(baseline, split.test)
    clock["train_baseline"] = time.perf_counter() - mark

    mark = time.perf_counter()
    probabilities = _predict(trained.booster, split.test)
    validation_probabilities = _predict(trained.booster, split.validation)
    true_pd = join_truth(read_truth(truth_uri), split.test.loan_ids) if truth_uri else None
    report = evaluate(split.test, probabilities, config.threshold, true_pd)
    baseline_metrics = metrics(split.test.labels, baseline_probabilities)
    champion = _champion_metrics(registry, split.test)
    verdict = evaluate_gate(
        {**report["test"], "slices": report["slices"]},
        baseline_metrics,
        config.gate,
        champion["metrics"] if champion else None,
        champion["version"] if champion else None,
    )
    clock["evaluate"] = time.perf_counter() - mark

    model_bytes = trained.model_bytes()
    version = version or new_version(sha256(model_bytes))
    metadata = {
        "model_name": model_name,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": run_id,
        "feature_names": list(schemas.FEATURE_NAMES),
        "label": schemas.LABEL_COLUMN,
        "training_data": {
            "uri": source.uri,
            "fingerprint": source.fingerprint,
            "files": source.files,
            "rows": source.table.num_rows,
            "periods": {name: _period_summary(d) for name, d in split.periods().items()},
        },
        "split": {**split.boundaries.to_dict(), **asdict(config.split)},
        "code_version": code_version or __version__,
        "framework": {"xgboost": xgb.__version__},
        "hyperparameters": config.hyperparameters.to_dict(),
        "seed": config.hyperparameters.seed,
        "best_iteration": trained.best_iteration,
        "rounds_trained": trained.rounds_trained,
        "metrics": report["test"],
        "validation_metrics": metrics(split.validation.labels, validation_probabilities),
        "calibration_table": report["calibration_table"],
        "slices": report["slices"],
        "threshold": report["threshold"],
        "oracle": report.get("oracle"),
        "baseline": {"file": BASELINE_FILE, "metrics": baseline_metrics},
        "champion_comparison": champion,
        "gate": {**verdict.to_dict(), "config": config.gate.to_dict()},
        "reason_codes": REASON_TEXTS,
        "monitoring_reference": _monitoring_reference(
            trained.booster, split.test, probabilities, serving_snapshot_uri
        ),
    }
    mark = time.perf_counter()
    files = {
        BASELINE_FILE: baseline_model.baseline_bytes(baseline),
        CARD_FILE: card.model_card(metadata).encode(),
        card.ROC_FILE: card.roc_png(
            split.test.labels,
            {"XGBoost": probabilities, "logistic baseline": baseline_probabilities},
        ),
        card.CALIBRATION_FILE: card.calibration_png(report["calibration_table"]),
    }
    stored = registry.publish(version, model_bytes, metadata, files)
    clock["card_and_register"] = time.perf_counter() - mark
    clock["total"] = time.perf_counter() - started
    return TrainingResult(version=version, metadata=stored, gate=verdict, seconds=clock)
