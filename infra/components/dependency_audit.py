"""The weekly dependency check of the locked packages.

A CodeBuild project runs ``make audit`` on the manifests of the last release
(Makefile, pyproject.toml, uv.lock, package.json, package-lock.json; published as
an asset of the pipeline stack, so each self-mutation refreshes them): a known
vulnerability fails the build, which notifies; outdated packages are sent to the
same topic as a list. The release does not wait for it: a vulnerability
published on a Sunday is found on Monday even when nobody committed.
"""

from __future__ import annotations

from aws_cdk import Duration, IgnoreMode
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codestarnotifications as notifications
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from infra.components.notifications import Notifications
from infra.environment import REPO_ROOT
from infra.nag import acknowledge

MANIFESTS = ("Makefile", "pyproject.toml", "uv.lock", "package.json", "package-lock.json")
OUTDATED_REPORT = ".local/audit/outdated.txt"


def audit_build_spec() -> dict[str, object]:
    """What the project runs: the Makefile's audit, then the outdated list to SNS."""
    return {
        "version": "0.2",
        "env": {"variables": {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}},
        "phases": {
            "install": {"runtime-versions": {"python": "3.11", "nodejs": "20"}},
            "build": {"commands": ["make audit"]},
            "post_build": {
                # Runs whether or not the audit passed: the outdated list is news
                # either way, a vulnerability also fails the build (and notifies).
                "commands": [
                    f"if [ -s {OUTDATED_REPORT} ]; then aws sns publish --topic-arn "
                    '"$TOPIC_ARN" --subject "credit-risk: outdated dependencies" '
                    f"--message file://{OUTDATED_REPORT}; fi"
                ]
            },
        },
    }


class DependencyAudit(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        schedule: str,
        alerts: Notifications,
        encryption_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        manifests = s3_assets.Asset(
            self,
            "Manifests",
            path=str(REPO_ROOT),
            ignore_mode=IgnoreMode.DOCKER,
            exclude=["*", *(f"!{name}" for name in MANIFESTS)],
        )
        self.project = codebuild.Project(
            self,
            "Project",
            description="Weekly audit of the locked dependencies (vulnerable, outdated)",
            source=codebuild.Source.s3(bucket=manifests.bucket, path=manifests.s3_object_key),
            build_spec=codebuild.BuildSpec.from_object(audit_build_spec()),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=codebuild.ComputeType.SMALL,
            ),
            environment_variables={
                "TOPIC_ARN": codebuild.BuildEnvironmentVariable(value=alerts.topic.topic_arn)
            },
            encryption_key=encryption_key,
            timeout=Duration.minutes(30),
        )
        alerts.grant_publish(self.project)
        for rule in (
            "Action::s3:GetBucket*",
            "Action::s3:GetObject*",
            "Action::s3:List*",
            "Action::kms:GenerateDataKey*",
            "Action::kms:ReEncrypt*",
        ):
            acknowledge(
                self.project,
                f"AwsSolutions-IAM5[{rule}]",
                "CodeBuild reads its source, the manifests asset, from the bootstrap "
                "assets bucket, and uses the pipeline's artifact key for its outputs.",
            )
        self.schedule = events.Rule(
            self,
            "Schedule",
            description="Audits the locked dependencies",
            schedule=events.Schedule.expression(schedule),
            targets=[targets.CodeBuildProject(self.project)],
        )
        self.on_failure = notifications.NotificationRule(
            self,
            "OnFailure",
            source=self.project,
            events=["codebuild-project-build-state-failed"],
            targets=[alerts.topic],
            detail_type=notifications.DetailType.FULL,
        )
