"""The training pipeline run in-process: the local twin of the state machine.

The steps run in ``STEPS`` order and stop at the same two gates as
``step_functions/training_pipeline.asl.json``: the data-quality gate (too many
quarantined rows: touch neither the store nor the model) and the model gate (the
candidate does not beat the baseline or regresses against the champion: keep the
champion). A run that passes both is released as in AWS, on a local inference
function (``credit_risk.local_canary``): shadow, canary steps, promotion, or a
rollback; the release's report is written beside the model version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from credit_risk import io, names, schemas
from credit_risk.errors import CreditRiskError
from credit_risk.settings import Settings

# One source of truth with the state machine: credit_risk.names (a test compares them).
STEPS = names.PIPELINE_STEPS
# Above this share of quarantined rows an extract is too broken to learn from or
# serve; the state machine's quality gate reads the same number.
DEFAULT_MAX_QUARANTINED_FRACTION = names.MAX_QUARANTINED_FRACTION


class PipelineStopped(CreditRiskError):  # noqa: N818 - the name callers catch
    """A gate stopped the run; nothing after it was touched."""

    def __init__(self, step: str, message: str, summary: dict[str, Any]) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.summary = summary


def quality_gate_message(report: dict[str, Any], limit: float) -> str | None:
    """Why the data-quality gate stops the run, or None when it passes."""
    fraction = float(report["quarantined_fraction"])
    if fraction > limit:
        quarantine = report.get("outputs", {}).get("quarantine", "the quarantine")
        return names.QUALITY_GATE_MESSAGE.format(fraction, limit, quarantine)
    return None


@dataclass
class PipelineRun:
    input_uri: str
    as_of: date
    run_id: str
    settings: Settings = field(default_factory=Settings)
    max_quarantined_fraction: float = DEFAULT_MAX_QUARANTINED_FRACTION
    # From this many training rows on, the Spark engine trains (the state machine's
    # Choice reads the same setting from cdk.json; None: always one machine).
    distributed_from_rows: int | None = names.DEFAULT_DISTRIBUTED_FROM_ROWS
    say: Callable[[str], None] = print
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def output_uri(self) -> str:
        return io.join(self.settings.curated_uri, self.run_id)

    def truth_uri(self) -> str | None:
        """The generator's truth sidecar beside the raw input, for the oracle AUC."""
        try:
            # A single raw file lists as itself whatever the suffix: filter again.
            found = [
                f
                for f in io.list_files(self.input_uri, schemas.TRUTH_SUFFIX)
                if f.endswith(schemas.TRUTH_SUFFIX)
            ]
            if not found and not self.input_uri.endswith(schemas.TRUTH_SUFFIX):
                found = [
                    f
                    for f in io.list_files(schemas.truth_path_for(self.input_uri))
                    if f.endswith(schemas.TRUTH_SUFFIX)
                ]
        except CreditRiskError:
            return None
        return found[0] if len(found) == 1 else None

    def run(self) -> dict[str, Any]:
        from credit_risk.features.job import run_feature_job
        from credit_risk.features.spark import build_local_session, check_raw_files, list_raw_files

        # A missing, empty or wrongly shaped input fails before the JVM start-up.
        check_raw_files(list_raw_files(self.input_uri))
        self.say(f"[1/{len(STEPS)}] features: {self.input_uri} as of {self.as_of}")
        spark = build_local_session(
            master=self.settings.spark_master, driver_memory=self.settings.spark_driver_memory
        )
        report = run_feature_job(
            spark,
            self.input_uri,
            self.output_uri,
            self.as_of,
            self.run_id,
            on_progress=lambda m: self.say(f"  {m}"),
        )
        self.summary["features"] = {
            k: report[k]
            for k in ("input_rows", "valid_rows", "quarantined_rows", "quarantined_fraction")
        }
        self.summary["features"]["output"] = self.output_uri

        self.say(f"[2/{len(STEPS)}] quality gate (limit {self.max_quarantined_fraction:.2%})")
        if reason := quality_gate_message(report, self.max_quarantined_fraction):
            raise PipelineStopped("quality_gate", reason, self.summary)

        self.say(f"[3/{len(STEPS)}] load features into the store")
        from credit_risk.active_snapshot import record_active_snapshot
        from credit_risk.store import create_store
        from credit_risk.store.loader import load_snapshot_uri

        snapshot_uri = io.join(self.output_uri, "snapshot")
        with create_store(self.settings) as store:
            loaded = load_snapshot_uri(
                store,
                snapshot_uri,
                snapshot_id=self.run_id,
                as_of=self.as_of,
                decision_retention=timedelta(days=self.settings.decision_retention_days),
            )
        # As the feature-loader function does: what the store serves, beside the lake.
        record_active_snapshot(self.settings.lake, snapshot_uri, loaded)
        self.summary["store"] = loaded.as_dict()

        from credit_risk.local_canary import RELEASE_CUSTOMERS, run_canary
        from credit_risk.model.engine import choose_engine
        from credit_risk.model.pipeline import TrainingConfig, run_training

        # The state machine's Train Choice, by the same function.
        engine = choose_engine(int(report[names.TRAINING_ROWS_FIELD]), self.distributed_from_rows)
        self.summary["training_engine"] = engine
        self.say(f"[4/{len(STEPS)}] train ({engine}), evaluate and register")

        result = run_training(
            io.join(self.output_uri, "training"),
            self.settings.registry,
            self.settings.model_name,
            config=TrainingConfig.for_settings(self.settings, engine=engine),
            truth_uri=self.truth_uri(),
            run_id=self.run_id,
            serving_snapshot_uri=io.join(self.output_uri, "snapshot"),
        )
        self.summary["model"] = result.summary()

        self.say(f"[5/{len(STEPS)}] model gate")
        if not result.gate.passed:
            failed = [r["message"] for r in result.summary()["gate"]["reasons"] if not r["passed"]]
            # Compact JSON, as the state machine's States.JsonToString writes the list.
            message = names.MODEL_GATE_MESSAGE.format(
                result.version, result.gate.outcome, json.dumps(failed, separators=(",", ":"))
            )
            raise PipelineStopped("model_gate", message, self.summary)

        # The model release, on a local inference function serving the champion.
        self.say(f"[6/{len(STEPS)}] release: shadow and canary of {result.version}")
        with create_store(self.settings) as store:
            customers = store.customer_ids(RELEASE_CUSTOMERS)
        outcome = run_canary(self.settings, result.version, customers, say=self.say)
        self.summary["release"] = outcome.as_dict()
        if not outcome.promoted:
            raise PipelineStopped(
                "release", f"{result.version} rolled back: {outcome.reason}", self.summary
            )
        self.summary["champion"] = result.version
        return self.summary
