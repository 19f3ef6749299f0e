from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from credit_risk import names
from credit_risk.schemas import FEATURE_NAMES
from infra.components.failover_domain import FailoverRecord
from infra.components.feature_database import FeatureDatabase
from infra.components.model_functions import ModelFunctions, alias_server_errors
from infra.components.monitoring import FIVE_MINUTES, Monitoring
from infra.components.probe import SyntheticProbe
from infra.components.scoring_api import ScoringApi
from infra.config import ALARM_PERIOD_MINUTES, EnvironmentConfig
from infra.grants import allow_objects, bucket_name
from infra.stacks.base import EnvironmentStack

GIB = 1024**3
# The monitor's alarms: each watches a count of checks in the alert state.
MONITOR_ALARMS = (
    ("Drift", names.METRIC_DRIFT_ALERTS, "A feature or the score drifted past the alert PSI"),
    ("Skew", names.METRIC_SKEW_MISMATCHES, "Served features differ from the offline snapshot"),
    ("Invariants", names.METRIC_INVARIANT_VIOLATIONS, "Served inputs break their invariants"),
    ("Staleness", names.METRIC_STALENESS_ALERTS, "The champion or the snapshot is too old"),
    ("LiveQuality", names.METRIC_LIVE_QUALITY_ALERTS, "Live AUC or calibration dropped"),
    (
        "Fairness",
        names.METRIC_FAIRNESS_ALERTS,
        "A group's approval rate on served decisions is below the adverse impact floor "
        "beyond chance",
    ),
)


def inference_count(name: str, namespace: str, period: Duration = FIVE_MINUTES) -> cw.Metric:
    """A count the inference handler publishes in the deployment's ``namespace`` with
    the dimension ``service`` alone (an alarm's dimensions must match the published
    set exactly), summed per period."""
    return cw.Metric(
        namespace=namespace,
        metric_name=name,
        dimensions_map={"service": names.SERVICE_INFERENCE},
        statistic="Sum",
        period=period,
    )


