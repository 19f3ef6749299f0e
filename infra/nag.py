"""cdk-nag on every synth, and the one way to acknowledge a finding."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Stage, Token, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct


def add_nag_checks(stage: Stage) -> None:
    """Run the AwsSolutions pack on ``stage``: any unacknowledged finding fails the synth."""
    Validations.of(stage).add_plugins(AwsSolutionsChecks(stage))


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one finding (``AwsSolutions-IAM5[Resource::...]`` style ids) on
    ``scope`` and its children, with the reason that makes it acceptable."""
    if len(reason) < 30:
        raise ValueError(f"acknowledging {rule} needs a specific reason, not {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


def rendered_account(scope: IConstruct) -> str:
    """The account of ``scope``'s stack as cdk-nag prints it in a finding id: the
    number when ``cdk.json`` names one, else the ``AWS::AccountId`` reference."""
    account = Stack.of(scope).account
    return "<AWS::AccountId>" if Token.is_unresolved(account) else account


# Constructs that CDK adds once per stack (fixed ids) for features used here.
BUCKET_NOTIFICATIONS_HANDLER = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"
LOG_RETENTION_FUNCTION = "LogRetentionaae0aa3c5b4d4f87b02d85b201efdd8a"
BASIC_EXECUTION_POLICY = (
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
    "AWSLambdaBasicExecutionRole]"
)


def acknowledge_singleton(stack: IConstruct, construct_id: str, rules: dict[str, str]) -> None:
    """Acknowledge findings on a CDK-provided singleton of ``stack`` (if present)."""
    singleton = stack.node.try_find_child(construct_id)
    if singleton is None:
        raise LookupError(f"{stack.node.path} has no {construct_id}")
    for rule, reason in rules.items():
        acknowledge(singleton, rule, reason)
