"""The shared names module: light to import, consistent with Settings."""

from __future__ import annotations

import subprocess
import sys

import pytest

from credit_risk import names
from credit_risk.settings import ENV_PREFIX, Settings


def test_importing_names_pulls_in_nothing_heavy():
    code = (
        "import sys, credit_risk.names; "
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'boto3', 'aws_cdk', 'pyarrow', 'numpy')]; "
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"


def test_settings_variables_are_named_after_settings_fields():
    assert names.ENV_PREFIX == ENV_PREFIX
    for variable in (
        names.ENV_ENVIRONMENT,
        names.ENV_LAKE_URI,
        names.ENV_REGISTRY_URI,
        names.ENV_DATABASE_URL,
        names.ENV_MODEL_NAME,
    ):
        field = variable.removeprefix(ENV_PREFIX).lower()
        assert field in Settings.model_fields, variable


def test_candidate_alarms_share_a_prefix_the_live_ones_do_not_match():
    prefix = names.candidate_alarm_prefix("prod")

    assert f"{names.resource_name('prod', 'inference', 'candidate')}-errors".startswith(prefix)
    assert not f"{names.resource_name('prod', 'inference', 'live')}-errors".startswith(prefix)


def test_each_deployment_publishes_its_metrics_under_a_namespace_of_its_own():
    deployments = ["dev", "staging", "prod", names.deployment_name("prod", "mx"), "local"]

    namespaces = [names.metric_namespace(deployment) for deployment in deployments]

    assert namespaces[2] == "CreditRisk/prod"
    assert len(set(namespaces)) == len(deployments)
    assert all(n.startswith(f"{names.METRIC_NAMESPACE}/") for n in namespaces)


@pytest.mark.parametrize(
    ("environment", "market", "deployment", "options", "deploy"),
    [
        ("prod", None, "prod", "--env prod", "npx cdk deploy -c env=prod --all"),
        (
            "staging",
            "mx",
            "mx-staging",
            "--env staging --market mx",
            "npx cdk deploy -c env=staging -c market=mx --all",
        ),
    ],
)
def test_a_deployment_is_named_and_spelled_back_the_same_way_everywhere(
    environment, market, deployment, options, deploy, capsys
):
    from credit_risk.bootstrap import deploy_command
    from infra.deployment_context import main

    assert names.deployment_name(environment, market) == deployment
    assert names.split_deployment(deployment) == (environment, market)
    assert names.deployment_options(deployment) == options
    assert deploy_command(deployment) == deploy
    assert deploy_command(deployment, standby=True) == deploy.replace(
        " --all", " -c region=standby --all"
    )
    # The Makefile's synth names the same deployment, and its standby, for cdk.
    for name in (deployment, f"{deployment}-standby"):
        assert main([name]) == 0
        printed = capsys.readouterr().out.strip()
        assert f"npx cdk deploy {printed} --all" == deploy_command(
            deployment, standby=name != deployment
        )
    assert names.resource_name(deployment, "api") == f"credit-risk-{deployment}-api"


def test_a_name_that_is_no_deployment_is_refused(capsys):
    from infra.deployment_context import main

    with pytest.raises(ValueError, match="not a deployment: 'mx-qa'"):
        names.split_deployment("mx-qa")
    assert main(["prod-replica"]) == 2
    assert "error: not a deployment: 'prod-replica'" in capsys.readouterr().err
