"""The model card: what a reviewer reads before a version serves.

Markdown beside the metadata, with plots drawn with matplotlib's Agg canvas (no
display, no global pyplot state): the ROC curves of the candidate and the baseline
on the test period and the calibration by decile, and, when the metadata holds
the figures, the permutation importance, the AUC by model age and the approval
rates by group. Every section beyond the original ones is rendered only when its
metadata key is present, so the cards of older versions still render.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

ROC_FILE = "roc.png"
CALIBRATION_FILE = "calibration.png"
IMPORTANCE_FILE = "importance.png"
STALENESS_FILE = "staleness.png"
FAIRNESS_FILE = "fairness.png"

_OUTCOMES = {"pass": "PASS", "fail": "FAIL", "insufficient_evidence": "INSUFFICIENT EVIDENCE"}


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


def importance_png(rows: list[dict]) -> bytes:
    """Horizontal bars of the permutation importance (AUC drop, ± one standard
    deviation over the repeats), the most important feature on top."""
    ordered = sorted(rows, key=lambda row: row["auc_drop"])
    figure = Figure(figsize=(6, 1.2 + 0.45 * max(len(ordered), 1)))
    axes = figure.add_subplot()
    positions = np.arange(len(ordered))
    axes.barh(
        positions,
        [row["auc_drop"] for row in ordered],
        xerr=[row.get("auc_drop_std", 0.0) for row in ordered],
        color="tab:blue",
        capsize=3,
    )
    axes.set_yticks(positions, [row["feature"] for row in ordered])
    axes.axvline(0.0, color="grey", linewidth=0.8)
    axes.set(xlabel="drop in test AUC when the feature is shuffled", title="Permutation importance")
    figure.tight_layout()
    return _png(figure)


def _error_bars(intervals: list[dict]) -> np.ndarray:
    """Asymmetric error bars (below, above) of interval dicts; 0 where a bound is missing."""
    below = [d["estimate"] - d["low"] if d.get("low") is not None else 0.0 for d in intervals]
    above = [d["high"] - d["estimate"] if d.get("high") is not None else 0.0 for d in intervals]
    return np.array([below, above])


def staleness_png(curve: list[dict], supported: dict | None = None) -> bytes:
    """AUC with its interval by the model's age when the loans arrived; windows with
    too few defaults to judge are shaded. With ``supported`` (the result of
    ``governance.supported_model_age``) also the AUC floor and the supported age."""
    figure = Figure(figsize=(7, 5))
    axes = figure.add_subplot()
    judged = [row for row in curve if row.get("auc") is not None]
    shaded = False
    for row in curve:
        if row.get("auc") is None:
            axes.axvspan(
                row["days_from"],
                row["days_to"],
                color="lightgrey",
                alpha=0.5,
                label=None if shaded else "not judged (too few defaults)",
            )
            shaded = True
    if judged:
        middles = [(row["days_from"] + row["days_to"]) / 2 for row in judged]
        aucs = [row["auc"] for row in judged]
        axes.errorbar(
            middles,
            [d["estimate"] for d in aucs],
            yerr=_error_bars(aucs),
            marker="o",
            capsize=3,
            label="AUC (interval)",
        )
        axes.axhline(
            aucs[0]["estimate"], linestyle=":", color="grey", label="youngest judged window"
        )
    if supported and supported.get("floor_auc") is not None:
        axes.axhline(
            supported["floor_auc"],
            linestyle="--",
            color="tab:red",
            label=f"floor (tolerance {supported['tolerance']:g})",
        )
    if supported and supported.get("supported_age_days") is not None:
        axes.axvline(
            supported["supported_age_days"],
            color="tab:green",
            label=f"supported age ({'at least ' if supported.get('at_least') else ''}"
            f"{supported['supported_age_days']} days)",
        )
    else:
        axes.text(0.5, 0.5, "no window judged", ha="center", va="center", transform=axes.transAxes)
    axes.set(
        xlabel="model age when the loan arrived (days since the end of its data)",
        ylabel="AUC",
        title="Model age and performance, test period",
    )
    if curve:
        axes.set_xlim(0, max(row["days_to"] for row in curve))
    if judged or shaded:
        # Below the axes: inside, it would hide the points it explains.
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncols=2, fontsize="small")
    figure.tight_layout()
    return _png(figure)


def fairness_png(fairness: dict) -> bytes:
    """Approval rate by group (with its interval), one panel per grouping, with the
    adverse-impact line: the floor times the most favoured group's rate."""
    groupings = fairness.get("groupings", {})
    panels = max(len(groupings), 1)
    figure = Figure(figsize=(4.5 * panels, 4))
    if not groupings:
        axes = figure.add_subplot()
        axes.text(0.5, 0.5, "no grouping", ha="center", va="center", transform=axes.transAxes)
        return _png(figure)
    floor = fairness.get("adverse_impact_floor")
    for index, (grouping, detail) in enumerate(groupings.items(), start=1):
        axes = figure.add_subplot(1, panels, index)
        groups = {
            name: g for name, g in detail["groups"].items() if g.get("approval_rate") is not None
        }
        names = list(groups)
        rates = [groups[name]["approval_rate"] for name in names]
        colours = ["tab:blue" if groups[name].get("judged") else "lightgrey" for name in names]
        positions = np.arange(len(names))
        axes.bar(
            positions,
            [d["estimate"] for d in rates],
            yerr=_error_bars(rates) if rates else None,
            color=colours,
            capsize=3,
        )
        axes.set_xticks(positions, names, rotation=30, ha="right")
        favoured = detail.get("most_favoured")
        if floor is not None and favoured in groups:
            line = floor * groups[favoured]["approval_rate"]["estimate"]
            axes.axhline(
                line, linestyle="--", color="tab:red", label=f"{floor:g} x {favoured}'s rate"
            )
            axes.legend(loc="lower right")
        axes.set(ylabel="approval rate", title=grouping.replace("_", " "), ylim=(0, 1.05))
    figure.suptitle("Approval rate by group, test period (grey: not judged)")
    figure.tight_layout()
    return _png(figure)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _interval(value: dict | None, *, percent: bool = False) -> str:
    """``estimate [low, high]`` of an interval dict, ``n/a`` when there is none."""
    if value is None or value.get("estimate") is None:
        return "n/a"

    def show(x: float) -> str:
        return f"{x:.1%}" if percent else f"{x:.4f}"

    text = show(value["estimate"])
    if value.get("low") is not None and value.get("high") is not None:
        text += f" [{show(value['low'])}, {show(value['high'])}]"
    return text


