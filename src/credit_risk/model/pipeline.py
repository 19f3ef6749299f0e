"""One training run, start to finish: read → split → train → evaluate → gate →
register. The CLI, the training Lambda and the benchmark all call ``run_training``.

Every run is registered, the rejected ones too: the registry is the audit trail,
and ``promote`` refuses a version whose gate failed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import xgboost as xgb

from credit_risk import __version__, io, names, schemas
from credit_risk.errors import InvalidInputError
from credit_risk.model import baseline as baseline_model
from credit_risk.model import card, engine, fairness, governance, groups
from credit_risk.model.data import (
    Dataset,
    SplitConfig,
    join_truth,
    read_training_features,
    read_truth,
    split_out_of_time,
    to_dataset,
)
from credit_risk.model.evaluate import ThresholdPolicy, evaluate, metrics, slice_masks
from credit_risk.model.gate import GateConfig, GateEvidence, GateVerdict, evaluate_gate
from credit_risk.model.reasons import reason_table_document, top_reasons
from credit_risk.model.train import Hyperparameters, SearchConfig
from credit_risk.monitoring.reference import build_reference
from credit_risk.registry import BASELINE_FILE, CARD_FILE, Registry, new_version, sha256
from credit_risk.settings import Settings


@dataclass(frozen=True)
class TrainingConfig:
    split: SplitConfig = field(default_factory=SplitConfig)
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    gate: GateConfig = field(default_factory=GateConfig)
    threshold: ThresholdPolicy = field(default_factory=ThresholdPolicy)
    search: SearchConfig = field(default_factory=SearchConfig)
    # The model-age evidence: test loans in windows of this many days, and the
    # AUC drop the monitor tolerates (its auc_drop_tolerance); max_model_age_days
    # is the environment's setting, judged in the card against what was measured.
    staleness_window_days: int = 30
    staleness_tolerance: float = 0.05
    max_model_age_days: int | None = None
    # Which engine fits the booster (credit_risk.model.engine: names.TRAINING_ENGINES)
    # and, for the Spark engine, how many XGBoost workers (None: Spark's default
    # parallelism). Everything after the fit is the same whichever engine.
    engine: str = names.TRAINING_ENGINE_SINGLE
    engine_workers: int | None = None

    @classmethod
    def for_settings(cls, settings: Settings, **overrides: Any) -> TrainingConfig:
        """The environment's model-age setting and AUC tolerance (the monitor's),
        so that a version's card judges the age the monitor will enforce."""
        return cls(
            staleness_tolerance=settings.auc_drop_tolerance,
            max_model_age_days=settings.max_model_age_days,
            **overrides,
        )


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


def _champion_scores(registry: Registry, test: Dataset) -> tuple[str, np.ndarray] | None:
    """The champion's probabilities on the candidate's test loans (a fair
    comparison: its own recorded metrics come from another period)."""
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
    return version, champion.predict(test.features[:, columns])


def _reason_frequencies(
    booster: xgb.Booster, test: Dataset, probabilities: np.ndarray, threshold: float
) -> list[dict]:
    """How often each reason code is given to the declined test loans, as serving
    would give them: what a reviewer checks the notices against."""
    declined = test.features[probabilities >= threshold]
    counts: dict[str, int] = {}
    if len(declined):
        matrix = xgb.DMatrix(declined, missing=np.nan, feature_names=list(schemas.FEATURE_NAMES))
        contributions = booster.predict(matrix, pred_contribs=True)
        for row, values in zip(contributions, declined, strict=True):
            for reason in top_reasons(row[:-1], values, schemas.FEATURE_NAMES, decline=True):
                counts[reason.code] = counts.get(reason.code, 0) + 1
    return [
        {"code": code, "declines": n, "share": n / len(declined)}
        for code, n in sorted(counts.items(), key=lambda item: -item[1])
    ]


