"""Training benchmark: raw loans → Spark feature job → training, at 1x and 10x.

    uv run --frozen --no-sync python bench/train.py [--loans 777715] [--scales 1,10]
                                                    [--workdir DIR] [--synthetic]

For each scale it generates ``loans x scale`` raw loans with ``credit_risk.datagen``
(with its dirt and truth sidecar), runs the feature job in local Spark
(``credit_risk.features.job.run_feature_job``), then the whole training run
(``credit_risk.model.pipeline.run_training``: split, XGBoost, baseline, evaluation,
gate, model card, registry). It prints the time of each step, the AUC, the oracle
AUC (the generator's true probabilities on the same test loans) and their ratio, and
the calibration on the test period, against the targets.

``--synthetic`` skips the generator and Spark and draws the training features
straight from the generator's default-probability function
(``credit_risk.model.synthetic``): the training figures alone, in a fraction of
the time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from credit_risk import schemas

TARGETS = {"train_s_1x": 60.0, "oracle_ratio": 0.97, "calibration_error": 0.05}
AS_OF = "2024-01-01"


def _features_via_spark(loans: int, workdir: Path) -> tuple[str, str, dict[str, float]]:
    from credit_risk import datagen
    from credit_risk.features.job import run_feature_job
    from credit_risk.features.spark import build_local_session

    seconds: dict[str, float] = {}
    raw = workdir / "raw" / "loans.parquet"
    raw.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    datagen.generate(str(raw), datagen.GeneratorConfig(loans=loans))
    seconds["generate"] = time.perf_counter() - start

    start = time.perf_counter()
    spark = build_local_session("bench-train", driver_memory="3g")
    try:
        report = run_feature_job(spark, str(raw.parent), str(workdir / "features"), AS_OF)
    finally:
        spark.stop()
    seconds["features"] = time.perf_counter() - start
    print(f"  feature job: {report.get('training_rows', '?'):,} training rows", file=sys.stderr)
    return str(workdir / "features"), schemas.truth_path_for(str(raw)), seconds


def _features_synthetic(loans: int, workdir: Path) -> tuple[str, str, dict[str, float]]:
    from credit_risk.model import synthetic

    start = time.perf_counter()
    table, truth = synthetic.training_features(loans, seed=42)
    folder = workdir / "features" / "training"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "part-00000.parquet")
    pq.write_table(truth, workdir / "truth.parquet")
    return str(folder), str(workdir / "truth.parquet"), {"synthesize": time.perf_counter() - start}


def bench(loans: int, workdir: Path, synthetic: bool) -> dict:
    from credit_risk.model.pipeline import run_training

    make = _features_synthetic if synthetic else _features_via_spark
    features, truth, seconds = make(loans, workdir)
    result = run_training(features, str(workdir / "registry"), "credit-risk", truth_uri=truth)
    meta = result.metadata
    return {
        "loans": loans,
        "seconds": {**seconds, **{f"train.{k}": v for k, v in result.seconds.items()}},
        "train_rows": meta["training_data"]["periods"]["train"]["loans"],
        "best_iteration": meta["best_iteration"],
        "metrics": meta["metrics"],
        "baseline_auc": meta["baseline"]["metrics"]["auc"],
        "oracle": meta["oracle"],
        "gate": result.gate,
    }


def _report(figures: dict, scale: int) -> None:
    m, oracle, s = figures["metrics"], figures["oracle"], figures["seconds"]
    total = s["train.total"]
    print(f"\n== {figures['loans']:,} loans ({scale}x) ==")
    for name, value in s.items():
        print(f"  {name:<28} {value:8.1f} s")
    target = f" (target ≤ {TARGETS['train_s_1x']:.0f} s)" if scale == 1 else ""
    print(f"  training run total           {total:8.1f} s{target}")
    print(f"  train rows {figures['train_rows']:,}, best iteration {figures['best_iteration']}")
    print(f"  AUC              {m['auc']:.4f}   (logistic baseline {figures['baseline_auc']:.4f})")
    print(f"  oracle AUC       {oracle['auc']:.4f}")
    print(f"  ratio            {oracle['ratio']:.4f}   (target ≥ {TARGETS['oracle_ratio']})")
    print(
        f"  calibration      mean predicted {m['mean_predicted']:.5f} vs observed "
        f"{m['observed_rate']:.5f} ({m['calibration_error']:+.2%}; true mean PD "
        f"{oracle['true_mean_pd']:.5f}; target within ±{TARGETS['calibration_error']:.0%})"
    )
    print(f"  log loss {m['log_loss']:.4f}  Brier {m['brier']:.5f}  KS {m['ks']:.4f}")
    print(f"  gate             {'PASSED' if figures['gate'].passed else 'FAILED'}")
    for reason in figures["gate"].reasons:
        if reason.startswith("FAIL"):
            print(f"    {reason}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loans", type=int, default=777_715, help="loans at scale 1")
    parser.add_argument("--scales", default="1,10", help="comma-separated multiples of --loans")
    parser.add_argument("--workdir", default=None, help="keep the data here (default: temp)")
    parser.add_argument(
        "--synthetic", action="store_true", help="skip the generator and Spark (training only)"
    )
    args = parser.parse_args()
    for scale in (int(s) for s in args.scales.split(",")):
        root = Path(args.workdir or tempfile.mkdtemp(prefix="bench-train-")) / f"x{scale}"
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        try:
            _report(bench(args.loans * scale, root, args.synthetic), scale)
        finally:
            if not args.workdir:
                shutil.rmtree(root.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