def _gate_verdict(gate: dict) -> str:
    """The gate's overall outcome; older metadata has ``passed`` alone."""
    verdicts = {
        "passed": "PASSED",
        "failed": "FAILED",
        "insufficient_evidence": "NOT PASSED (insufficient evidence)",
    }
    return verdicts.get(gate.get("outcome"), "PASSED" if gate["passed"] else "FAILED")


def _gate_line(check: dict) -> str:
    """One gate check: its outcome (``pass``/``fail``/``insufficient_evidence``, or
    from ``passed`` alone in the older format) and the interval when it has one."""
    outcome = check.get("outcome") or ("pass" if check["passed"] else "fail")
    line = f"- {_OUTCOMES.get(outcome, outcome.upper())} {check['check']}: {check['message']}"
    if check.get("estimate") is not None:
        figures = f"estimate {_num(check['estimate'])}"
        if check.get("low") is not None and check.get("high") is not None:
            figures += f", interval [{_num(check['low'])}, {_num(check['high'])}]"
        line += f" ({figures})"
    return line


def _importance_section(rows: list[dict]) -> list[str]:
    repeats = rows[0].get("repeats") if rows else None
    model_auc = rows[0].get("model_auc") if rows else None
    return [
        "## Feature importance",
        "",
        "Permutation importance on the test period: each feature's column shuffled across "
        f"the test loans ({repeats or 'n/a'} times), everything else unchanged; how much the "
        f"AUC falls (model AUC {_fmt(model_auc)}) and the log loss rises, mean ± standard "
        "deviation over the shuffles. It measures what this model relies on, not what "
        "causes default.",
        "",
        "| rank | feature | AUC drop | log-loss increase |",
        "| --- | --- | --- | --- |",
        *(
            f"| {row.get('rank', index)} | {row['feature']} "
            f"| {row['auc_drop']:.4f} ± {row.get('auc_drop_std', 0.0):.4f} "
            f"| {row['log_loss_increase']:.4f} ± {row.get('log_loss_increase_std', 0.0):.4f} |"
            for index, row in enumerate(rows, start=1)
        ),
        "",
        f"![feature importance]({IMPORTANCE_FILE})",
        "",
    ]


