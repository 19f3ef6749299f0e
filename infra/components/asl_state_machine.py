"""A state machine whose definition is an ASL file of the repository."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.nag import acknowledge

PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9_]*)\}")


def placeholders(definition: str) -> set[str]:
    """The ``${Name}`` placeholders an ASL definition expects CDK to substitute."""
    return set(PLACEHOLDER.findall(definition))


class AslStateMachine(Construct):
    """Loads ``definition`` and has CDK substitute its ``${Placeholders}``.

    The definition is inlined into the template (``from_string``), so template
    assertions and cdk-nag see it. A placeholder without a value fails the
    synth here rather than the deployment. The role gets no permissions from
    the definition: the stack grants them explicitly.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        definition: Path,
        substitutions: Mapping[str, str],
        state_machine_name: str,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        text = definition.read_text(encoding="utf-8")
        missing = placeholders(text) - substitutions.keys()
        if missing:
            raise ValueError(
                f"{definition.name} uses placeholders with no value: {', '.join(sorted(missing))}"
            )
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            # Step Functions only delivers to groups under /aws/vendedlogs/ without
            # a resource policy size problem; see the Step Functions logging guide.
            log_group_name=f"/aws/vendedlogs/states/{state_machine_name}",
            retention=log_retention,
            removal_policy=removal_policy,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=state_machine_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(text),
            definition_substitutions={
                name: value for name, value in substitutions.items() if name in placeholders(text)
            },
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
        )
        acknowledge(
            self.state_machine,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray tracing (and log delivery set-up) has no resource-level permissions.",
        )
