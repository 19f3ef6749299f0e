"""Refuses a deployment while a model release runs in the environment, or while
an operator's canary is on the API stage.

A model release (an execution of the canary-release state machine, or a rollback
it runs) judges the candidate against the champion inside the live inference
function; a deployment in the middle of it would change that function under the
release, and the release's verdict would no longer be about the model alone.
Releases never set a canary on the API stage (model releases follow the
registry's release record, code releases move the ``live`` alias through
CodeDeploy), so a stage canary is an operator's: its ``stageVariableOverrides``
send a share of the stage to another alias or version, which a deployment would
leave as it is, outside CloudFormation's view. The release pipeline runs this
before each environment's stacks, with the ARN of that environment's
canary-release state machine, its Api stack's name, and for an environment in
another account the role to read them through (Step Functions has no resource
policies). It needs only the standard library and boto3 (the CodeBuild image has
no project environment).

    python infra/release_guard.py --state-machine-arn ARN [--state-machine-arn ARN ...]
        [--api-stack NAME] [--role-arn ARN]

Exit status: 0 when no listed state machine has a running execution and the
stage has no canary, 1 otherwise (one line per finding, saying how to go on), 2 on
bad arguments or an AWS error.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

STATE_MACHINE_ARN = re.compile(
    r"^arn:aws[\w-]*:states:(?P<region>[a-z]{2}(-[a-z]+)+-\d):\d{12}:stateMachine:[\w-]+$"
)
ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
# The Api stack's ApiUrl output: https://<rest api id>.execute-api.<region>.<domain>/<stage>/
API_URL = re.compile(r"^https://(?P<api>[a-z0-9]+)\.execute-api\.[^/]+/(?P<stage>[^/]+)/?$")
API_URL_OUTPUT = "ApiUrl"


class GuardError(RuntimeError):
    """The running executions could not be listed."""


@dataclass(frozen=True)
class Running:
    name: str
    started: datetime
    machine: str
    execution_arn: str

    def message(self) -> str:
        # Not stop-execution: a stopped release would leave its release record open,
        # and every serving instance would go on scoring (or answering with) the
        # candidate. A rollback closes the record; the release then ends by itself.
        machine_arn = self.execution_arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0]
        return (
            f"model release {self.name} started {self.started.isoformat()} is running on "
            f"{self.machine}: deploy after it ends, or end it now by rolling it back with "
            f"`aws stepfunctions start-execution --state-machine-arn {machine_arn} "
            """--input '{"rollback": {"reason": "make way for a deployment"}}'`"""
        )


def session(region: str, role_arn: str | None = None) -> Any:
    """A boto3 session in ``region``, as ``role_arn`` when one is given."""
    import boto3

    if role_arn is None:
        return boto3.Session(region_name=region)
    credentials = boto3.client("sts", region_name=region).assume_role(
        RoleArn=role_arn, RoleSessionName="credit-risk-release-guard"
    )["Credentials"]
    return boto3.Session(
        region_name=region,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def stepfunctions_client(state_machine_arn: str, role_arn: str | None = None) -> Any:
    """A client in the machine's region (which its ARN names)."""
    region = STATE_MACHINE_ARN.match(state_machine_arn)["region"]
    return session(region, role_arn).client("stepfunctions")


def leftover_canary(api_stack: str, aws: Any) -> str | None:
    """Why the stage of ``api_stack``'s API may not be deployed over, or None: a
    canary on it (set by an operator: no release sets one). A stack not deployed
    yet has no stage, and nothing to protect."""
    try:
        stacks = aws.client("cloudformation").describe_stacks(StackName=api_stack)["Stacks"]
    except Exception as exc:  # botocore's errors, without importing botocore here
        if "does not exist" in str(exc):
            return None
        raise GuardError(f"cannot read the stack {api_stack}: {exc}") from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    url = API_URL.match(outputs.get(API_URL_OUTPUT, ""))
    if url is None:
        return None  # a stack from before the API had its output: no release ran on it
    try:
        stage = aws.client("apigateway").get_stage(restApiId=url["api"], stageName=url["stage"])
    except Exception as exc:
        raise GuardError(f"cannot read the stage {url['stage']} of {api_stack}: {exc}") from exc
    canary = stage.get("canarySettings")
    if not canary:
        return None
    share = canary.get("percentTraffic")
    share = f"{share:g}" if isinstance(share, int | float) else "some"
    overrides = canary.get("stageVariableOverrides") or {}
    where = ", ".join(f"{name}={value}" for name, value in sorted(overrides.items()))
    return (
        f"the {url['stage']} stage of {api_stack} has a canary sending {share}% of its "
        f"requests elsewhere ({where or 'the stage variables unchanged'}): an operator set "
        "it, no release does. Finish or undo it, then remove it with "
        f"`aws apigateway update-stage --rest-api-id {url['api']} --stage-name {url['stage']} "
        "--patch-operations op=remove,path=/canarySettings`"
    )


def running_executions(
    state_machine_arn: str, *, role_arn: str | None = None, client: Any = None
) -> list[Running]:
    """Every RUNNING execution of the state machine, oldest first."""
    machine = state_machine_arn.rsplit(":", 1)[-1]
    found = []
    try:
        client = client or stepfunctions_client(state_machine_arn, role_arn)
        pages = client.get_paginator("list_executions").paginate(
            stateMachineArn=state_machine_arn, statusFilter="RUNNING"
        )
        for page in pages:
            found += [
                Running(e["name"], e["startDate"], machine, e["executionArn"])
                for e in page["executions"]
            ]
    except Exception as exc:  # botocore's errors, without importing botocore here
        raise GuardError(f"cannot list the executions of {state_machine_arn}: {exc}") from exc
    return sorted(found, key=lambda r: r.started)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--state-machine-arn",
        action="append",
        required=True,
        metavar="ARN",
        help="a state machine whose running executions block the deployment (repeatable)",
    )
    parser.add_argument(
        "--api-stack",
        metavar="NAME",
        help="the environment's Api stack: its stage must have no operator's canary on it",
    )
    parser.add_argument(
        "--role-arn",
        metavar="ARN",
        help="a role to assume first, for state machines in another account",
    )
    arguments = parser.parse_args(argv)
    if arguments.role_arn is not None and not ROLE_ARN.match(arguments.role_arn):
        parser.error(f"--role-arn {arguments.role_arn!r} is not a role ARN")
    for arn in arguments.state_machine_arn:
        if not STATE_MACHINE_ARN.match(arn):
            parser.error(f"--state-machine-arn {arn!r} is not a state machine ARN")
    if arguments.api_stack is not None and not STACK_NAME.match(arguments.api_stack):
        parser.error(f"--api-stack {arguments.api_stack!r} is not a stack name")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    try:
        running = [
            execution
            for arn in arguments.state_machine_arn
            for execution in running_executions(arn, role_arn=arguments.role_arn)
        ]
        findings = [execution.message() for execution in running]
        if arguments.api_stack is not None:
            region = STATE_MACHINE_ARN.match(arguments.state_machine_arn[0])["region"]
            left = leftover_canary(arguments.api_stack, session(region, arguments.role_arn))
            findings += [left] if left else []
    except GuardError as exc:
        print(f"release guard FAILED: {exc}", file=sys.stderr)
        return 2
    for finding in findings:
        print(finding, file=sys.stderr)
    if findings:
        return 1
    print(f"no model release is running on {len(arguments.state_machine_arn)} state machine(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
