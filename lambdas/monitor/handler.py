"""Monitor function: the scheduled model and data monitor (EventBridge rule).

Event: the rule's ``Scheduled Event`` (its ``time`` picks the window: the days up to
the day before, whose scoring log is complete), or ``{"end": "YYYY-MM-DD", "days": N}``
to re-run a window by hand. Runs ``credit_risk.monitoring.monitor.run_monitor``,
publishes the metrics (EMF, ``service=monitor``) the alarms watch, stores the report
as JSON and HTML under ``<lake>/monitoring/date=<end>/``, and when live quality
alerts and ``retrain_on_quality_drop`` is set, puts a ``Retraining requested`` event
on the default bus. Returns the report's summary. A run that cannot read what it
needs raises: the function's Errors alarm tells "broken" from "alert". Before the
first model is in service (no champion yet, a freshly deployed environment) there is
nothing to monitor: the run returns ``{"skipped": "no_model"}`` instead of raising,
so the alarm does not mail every day until the environment is bootstrapped.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from credit_risk import io, names
from credit_risk.errors import InvalidInputError
from credit_risk.monitoring.monitor import HTML_FILE, NoChampionError, report_uri, run_monitor
from credit_risk.monitoring.report import ALERT, MonitorReport
from credit_risk.settings import Settings

logger = Logger(service=names.SERVICE_MONITOR)
# The namespace is the deployment's, set from the settings on each run before any
# metric is added (POWERTOOLS_METRICS_NAMESPACE, read at import, is the same in AWS).
metrics = Metrics(service=names.SERVICE_MONITOR)


class MonitorEvent(BaseModel):
    """A scheduled event (only ``time`` matters) or a manual run."""

    model_config = ConfigDict(extra="ignore")

    time: datetime | None = None
    end: date | None = None
    days: int | None = Field(default=None, ge=1, le=366)

    def window_end(self) -> date:
        return self.end or ((self.time or datetime.now(UTC)).date() - timedelta(days=1))


def publish_metrics(report: MonitorReport) -> None:
    for point in report.metric_points():
        unit = MetricUnit(point.unit)
        extra = {k: v for k, v in point.dimensions.items() if k != "service"}
        if not extra:
            metrics.add_metric(name=point.name, unit=unit, value=point.value)
            continue
        # A per-feature gauge is its own EMF document: dimensions are per document.
        with single_metric(
            name=point.name,
            unit=unit,
            value=point.value,
            namespace=metrics.namespace,
            default_dimensions=point.dimensions,
        ):
            pass


def request_retraining(report: MonitorReport, uri: str) -> None:
    import boto3

    quality = report.checks["quality"]
    detail = {
        "reason": (
            f"live quality of {report.model_version} dropped: AUC {quality.get('live_auc')} "
            f"vs {quality.get('offline_auc')} offline, calibration "
            f"{quality.get('calibration', {}).get('status')}"
        ),
        "model_version": report.model_version,
        "live_auc": quality.get("live_auc"),
        "offline_auc": quality.get("offline_auc"),
        "report_uri": uri,
    }
    response = boto3.client("events").put_events(
        Entries=[
            {
                "Source": names.MONITOR_EVENT_SOURCE,
                "DetailType": names.RETRAINING_REQUESTED,
                "Detail": json.dumps(detail),
            }
        ]
    )
    if response.get("FailedEntryCount"):
        raise RuntimeError(f"the retraining request was not accepted: {response['Entries']}")
    logger.warning("retraining requested", extra=detail)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = MonitorEvent.model_validate(event)
    except ValidationError as exc:
        raise InvalidInputError(f"invalid monitor event: {exc}") from None
    settings = Settings()
    metrics.namespace = names.metric_namespace(settings.environment)
    end = request.window_end()
    try:
        report = run_monitor(settings, end=end, days=request.days)
    except NoChampionError:
        logger.info(
            "no model in service yet; nothing to monitor",
            extra={"registry": settings.registry, "model_name": settings.model_name},
        )
        return {"skipped": "no_model"}
    publish_metrics(report)
    uri = report_uri(settings, end)
    io.write_bytes(uri, report.to_json().encode())

    from credit_risk.monitoring.html import render_html  # matplotlib: only once a report exists

    io.write_bytes(report_uri(settings, end, HTML_FILE), render_html(report).encode())
    retrain = report.check_status("quality") == ALERT and settings.retrain_on_quality_drop
    if retrain:
        request_retraining(report, uri)
    summary = report.summary()
    logger.info("monitor finished", extra={"status": report.status, "report": uri})
    return {**summary, "report_uri": uri, "retraining_requested": retrain}
