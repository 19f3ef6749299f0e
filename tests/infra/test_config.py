"""The environment settings model: what cdk.json may say, and what it may not."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from credit_risk import names, release_decision
from infra.components.asl_state_machine import placeholders
from infra.config import ConfigurationError, load_config

CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"


@pytest.fixture(scope="module")
def context() -> dict:
    return json.loads(CDK_JSON.read_text())["context"]


@pytest.mark.parametrize("environment", names.ENVIRONMENTS)
def test_every_environment_in_cdk_json_is_valid(context, environment):
    config = load_config(context, environment)

    assert config.name == environment
    assert all(zone.startswith(config.region) for zone in config.availability_zones)


@pytest.mark.parametrize("environment", names.ENVIRONMENTS)
def test_the_database_engine_is_a_postgresql_release_the_cdk_library_lists(context, environment):
    # aws-cdk-lib lists the engine versions RDS offers; a typo or a version
    # RDS never shipped would otherwise only fail the deployment.
    from aws_cdk import aws_rds as rds

    version = load_config(context, environment).database.engine_version

    assert hasattr(rds.PostgresEngineVersion, f"VER_{version.replace('.', '_')}")


def test_an_unknown_environment_is_refused_with_the_valid_names(context):
    with pytest.raises(ConfigurationError, match=r"unknown environment 'qa'.*dev\|staging\|prod"):
        load_config(context, "qa")


def test_a_zone_outside_the_region_is_refused(context):
    broken = copy.deepcopy(context)
    broken["dev"]["availability_zones"] = ["eu-west-1a", "us-east-1b"]

    with pytest.raises(ConfigurationError, match="not in region eu-west-1"):
        load_config(broken, "dev")


def test_the_error_names_the_field_at_fault(context):
    broken = copy.deepcopy(context)
    broken["prod"]["database"]["backup_retention_days"] = 0

    with pytest.raises(ConfigurationError, match=r"database\.backup_retention_days"):
        load_config(broken, "prod")


def test_canary_steps_must_increase(context):
    broken = copy.deepcopy(context)
    broken["staging"]["model_release"]["steps_percent"] = [50, 10]

    with pytest.raises(ConfigurationError, match="strictly increasing"):
        load_config(broken, "staging")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_latency_ratio", 0.5),
        ("max_approval_rate_change", 0),
        ("max_swap_share", 1.5),
        ("max_score_psi", 0),
        ("max_candidate_errors", -1),
        ("shadow_min_requests", 0),
    ],
)
def test_a_gate_the_release_could_not_apply_is_refused_at_synth(context, field, value):
    broken = copy.deepcopy(context)
    broken["prod"]["model_release"][field] = value

    with pytest.raises(ConfigurationError, match=rf"model_release\.{field}"):
        load_config(broken, "prod")


@pytest.mark.parametrize("environment", names.ENVIRONMENTS)
def test_every_model_release_is_a_policy_the_decision_function_takes(context, environment):
    settings = load_config(context, environment).model_release.settings()
    policy = release_decision.CanaryPolicy.from_settings(settings)

    assert list(policy.steps_percent) == settings["steps_percent"]
    assert policy.shadow_min_requests == settings["shadow_min_requests"]
    assert policy.gates.max_swap_share == settings["max_swap_share"]
    assert policy.gates.max_candidate_errors == 0


def test_the_release_gates_tighten_from_dev_to_prod(context):
    gates = {
        environment: load_config(context, environment).model_release
        for environment in names.ENVIRONMENTS
    }

    for field in ("max_approval_rate_change", "max_swap_share", "max_score_psi"):
        values = [getattr(gates[environment], field) for environment in names.ENVIRONMENTS]
        assert values == sorted(values, reverse=True), field


def test_unknown_settings_are_refused_rather_than_ignored(context):
    broken = copy.deepcopy(context)
    broken["dev"]["multi_az"] = True  # belongs under "database"

    with pytest.raises(ConfigurationError, match="multi_az"):
        load_config(broken, "dev")


def test_placeholders_are_the_dollar_brace_names_of_a_definition():
    definition = '{"a": "${FeatureJobName}", "b": "${Topic_Arn}", "c": "$.path", "d": "{}"}'

    assert placeholders(definition) == {"FeatureJobName", "Topic_Arn"}
