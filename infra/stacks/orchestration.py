from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, Aws, CfnOutput, Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from credit_risk import names
from infra.components.asl_state_machine import AslStateMachine
from infra.components.batch_scoring import BatchScoringSchedule
from infra.components.container_function import container_function
from infra.components.data_lake import DataLake
from infra.components.model_functions import ModelFunctions
from infra.components.notifications import Notifications
from infra.components.pipeline_triggers import AbandonedReleases, PipelineTriggers, WarmUp
from infra.config import EnvironmentConfig, FunctionConfig
from infra.grants import allow_objects
from infra.nag import acknowledge, rendered_account
from infra.stacks.base import EnvironmentStack

TRAINING_PIPELINE = "training_pipeline"
CANARY_RELEASE = "canary_release"
BATCH_SCORING = "batch_scoring"
# The release function's longest actions are the probe of the live function (a
# cold start that loads two models) and the report, which streams the release's
# days of the scoring log until it has its sample of flipped customers or the
# invocation's time runs short (credit_risk.release.report): the timeout bounds
# that pass, not the size of the log.
RELEASE_FUNCTION = FunctionConfig(memory_mb=2048, timeout_seconds=300)

# Every ``${Name}`` an ASL definition may use. Values from configuration and
# shared names come from ``configured_substitutions``; the rest are attributes of
# deployed resources. The tests compare this set with the definitions' placeholders.
RESOURCE_SUBSTITUTIONS = frozenset(
    {
        "FeatureJobName",
        "RawBucket",
        "CuratedBucket",
        "CuratedUri",
        "ModelsBucket",
        "RegistryUri",
        "FeatureLoaderFunctionArn",
        "TrainingFunctionArn",
        "ReleaseFunctionArn",
        "InferenceFunctionName",
        "InferenceFunctionArn",
        "CanaryReleaseStateMachineArn",
        "NotificationTopicArn",
        "BatchScoringFunctionArn",
    }
)


# The model release settings (cdk.json ``model_release``, as a release execution
# takes them: ModelReleaseConfig.settings) -> their substitution in the definitions.
RELEASE_SETTINGS = {
    "steps_percent": "CanaryStepsPercent",
    "wait_seconds": "CanaryWaitSeconds",
    "min_requests": "CanaryMinRequests",
    "shadow_seconds": "ShadowSeconds",
    "shadow_min_requests": "ShadowMinRequests",
    "max_candidate_errors": "MaxCandidateErrors",
    "max_latency_ratio": "MaxLatencyRatio",
    "max_approval_rate_change": "MaxApprovalRateChange",
    "max_swap_share": "MaxSwapShare",
    "max_score_psi": "MaxScorePsi",
}


def configured_substitutions(config: EnvironmentConfig) -> dict[str, str]:
    """The substitutions known before any resource exists: shared names, limits,
    the model release of the environment (defaults of executions started by hand)."""
    release = config.model_release.settings()
    if release.keys() != RELEASE_SETTINGS.keys():
        raise ValueError("RELEASE_SETTINGS does not name every model release setting")
    return {
        "ModelName": names.PROJECT,
        "LiveAlias": names.LIVE_ALIAS,
        "CandidateAlarmPrefix": names.candidate_alarm_prefix(config.deployment),
        "CuratedPrefix": names.CURATED_PREFIX,
        "QualityReportFile": names.QUALITY_REPORT_FILE,
        "RawLoansPrefix": names.RAW_LOANS_PREFIX,
        "GlueArgInput": names.GLUE_ARG_INPUT,
        "GlueArgOutput": names.GLUE_ARG_OUTPUT,
        "GlueArgAsOf": names.GLUE_ARG_AS_OF,
        "GlueArgRunId": names.GLUE_ARG_RUN_ID,
        # The training engine's Choice (credit_risk.model.engine.choose_engine):
        # the threshold, and the distributed training job with its arguments.
        # The job is named from configuration, so its name is known here.
        "DistributedFromRows": json.dumps(config.training.distributed_from_rows),
        "TrainingRowsField": names.TRAINING_ROWS_FIELD,
        "TrainingJobName": config.resource_name(names.TRAINING_JOB),
        "TrainingResultFile": names.TRAINING_RESULT_FILE,
        "GlueArgFeatures": names.GLUE_ARG_FEATURES,
        "GlueArgSnapshot": names.GLUE_ARG_SNAPSHOT,
        "GlueArgRegistry": names.GLUE_ARG_REGISTRY,
        "GlueArgGate": names.GLUE_ARG_GATE,
        "GlueArgResult": names.GLUE_ARG_RESULT,
        "MaxQuarantinedFraction": json.dumps(names.MAX_QUARANTINED_FRACTION),
        "QualityGateMessage": names.QUALITY_GATE_MESSAGE,
        "ModelGateMessage": names.MODEL_GATE_MESSAGE,
        **{RELEASE_SETTINGS[key]: json.dumps(value) for key, value in release.items()},
        "AdmissionWaitSeconds": json.dumps(names.ADMISSION_WAIT_SECONDS),
        # How long a release waits for every instance of live to follow a change
        # of the registry (a stage, the champion, a rollback): a little longer than
        # their re-read of it.
        "LiveRefreshSeconds": json.dumps(names.MODEL_REFRESH_SECONDS + 5),
        # How long a release waits after a stage for CloudWatch to have its metrics.
        "MetricLagSeconds": json.dumps(names.METRIC_LAG_SECONDS),
        # Batch scoring's defaults (an execution's input may override them).
        "BatchPartitions": json.dumps(config.batch_scoring.partitions),
        "BatchMaxConcurrency": json.dumps(config.batch_scoring.max_concurrency),
        "BatchChunkRows": json.dumps(config.batch_scoring.chunk_rows),
    }


