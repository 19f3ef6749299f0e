"""Training, feature-loader, monitor and inference functions, the inference
function's ``live`` alias and its code release."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from credit_risk import names
from infra.components.container_function import container_function
from infra.config import ALARM_PERIOD_MINUTES, CodeReleaseConfig, FunctionsConfig
from infra.nag import acknowledge


def alias_server_errors(alias: str, namespace: str) -> cw.Metric:
    """5xx answers of the inference handler through ``alias``, summed per minute
    (the period of the release alarms), in the deployment's metric ``namespace``."""
    return cw.Metric(
        namespace=namespace,
        metric_name=names.METRIC_SERVER_ERRORS,
        dimensions_map={"service": names.SERVICE_INFERENCE, names.METRIC_DIMENSION_ALIAS: alias},
        statistic="Sum",
        period=Duration.minutes(ALARM_PERIOD_MINUTES),
    )


class ModelFunctions(Construct):
    """The container Lambdas of the ML lifecycle.

    Inference runs the small image (core dependencies without pyarrow: it reads
    one row per customer, never a file); the feature loader and the monitor read
    Parquet and share the training image. Those three run in the VPC (they talk
    to the feature store); training needs only S3.
    Clients call inference through the ``live`` alias. Two kinds of release
    change what it serves, each its own way and neither touching the other:

    - a code release (``cdk deploy`` of a new commit) publishes a version that
      pins no model (it serves the registry's champion); CodeDeploy shifts
      ``live`` to it in a canary (``code_release``) and rolls it back, failing
      the deployment, when the ``live`` alarms below fire;
    - a model release (the canary-release state machine) moves no alias: it
      writes the registry's release record, which every instance of ``live``
      follows, scoring each request with the champion and the candidate
      in-process (shadow, then a keyed-hash share of customers answered by the
      candidate, then promotion of the champion pointer).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: FunctionsConfig,
        code_release: CodeReleaseConfig,
        alarm_prefix: str,
        metric_namespace: str,
        vpc: ec2.IVpc,
        database_security_group: ec2.ISecurityGroup,
        environment: Mapping[str, Mapping[str, str]],
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        """``alarm_prefix``: name prefix of the ``live`` alias's release alarms;
        ``metric_namespace``: the deployment's, which the inference function publishes in."""
        super().__init__(scope, construct_id)
        common = {"log_retention": log_retention, "removal_policy": removal_policy}
        in_vpc = {"vpc": vpc, "security_groups": [database_security_group]}
        self.inference = container_function(
            self,
            "Inference",
            image="inference",
            handler=names.HANDLER_INFERENCE,
            settings=settings.inference,
            environment=environment["inference"],
            description="Scores a customer: feature store lookup, model, reasons",
            **common,
            **in_vpc,
        )
        self.feature_loader = container_function(
            self,
            "FeatureLoader",
            image="training",
            handler=names.HANDLER_FEATURE_LOADER,
            settings=settings.feature_loader,
            environment=environment["feature_loader"],
            description="Loads a serving snapshot into the feature store and swaps it in",
            **common,
            **in_vpc,
        )
        self.training = container_function(
            self,
            "Training",
            image="training",
            handler=names.HANDLER_TRAINING,
            settings=settings.training,
            environment=environment["training"],
            description="Trains, evaluates and registers a model version",
            **common,
        )
        self.monitor = container_function(
            self,
            "Monitor",
            image="training",
            handler=names.HANDLER_MONITOR,
            settings=settings.monitor,
            environment=environment["monitor"],
            description="Drift, skew, staleness and live quality of the served model",
            **common,
            **in_vpc,
        )
        version = self.inference.current_version
        self.live = lambda_.Alias(
            self,
            "Live",
            alias_name=names.LIVE_ALIAS,
            version=version,
            provisioned_concurrent_executions=settings.inference.provisioned_concurrency,
        )
        self.aliases = (self.live,)
        self._keep_for_upgrades(version)
        self.release_alarms = self._live_alarms(alarm_prefix, metric_namespace)
        self.code_release = self._code_release(code_release)

    def _keep_for_upgrades(self, version: lambda_.IVersion) -> None:
        """The ``candidate`` alias model releases used before they moved into the
        function, kept with its export while environments deployed before then are
        upgraded: their Api stack still imports it, and CloudFormation refuses to
        delete an export in use (the Ml stack deploys first). It takes no traffic
        and no release moves it. Remove it, and its export, once every environment
        has deployed this release."""
        candidate = lambda_.Alias(
            self, "Candidate", alias_name=names.CANDIDATE_ALIAS, version=version
        )
        Stack.of(self).export_value(candidate.function_arn)

    def _live_alarms(self, prefix: str, namespace: str) -> tuple[cw.Alarm, ...]:
        """Failed invocations and 5xx answers of the ``live`` alias, per minute.

        The handler answers 500 without raising, so Errors alone would miss a
        version that cannot score; ServerErrors is its own count per alias.
        """
        period = Duration.minutes(ALARM_PERIOD_MINUTES)
        return tuple(
            cw.Alarm(
                self,
                construct_id,
                alarm_name=f"{prefix}{what}",
                alarm_description=f"{description}; rolls a code release back",
                metric=metric,
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
            for construct_id, what, metric, description in (
                (
                    "LiveReleaseErrors",
                    "errors",
                    self.live.metric_errors(period=period, statistic="Sum"),
                    "An invocation of the live inference alias failed",
                ),
                (
                    "LiveReleaseServerErrors",
                    "server-errors",
                    alias_server_errors(names.LIVE_ALIAS, namespace),
                    "The live inference alias answered a 5xx",
                ),
            )
        )

    def _code_release(self, settings: CodeReleaseConfig) -> codedeploy.LambdaDeploymentGroup:
        """CodeDeploy shifts ``live`` to a newly deployed version: a canary share
        first, all of it after ``canary_minutes`` unless an alarm fired."""
        config = codedeploy.LambdaDeploymentConfig(
            self,
            "CodeReleaseConfig",
            traffic_routing=codedeploy.TimeBasedCanaryTrafficRouting(
                percentage=settings.canary_percent,
                interval=Duration.minutes(settings.canary_minutes),
            ),
        )
        group = codedeploy.LambdaDeploymentGroup(
            self,
            "CodeRelease",
            alias=self.live,
            deployment_config=config,
            alarms=list(self.release_alarms),
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, deployment_in_alarm=True
            ),
        )
        acknowledge(
            group.role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSCodeDeployRoleForLambdaLimited]",
            "The AWS-managed service policy of CodeDeploy for Lambda: it describes alarms "
            "and gets/updates aliases, reads only S3 objects meant for CodeDeploy, and may "
            "invoke only functions named CodeDeployHook_*, of which there are none.",
        )
        return group
