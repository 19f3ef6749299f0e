"""Refuses a deployment while a model release runs in the environment.

A model release moves the inference aliases and the API stage canary outside
CloudFormation; a deployment of the same environment in the middle of it would
race it. The release pipeline runs this before each environment's stacks, with
the ARN of that environment's canary-release state machine, and for an
environment in another account the role to read it through (Step Functions has
no resource policies). It needs only the standard library and boto3 (the
CodeBuild image has no project environment).

    python infra/release_guard.py --state-machine-arn ARN [--state-machine-arn ARN ...]
        [--role-arn ARN]

Exit status: 0 when no listed state machine has a running execution, 1 when one
has (one line per execution, saying how to go on), 2 on bad arguments or an AWS
error.
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


class GuardError(RuntimeError):
    """The running executions could not be listed."""


@dataclass(frozen=True)
class Running:
    name: str
    started: datetime
    machine: str
    execution_arn: str

    def message(self) -> str:
        return (
            f"model release {self.name} started {self.started.isoformat()} is running on "
            f"{self.machine}: deploy after it ends, or stop it with "
            f"`aws stepfunctions stop-execution --execution-arn {self.execution_arn}`"
        )


def stepfunctions_client(state_machine_arn: str, role_arn: str | None = None) -> Any:
    """A client in the machine's region (which its ARN names), as ``role_arn``
    when one is given."""
    import boto3

    region = STATE_MACHINE_ARN.match(state_machine_arn)["region"]
    if role_arn is None:
        return boto3.client("stepfunctions", region_name=region)
    credentials = boto3.client("sts", region_name=region).assume_role(
        RoleArn=role_arn, RoleSessionName="credit-risk-release-guard"
    )["Credentials"]
    return boto3.client(
        "stepfunctions",
        region_name=region,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
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
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    try:
        running = [
            execution
            for arn in arguments.state_machine_arn
            for execution in running_executions(arn, role_arn=arguments.role_arn)
        ]
    except GuardError as exc:
        print(f"release guard FAILED: {exc}", file=sys.stderr)
        return 2
    for execution in running:
        print(execution.message(), file=sys.stderr)
    if running:
        return 1
    print(f"no model release is running on {len(arguments.state_machine_arn)} state machine(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
