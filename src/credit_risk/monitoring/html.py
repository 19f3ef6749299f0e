"""The monitor's report as one self-contained HTML page, for people.

Drawn from the JSON report alone (so a stored report renders again later): a table
of the checks, PSI per feature against the thresholds, the score distribution and
every feature's distribution, served against training, the details of skew,
staleness and live quality, and approval rates by group on served decisions. Plots
are PNGs inlined as base64 data URIs, drawn with matplotlib's Agg canvas (no
display, no global pyplot state); nothing is fetched when the page opens.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
from html import escape
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from credit_risk.monitoring.report import ALERT, OK, SKIPPED, WARN, MonitorReport

COLOURS = {OK: "#2e7d32", WARN: "#ef6c00", ALERT: "#c62828", SKIPPED: "#757575"}
REFERENCE_COLOUR, SERVED_COLOUR = "#90a4ae", "#1e88e5"
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{margin-bottom:.2rem} .meta{color:#555;margin-top:0}
table{border-collapse:collapse;margin:1rem 0} td,th{border:1px solid #ddd;padding:.35rem .6rem;
text-align:left;vertical-align:top} th{background:#f5f5f5}
.badge{color:#fff;border-radius:4px;padding:.1rem .5rem;font-weight:600;font-size:.9em}
.grid{display:flex;flex-wrap:wrap;gap:1rem} .grid figure{margin:0}
figcaption{font-size:.9em;color:#444} code{font-size:.9em}
"""


def _png_uri(figure: Figure) -> str:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _badge(status: str) -> str:
    colour = COLOURS.get(status, COLOURS[SKIPPED])
    return f'<span class="badge" style="background:{colour}">{escape(status)}</span>'


def _bin_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["all"]
    labels = [f"<{edges[0]:.3g}"]
    labels += [f"{low:.3g}-{high:.3g}" for low, high in itertools.pairwise(edges)]
    return [*labels, f"≥{edges[-1]:.3g}"]


def distribution_png(name: str, section: dict[str, Any], width: float = 5.0) -> str:
    """Training vs served share of values per reference bin."""
    expected, actual = section["expected"], section["actual"]
    positions = range(len(expected))
    figure = Figure(figsize=(width, 3.0))
    axes = figure.add_subplot()
    axes.bar([p - 0.2 for p in positions], expected, 0.4, color=REFERENCE_COLOUR, label="training")
    if actual is not None:
        axes.bar([p + 0.2 for p in positions], actual, 0.4, color=SERVED_COLOUR, label="served")
    axes.set_xticks(list(positions), _bin_labels(section["edges"]), rotation=45, ha="right")
    psi = section["psi"]
    title = f"{name}: PSI {psi:.3f}" if psi is not None else f"{name}: not judged"
    axes.set(title=title, ylabel="share of values")
    axes.legend(fontsize="small")
    return _png_uri(figure)


def psi_png(drift: dict[str, Any]) -> str | None:
    """One bar per feature (and the score), coloured by status, with the thresholds."""
    sections = {**(drift.get("features") or {})}
    if drift.get("score"):
        sections["score"] = drift["score"]
    measured = {n: s for n, s in sections.items() if s["psi"] is not None}
    if not measured:
        return None
    thresholds = drift["thresholds"]
    figure = Figure(figsize=(7, 0.5 * len(measured) + 1.2))
    axes = figure.add_subplot()
    labels = list(measured)
    axes.barh(
        labels,
        [measured[n]["psi"] for n in labels],
        color=[COLOURS[measured[n]["status"]] for n in labels],
    )
    for key, colour in (("psi_warn", COLOURS[WARN]), ("psi_alert", COLOURS[ALERT])):
        label = f"{key.removeprefix('psi_')} {thresholds[key]:g}"
        axes.axvline(thresholds[key], color=colour, linestyle="--", linewidth=1, label=label)
    axes.legend(fontsize="small", loc="lower right")
    axes.invert_yaxis()
    axes.set(title="Population stability index, served vs training", xlabel="PSI")
    return _png_uri(figure)


def _headline(name: str, section: dict[str, Any]) -> str:
    if section["status"] == SKIPPED:
        return escape(section.get("reason", ""))
    if name == "staleness":
        model, features = section["model"], section["features"]
        return escape(
            f"model {model.get('age_days')} days (limit {model['limit_days']}); features "
            f"{features.get('age_days')} days (limit {features['limit_days']})"
        )
    if name == "invariants":
        return f"{section['violations']} violations"
    if name == "drift":
        worst = section.get("max_psi_of")
        tail = f"; highest PSI {section['max_psi']:.3f} ({escape(worst)})" if worst else ""
        return f"{section['alerts']} features in alert{tail}"
    if name == "skew":
        return (
            f"{section['mismatches']} mismatching values in {section['compared']} served "
            f"records compared with the offline snapshot"
        )
    if name == "quality":
        return escape(
            f"live AUC {section['live_auc']:.3f} vs offline {section['offline_auc']} "
            f"on {section['labelled']} labelled scores; calibration "
            f"{section['calibration']['status']}"
        )
    if name == "fairness":
        floor = section["thresholds"]["adverse_impact_floor"]
        return escape(
            f"{section['flags']} judged groups below the adverse impact floor {floor:g} "
            f"({section['alerts']} beyond chance) in {section['decisions']} served decisions"
        )
    return ""


