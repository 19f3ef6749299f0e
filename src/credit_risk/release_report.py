"""The report of one model release: what each stage showed, and why it ended.

Stored beside the model version, under ``<version>/releases/<release_id>/``:

- ``steps.json``: one entry per stage as it is judged (``record_stage``): the stage,
  its share, the evidence, the alarms, the release's counts so far and the verdict
  with every gate's value and threshold;
- ``report.json`` and ``report.html`` once the release ends (``finish``): the stages,
  the approval rates of both models on the same customers, both score
  distributions, scoring times, the swap set (counts, and a sample of flipped
  customers by hashed id with both scores and reasons, from the scoring log's
  served and shadow records, marked partial when the log could not be read
  through) and the final verdict. The page is self-contained
  (inline styles and SVG, no scripts, no external assets): it opens from an email
  link or an archive, offline.

The AWS release (``credit_risk.release``) and the local one
(``credit_risk.local_canary``) both write it through these functions.
"""

from __future__ import annotations

import html
import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from credit_risk.monitoring.records import SERVED, SHADOW, ScoreRecord
from credit_risk.registry import Registry, ReleaseState
from credit_risk.release_metrics import LATENCY_BINS_MS, SCORE_BINS, ReleaseCounts

STEPS_FILE = "steps.json"
JSON_FILE = "report.json"
HTML_FILE = "report.html"
# Flipped customers shown by hashed id: enough for a reviewer to read cases,
# small enough for the page.
SAMPLE_SIZE = 20
# A request's served and shadow answers are printed together, so they arrive side
# by side in the scoring log. An answer still waiting for its pair after this many
# others (its pair was lost, or was delivered in another file) is let go: a pass
# over a release's log keeps no more than this many in memory.
PENDING_ANSWERS = 10_000


@dataclass(frozen=True)
class SampleRead:
    """How the sample of flipped customers was read from the scoring log, as the
    report says it: ``partial`` when the log was not read through (time ran out,
    files could not be read, no log) before the sample was full."""

    partial: bool
    detail: str
    files: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _counts(value: Any) -> ReleaseCounts:
    """Counts as a ``ReleaseCounts``, from itself or from metric sums."""
    if isinstance(value, ReleaseCounts):
        return value
    return ReleaseCounts.from_metrics(value or {})


def stages(registry: Registry, state: ReleaseState) -> list[dict[str, Any]]:
    """The stages judged so far, oldest first."""
    data = registry.read_report(state.model_version, state.release_id, STEPS_FILE)
    return json.loads(data) if data else []


def record_stage(
    registry: Registry,
    state: ReleaseState,
    *,
    stage: str,
    percent: float,
    check: Any,
    verdict: Any,
) -> list[dict[str, Any]]:
    """Appends one judged stage (``check``: a ``StepCheck`` or its dict, whose
    counts may be metric sums; ``verdict``: a ``Verdict`` or its dict). Judging the
    same stage again (a retried action) replaces its entry instead of adding one."""
    if isinstance(check, Mapping):
        alarms, requests = check.get("alarms", ()), check.get("requests", 0)
        counts = _counts(check.get("counts"))
    else:
        alarms, requests, counts = check.alarms, check.requests, check.counts
    entry = {
        "stage": stage,
        "percent": percent,
        "judged_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "requests": int(requests),
        "alarms": list(alarms),
        "counts": counts.summary(),
        "latency_bins": {
            "champion": list(counts.champion_latency),
            "candidate": list(counts.candidate_latency),
        },
        "verdict": verdict.as_dict() if hasattr(verdict, "as_dict") else dict(verdict),
    }
    entries = stages(registry, state)
    if entries and (entries[-1]["stage"], entries[-1]["percent"]) == (stage, percent):
        entries[-1] = entry
    else:
        entries.append(entry)
    body = json.dumps(entries, indent=2, allow_nan=False).encode()
    registry.write_report(state.model_version, state.release_id, STEPS_FILE, body)
    return entries


