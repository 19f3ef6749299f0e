"""The release pipeline: every commit on the branch goes dev → staging → prod.

CDK Pipelines (``pipelines.CodePipeline``): the source is a CodeStar connection,
the synth step is ``buildspec.yml`` (tests, lint, synth of every environment and
of this stack), the pipeline updates itself first, publishes the file and Docker
image assets, then deploys each environment as a ``Stage``. Before its stacks,
each environment's release guard refuses the deployment while a model release
runs there, or while an operator's canary is on its API stage (``release_guard.py``):
a release judges the candidate against the champion on the function as it is, and a
deployment in the middle would change the function under it. Staging and prod are
smoke-tested through the real API after their deployment; prod waits for a
manual approval. Once prod passes its smoke test, the released commit's OpenAPI
document is published under its API version (``components/api_docs.py``). A failed
action stops the execution, and the team is told on failure and when an approval
waits. Once a week the locked dependencies are audited
(``components/dependency_audit.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from aws_cdk import (
    ArnFormat,
    CfnOutput,
    DefaultStackSynthesizer,
    Duration,
    Environment,
    Stack,
    Tags,
    Token,
    pipelines,
)
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codestarnotifications as notifications
from aws_cdk import aws_iam as iam
from constructs import Construct

from credit_risk import names
from credit_risk.names import PROJECT
from infra.components.api_docs import ApiDocs
from infra.components.dependency_audit import DependencyAudit
from infra.components.notifications import Notifications
from infra.config import ConfigurationError, EnvironmentConfig, PipelineConfig
from infra.environment import REPO_ROOT, Sources
from infra.nag import acknowledge, rendered_account
from infra.pipeline_stages import SMOKE_TEST_SECRET_TAG, EnvironmentStage, StandbyStage

PIPELINE_STACK_NAME = "CreditRisk-Pipeline"
BUILDSPEC = REPO_ROOT / "buildspec.yml"
# Where buildspec.yml synthesizes this app (``-c release_pipeline=true``): the cloud
# assembly the pipeline deploys from, and updates itself from.
PIPELINE_ASSEMBLY_DIR = "cdk.out/pipeline"
SMOKE_TEST_SCRIPT = "infra/smoke_test.py"
RELEASE_GUARD_SCRIPT = "infra/release_guard.py"
# Environments in release order; only prod waits for a person.
RELEASE_ORDER = ("dev", "staging", "prod")
SMOKE_TESTED = frozenset({"staging", "prod"})
# The environment whose release client developers get: its OpenAPI document is
# published once it passed its smoke test.
PUBLISHES_API_DOCS = "prod"
API_DOCS_OUTPUT = "ApiDocsBucketName"
APPROVAL_BEFORE = frozenset({"prod"})
FAILURE_EVENTS = (
    "codepipeline-pipeline-pipeline-execution-failed",
    "codepipeline-pipeline-action-execution-failed",
)
APPROVAL_EVENTS = ("codepipeline-pipeline-manual-approval-needed",)


def synth_step_spec(path: Path = BUILDSPEC) -> tuple[list[str], dict[str, Any]]:
    """``buildspec.yml`` split the way ``CodeBuildStep`` takes it.

    The build-phase commands become the step's commands and the rest (install,
    environment, reports, cache) its partial build spec. The ``artifacts``
    section is left out: CDK Pipelines declares the cloud assembly itself
    (``primary_output_directory``) and refuses a second artifacts section.
    """
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict):
        raise ConfigurationError(f"{path} is not a YAML mapping")
    partial = {key: value for key, value in spec.items() if key != "artifacts"}
    phases = dict(partial.get("phases") or {})
    commands = list((phases.pop("build", None) or {}).get("commands") or [])
    if not commands:
        raise ConfigurationError(f"{path} has no build-phase commands")
    partial["phases"] = phases
    return commands, partial


class PipelineStack(Stack):
    def __init__(
        self,
        scope: Construct,
        *,
        config: PipelineConfig,
        environments: list[EnvironmentConfig],
        sources: Sources,
    ) -> None:
        super().__init__(
            scope,
            PIPELINE_STACK_NAME,
            stack_name=PIPELINE_STACK_NAME,
            description="Credit-risk scoring: release pipeline (dev → staging → prod)",
            env=Environment(
                account=config.account or os.environ.get("CDK_DEFAULT_ACCOUNT"),
                region=config.region,
            ),
            termination_protection=True,
        )
        Tags.of(self).add("project", PROJECT)
        self.config = config
        self.source = pipelines.CodePipelineSource.connection(
            config.repository,
            config.branch,
            connection_arn=config.connection_arn,
            trigger_on_push=True,
        )
        commands, partial = synth_step_spec()
        self.synth = pipelines.CodeBuildStep(
            "Synth",
            input=self.source,
            commands=commands,
            partial_build_spec=codebuild.BuildSpec.from_object(partial),
            primary_output_directory=PIPELINE_ASSEMBLY_DIR,
            # Java (Spark) and PostgreSQL are installed by `make prereqs` as root.
            build_environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=codebuild.ComputeType.LARGE,
            ),
            cache=codebuild.Cache.local(codebuild.LocalCacheMode.CUSTOM),
            timeout=Duration.minutes(60),
        )
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            pipeline_name=f"{PROJECT}-release",
            pipeline_type=codepipeline.PipelineType.V2,
            synth=self.synth,
            self_mutation=True,
            # Each environment may live in its own account: artifacts are
            # encrypted with a key the target accounts can be granted.
            cross_account_keys=True,
            enable_key_rotation=True,
            publish_assets_in_parallel=False,
        )
        self.alerts = Notifications(
            self,
            "Notifications",
            email=config.notification_email,
            topic_name=f"{PROJECT}-release-notifications",
        )
        self.stages: dict[str, EnvironmentStage] = {}
        self.smoke_tests: list[pipelines.CodeBuildStep] = []
        self.release_guards: dict[str, pipelines.CodeBuildStep] = {}
        self.api_docs = ApiDocs(self, "ApiDocs")
        CfnOutput(
            self,
            API_DOCS_OUTPUT,
            value=self.api_docs.bucket.bucket_name,
            description="Released OpenAPI documents: openapi/<version>/openapi.json",
        )
        self.publish_api_docs: pipelines.CodeBuildStep | None = None
        # Every market's dev, then every market's staging, then prod market by market,
        # each prod waiting for its own approval.
        for environment in sorted(environments, key=lambda c: RELEASE_ORDER.index(c.name)):
            self._add_environment(environment, sources)
        self.pipeline.build_pipeline()
        self.dependency_audit = DependencyAudit(
            self,
            "DependencyAudit",
            schedule=config.dependency_audit_schedule,
            alerts=self.alerts,
            encryption_key=self.pipeline.pipeline.artifact_bucket.encryption_key,
        )
        self._notify()
        self._acknowledge()

    def _add_environment(self, config: EnvironmentConfig, sources: Sources) -> None:
        # The smoke test reads the client key from this account: an environment
        # deployed elsewhere must share its secret with it.
        reader = None if Token.is_unresolved(self.account) else self.account
        deployment = config.deployment
        stage = EnvironmentStage(
            self,
            _stage_id(deployment),
            config=config,
            sources=sources,
            reader_account=reader if config.name in SMOKE_TESTED else None,
        )
        self.stages[deployment] = stage
        guard = self.release_guards[deployment] = self._release_guard(config)
        pre: list[pipelines.Step] = []
        if config.name in APPROVAL_BEFORE:
            approval = pipelines.ManualApprovalStep(
                f"Approve-{deployment}",
                comment=f"Staging passed its smoke test: release this commit to {deployment}?",
            )
            # Checked after the approval, which may wait for hours, right before
            # the stacks.
            guard.add_step_dependency(approval)
            pre.append(approval)
        dr = config.disaster_recovery
        if dr is not None:
            # The standby's lake first (the approval, if any, before it): the primary
            # replicates into it.
            lake = StandbyStage(
                self,
                f"{_stage_id(deployment)}StandbyLake",
                config=config.standby(),
                sources=sources,
                whole=False,
            )
            self.pipeline.add_stage(lake, pre=pre)
            pre = []
        pre.append(guard)
        post = []
        if config.name in SMOKE_TESTED:
            post.append(self._smoke_test(stage))
            self.smoke_tests.append(post[-1])
        if deployment == PUBLISHES_API_DOCS:
            publish = self.api_docs.publish_step(f"PublishOpenApi-{deployment}", source=self.source)
            for step in post:
                publish.add_step_dependency(step)
            post.append(publish)
            self.publish_api_docs = publish
        self.pipeline.add_stage(stage, pre=pre, post=post)
        if dr is not None and dr.standby == "warm":
            standby = StandbyStage(
                self,
                f"{_stage_id(deployment)}Standby",
                config=config.standby(),
                sources=sources,
                whole=True,
            )
            self.pipeline.add_stage(standby)

    def _release_guard(self, config: EnvironmentConfig) -> pipelines.CodeBuildStep:
        """Fails while the environment's canary-release state machine has a running
        execution (a model release's verdicts are about the model, on an unchanged
        function), or while an operator's canary is on the API stage."""
        account = self._environment_account(config)
        machine = self.format_arn(
            service="states",
            account=account,
            region=config.region,
            resource="stateMachine",
            resource_name=config.resource_name("canary-release"),
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        api_stack = names.stack_name(config.deployment, "Api")
        command = (
            f'python3 {RELEASE_GUARD_SCRIPT} --state-machine-arn "$CANARY_RELEASE_ARN"'
            f' --api-stack "$API_STACK"'
        )
        env = {"CANARY_RELEASE_ARN": machine, "API_STACK": api_stack}
        statements = [
            iam.PolicyStatement(actions=["states:ListExecutions"], resources=[machine]),
            # A canary an operator set on the stage: the stack's ApiUrl, then the
            # stage itself (the API's id is only known once it is deployed).
            iam.PolicyStatement(
                actions=["cloudformation:DescribeStacks"],
                resources=[
                    self.format_arn(
                        service="cloudformation",
                        account=account,
                        region=config.region,
                        resource="stack",
                        resource_name=f"{api_stack}/*",
                        arn_format=ArnFormat.SLASH_RESOURCE_NAME,
                    )
                ],
            ),
            iam.PolicyStatement(
                actions=["apigateway:GET"],
                resources=[
                    f"arn:{self.partition}:apigateway:{config.region}::/restapis/*/stages/"
                    f"{names.API_STAGE_NAME}"
                ],
            ),
        ]
        if config.account is not None and config.account != self.account:
            # Step Functions has no resource policies: in another account the guard
            # reads through the read-only lookup role of `cdk bootstrap --trust`.
            reader = self.format_arn(
                service="iam",
                region="",
                account=account,
                resource="role",
                resource_name=(
                    f"cdk-{DefaultStackSynthesizer.DEFAULT_QUALIFIER}-lookup-role-"
                    f"{account}-{config.region}"
                ),
                arn_format=ArnFormat.SLASH_RESOURCE_NAME,
            )
            command += ' --role-arn "$READER_ROLE_ARN"'
            env["READER_ROLE_ARN"] = reader
            statements = [iam.PolicyStatement(actions=["sts:AssumeRole"], resources=[reader])]
        return pipelines.CodeBuildStep(
            f"ReleaseGuard-{config.deployment}",
            input=self.source,
            install_commands=["python3 -m pip install --quiet boto3"],
            commands=[command],
            env=env,
            role_policy_statements=statements,
            timeout=Duration.minutes(5),
        )

    def _smoke_test(self, stage: EnvironmentStage) -> pipelines.CodeBuildStep:
        """Health and one score through the deployed API, with the client key."""
        config, api = stage.config, stage.stacks.api
        tag, value = SMOKE_TEST_SECRET_TAG
        selected_by_tags = {
            f"aws:ResourceTag/{tag}": value,
            "aws:ResourceTag/deployment": config.deployment,
        }
        statements = [
            # The secret's ARN ends in a random suffix that only exists after
            # the deployment: the statement selects it by its tags instead.
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue"],
                resources=[
                    self._environment_arn(
                        config, "secretsmanager", "secret", ArnFormat.COLON_RESOURCE_NAME
                    )
                ],
                conditions={
                    "StringEquals": {
                        f"secretsmanager:ResourceTag/{tag}": value,
                        "secretsmanager:ResourceTag/deployment": config.deployment,
                    }
                },
            )
        ]
        if api.api_key.encryption_key is not None:
            # In another account the secret is encrypted with its own key, whose
            # id is drawn at deployment: selected by its tags, usable only by
            # Secrets Manager on the smoke test's behalf.
            statements.append(
                iam.PolicyStatement(
                    actions=["kms:Decrypt"],
                    resources=[
                        self._environment_arn(config, "kms", "key", ArnFormat.SLASH_RESOURCE_NAME)
                    ],
                    conditions={
                        "StringEquals": {
                            "kms:ViaService": f"secretsmanager.{config.region}.amazonaws.com",
                            **selected_by_tags,
                        }
                    },
                )
            )
        return pipelines.CodeBuildStep(
            f"SmokeTest-{config.deployment}",
            input=self.source,
            install_commands=["python3 -m pip install --quiet boto3"],
            commands=[f"python3 {SMOKE_TEST_SCRIPT}"],
            env={"SMOKE_CUSTOMER_ID": config.probe.customer_id},
            env_from_cfn_outputs={
                "API_URL": api.url_output,
                "API_KEY_SECRET_ARN": api.key_secret_output,
            },
            role_policy_statements=statements,
            timeout=Duration.minutes(10),
        )

    def _environment_account(self, config: EnvironmentConfig) -> str:
        return config.account or self.account

    def _environment_arn(
        self, config: EnvironmentConfig, service: str, resource: str, arn_format: ArnFormat
    ) -> str:
        """Every ``resource`` of ``service`` in ``config``'s account (this one when
        it names none) and region."""
        return self.format_arn(
            service=service,
            account=self._environment_account(config),
            region=config.region,
            resource=resource,
            resource_name="*",
            arn_format=arn_format,
        )

    def _notify(self) -> None:
        codestar = iam.ServicePrincipal("codestar-notifications.amazonaws.com")
        self.alerts.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[codestar],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" means this key
            )
        )
        for rule_id, events in (("OnFailure", FAILURE_EVENTS), ("OnApproval", APPROVAL_EVENTS)):
            notifications.NotificationRule(
                self,
                rule_id,
                source=self.pipeline.pipeline,
                events=list(events),
                targets=[self.alerts.topic],
                detail_type=notifications.DetailType.FULL,
            )

    def _acknowledge(self) -> None:
        """cdk-nag findings on the roles CDK Pipelines generates, each with its reason."""
        pipeline = self.pipeline
        artifacts = (
            "CDK Pipelines grants its roles read/write on the objects of the pipeline's own "
            "artifact bucket and use of its own key; the wildcards do not reach other resources."
        )
        for rule in (
            "Action::s3:Abort*",
            "Action::s3:DeleteObject*",
            "Action::s3:GetBucket*",
            "Action::s3:GetObject*",
            "Action::s3:List*",
            "Action::kms:GenerateDataKey*",
            "Action::kms:ReEncrypt*",
            f"Resource::<{self._logical_id(pipeline.pipeline.artifact_bucket)}.Arn>/*",
        ):
            acknowledge(pipeline, f"AwsSolutions-IAM5[{rule}]", artifacts)
        account = rendered_account(self)
        acknowledge(
            pipeline,
            "AwsSolutions-IAM5[Resource::*]",
            "Self-mutation and asset publishing read stack descriptions and list buckets, "
            "whose ARNs are only known in the target accounts; writes go through the "
            "bootstrap roles.",
        )
        acknowledge(
            pipeline,
            f"AwsSolutions-IAM5[Resource::arn:*:iam::{account}:role/*]",
            "Self-mutation assumes the `cdk bootstrap` roles, which the statement limits "
            "by their aws-cdk:bootstrap-role tag; their names carry a qualifier hash.",
        )
        region = self.region
        for rule in (
            f"arn:aws:codebuild:{region}:{account}:report-group/*",
            f"arn:aws:logs:{region}:{account}:log-group:/aws/codebuild/*",
        ):
            acknowledge(
                pipeline.node.find_child("Assets"),
                f"AwsSolutions-IAM5[Resource::{rule}]",
                "The asset-publishing projects are created per asset by CDK Pipelines; "
                "their logs and reports are scoped to CodeBuild in this account and region.",
            )
        projects = [pipeline.synth_project, pipeline.self_mutation_project]
        projects += [step.project for step in self.smoke_tests]
        projects += [step.project for step in self.release_guards.values()]
        projects.append(self.dependency_audit.project)
        if self.publish_api_docs is not None:
            projects.append(self.publish_api_docs.project)
            acknowledge(
                self.publish_api_docs.project,
                "AwsSolutions-IAM5[Resource::<"
                f"{self._logical_id(self.api_docs.bucket)}.Arn>/openapi/*]",
                "The step writes the released documents, whose keys carry the API "
                "version; it may put objects under openapi/ of the docs bucket only.",
            )
        for project in projects:
            logical = self._logical_id(project)
            for rule in (
                f"arn:aws:codebuild:{region}:{account}:report-group/<{logical}>-*",
                f"arn:aws:logs:{region}:{account}:log-group:/aws/codebuild/<{logical}>:*",
            ):
                acknowledge(
                    project,
                    f"AwsSolutions-IAM5[Resource::{rule}]",
                    "CodeBuild names the log streams and report groups of a build at run "
                    "time; the statement is limited to this project's own prefix.",
                )
        for stage, step in zip(
            (s for s in self.stages.values() if s.config.name in SMOKE_TESTED),
            self.smoke_tests,
            strict=True,
        ):
            # How cdk-nag prints the environment's region and account in a finding id.
            target = self._environment_account(stage.config)
            where = f"{stage.config.region}:" + (
                "<AWS::AccountId>" if Token.is_unresolved(target) else target
            )
            acknowledge(
                step.project,
                f"AwsSolutions-IAM5[Resource::arn:aws:secretsmanager:{where}:secret:*]",
                "The client-key secret's ARN ends in a suffix drawn at deployment; the "
                "statement only matches secrets tagged as that environment's client key.",
            )
            if stage.stacks.api.api_key.encryption_key is not None:
                acknowledge(
                    step.project,
                    f"AwsSolutions-IAM5[Resource::arn:aws:kms:{where}:key/*]",
                    "The client-key secret's own key gets its id at deployment in the "
                    "environment's account; the statement only matches the key tagged as "
                    "that environment's, and only for decryption through Secrets Manager.",
                )
        for name, guard in self.release_guards.items():
            stage = self.stages[name]
            target = self._environment_account(stage.config)
            account_id = "<AWS::AccountId>" if Token.is_unresolved(target) else target
            api_stack = names.stack_name(stage.config.deployment, "Api")
            region_ = stage.config.region
            for rule, reason in (
                (
                    f"arn:aws:cloudformation:{region_}:{account_id}:stack/{api_stack}/*",
                    "A stack's ARN ends in an id drawn when it is created; the statement "
                    "names the environment's Api stack.",
                ),
                (
                    f"arn:aws:apigateway:{region_}::/restapis/*/stages/{names.API_STAGE_NAME}",
                    "The REST API's id is drawn at deployment in the environment; the guard "
                    "only reads the stage an operator's canary would be set on.",
                ),
            ):
                acknowledge(guard.project, f"AwsSolutions-IAM5[Resource::{rule}]", reason)
        for support in pipeline.pipeline.cross_region_support.values():
            replication = support.replication_bucket
            acknowledge(
                pipeline.pipeline.role,
                "AwsSolutions-IAM5[Resource::arn:aws:s3:::"
                f"{self.resolve(replication.bucket_name)}/*]",
                artifacts,
            )
            acknowledge(
                support.stack,
                "AwsSolutions-S1",
                "CodePipeline's artifact bucket in a region it deploys to: it holds build "
                "outputs the pipeline writes and reads, recorded in its execution history.",
            )
        acknowledge(
            pipeline.pipeline.artifact_bucket,
            "AwsSolutions-S1",
            "The artifact bucket holds build outputs that CodePipeline itself writes and "
            "reads; every action on it is recorded in the pipeline's execution history.",
        )

    def _logical_id(self, construct: Construct) -> str:
        return self.resolve(self.get_logical_id(construct.node.default_child))


def _stage_id(deployment: str) -> str:
    """``Prod``, ``MxProd``: the stage of a deployment in the pipeline."""
    return "".join(part.capitalize() for part in deployment.split("-"))