def _search_section(search: dict) -> list[str]:
    trials = search.get("trials", [])
    chosen = search.get("chosen")
    names = list(trials[0]["parameters"]) if trials else []
    lines = [
        "## Hyperparameter search",
        "",
        f"{search.get('method', 'random search').capitalize()} of {len(trials)} trial(s), "
        f"seed {search.get('seed')}; trial 0 is the configured hyperparameters. Chosen: "
        f"trial {chosen}, by the lowest validation log loss (ties: the earlier trial). "
        "The test period played no part in the choice.",
    ]
    if search.get("space"):
        space = "; ".join(
            f"{name} in {{{', '.join(f'{v:g}' for v in values)}}}"
            for name, values in search["space"].items()
        )
        lines += ["", f"Space: {space}."]
    lines += [
        "",
        "| trial | " + " | ".join(names) + " | validation log loss | best iteration | |",
        "| --- | " + " | ".join("---" for _ in names) + " | --- | --- | --- |",
    ]
    for index, trial in enumerate(trials):
        number = trial.get("trial", index)
        values = " | ".join(f"{trial['parameters'][name]:g}" for name in names)
        lines.append(
            f"| {number} | {values} | {trial['validation_log_loss']:.5f} "
            f"| {trial['best_iteration']} | {'chosen' if number == chosen else ''} |"
        )
    return [*lines, ""]


def _age_setting(setting: int | None, supported: dict) -> str:
    if setting is None:
        return "No `max_model_age_days` recorded for this run."
    days = supported.get("supported_age_days")
    if days is None:
        return f"`max_model_age_days` = {setting}: this test period gives no evidence for it."
    if setting <= days:
        return (
            f"`max_model_age_days` = {setting}: within the supported age "
            f"({'at least ' if supported.get('at_least') else ''}{days} days)."
        )
    if supported.get("at_least"):
        return (
            f"`max_model_age_days` = {setting}: beyond what this test period can show "
            f"(at least {days} days); the evidence does not reach that far."
        )
    return (
        f"`max_model_age_days` = {setting}: EXCEEDS the supported age of {days} days; "
        "the model degraded before the monitor would call it stale."
    )


def _staleness_section(staleness: dict) -> list[str]:
    curve = staleness.get("curve", [])
    supported = staleness.get("supported_age") or {}
    lines = [
        "## Model age and performance",
        "",
        "The test loans grouped by the model's age when they arrived (days since the end "
        "of the data it was fitted on), the AUC of each window with its interval. Windows "
        "with too few defaults are reported, not judged.",
        "",
        "| model age (days) | loans | defaults | AUC | calibration error | note |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {row['days_from']}-{row['days_to'] - 1} | {row['loans']:,} "
            f"| {row['defaults']:,} | {_interval(row.get('auc'))} "
            f"| {_pct(row.get('calibration_error'))} | {row.get('note', '')} |"
            for row in curve
        ),
        "",
    ]
    if supported:
        lines += [
            f"Supported model age (AUC within {supported.get('tolerance')} of the youngest "
            f"judged window): {supported.get('statement', 'n/a')}.",
            "",
        ]
    lines += [
        _age_setting(staleness.get("max_model_age_days"), supported),
        "",
        f"![model age and performance]({STALENESS_FILE})",
        "",
    ]
    return lines


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


def _fairness_section(fairness: dict | None, age: dict | None) -> list[str]:
    lines = ["## Fair lending", ""]
    if fairness:
        lines += [
            f"Approval at the decision threshold {_fmt(fairness.get('threshold'))} (approved "
            "below it). Adverse impact ratio: a group's approval rate over the most favoured "
            "group's; under the floor of "
            f"{fairness.get('adverse_impact_floor')} (the four-fifths rule) is evidence of "
            f"disparate impact. Groups with fewer than {fairness.get('min_group_loans')} loans, "
            "and unknown ones, are reported and not judged; of the age bands only the elderly "
            "one is judged (age is a model input, which Regulation B allows provided the "
            "elderly are not disfavoured). Intervals in brackets.",
            "",
        ]
        for grouping, detail in fairness.get("groupings", {}).items():
            lines += [
                f"### {grouping.replace('_', ' ')} "
                f"(most favoured: {detail.get('most_favoured') or 'none judged'})",
                "",
                "| group | decisions | defaults | approval rate | adverse impact ratio "
                "| calibration error | AUC | judged |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |",
                *(
                    f"| {name} | {g['decisions']:,} | {g['defaults']:,} "
                    f"| {_interval(g.get('approval_rate'), percent=True)} "
                    f"| {_interval(g.get('adverse_impact_ratio'))} "
                    f"| {_interval(g.get('calibration_error'))} | {_interval(g.get('auc'))} "
                    f"| {'yes' if g.get('judged') else 'no'} |"
                    for name, g in detail.get("groups", {}).items()
                ),
                "",
            ]
        lines += [f"![fair lending]({FAIRNESS_FILE})", ""]
    if age:
        ages = age.get("ages_tried") or []
        tried = f"{ages[0]}-{ages[-1]}" if ages else "n/a"
        lines += [
            f"### Age (Regulation B, elderly from {age.get('elderly_age')})",
            "",
            f"Treatment: {age.get('method')}.",
            "",
            f"{'PASS' if age.get('passed') else 'FAIL'}: {age.get('applicants_checked', 0):,} "
            f"elderly test applicants re-scored at every age {tried}; "
            f"{age.get('violations', 0):,} given a lower risk at a younger age "
            f"(largest increase {_num(age.get('largest_increase'))}).",
            "",
        ]
    return lines