def _model_of(record: ScoreRecord, state: ReleaseState) -> str | None:
    """Which model of the release gave ``record``; None for another release's."""
    if record.release_id != state.release_id or record.role not in (SERVED, SHADOW):
        return None
    return "candidate" if record.model_version == state.model_version else "champion"


def _flipped(customer: str, pair: Mapping[str, ScoreRecord]) -> dict[str, Any] | None:
    """The sample entry of one request's two answers, if the decisions differ."""
    champion, candidate = pair.get("champion"), pair.get("candidate")
    if champion is None or candidate is None or champion.decision == candidate.decision:
        return None
    return {
        "customer_hash": customer,
        "answered_by": "candidate" if candidate.role == SERVED else "champion",
        "champion": _answer(champion),
        "candidate": _answer(candidate),
    }


def swap_sample(
    records: Sequence[ScoreRecord], state: ReleaseState, size: int = SAMPLE_SIZE
) -> list[dict[str, Any]]:
    """Customers whose decision the candidate changes, from the release's served
    and shadow records of one request, by hashed id (first ``size`` by hash)."""
    answers: dict[tuple[str, str], dict[str, ScoreRecord]] = {}
    for record in records:
        model = _model_of(record, state)
        if model is not None:
            answers.setdefault((record.request_id, record.customer_hash), {})[model] = record
    flipped: dict[str, dict[str, Any]] = {}
    for (_, customer), pair in sorted(answers.items(), key=lambda item: item[0][1]):
        entry = _flipped(customer, pair)
        if entry is None:
            continue
        flipped.setdefault(customer, entry)
        if len(flipped) >= size:
            break
    return list(flipped.values())


def flipped_records(
    records: Iterable[ScoreRecord], state: ReleaseState, size: int = SAMPLE_SIZE
) -> list[ScoreRecord]:
    """The served and shadow records of the first ``size`` customers whose decision
    the candidate changes, taken from ``records`` as they come (a stream over the
    scoring log): the pass stops once it has them, and holds no other answer longer
    than ``PENDING_ANSWERS`` others while it waits for its pair. ``swap_sample``
    of the result is the report's sample."""
    pending: OrderedDict[tuple[str, str], dict[str, ScoreRecord]] = OrderedDict()
    kept: dict[str, dict[str, ScoreRecord]] = {}
    for record in records:
        model = _model_of(record, state)
        if model is None:
            continue
        key = (record.request_id, record.customer_hash)
        pair = pending.setdefault(key, {})
        pair[model] = record
        if len(pair) < 2:
            if len(pending) > PENDING_ANSWERS:
                pending.popitem(last=False)
            continue
        del pending[key]
        if record.customer_hash not in kept and _flipped(record.customer_hash, pair):
            kept[record.customer_hash] = pair
            if len(kept) >= size:
                break
    return [record for pair in kept.values() for record in pair.values()]


def customers_in(records: Iterable[ScoreRecord]) -> int:
    """How many customers ``records`` are about."""
    return len({record.customer_hash for record in records})


def _answer(record: ScoreRecord) -> dict[str, Any]:
    return {
        "model_version": record.model_version,
        "default_probability": record.default_probability,
        "decision": record.decision,
        "reasons": list(record.reasons),
    }


def build(
    state: ReleaseState,
    entries: Sequence[Mapping[str, Any]],
    *,
    outcome: str,
    reason: str,
    records: Sequence[ScoreRecord] = (),
    counts: ReleaseCounts | None = None,
    sample_read: SampleRead | None = None,
) -> dict[str, Any]:
    """The report as JSON-ready data. ``sample_read``: how ``records`` were read
    from the scoring log, when they were (the AWS release streams it)."""
    final = dict(entries[-1]["counts"]) if entries else None
    if counts is not None:
        final = counts.summary()
    return {
        "release": state.as_dict(),
        "outcome": outcome,
        "reason": reason,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "gates": entries[-1]["verdict"].get("gates", []) if entries else [],
        "stages": list(entries),
        "totals": final,
        "swap_sample": swap_sample(records, state),
        "swap_sample_read": sample_read.as_dict() if sample_read else None,
        "latency_bins_ms": [b if b != float("inf") else None for b in LATENCY_BINS_MS],
    }


