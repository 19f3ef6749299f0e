"""``credit-risk monitor``: drift, skew, invariants, staleness and live quality of the
champion over the recent scoring log, as a JSON report (and an HTML page)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime

from credit_risk import io
from credit_risk.errors import InvalidInputError
from credit_risk.settings import Settings

# 0: every check ok, warned or skipped; 1: a check alerts; 2 (the CLI's error
# exit): the monitor could not run. A scheduler tells "look at it" from "broken".
EXIT_OK = 0
EXIT_ALERT = 1


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 366:
        raise argparse.ArgumentTypeError(f"a number of days from 1 to 366, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "monitor",
        help="compare recent scores with the champion's training reference; write a report",
        description=(
            "Run the monitor on the scoring log of a window of days: input invariants, "
            "drift (PSI per feature and of the score), training/serving skew against the "
            "offline snapshot, staleness of the model and of the feature snapshot, and "
            "live AUC and calibration on delayed labels (<lake>/labels/). Thresholds come "
            "from CREDIT_RISK_* settings (psi_warn, psi_alert, max_model_age_days, ...). "
            "Exit status: 0 when no check alerts (ok, warn or skipped), 1 when one "
            "alerts, 2 when the monitor cannot run."
        ),
    )
    parser.add_argument(
        "--days",
        type=_days,
        default=None,
        help="days of scoring log up to --end (default: CREDIT_RISK_MONITOR_WINDOW_DAYS, 7)",
    )
    parser.add_argument(
        "--end",
        type=_date,
        default=None,
        help="last day of the window, YYYY-MM-DD (default: today, UTC)",
    )
    parser.add_argument(
        "--report",
        default=None,
        metavar="PATH",
        help="where the JSON report goes (default: <lake>/monitoring/date=<end>/report.json)",
    )
    parser.add_argument(
        "--html", default=None, metavar="PATH", help="also write the report as an HTML page"
    )
    parser.set_defaults(handler=run_monitor_command)


def _print_summary(summary: dict, report_path: str, html_path: str | None) -> None:
    window = summary["window"]
    print(
        f"monitor {summary['status'].upper()}: model {summary['model_version']}, "
        f"{window['start']} to {window['end']}, {summary['scores']} scores"
    )
    for name, check in summary["checks"].items():
        figures = ", ".join(f"{k}={v}" for k, v in check.items() if k not in ("status", "reason"))
        detail = check.get("reason") or figures
        print(f"  {name:<11} {check['status']:<8} {detail}")
    for note in summary["notes"]:
        print(f"  note: {note}")
    print(f"report: {report_path}")
    if html_path:
        print(f"html:   {html_path}")


def run_monitor_command(args: argparse.Namespace) -> int:
    from credit_risk.monitoring.monitor import report_uri, run_monitor
    from credit_risk.monitoring.report import ALERT

    settings = Settings()
    end = args.end or datetime.now(UTC).date()
    try:
        report = run_monitor(settings, end=end, days=args.days)
    except ValueError as exc:  # a reference or a log that contradicts itself
        raise InvalidInputError(str(exc)) from None
    report_path = args.report or report_uri(settings, end)
    io.write_bytes(report_path, report.to_json().encode())
    if args.html:
        from credit_risk.monitoring.html import render_html

        io.write_bytes(args.html, render_html(report).encode())
    _print_summary(report.summary(), report_path, args.html)
    if report.status == ALERT:
        print(
            "alerts: " + json.dumps([n for n, c in report.checks.items() if c["status"] == ALERT]),
            file=sys.stderr,
        )
        return EXIT_ALERT
    return EXIT_OK
