"""The synthetic probe of the scoring API: a function and its schedule."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_logs as logs
from constructs import Construct

from credit_risk import names
from infra.components.container_function import container_function
from infra.config import FunctionConfig, ProbeConfig

PROBE_MEMORY_MB = 512


class SyntheticProbe(Construct):
    """The probe function (``lambdas/probe/handler.py``), run every ``rate_minutes``.

    It runs the inference image with its own command, as the release function does:
    that image holds the library the probe needs and is built anyway, where an
    image of its own would be one more to build and patch for a handler of a few
    lines. It stays outside the VPC and calls the API's public URL, as a client
    does. One run at a time (reserved concurrency 1), so that runs never race on
    the kept answer, and no retries: a run repeated late measures nothing the next
    scheduled one does not.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: ProbeConfig,
        environment_name: str,
        metric_namespace: str,
        api_url: str,
        key_secret_arn: str,
        state_uri: str,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = container_function(
            self,
            "Function",
            image="inference",
            handler=names.HANDLER_PROBE,
            settings=FunctionConfig(
                memory_mb=PROBE_MEMORY_MB,
                timeout_seconds=settings.function_timeout_seconds,
                reserved_concurrency=1,
            ),
            environment={
                names.ENV_ENVIRONMENT: environment_name,
                names.ENV_PROBE_URL: api_url,
                names.ENV_PROBE_API_KEY_SECRET_ID: key_secret_arn,
                names.ENV_PROBE_CUSTOMER_ID: settings.customer_id,
                names.ENV_PROBE_TIMEOUT_SECONDS: str(settings.timeout_seconds),
                names.ENV_PROBE_STATE_URI: state_uri,
                names.ENV_POWERTOOLS_SERVICE_NAME: names.SERVICE_PROBE,
                names.ENV_POWERTOOLS_METRICS_NAMESPACE: metric_namespace,
                names.ENV_LOG_LEVEL: "INFO",
            },
            log_retention=log_retention,
            removal_policy=removal_policy,
            description="Synthetic probe of the scoring API: health and one customer's score",
        )
        interval = Duration.minutes(settings.rate_minutes)
        self.function.configure_async_invoke(retry_attempts=0, max_event_age=interval)
        self.schedule = events.Rule(
            self,
            "Schedule",
            description="Probes the scoring API as a client does: health and one known customer",
            schedule=events.Schedule.rate(interval),
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)],
        )