def _gate_overrides(gate: GateConfig) -> dict:
    """Gate settings that differ from the defaults, whoever set them (the CLI, the
    execution input of the state machine): recorded so that no threshold changes
    without a trace in the version it let through."""
    defaults = GateConfig().to_dict()
    return {
        name: {"value": value, "default": defaults[name]}
        for name, value in gate.to_dict().items()
        if value != defaults[name]
    }


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
    search = engine.search(
        config.engine,
        split,
        config.hyperparameters,
        trials=config.search.trials,
        seed=config.search.seed,
        training_uri=source.uri,
        workers=config.engine_workers,
    )
    trained = search.model
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
    champion = _champion_scores(registry, split.test)
    fairness_report = fairness.group_outcomes(
        split.test.labels,
        probabilities,
        config.threshold.threshold,
        groups.grouping(split.test.column("age"), split.test.audit.get("code_gender")),
        config.gate.fairness(),
    )

    def predict(matrix: np.ndarray) -> np.ndarray:
        return trained.booster.inplace_predict(matrix, missing=np.nan)

    age_treatment = fairness.age_counterfactual(predict, split.test.features)
    verdict = evaluate_gate(
        GateEvidence(
            labels=split.test.labels,
            candidate=probabilities,
            baseline=baseline_probabilities,
            champion=champion[1] if champion else None,
            champion_version=champion[0] if champion else None,
            slices=slice_masks(split.test),
            fairness=fairness_report,
            age_treatment=age_treatment,
        ),
        config.gate,
    )
    clock["evaluate"] = time.perf_counter() - mark

    mark = time.perf_counter()
    importance = governance.permutation_importance(
        predict, split.test, seed=search.hyperparameters.seed
    )
    curve = governance.staleness_curve(
        split.test,
        probabilities,
        split.boundaries.test_start,
        window_days=config.staleness_window_days,
        confidence=config.gate.confidence,
    )
    supported_age = governance.supported_model_age(curve, tolerance=config.staleness_tolerance)
    clock["governance"] = time.perf_counter() - mark

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
        "framework": engine.framework(config.engine),
        "training_engine": {"name": config.engine, "workers": config.engine_workers},
        "hyperparameters": search.hyperparameters.to_dict(),
        "seed": search.hyperparameters.seed,
        "hyperparameter_search": search.to_dict(),
        "importance": importance,
        "staleness": {
            "curve": curve,
            "supported_age": supported_age,
            "max_model_age_days": config.max_model_age_days,
        },
        "best_iteration": trained.best_iteration,
        "rounds_trained": trained.rounds_trained,
        "metrics": report["test"],
        "validation_metrics": metrics(split.validation.labels, validation_probabilities),
        "calibration_table": report["calibration_table"],
        "slices": report["slices"],
        "threshold": report["threshold"],
        "oracle": report.get("oracle"),
        "baseline": {"file": BASELINE_FILE, "metrics": baseline_metrics},
        "champion_comparison": (
            {"version": champion[0], "metrics": metrics(split.test.labels, champion[1])}
            if champion
            else None
        ),
        "gate": {
            **verdict.to_dict(),
            "config": config.gate.to_dict(),
            "overrides": _gate_overrides(config.gate),
        },
        "fairness": fairness_report,
        "age_treatment": age_treatment,
        "reason_table": reason_table_document(),
        "reason_frequencies": _reason_frequencies(
            trained.booster, split.test, probabilities, config.threshold.threshold
        ),
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
        card.IMPORTANCE_FILE: card.importance_png(importance),
        card.STALENESS_FILE: card.staleness_png(curve, supported_age),
        card.FAIRNESS_FILE: card.fairness_png(fairness_report),
    }
    stored = registry.publish(version, model_bytes, metadata, files)
    clock["card_and_register"] = time.perf_counter() - mark
    clock["total"] = time.perf_counter() - started
    return TrainingResult(version=version, metadata=stored, gate=verdict, seconds=clock)
