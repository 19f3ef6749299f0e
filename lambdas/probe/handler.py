"""Probe function: the scheduled synthetic probe of this environment's scoring API
(EventBridge rule, every ``probe.rate_minutes``).

Event: the rule's ``Scheduled Event`` (nothing in it is read), or ``{}`` by hand.
Reads the client key from its secret, then ``credit_risk.probe.probe``: health and
the probe customer's score through the API's public URL, the answer compared with
the previous run's (kept at ``CREDIT_RISK_PROBE_STATE_URI``) and kept in its place.
Publishes ``ProbeFailures``, ``ProbeAnswerChanged`` and each call's latency (EMF,
``service=probe``), which the Monitoring stack alarms on, and returns the result.

A failed probe is a result, not an error. The function fails only when it cannot
probe at all (the key or the state cannot be read or written): its Errors alarm
says the API is not being watched. A state object that holds no answer (written by
an older release, or by hand) is replaced rather than stopping every run.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from credit_risk import names, probe
from credit_risk.settings import Settings

logger = Logger(service=names.SERVICE_PROBE)
# The namespace is the deployment's, set from the settings on each run before any
# metric is added (POWERTOOLS_METRICS_NAMESPACE, read at import, is the same in AWS).
metrics = Metrics(service=names.SERVICE_PROBE)


class ProbeSettings(BaseSettings):
    """The function's environment (``CREDIT_RISK_PROBE_*``, set by the Monitoring stack)."""

    model_config = SettingsConfigDict(env_prefix=f"{names.ENV_PREFIX}PROBE_", extra="ignore")

    url: str = Field(description="The API's public URL (the Api stack's ApiUrl).")
    api_key_secret_id: str = Field(description="The client-key secret.")
    customer_id: str
    timeout_seconds: float = Field(gt=0)
    state_uri: str = Field(description="Where the last answer is kept (s3://...).")


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = ProbeSettings()
    metrics.namespace = names.metric_namespace(Settings().environment)
    result = probe.probe(
        settings.url,
        probe.read_api_key(settings.api_key_secret_id),
        settings.customer_id,
        timeout=settings.timeout_seconds,
        state_uri=settings.state_uri,
        replace_unreadable_state=True,
    )
    for name, value, unit in result.metric_points():
        metrics.add_metric(name=name, unit=MetricUnit(unit), value=value)
    summary = result.summary()
    if not result.ok:
        logger.error("the API failed the probe", extra=summary)
    elif result.answer_changed:
        logger.error("the probe customer's answer changed without a release", extra=summary)
    else:
        logger.info("probe passed", extra=summary)
    return summary