class MonitoringStack(EnvironmentStack):
    unit = "Monitoring"
    summary = "alarms and dashboard"

    def __init__(
        self,
        scope: Construct,
        *,
        config: EnvironmentConfig,
        topic: sns.ITopic,
        api: ScoringApi,
        functions: ModelFunctions,
        database: FeatureDatabase,
        feature_job: glue.IJob,
        state_machines: dict[str, sfn.IStateMachine],
        client_key: secretsmanager.ISecret,
        domain: apigw.DomainName | None = None,
    ) -> None:
        """``client_key``: the secret of the client API key, which the probe calls with;
        ``domain``: the API's custom domain, when clients call one that fails over."""
        super().__init__(scope, config=config)
        limits = config.alarms
        # This deployment's custom metrics, and no other's in the account and region.
        self.namespace = namespace = names.metric_namespace(config.deployment)
        self.monitoring = monitor = Monitoring(
            self, "Monitoring", topic=topic, dashboard_name=config.resource_name("overview")
        )
        rest_api = api.api
        server_errors = rest_api.metric_server_error(period=FIVE_MINUTES, statistic="Sum")
        latency = rest_api.metric_latency(period=FIVE_MINUTES, statistic="p99")
        monitor.alarm(
            "Api5xx",
            name=config.resource_name("api", "5xx"),
            metric=server_errors,
            threshold=limits.api_5xx_per_5_minutes,
            description="The scoring API answers with server errors",
        )
        monitor.alarm(
            "ApiLatency",
            name=config.resource_name("api", "p99-latency"),
            metric=latency,
            threshold=limits.api_p99_latency_ms,
            evaluation_periods=2,
            description="p99 latency of the scoring API is above target",
        )
        monitor.graph("API 5xx and p99 latency", server_errors, latency)

        # The live alias's failures and throttles, over five minutes (its code
        # release reads its own one-minute alarms, in the Ml stack).
        for alias in functions.aliases:
            prefix = config.resource_name("inference", alias.alias_name)
            errors = alias.metric_errors(period=FIVE_MINUTES, statistic="Sum")
            throttles = alias.metric_throttles(period=FIVE_MINUTES, statistic="Sum")
            label = alias.alias_name.capitalize()
            monitor.alarm(
                f"{label}Errors",
                name=f"{prefix}-errors",
                metric=errors,
                threshold=limits.lambda_errors_per_5_minutes,
                description=f"The {alias.alias_name} inference alias fails",
            )
            monitor.alarm(
                f"{label}Throttles",
                name=f"{prefix}-throttles",
                metric=throttles,
                threshold=limits.lambda_throttles_per_5_minutes,
                description=f"The {alias.alias_name} inference alias is throttled",
            )
            monitor.graph(
                f"Inference ({alias.alias_name})",
                errors,
                throttles,
                alias.metric_invocations(period=FIVE_MINUTES, statistic="Sum"),
            )
        # The model release's candidate failing inside the inference function (it
        # could not be loaded, or it failed to score, in shadow or in a canary
        # step), per minute like the release's stages. The release reads every
        # alarm under names.candidate_alarm_prefix before each verdict.
        candidate_errors = inference_count(
            names.METRIC_CANDIDATE_ERRORS, namespace, Duration.minutes(ALARM_PERIOD_MINUTES)
        )
        monitor.alarm(
            "CandidateErrors",
            name=names.candidate_alarm_prefix(config.deployment) + "errors",
            metric=candidate_errors,
            threshold=1,
            description="A model release's candidate failed in the inference function; "
            "the release rolls back",
        )
        monitor.graph(
            "Inference 5xx and candidate failures",
            alias_server_errors(names.LIVE_ALIAS, namespace),
            candidate_errors,
        )
        # A promoted champion that the serving functions cannot load: they keep
        # serving the previous model, so nothing else would show it.
        monitor.alarm(
            "ModelRefreshErrors",
            name=config.resource_name("inference", "model-refresh-errors"),
            metric=inference_count(names.METRIC_MODEL_REFRESH_ERRORS, namespace),
            threshold=1,
            description="The inference function cannot load the registry's champion",
        )
        # Stored features no model can score (NaN, infinity): those customers get
        # 422 unscorable_features until the snapshot is repaired.
        monitor.alarm(
            "UnscorableFeatures",
            name=config.resource_name("inference", "unscorable-features"),
            metric=inference_count(names.METRIC_UNSCORABLE_FEATURES, namespace),
            threshold=1,
            description="Stored features of some customers cannot be scored (NaN or infinity)",
        )
        for label, function in (
            ("Training", functions.training),
            ("FeatureLoader", functions.feature_loader),
        ):
            errors = function.metric_errors(period=FIVE_MINUTES, statistic="Sum")
            monitor.alarm(
                f"{label}Errors",
                name=config.resource_name(label.lower(), "errors"),
                metric=errors,
                threshold=1,
                description=f"The {label} function failed",
            )
            monitor.graph(f"{label} errors", errors)

        monitor.alarm(
            "FeatureJobFailures",
            name=config.resource_name("features", "failures"),
            metric=feature_job.metric_failure(period=FIVE_MINUTES),
            threshold=1,
            description="A run of the Glue feature job failed",
        )
        for label, machine in state_machines.items():
            failed = machine.metric_failed(period=FIVE_MINUTES, statistic="Sum")
            timed_out = machine.metric_timed_out(period=FIVE_MINUTES, statistic="Sum")
            monitor.alarm(
                f"{label}Failed",
                name=config.resource_name(label.lower(), "failed"),
                metric=failed,
                threshold=1,
                description=f"A {label} run failed",
            )
            monitor.alarm(
                f"{label}TimedOut",
                name=config.resource_name(label.lower(), "timed-out"),
                metric=timed_out,
                threshold=1,
                description=f"A {label} run timed out",
            )
            monitor.graph(f"{label} runs", failed, timed_out)

        instance = database.instance
        cpu = instance.metric_cpu_utilization(period=FIVE_MINUTES)
        connections = instance.metric_database_connections(period=FIVE_MINUTES)
        free_storage = instance.metric_free_storage_space(period=FIVE_MINUTES)
        monitor.alarm(
            "DatabaseCpu",
            name=config.resource_name("database", "cpu"),
            metric=cpu,
            threshold=limits.rds_cpu_percent,
            evaluation_periods=3,
            description="Feature store CPU is high",
        )
        monitor.alarm(
            "DatabaseConnections",
            name=config.resource_name("database", "connections"),
            metric=connections,
            threshold=limits.rds_connections,
            evaluation_periods=3,
            description="Feature store has too many connections",
        )
        monitor.alarm(
            "DatabaseStorage",
            name=config.resource_name("database", "free-storage"),
            metric=free_storage,
            threshold=limits.rds_free_storage_gib * GIB,
            below=True,
            description="Feature store is running out of storage",
        )
        monitor.graph("Feature store", cpu, connections)

        model_age = cw.Metric(
            namespace=namespace,
            metric_name=names.METRIC_MODEL_AGE_DAYS,
            dimensions_map={"service": names.SERVICE_INFERENCE},
            statistic="Maximum",
            period=Duration.hours(1),
        )
        monitor.alarm(
            "ModelStaleness",
            name=config.resource_name("model", "staleness"),
            metric=model_age,
            threshold=limits.model_staleness_days,
            description="The served model is older than the retraining policy allows",
        )
        monitor.graph("Served model age (days)", model_age)
        self._model_and_data(config, functions)
        self._probe(config, api, client_key)
        dr = config.disaster_recovery
        if domain is not None and dr is not None and dr.domain is not None:
            self.failover = FailoverRecord(
                self,
                "Failover",
                domain=dr.domain,
                target=domain,
                api=api.api,
                set_identifier=f"{config.deployment}-{config.region}",
                region=config.region,
                probe_alarm=None if config.is_standby else self.probe_failures,
            )
        monitor.finish()

    def _probe(self, config: EnvironmentConfig, api: ScoringApi, key: secretsmanager.ISecret):
        """The synthetic probe, its grants, alarms and dashboard row. Its metrics come
        once per run: each alarm judges periods of one run interval."""
        settings, monitor = config.probe, self.monitoring
        self.probe: SyntheticProbe | None = None
        self.probe_failures: cw.Alarm | None = None
        if not settings.enabled:
            return
        self.probe = probe = SyntheticProbe(
            self,
            "Probe",
            settings=settings,
            environment_name=config.deployment,
            metric_namespace=self.namespace,
            api_url=api.api.url,
            # A standby's key is the primary's replica, known by name only.
            key_secret_arn=key.secret_arn if key.secret_full_arn else key.secret_name,
            state_uri=f"s3://{bucket_name(config.deployment, 'curated')}/{names.PROBE_STATE_KEY}",
            log_retention=self.log_retention,
            removal_policy=self.removal_policy,
        )
        self.starts_work(probe.schedule, "probe")
        function = probe.function
        # In the role's policy only: a grant on the secret would also write this role
        # into the policy of the secret's own key (an environment shared with another
        # account has one), in the Api stack, which this stack depends on.
        if key.secret_full_arn:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["secretsmanager:GetSecretValue"], resources=[key.secret_arn]
                )
            )
        else:
            # The replica's ARN ends in the suffix drawn in the primary region: the
            # grant matches any (``-??????``); such a secret has no key of its own.
            key.grant_read(function)
        if key.encryption_key is not None:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["kms:Decrypt"],
                    resources=[key.encryption_key.key_arn],
                    conditions={
                        "StringEquals": {
                            "kms:ViaService": f"secretsmanager.{config.region}.amazonaws.com"
                        }
                    },
                )
            )
        allow_objects(
            function,
            scope=function.role,
            environment=config.deployment,
            bucket="curated",
            prefix=names.PROBE_STATE_PREFIX,
            write=True,
        )
        period = Duration.minutes(settings.rate_minutes)

        def metric(name: str, statistic: str = "Maximum") -> cw.Metric:
            return cw.Metric(
                namespace=self.namespace,
                metric_name=name,
                dimensions_map={"service": names.SERVICE_PROBE},
                statistic=statistic,
                period=period,
            )

        failures = metric(names.METRIC_PROBE_FAILURES)
        changed = metric(names.METRIC_PROBE_ANSWER_CHANGED)
        # Missing data is left out rather than read as a pass: a schedule that fires
        # just past a period's end leaves one period empty and the next with two
        # runs, and "failures in a row" must still count the runs themselves. A probe
        # that does not run at all is the Errors alarm's to report.
        self.probe_failures = monitor.alarm(
            "ProbeFailures",
            name=config.resource_name(*names.PROBE_FAILURES_ALARM_PARTS),
            metric=failures,
            threshold=1,
            evaluation_periods=settings.failures_to_alarm,
            treat_missing_data=cw.TreatMissingData.MISSING,
            description=f"The scoring API failed {settings.failures_to_alarm} synthetic "
            "probe(s) in a row (health, or the probe customer's score, through the public "
            "URL with the client key); the probe function's log says what failed",
        )
        monitor.alarm(
            "ProbeAnswerChanged",
            name=config.resource_name("probe", "answer-changed"),
            metric=changed,
            threshold=1,
            description="The probe customer's answer changed with neither a new model "
            "version nor a new feature snapshot; the probe function's log has both answers",
        )
        monitor.alarm(
            "ProbeErrors",
            name=config.resource_name("probe", "errors"),
            metric=function.metric_errors(period=period, statistic="Sum"),
            threshold=1,
            description="The probe could not run (client key or its kept answer unreadable): "
            "the scoring API is not being probed",
        )
        monitor.graph("Synthetic probe: failures and changed answers", failures, changed)
        monitor.graph(
            "Synthetic probe: latency (ms)",
            metric(names.METRIC_PROBE_HEALTH_LATENCY, "Average"),
            metric(names.METRIC_PROBE_SCORE_LATENCY, "Average"),
        )

    def _model_and_data(self, config: EnvironmentConfig, functions: ModelFunctions) -> None:
        """The monitor's schedule, its alarms (drift, skew, invariants, staleness, live
        quality) and its dashboard rows. Its metrics come once per run, hence the
        one-day period and "missing data is fine"."""
        settings, monitor = config.monitoring, self.monitoring
        self.monitor_schedule = events.Rule(
            self,
            "MonitorSchedule",
            description="Checks drift, skew, staleness and live quality of the served model",
            schedule=events.Schedule.expression(settings.schedule),
            targets=[targets.LambdaFunction(functions.monitor, retry_attempts=2)],
        )
        self.starts_work(self.monitor_schedule, "monitor")

        def gauge(name: str, **dimensions: str) -> cw.Metric:
            return cw.Metric(
                namespace=self.namespace,
                metric_name=name,
                dimensions_map={"service": names.SERVICE_MONITOR, **dimensions},
                statistic="Maximum",
                period=Duration.days(1),
            )

        for construct_id, metric, what in MONITOR_ALARMS:
            monitor.alarm(
                f"Monitor{construct_id}",
                name=config.resource_name("monitor", construct_id.lower()),
                metric=gauge(metric),
                threshold=1,
                description=what,
            )
        errors = functions.monitor.metric_errors(period=Duration.hours(1), statistic="Sum")
        monitor.alarm(
            "MonitorErrors",
            name=config.resource_name("monitor", "errors"),
            metric=errors,
            threshold=1,
            description="The monitor failed: drift, skew and quality are not being checked",
        )
        psi = [gauge(names.METRIC_PSI, feature=name) for name in (*FEATURE_NAMES, "score")]
        monitor.dashboard.add_widgets(
            cw.GraphWidget(
                title="Population stability index (served vs training)",
                left=psi,
                left_annotations=[
                    cw.HorizontalAnnotation(value=settings.psi_warn, label="warn"),
                    cw.HorizontalAnnotation(value=settings.psi_alert, label="alert"),
                ],
                width=12,
            )
        )
        monitor.graph(
            "Training/serving skew and input invariants",
            gauge(names.METRIC_SKEW_MISMATCHES),
            gauge(names.METRIC_INVARIANT_VIOLATIONS),
        )
        monitor.graph(
            "Staleness (days): model and feature snapshot",
            gauge(names.METRIC_MODEL_AGE_DAYS),
            gauge(names.METRIC_FEATURES_AGE_DAYS),
        )
        monitor.graph(
            "Live quality on delayed labels",
            gauge(names.METRIC_LIVE_AUC),
            gauge(names.METRIC_SCORES_MONITORED),
        )