def _reasons_section(table: dict | None, frequencies: list[dict] | None) -> list[str]:
    lines = ["## Adverse-action reasons", ""]
    if table:
        method = table.get("method")
        lines += [
            f"Reason table version {table.get('version')}.",
            "",
            # Older tables described the method in one sentence; current ones by part.
            *(
                [f"- {key.replace('_', ' ')}: {value}" for key, value in method.items()]
                if isinstance(method, dict)
                else [f"Method: {method}."]
            ),
            "",
            "| code | statement | features | direction |",
            "| --- | --- | --- | --- |",
            *(
                f"| {c['code']} | {c['statement']} | {', '.join(c.get('features', []))} "
                f"| {c.get('direction', '')} |"
                for c in table.get("codes", [])
            ),
            "",
        ]
    if frequencies is not None:
        lines += [
            "Reasons given on the declined test loans:",
            "",
            "| code | declines | share |",
            "| --- | --- | --- |",
            *(f"| {f['code']} | {f['declines']:,} | {f['share']:.1%} |" for f in frequencies),
            "",
        ]
    return lines


def _governance_section(metadata: dict) -> list[str]:
    gate = metadata.get("gate", {})
    overrides = gate.get("overrides")
    if overrides is None:
        overridden = "not recorded (metadata older than the record of overrides)"
    elif not overrides:
        overridden = "none"
    else:
        overridden = "; ".join(
            f"`{name}` = {o.get('value')} (default {o.get('default')})"
            for name, o in overrides.items()
        )
    config = gate.get("config") or {}
    settings = ", ".join(f"{name}={value}" for name, value in config.items()) or "n/a"
    return [
        "## Governance",
        "",
        f"- code version (commit): `{metadata.get('code_version', 'n/a')}`",
        f"- gate settings overridden for this run: {overridden}",
        f"- gate configuration: `{settings}`",
        "",
    ]


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
        *(_staleness_section(metadata["staleness"]) if metadata.get("staleness") else []),
        *(
            _fairness_section(metadata.get("fairness"), metadata.get("age_treatment"))
            if metadata.get("fairness") or metadata.get("age_treatment")
            else []
        ),
        "## Decision threshold",
        "",
        f"{threshold['value']:.4f}, chosen by {threshold['method']}: {threshold['rule']} "
        f"(cost of a default {threshold['cost_of_default']}, of a declined good customer "
        f"{threshold['cost_of_declined_good']}). On the test period it declines "
        f"{threshold['test_decline_rate']:.1%} of loans.",
        "",
        *(
            _reasons_section(metadata.get("reason_table"), metadata.get("reason_frequencies"))
            if metadata.get("reason_table") or metadata.get("reason_frequencies") is not None
            else []
        ),
        f"## Gate: {_gate_verdict(gate)}",
        "",
        *(_gate_line(r) for r in gate["reasons"]),
        "",
        "## Training",
        "",
        f"- hyperparameters: `{metadata['hyperparameters']}`",
        f"- best iteration {metadata['best_iteration']} of {metadata['rounds_trained']} rounds "
        "(early stopping on the validation log loss)",
        f"- code version {metadata['code_version']}, xgboost {metadata['framework']['xgboost']}",
        "",
        *(
            _search_section(metadata["hyperparameter_search"])
            if metadata.get("hyperparameter_search")
            else []
        ),
        *(_importance_section(metadata["importance"]) if metadata.get("importance") else []),
        *_governance_section(metadata),
        "## Limitations",
        "",
        "- Five features only: income, and everything else the applicant tells, is unused.",
        "- The test period is the latest one available; drift after it is not measured here.",
        "- Reason codes explain the model, not the world: they are the features that moved "
        "this model's score, not causes of default.",
        "- Risk never rises with age (Regulation B's treatment of applicants of 62 or more): "
        "where the data shows risk rising late in life, the model understates it for the "
        "elderly; see their calibration error under Fair lending.",
        "",
    ]
    return "\n".join(lines)