def finish(
    registry: Registry,
    state: ReleaseState,
    *,
    outcome: str,
    reason: str,
    records: Sequence[ScoreRecord] = (),
    counts: ReleaseCounts | None = None,
    sample_read: SampleRead | None = None,
) -> dict[str, str]:
    """Writes report.json and report.html; their URIs."""
    report = build(
        state,
        stages(registry, state),
        outcome=outcome,
        reason=reason,
        records=records,
        counts=counts,
        sample_read=sample_read,
    )
    version, release_id = state.model_version, state.release_id
    body = json.dumps(report, indent=2, allow_nan=False).encode()
    return {
        "report_json": registry.write_report(version, release_id, JSON_FILE, body),
        "report_html": registry.write_report(
            version, release_id, HTML_FILE, render_html(report).encode()
        ),
    }


# --- the page ----------------------------------------------------------------------
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.pass{color:#1a7f37}.fail{color:#cf222e;font-weight:bold}
.promoted{color:#1a7f37}.rolled_back{color:#cf222e}code{font-size:.9em}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _fmt(value: Any, share: bool = False) -> str:
    if value is None:
        return "n/a"
    if share:
        return f"{value:.2%}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _gates_table(gates: Sequence[Mapping[str, Any]]) -> str:
    if not gates:
        return "<p>No gate was judged (the release ended before a stage was checked).</p>"
    rows = "".join(
        f"<tr><td>{_e(g['gate'])}</td>"
        f"<td class={'pass' if g['passed'] else 'fail'}>{'pass' if g['passed'] else 'FAIL'}</td>"
        f"<td>{_e(_fmt(g.get('value')))}</td><td>{_e(_fmt(g.get('threshold')))}</td>"
        f"<td>{_e(g.get('detail'))}</td></tr>"
        for g in gates
    )
    return (
        "<table><tr><th>gate</th><th>verdict</th><th>value</th><th>threshold</th>"
        f"<th>detail</th></tr>{rows}</table>"
    )


def _stages_table(entries: Sequence[Mapping[str, Any]]) -> str:
    if not entries:
        return "<p>No stage ran.</p>"
    rows = []
    for entry in entries:
        counts, verdict = entry["counts"], entry["verdict"]
        where = "shadow" if entry["stage"] == "shadow" else f"canary {entry['percent']:g}%"
        rows.append(
            f"<tr><td>{_e(where)}</td><td>{_e(entry['judged_at'])}</td>"
            f"<td>{_e(entry['requests'])}</td><td>{_e(counts['pairs'])}</td>"
            f"<td>{_e(counts['candidate_errors'])}</td>"
            f"<td>{_e(', '.join(entry['alarms']) or 'none')}</td>"
            f"<td>{_e(_fmt(counts['champion_p99_ms']))} / "
            f"{_e(_fmt(counts['candidate_p99_ms']))}</td>"
            f"<td>{_e(verdict.get('action'))}: {_e(verdict.get('reason'))}</td></tr>"
        )
    return (
        "<table><tr><th>stage</th><th>judged</th><th>evidence</th><th>pairs so far</th>"
        "<th>candidate errors</th><th>alarms</th><th>p99 ms champion / candidate</th>"
        f"<th>verdict</th></tr>{''.join(rows)}</table>"
    )


def _distribution_svg(totals: Mapping[str, Any]) -> str:
    """Both score distributions as grouped bars, one group per probability bin."""
    champion, candidate = totals["champion_scores"], totals["candidate_scores"]
    n_champion, n_candidate = sum(champion) or 1, sum(candidate) or 1
    shares = [(a / n_champion, b / n_candidate) for a, b in zip(champion, candidate, strict=True)]
    top = max([max(pair) for pair in shares] + [1e-9])
    width, height, group = 60 * len(shares) + 40, 220, 60
    bars, labels, lower = [], [], 0.0
    for i, ((a, b), upper) in enumerate(zip(shares, SCORE_BINS, strict=True)):
        x = 30 + i * group
        for offset, share, colour in ((4, a, "#6e7781"), (28, b, "#0969da")):
            h = 170 * share / top
            bars.append(
                f'<rect x="{x + offset}" y="{190 - h:.1f}" width="22" height="{h:.1f}" '
                f'fill="{colour}"><title>{share:.1%}</title></rect>'
            )
        labels.append(
            f'<text x="{x + 27}" y="206" font-size="9" text-anchor="middle">'
            f"{lower:g}-{upper:g}</text>"
        )
        lower = upper
    legend = (
        '<rect x="30" y="4" width="10" height="10" fill="#6e7781"/>'
        '<text x="44" y="13" font-size="11">champion</text>'
        '<rect x="120" y="4" width="10" height="10" fill="#0969da"/>'
        '<text x="134" y="13" font-size="11">candidate</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="score distributions">{legend}{"".join(bars)}'
        f"{''.join(labels)}</svg>"
    )


def _sample_read(read: Mapping[str, Any] | None) -> str:
    if not read:
        return ""
    if read["partial"]:
        return f"<p class=fail>Partial sample: {_e(read['detail'])}.</p>"
    return f"<p>Sample: {_e(read['detail'])}.</p>"


def _sample_table(sample: Sequence[Mapping[str, Any]]) -> str:
    if not sample:
        return "<p>No flipped customer in the scoring log records of this release.</p>"
    rows = "".join(
        f"<tr><td><code>{_e(item['customer_hash'])}</code></td><td>{_e(item['answered_by'])}</td>"
        + "".join(
            f"<td>{_e(item[m]['decision'])} ({item[m]['default_probability']:.4f})<br>"
            f"<small>{_e(', '.join(item[m]['reasons']) or '-')}</small></td>"
            for m in ("champion", "candidate")
        )
        + "</tr>"
        for item in sample
    )
    return (
        "<table><tr><th>customer (hashed)</th><th>answered by</th><th>champion</th>"
        f"<th>candidate</th></tr>{rows}</table>"
    )


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    release, totals = report["release"], report["totals"]
    title = f"Release {release['release_id']} of {release['model_version']}"
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1>",
        f"<p class={_e(report['outcome'])}><strong>{_e(report['outcome'])}</strong>: "
        f"{_e(report['reason'])}</p>",
        f"<p>Champion at the start: <code>{_e(release['champion'] or 'none')}</code>; "
        f"began {_e(release['started_at'])}; report {_e(report['generated_at'])}.</p>",
        "<h2>Gates at the last check</h2>",
        _gates_table(report["gates"]),
        "<h2>Stages</h2>",
        _stages_table(report["stages"]),
    ]
    if totals and totals.get("pairs"):
        parts += [
            "<h2>Behaviour on the same customers</h2><table>",
            f"<tr><th>customers scored by both</th><td>{_e(totals['pairs'])}</td></tr>",
            f"<tr><th>approval rate, champion → candidate</th><td>"
            f"{_fmt(totals['champion_approval_rate'], True)} → "
            f"{_fmt(totals['candidate_approval_rate'], True)}</td></tr>",
            "<tr><th>swap set: approve → decline</th>"
            f"<td>{_e(totals['swaps_to_decline'])}</td></tr>",
            "<tr><th>swap set: decline → approve</th>"
            f"<td>{_e(totals['swaps_to_approve'])}</td></tr>",
            f"<tr><th>swap share</th><td>{_fmt(totals['swap_share'], True)}</td></tr>",
            f"<tr><th>score PSI</th><td>{_fmt(totals['score_psi'])}</td></tr>",
            f"<tr><th>candidate errors</th><td>{_e(totals['candidate_errors'])}</td></tr>",
            "</table><h2>Score distributions</h2>",
            _distribution_svg(totals),
        ]
    parts += [
        "<h2>Flipped customers (sample)</h2>",
        _sample_read(report.get("swap_sample_read")),
        _sample_table(report["swap_sample"]),
        "</body></html>",
    ]
    return "\n".join(parts)
