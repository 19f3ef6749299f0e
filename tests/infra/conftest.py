"""Each environment is synthesized once per test session, with cdk-nag on.

A synth that returns at all is cdk-nag clean: the AwsSolutions pack runs as a
validation plugin and any unacknowledged finding raises. Templates are read
back from the cloud assembly (not re-synthesized) for the assertions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Synthesized:
    """The cloud assembly of one environment, templates keyed by stack unit."""

    environment: str
    outdir: Path
    templates: dict[str, dict[str, Any]]
    stacks: Any  # infra.environment.EnvironmentStacks

    def template(self, unit: str) -> dict[str, Any]:
        return self.templates[unit]

    def resources(self, unit: str, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.templates[unit]["Resources"].items()
            if resource["Type"] == resource_type
        }


def joined(value: Any) -> str:
    """A name or ARN as CloudFormation will join it, references left as ``{…}``."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(joined(part) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return "{" + value["Ref"] + "}"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


# cfn-lint warnings looked at and accepted, with the reason.
TRIAGED_WARNINGS = {
    # Zones are pinned on purpose (cdk.json): synth must not ask AWS.
    "W3010",
    # CDK adds an explicit DependsOn on a role next to the GetAtt that already
    # implies it; redundant, harmless.
    "W3005",
}


def cfn_lint(templates: Iterable[Path], region: str) -> list[tuple[str, str, str]]:
    """``(rule id, template file, message)`` of every cfn-lint finding.

    Through cfn-lint's Python API rather than a subprocess, so that a linter
    that cannot start fails the test instead of reporting nothing.
    """
    from cfnlint.api import ManualArgs, lint_file

    return [
        (match.rule.id, Path(match.filename).name, match.message)
        for template in templates
        for match in lint_file(template, config=ManualArgs(regions=[region]))
    ]


@pytest.fixture(scope="session")
def cdk_context() -> dict[str, Any]:
    return json.loads((REPO_ROOT / "cdk.json").read_text())["context"]


@pytest.fixture(scope="session")
def library_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real library wheel, built the way the Makefile builds it."""
    uv = REPO_ROOT / ".tools" / "bin" / "uv"
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            str(uv if uv.exists() else shutil.which("uv")),
            "build",
            "--wheel",
            "--offline",
            "--out-dir",
            str(out),
            str(REPO_ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


def synthesize(
    environment: str,
    *,
    context: dict[str, Any],
    wheel: Path,
    step_functions: Path,
    outdir: Path,
    market: str | None = None,
    standby: bool = False,
    reader_account: str | None = None,
) -> Synthesized:
    """One deployment as ``cdk synth -c env=… [-c market=…] [-c region=standby]``."""
    from aws_cdk import App

    from infra.config import load_config
    from infra.environment import Sources, build_environment
    from infra.nag import add_nag_checks

    app = App(context=context, outdir=str(outdir))
    repository = Sources.of_repository(REPO_ROOT, wheel=wheel)
    if not repository.glue_script.is_file():
        pytest.fail(f"{repository.glue_script} is missing: the Glue job cannot be synthesized")
    sources = Sources(repository.glue_script, repository.library_wheel, step_functions)
    config = load_config(context, environment, market)
    stacks = build_environment(
        app, config.standby() if standby else config, sources, reader_account=reader_account
    )
    add_nag_checks(app)
    app.synth()
    templates = {
        stack.unit: json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
        for stack in stacks.all
    }
    return Synthesized(config.deployment, outdir, templates, stacks)


@pytest.fixture(scope="session")
def dev(cdk_context, library_wheel, tmp_path_factory) -> Synthesized:
    return synthesize(
        "dev",
        context=cdk_context,
        wheel=library_wheel,
        step_functions=REPO_ROOT / "step_functions",
        outdir=tmp_path_factory.mktemp("cdk-dev"),
    )


@pytest.fixture(scope="session")
def staging(cdk_context, library_wheel, tmp_path_factory) -> Synthesized:
    return synthesize(
        "staging",
        context=cdk_context,
        wheel=library_wheel,
        step_functions=REPO_ROOT / "step_functions",
        outdir=tmp_path_factory.mktemp("cdk-staging"),
    )


@pytest.fixture(scope="session")
def prod(cdk_context, library_wheel, tmp_path_factory) -> Synthesized:
    return synthesize(
        "prod",
        context=cdk_context,
        wheel=library_wheel,
        step_functions=REPO_ROOT / "step_functions",
        outdir=tmp_path_factory.mktemp("cdk-prod"),
    )


@pytest.fixture(scope="session")
def prod_standby(cdk_context, library_wheel, tmp_path_factory) -> Synthesized:
    """Prod's stacks in its disaster-recovery standby region."""
    return synthesize(
        "prod",
        context=cdk_context,
        wheel=library_wheel,
        step_functions=REPO_ROOT / "step_functions",
        outdir=tmp_path_factory.mktemp("cdk-prod-standby"),
        standby=True,
    )


@pytest.fixture(scope="session")
def mx_prod(cdk_context, library_wheel, tmp_path_factory) -> Synthesized:
    """Prod of the ``mx`` market cdk.json declares."""
    return synthesize(
        "prod",
        context=cdk_context,
        wheel=library_wheel,
        step_functions=REPO_ROOT / "step_functions",
        outdir=tmp_path_factory.mktemp("cdk-mx-prod"),
        market="mx",
    )


@pytest.fixture(scope="session", params=["dev", "staging", "prod"])
def every_environment(request: pytest.FixtureRequest) -> Synthesized:
    return request.getfixturevalue(request.param)
