"""``credit-risk train``: train, evaluate and gate a model, then register it."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from credit_risk.model.evaluate import ThresholdPolicy
from credit_risk.model.gate import GateConfig
from credit_risk.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    gate = GateConfig()
    policy = ThresholdPolicy()
    parser = subparsers.add_parser(
        "train",
        help="train the XGBoost model, evaluate and gate it, and register the version",
        description=(
            "Train on the training features with an out-of-time split, compare the model "
            "with a logistic baseline and the current champion, and register the version "
            "(model.ubj, metadata.json, baseline, model card) whatever the gate says. "
            "Promote it with `credit-risk registry promote`."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--features",
        required=True,
        help="training features: a Parquet file or folder, or a feature run's output "
        "folder (its training/ subfolder is used); local path or s3:// URI",
    )
    parser.add_argument(
        "--registry",
        default=None,
        help="registry root (directory or s3:// URI); default: "
        "CREDIT_RISK_REGISTRY_URI, else .local/registry",
    )
    parser.add_argument(
        "--truth",
        default=None,
        help="the generator's truth sidecar (loan_id, true_pd), to report the oracle AUC",
    )
    parser.add_argument("--model-name", default=None, help="default: CREDIT_RISK_MODEL_NAME")
    parser.add_argument("--version", default=None, help="version name; default: time + sha256")
    parser.add_argument("--run-id", default=None, help="id of the pipeline run, kept in metadata")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--search-trials",
        type=int,
        default=None,
        help=(
            "hyperparameter sets tried, chosen on the validation period "
            "(1: no search; default: credit_risk.model.train.SearchConfig)"
        ),
    )
    group = parser.add_argument_group("gate")
    for spec in fields(GateConfig):
        group.add_argument(
            f"--{spec.name.replace('_', '-')}",
            type=type(getattr(gate, spec.name)),
            default=getattr(gate, spec.name),
            help=f"gate: {spec.name.replace('_', ' ')}",
        )
    group = parser.add_argument_group("decision threshold (expected cost)")
    group.add_argument(
        "--cost-of-default",
        type=float,
        default=policy.cost_of_default,
        help="loss when an approved loan defaults",
    )
    group.add_argument(
        "--cost-of-declined-good",
        type=float,
        default=policy.cost_of_declined_good,
        help="margin forgone when a loan that would have been repaid is declined",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `credit-risk --help` should not load XGBoost and scikit-learn.
    from credit_risk.errors import InvalidInputError
    from credit_risk.model.pipeline import TrainingConfig, run_training
    from credit_risk.model.train import SearchConfig

    settings = Settings()
    if args.cost_of_default <= 0 or args.cost_of_declined_good <= 0:
        raise InvalidInputError("decision costs must be positive")
    if args.search_trials is not None and args.search_trials < 1:
        raise InvalidInputError("--search-trials must be at least 1")
    config = TrainingConfig.for_settings(
        settings,
        gate=GateConfig(**{spec.name: getattr(args, spec.name) for spec in fields(GateConfig)}),
        threshold=ThresholdPolicy(args.cost_of_default, args.cost_of_declined_good),
        search=SearchConfig(trials=args.search_trials or SearchConfig().trials),
    )
    result = run_training(
        args.features,
        args.registry or settings.registry,
        args.model_name or settings.model_name,
        config=config,
        truth_uri=args.truth,
        run_id=args.run_id,
        version=args.version,
        code_version=settings.code_version,
    )
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, result.seconds["total"])
    return 0


def _print_summary(summary: dict, seconds: float) -> None:
    m, gate = summary["metrics"], summary["gate"]
    out = sys.stdout
    out.write(f"model version   {summary['model_version']}\n")
    out.write(f"AUC             {m['auc']:.4f} (baseline {m['baseline_auc']:.4f})\n")
    if m["oracle_auc"] is not None:
        out.write(f"oracle AUC      {m['oracle_auc']:.4f} (ratio {m['oracle_ratio']:.4f})\n")
    out.write(f"log loss        {m['log_loss']:.4f}   Brier {m['brier']:.5f}   KS {m['ks']:.4f}\n")
    out.write(
        f"calibration     mean predicted {m['mean_predicted']:.5f} vs observed "
        f"{m['observed_rate']:.5f} ({m['calibration_error']:+.1%})\n"
    )
    out.write(f"threshold       {m['threshold']:.4f}\n")
    out.write(f"gate            {'PASSED' if gate['passed'] else 'FAILED'}\n")
    for reason in gate["reasons"]:
        out.write(
            f"  {'PASS' if reason['passed'] else 'FAIL'} {reason['check']}: {reason['message']}\n"
        )
    out.write(f"trained in {seconds:.1f}s\n")
