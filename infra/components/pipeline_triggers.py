"""EventBridge rules that start, notify about, clean up after and warm up the platform."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from credit_risk import names


def health_check_event(stage: str) -> dict[str, Any]:
    """An API Gateway proxy event for ``GET /v1/health``, as the warm-up sends it."""
    return {
        "resource": names.ROUTE_HEALTH,
        "path": names.ROUTE_HEALTH,
        "httpMethod": "GET",
        "headers": {"User-Agent": "credit-risk-warm-up"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "pathParameters": None,
        "stageVariables": {names.STAGE_VARIABLE_LAMBDA_ALIAS: names.LIVE_ALIAS},
        "requestContext": {
            "resourcePath": names.ROUTE_HEALTH,
            "httpMethod": "GET",
            "path": f"/{stage}{names.ROUTE_HEALTH}",
            "stage": stage,
            "requestId": "warm-up",
        },
        "body": None,
        "isBase64Encoded": False,
    }


class PipelineTriggers(Construct):
    """Starts ``pipeline`` on a schedule, when a delivery of raw loans is complete
    and when the monitor asks for a retraining; reports failures.

    Both starts carry ``defaults`` (canary steps, limits) in the execution input
    next to what triggered the run, so a run is reproducible from its input.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        pipeline: sfn.IStateMachine,
        watched: Sequence[sfn.IStateMachine],
        raw_bucket: s3.IBucket,
        schedule: str,
        defaults: Mapping[str, Any],
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self.schedule = events.Rule(
            self,
            "Schedule",
            description="Retrains the model on schedule",
            schedule=events.Schedule.expression(schedule),
            targets=[
                targets.SfnStateMachine(
                    pipeline,
                    input=events.RuleTargetInput.from_object(
                        {**defaults, "trigger": "schedule", "requested_at": events.EventField.time}
                    ),
                )
            ],
        )
        self.new_raw_data = events.Rule(
            self,
            "NewRawData",
            description="Retrains when a delivery of raw loans is complete (its marker lands)",
            # Only the marker a delivery writes last: one run per delivery, never
            # one per data file, and never on a half-written delivery.
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [raw_bucket.bucket_name]},
                    "object": {"key": [{"wildcard": names.RAW_DELIVERY_MARKER_PATTERN}]},
                },
            ),
            targets=[
                targets.SfnStateMachine(
                    pipeline,
                    input=events.RuleTargetInput.from_object(
                        {
                            **defaults,
                            "trigger": names.TRIGGER_NEW_RAW_DATA,
                            "requested_at": events.EventField.time,
                            "object_key": events.EventField.from_path("$.detail.object.key"),
                        }
                    ),
                )
            ],
        )
        self.retraining_requested = events.Rule(
            self,
            "RetrainingRequested",
            description="Retrains when the monitor finds the live model's quality dropped",
            event_pattern=events.EventPattern(
                source=[names.MONITOR_EVENT_SOURCE],
                detail_type=[names.RETRAINING_REQUESTED],
            ),
            targets=[
                targets.SfnStateMachine(
                    pipeline,
                    input=events.RuleTargetInput.from_object(
                        {
                            **defaults,
                            "trigger": "monitor",
                            "requested_at": events.EventField.time,
                            "reason": events.EventField.from_path("$.detail.reason"),
                        }
                    ),
                )
            ],
        )
        self.failures = events.Rule(
            self,
            "Failures",
            description="Notifies when a state machine run fails, times out or is aborted",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "status": ["FAILED", "TIMED_OUT", "ABORTED"],
                    "stateMachineArn": [machine.state_machine_arn for machine in watched],
                },
            ),
            targets=[targets.SnsTopic(topic)],
        )


class AbandonedReleases(Construct):
    """Closes the release of a canary-release execution that ended without closing
    it: stopped by hand (ABORTED), timed out, or failed outside the state machine's
    own catch paths. Left open, the release record would keep every live instance
    scoring (in a canary step, answering with) the unpromoted candidate, and every
    later release would be refused at OpenRelease.

    The release function's ``close_abandoned_release`` action closes the release of
    that execution only if it is still open; executions that ended through their
    own paths, rollbacks and releases that never opened change nothing. Step
    Functions sends these events on a best-effort basis: the notification of the
    failure (``PipelineTriggers.failures``) still asks for a look.
    """

    STATUSES = ("ABORTED", "TIMED_OUT", "FAILED")

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        machine: sfn.IStateMachine,
        release_function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        self.rule = events.Rule(
            self,
            "Rule",
            description="Closes the release a stopped, timed-out or failed release run left open",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "status": list(self.STATUSES),
                    "stateMachineArn": [machine.state_machine_arn],
                },
            ),
            targets=[
                targets.LambdaFunction(
                    release_function,
                    event=events.RuleTargetInput.from_object(
                        {
                            "action": names.ACTION_CLOSE_ABANDONED_RELEASE,
                            "execution_name": events.EventField.from_path("$.detail.name"),
                            "status": events.EventField.from_path("$.detail.status"),
                        }
                    ),
                )
            ],
        )


class WarmUp(Construct):
    """Calls the health route of ``alias`` every few minutes to keep it warm."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alias: lambda_.IAlias,
        rate_minutes: int,
        stage: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.rule = events.Rule(
            self,
            "Rule",
            description=f"Keeps the {alias.alias_name} inference alias warm",
            schedule=events.Schedule.rate(Duration.minutes(rate_minutes)),
            targets=[
                targets.LambdaFunction(
                    alias,
                    event=events.RuleTargetInput.from_object(health_check_event(stage)),
                    retry_attempts=0,
                )
            ],
        )
