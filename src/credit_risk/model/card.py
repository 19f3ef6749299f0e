"""The model card: what a reviewer reads before a version serves.

Markdown beside the metadata, with two plots drawn with matplotlib's Agg canvas
(no display, no global pyplot state): the ROC curves of the candidate and the
baseline on the test period, and the calibration by decile.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

ROC_FILE = "roc.png"
CALIBRATION_FILE = "calibration.png"


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    # No timestamp in the file: the same model gives the same picture.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def roc_png(labels: np.ndarray, curves: dict[str, np.ndarray]) -> bytes:
    """ROC curves of several score sets (name → probabilities) on the same labels."""
    figure = Figure(figsize=(5, 5))
    axes = figure.add_subplot()
    for name, scores in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        axes.plot(fpr, tpr, label=name)
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test period")
    axes.legend(loc="lower right")
    return _png(figure)


def calibration_png(table: list[dict]) -> bytes:
    predicted = [row["mean_predicted"] for row in table]
    observed = [row["observed_rate"] for row in table]
    top = max([*predicted, *observed, 1e-6]) * 1.1
    figure = Figure(figsize=(5, 5))
    axes = figure.add_subplot()
    axes.plot([0, top], [0, top], linestyle=":", color="grey", label="perfect")
    axes.plot(predicted, observed, marker="o", label="model (deciles)")
    axes.set(
        xlabel="mean predicted probability",
        ylabel="observed default rate",
        title="Calibration, test period",
        xlim=(0, top),
        ylim=(0, top),
    )
    axes.legend(loc="upper left")
    return _png(figure)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def model_card(metadata: dict) -> str:
    """The card's Markdown, from the version's metadata alone."""
    m, gate, threshold = metadata["metrics"], metadata["gate"], metadata["threshold"]
    split, data = metadata["split"], metadata["training_data"]
    lines = [
        f"# Model card: {metadata['model_name']} {metadata['version']}",
        "",
        f"XGBoost binary classifier of loan default, trained {metadata['created_at']}.",
        "",
        "## Intended use",
        "",
        "Scores the probability that a new loan defaults, from the customer's features "
        "as of the request; declines above the threshold, with the features that raised "
        "the risk as reasons. Not for customers outside the training population "
        "(ages, amounts) nor for other products.",
        "",
        "## Data",
        "",
        f"- training features: `{data['uri']}` (sha256 fingerprint `{data['fingerprint']}`)",
        f"- out-of-time split by loan date: train {split['first_loan_date']} to before "
        f"{split['validation_start']}, validation to before {split['test_start']}, "
        f"test {split['test_start']} to {split['last_loan_date']}",
        *(
            f"- {name}: {p['loans']:,} loans, default rate {p['default_rate']:.4f}"
            for name, p in data["periods"].items()
        ),
        f"- features, in model order: {', '.join(metadata['feature_names'])}",
        "",
        "## Performance on the test period",
        "",
        "| model | AUC | log loss | Brier | KS | mean predicted | observed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = {"candidate": m, "baseline": metadata["baseline"]["metrics"]}
    if metadata.get("champion_comparison"):
        champion = metadata["champion_comparison"]
        rows[f"champion {champion['version']}"] = champion["metrics"]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {_fmt(r['auc'])} | {_fmt(r['log_loss'])} | {_fmt(r['brier'], 5)} "
            f"| {_fmt(r['ks'])} | {_fmt(r['mean_predicted'], 5)} | {_fmt(r['observed_rate'], 5)} |"
        )
    oracle = metadata.get("oracle")
    if oracle and oracle.get("auc") is not None:
        lines += [
            "",
            f"Oracle AUC (the generator's true probabilities on the same loans): "
            f"{_fmt(oracle['auc'])}; model / oracle = {_fmt(oracle['ratio'])}.",
        ]
    lines += [
        "",
        f"![ROC]({ROC_FILE})",
        "",
        "## Calibration (deciles of predicted probability)",
        "",
        "| decile | loans | mean predicted | observed |",
        "| --- | --- | --- | --- |",
        *(
            f"| {r['bin']} | {r['loans']:,} | {r['mean_predicted']:.5f} "
            f"| {r['observed_rate']:.5f} |"
            for r in metadata["calibration_table"]
        ),
        "",
        f"![calibration]({CALIBRATION_FILE})",
        "",
        "## Slices",
        "",
        "| slice | loans | defaults | AUC | mean predicted | observed |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {name} | {s['loans']:,} | {s['defaults']:,} | {_fmt(s['auc'])} "
            f"| {_fmt(s['mean_predicted'], 5)} | {_fmt(s['observed_rate'], 5)} |"
            for name, s in metadata["slices"].items()
        ),
        "",
        "## Decision threshold",
        "",
        f"{threshold['value']:.4f}, chosen by {threshold['method']}: {threshold['rule']} "
        f"(cost of a default {threshold['cost_of_default']}, of a declined good customer "
        f"{threshold['cost_of_declined_good']}). On the test period it declines "
        f"{threshold['test_decline_rate']:.1%} of loans.",
        "",
        f"## Gate: {'PASSED' if gate['passed'] else 'FAILED'}",
        "",
        *(
            f"- {'PASS' if r['passed'] else 'FAIL'} {r['check']}: {r['message']}"
            for r in gate["reasons"]
        ),
        "",
        "## Training",
        "",
        f"- hyperparameters: `{metadata['hyperparameters']}`",
        f"- best iteration {metadata['best_iteration']} of {metadata['rounds_trained']} rounds "
        "(early stopping on the validation log loss)",
        f"- code version {metadata['code_version']}, xgboost {metadata['framework']['xgboost']}",
        "",
        "## Limitations",
        "",
        "- Five features only: income, and everything else the applicant tells, is unused.",
        "- The test period is the latest one available; drift after it is not measured here.",
        "- Reason codes explain the model, not the world: they are the features that moved "
        "this model's score, not causes of default.",
        "",
    ]
    return "\n".join(lines)