class OrchestrationStack(EnvironmentStack):
    """Notifications, the two state machines and the rules that start them.

    The state machines come from ``<step_functions>/<name>.asl.json``; a
    definition that is not there yet is simply not deployed (and neither are
    the rules that would start it), so the rest of the platform ships first.
    """

    unit = "Orchestration"
    summary = "state machines, triggers, notifications"

    def __init__(
        self,
        scope: Construct,
        *,
        config: EnvironmentConfig,
        step_functions: Path,
        lake: DataLake,
        feature_job: glue.IJob,
        functions: ModelFunctions,
        batch_scoring: lambda_.IFunction,
    ) -> None:
        """``batch_scoring``: the function of every step of the batch-scoring machine."""
        super().__init__(scope, config=config)
        self.notifications = Notifications(
            self,
            "Notifications",
            email=config.notification_email,
            topic_name=config.resource_name("notifications"),
        )
        self.topic = self.notifications.topic
        self._lake, self._job, self._functions = lake, feature_job, functions
        self._batch_scoring = batch_scoring
        self.state_machines: dict[str, sfn.StateMachine] = {}
        self.release_function = container_function(
            self,
            "Release",
            image="inference",
            handler=names.HANDLER_RELEASE,
            settings=RELEASE_FUNCTION,
            environment={
                names.ENV_ENVIRONMENT: config.deployment,
                names.ENV_MODEL_NAME: names.PROJECT,
                names.ENV_REGISTRY_URI: lake.models.s3_url_for_object(
                    names.REGISTRY_PREFIX.rstrip("/")
                ),
                # The release report reads the scoring log under the lake's root.
                names.ENV_LAKE_URI: lake.curated.s3_url_for_object().rstrip("/"),
                names.ENV_INFERENCE_FUNCTION_NAME: functions.inference.function_name,
                names.ENV_CANDIDATE_ALARM_PREFIX: names.candidate_alarm_prefix(config.deployment),
                names.ENV_DEPLOY_STACK_NAME: names.stack_name(config.deployment, "Ml"),
                names.ENV_POWERTOOLS_SERVICE_NAME: names.SERVICE_RELEASE,
                names.ENV_POWERTOOLS_METRICS_NAMESPACE: names.metric_namespace(config.deployment),
                names.ENV_LOG_LEVEL: "INFO",
            },
            log_retention=self.log_retention,
            removal_policy=self.removal_policy,
            description="Model release actions: release record, probes, checks, verdicts, report",
        )

        # Formatted from the names rather than read from the machines: the
        # machines' definitions reference the release function, whose policy
        # names the machines.
        self.machine_names = {
            CANARY_RELEASE: config.resource_name("canary-release"),
            TRAINING_PIPELINE: config.resource_name("training-pipeline"),
            BATCH_SCORING: config.resource_name("batch-scoring"),
        }
        self.machine_arns = {
            key: Stack.of(self).format_arn(
                service="states",
                resource="stateMachine",
                resource_name=name,
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            for key, name in self.machine_names.items()
        }
        self.substitutions = self._substitutions(self.machine_arns[CANARY_RELEASE])
        for key, machine_name in self.machine_names.items():
            definition = step_functions / f"{key}.asl.json"
            if definition.is_file():
                self.state_machines[key] = AslStateMachine(
                    self,
                    "".join(part.capitalize() for part in key.split("_")),
                    definition=definition,
                    substitutions=self.substitutions,
                    state_machine_name=machine_name,
                    log_retention=self.log_retention,
                    removal_policy=self.removal_policy,
                ).state_machine
        self._grant()
        for key, output in (
            (TRAINING_PIPELINE, names.OUTPUT_TRAINING_PIPELINE_ARN),
            (CANARY_RELEASE, names.OUTPUT_CANARY_RELEASE_ARN),
            (BATCH_SCORING, names.OUTPUT_BATCH_SCORING_ARN),
        ):
            if key in self.state_machines:
                CfnOutput(self, output, value=self.state_machines[key].state_machine_arn)

        pipeline = self.state_machines.get(TRAINING_PIPELINE)
        if pipeline is not None:
            self.triggers = PipelineTriggers(
                self,
                "Triggers",
                pipeline=pipeline,
                watched=list(self.state_machines.values()),
                raw_bucket=lake.raw,
                schedule=config.retraining_schedule,
                defaults=self.execution_defaults(config),
                topic=self.topic,
            )
            self.starts_work(self.triggers.schedule, "retraining")
            self.starts_work(self.triggers.new_raw_data, "new-raw-data")
            self.starts_work(self.triggers.retraining_requested, "retraining-requested")
        batch = self.state_machines.get(BATCH_SCORING)
        if batch is not None and config.batch_scoring.schedule is not None:
            self.batch_scoring_schedule = BatchScoringSchedule(
                self, "BatchScoringSchedule", machine=batch, schedule=config.batch_scoring.schedule
            )
            self.starts_work(self.batch_scoring_schedule.rule, "batch-scoring")
        canary = self.state_machines.get(CANARY_RELEASE)
        if canary is not None:
            self.abandoned_releases = AbandonedReleases(
                self, "AbandonedReleases", machine=canary, release_function=self.release_function
            )
        if config.warmup_rate_minutes:
            self.warm_up = WarmUp(
                self,
                "WarmUp",
                alias=functions.live,
                rate_minutes=config.warmup_rate_minutes,
                stage=names.API_STAGE_NAME,
            )
            self.starts_work(self.warm_up.rule, "warm-up")

    @staticmethod
    def execution_defaults(config: EnvironmentConfig) -> dict[str, Any]:
        """The part of a training-pipeline input that comes from configuration."""
        return {
            "environment": config.deployment,
            "model_name": names.PROJECT,
            "max_quarantined_fraction": names.MAX_QUARANTINED_FRACTION,
            "distributed_from_rows": config.training.distributed_from_rows,
            "canary": config.model_release.settings(),
        }

    def _substitutions(self, canary_arn: str) -> dict[str, str]:
        """Every value an ASL definition may reference as ``${Name}``."""
        lake, functions = self._lake, self._functions
        resources = {
            "FeatureJobName": self._job.job_name,
            "RawBucket": lake.raw.bucket_name,
            "CuratedBucket": lake.curated.bucket_name,
            "CuratedUri": lake.curated.s3_url_for_object(names.CURATED_PREFIX),
            "ModelsBucket": lake.models.bucket_name,
            "RegistryUri": lake.models.s3_url_for_object(names.REGISTRY_PREFIX.rstrip("/")),
            "FeatureLoaderFunctionArn": functions.feature_loader.function_arn,
            "TrainingFunctionArn": functions.training.function_arn,
            "ReleaseFunctionArn": self.release_function.function_arn,
            "InferenceFunctionName": functions.inference.function_name,
            "InferenceFunctionArn": functions.inference.function_arn,
            "CanaryReleaseStateMachineArn": canary_arn,
            "NotificationTopicArn": self.topic.topic_arn,
            "BatchScoringFunctionArn": self._batch_scoring.function_arn,
        }
        if resources.keys() != RESOURCE_SUBSTITUTIONS:
            raise ValueError("RESOURCE_SUBSTITUTIONS does not list the resource substitutions")
        return {**configured_substitutions(self.config), **resources}

    def _grant(self) -> None:
        """All permissions of the state machines, in one place, without wildcards
        except where a resource name is only known at run time."""
        functions, env = self._functions, self.config.deployment
        pipeline = self.state_machines.get(TRAINING_PIPELINE)
        canary = self.state_machines.get(CANARY_RELEASE)
        for machine in self.state_machines.values():
            self.notifications.grant_publish(machine)
        if pipeline is not None:
            pipeline.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["glue:StartJobRun", "glue:GetJobRun", "glue:BatchStopJobRun"],
                    resources=[self._job.job_arn, self.training_job_arn()],
                )
            )
            # The release function answers the pipeline's admission check
            # (one training run at a time).
            pipeline.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["lambda:InvokeFunction"],
                    resources=[
                        functions.feature_loader.function_arn,
                        functions.training.function_arn,
                        self.release_function.function_arn,
                    ],
                )
            )
            # The data-quality report of the feature run decides the quality gate.
            allow_objects(
                pipeline,
                scope=pipeline.role,
                environment=env,
                bucket="curated",
                prefix=names.CURATED_PREFIX,
            )
            if canary is not None:
                self._allow_starting_canary(pipeline, canary)
        if canary is not None:
            self._allow_releasing(canary)
        batch = self.state_machines.get(BATCH_SCORING)
        if batch is not None:
            self._allow_batch_scoring(batch)

    def _allow_batch_scoring(self, machine: sfn.StateMachine) -> None:
        """The batch-scoring machine invokes its function; its Distributed Map runs
        each range as a child execution of the machine itself."""
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[self._batch_scoring.function_arn]
            )
        )
        name = self.machine_names[BATCH_SCORING]
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:StartExecution"], resources=[self.machine_arns[BATCH_SCORING]]
            )
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:DescribeExecution", "states:StopExecution"],
                resources=[
                    f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{name}/*"
                ],
            )
        )
        acknowledge(
            machine.role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:"
            f"<AWS::AccountId>:execution:{name}/*]",
            "The Distributed Map's child executions of this machine only; Step Functions "
            "names them per map run.",
        )

    def training_job_arn(self) -> str:
        """The distributed training job (FeaturesStack), by its configured name."""
        return Stack.of(self).format_arn(
            service="glue",
            resource="job",
            resource_name=self.config.resource_name(names.TRAINING_JOB),
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )

    def _allow_starting_canary(self, pipeline: sfn.StateMachine, canary: sfn.StateMachine) -> None:
        canary.grant_start_execution(pipeline)
        executions = (
            f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:"
            f"{self.config.resource_name('canary-release')}:*"
        )
        pipeline.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:DescribeExecution", "states:StopExecution"],
                resources=[executions],
            )
        )
        # startExecution.sync:2 waits through this Step Functions-managed rule.
        pipeline.add_to_role_policy(
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:rule/"
                    "StepFunctionsGetEventsForStepFunctionsExecutionRule"
                ],
            )
        )
        acknowledge(
            pipeline.role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:"
            f"<AWS::AccountId>:execution:{self.config.resource_name('canary-release')}:*]",
            "Executions of the canary-release state machine only; their names are "
            "generated per release.",
        )

    def _allow_releasing(self, canary: sfn.StateMachine) -> None:
        """The canary machine invokes the release function, which holds the
        permissions of the release itself: the registry, the live function's
        warm-up, the candidate alarms and metrics. It changes no function, alias
        or stage."""
        release = self.release_function
        # Not grant_invoke: it adds ``<arn>:*`` too, and only $LATEST is invoked.
        canary.add_to_role_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[release.function_arn])
        )
        # The release's warm-up: live re-reads the registry and says what it serves
        # and whether it loaded the candidate.
        inference = self._functions.inference.function_arn
        release.add_to_role_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[f"{inference}:{names.LIVE_ALIAS}"]
            )
        )
        # One release at a time, one training run at a time, and no release
        # while a code deploy updates the inference function's stack.
        release.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:ListExecutions"], resources=list(self.machine_arns.values())
            )
        )
        deploy_stack = names.stack_name(self.config.deployment, "Ml")
        release.add_to_role_policy(
            iam.PolicyStatement(
                actions=["cloudformation:DescribeStacks"],
                resources=[
                    Stack.of(self).format_arn(
                        service="cloudformation",
                        resource="stack",
                        resource_name=f"{deploy_stack}/*",
                        arn_format=ArnFormat.SLASH_RESOURCE_NAME,
                    )
                ],
            )
        )
        acknowledge(
            release.role,
            f"AwsSolutions-IAM5[Resource::arn:aws:cloudformation:{self.region}:"
            f"{rendered_account(self)}:stack/{deploy_stack}/*]",
            "The Ml stack of this environment only; a stack ARN ends in an id that "
            "CloudFormation draws when the stack is created.",
        )
        # The role of container_function already acknowledges Resource::* (X-Ray);
        # DescribeAlarms and GetMetricData have no resource-level permissions either.
        release.add_to_role_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:DescribeAlarms", "cloudwatch:GetMetricData"],
                resources=["*"],
            )
        )
        # The release record, the champion pointer and the reports beside the
        # versions are written; versions are read to check them.
        allow_objects(
            release,
            scope=release.role,
            environment=self.config.deployment,
            bucket="models",
            prefix=names.REGISTRY_PREFIX,
            write=True,
        )
        # The report's sample of flipped customers comes from the scoring log.
        allow_objects(
            release,
            scope=release.role,
            environment=self.config.deployment,
            bucket="curated",
            prefix=names.SCORING_LOG_PREFIX,
        )