def _estimate(interval: dict[str, Any] | None) -> str:
    """``0.812 (0.774 to 0.851)``, the interval left out where it has no bounds."""
    if interval is None:
        return "—"
    text = f"{interval['estimate']:.3f}"
    if interval.get("low") is not None and interval.get("high") is not None:
        text += f" ({interval['low']:.3f} to {interval['high']:.3f})"
    return text


def _fairness(section: dict[str, Any]) -> list[str]:
    """Per grouping, a table of its groups; labelled figures in a second table."""
    floor = section["thresholds"]["adverse_impact_floor"]
    parts = [
        "<h2>Fairness on served decisions</h2>",
        f"<p>Approval rate per group with its 95% interval, and the adverse impact ratio "
        f"against the most favoured group; a group with at least "
        f"{section['thresholds']['min_decisions']} decisions is judged against the floor "
        f"{floor:g}.</p>",
    ]
    for grouping, figures in section["groupings"].items():
        parts.append(f"<h3>{escape(grouping)} {_badge(figures['status'])}</h3>")
        if "groups" not in figures:
            parts.append(f"<p>{escape(figures['reason'])}</p>")
            continue
        favoured = figures.get("most_favoured")
        rows = [
            [
                escape(name),
                _badge(group["status"]),
                str(group["decisions"]),
                _estimate(group["approval_rate"]),
                "reference" if name == favoured else _estimate(group["adverse_impact_ratio"]),
            ]
            for name, group in figures["groups"].items()
        ]
        header = ["group", "status", "decisions", "approval rate", "adverse impact ratio"]
        parts.append(_table(rows, header))
        if figures.get("labelled"):
            rows = [
                [
                    escape(name),
                    str(group["scores"]),
                    str(group["defaults"]),
                    _estimate(group["calibration_error"]),
                    _estimate(group["auc"]),
                ]
                for name, group in figures["labelled"].items()
            ]
            header = ["group", "labelled", "defaults", "calibration error", "AUC"]
            parts.append(_table(rows, header))
    if section.get("unavailable_audits"):
        parts.append(
            "<p>Audit snapshots not found (their customers' gender is unknown):</p>"
            + _json_block(section["unavailable_audits"])
        )
    return parts


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _json_block(value: Any) -> str:
    return f"<pre><code>{escape(json.dumps(value, indent=2, default=str))}</code></pre>"


def render_html(report: MonitorReport | dict[str, Any]) -> str:
    """The whole page as a string."""
    data = report.data if isinstance(report, MonitorReport) else report
    checks, window, model = data["checks"], data["window"], data["model"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Model monitor {escape(model['version'])} {escape(window['end'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Model monitor {_badge(data['status'])}</h1>",
        f"<p class='meta'>Model <code>{escape(model['version'])}</code> · window "
        f"{escape(window['start'])} to {escape(window['end'])} ({window['days']} days) · "
        f"{data['counts']['scores']} scores, {data['counts']['customers']} customers · "
        f"generated {escape(data['generated_at'])}</p>",
    ]
    parts += [f"<p><strong>Note:</strong> {escape(note)}</p>" for note in data["notes"]]
    parts.append(
        _table(
            [[escape(n), _badge(s["status"]), _headline(n, s)] for n, s in checks.items()],
            ["check", "status", "finding"],
        )
    )
    drift = checks["drift"]
    if (psi := psi_png(drift)) is not None:
        parts += ["<h2>Drift</h2>", f"<img alt='PSI per feature' src='{psi}'>"]
        if drift.get("score") and drift["score"]["actual"] is not None:
            score = distribution_png("score", drift["score"], 8)
            parts += ["<h3>Score distribution</h3>", f"<img alt='score' src='{score}'>"]
        figures = [
            f"<figure><img alt='{escape(n)}' src='{distribution_png(n, s)}'>"
            f"<figcaption>{_badge(s['status'])} {escape(n)}: {s['served']} served values"
            "</figcaption></figure>"
            for n, s in drift["features"].items()
        ]
        parts += [
            "<h3>Features, served vs training</h3>",
            f"<div class='grid'>{''.join(figures)}</div>",
        ]
    invariants = checks["invariants"]
    if invariants.get("features"):
        rows = [
            [
                escape(n),
                _badge(s["status"]),
                f"{s['null_rate']:.3f} (training {s['reference_null_rate']:.3f})",
                escape(str(s["allowed_range"] or s["domain"])),
                str(s["out_of_range"] + s["out_of_domain"]),
                str(s["not_integer"]),
            ]
            for n, s in invariants["features"].items()
        ]
        parts += [
            "<h2>Input invariants</h2>",
            _table(rows, ["feature", "status", "null rate", "allowed", "outside", "fractional"]),
        ]
    skew = checks["skew"]
    if skew.get("by_feature") or skew.get("unverifiable_snapshots"):
        parts += [
            "<h2>Training/serving skew</h2>",
            _json_block({k: skew[k] for k in ("by_feature", "examples", "unverifiable_snapshots")}),
        ]
    parts += [
        "<h2>Staleness</h2>",
        _json_block({k: checks["staleness"][k] for k in ("model", "features")}),
    ]
    parts += ["<h2>Live quality</h2>", _json_block(checks["quality"])]
    # Reports stored before the fairness check have no section to draw.
    if checks.get("fairness", {}).get("groupings"):
        parts += _fairness(checks["fairness"])
    parts.append("</body></html>")
    return "\n".join(parts)
