"""Markets: a deployment is (market, environment), each market a cdk.json entry.

The templates are those of the default market's prod and of the ``mx`` market's
prod (tests/infra/conftest.py), synthesized with cdk-nag on.
"""

from __future__ import annotations

import copy

import pytest

from credit_risk import names
from infra.config import ConfigurationError, load_config, markets
from tests.infra.conftest import TRIAGED_WARNINGS, Synthesized, cfn_lint, joined

pytestmark = pytest.mark.infra

# Properties that carry a resource's physical name, for the types that have one.
NAME_PROPERTIES = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Events::Rule": "Name",
    "AWS::ApiGateway::RestApi": "Name",
    "AWS::ApiGateway::ApiKey": "Name",
    "AWS::ApiGateway::UsagePlan": "UsagePlanName",
    "AWS::WAFv2::WebACL": "Name",
    "AWS::Glue::Job": "Name",
    "AWS::Backup::BackupVault": "BackupVaultName",
    "AWS::SecretsManager::Secret": "Name",
}


def physical_names(synth: Synthesized) -> dict[str, str]:
    """Every named resource of the deployment: its name, and where it is."""
    found = {}
    for unit, template in synth.templates.items():
        for logical_id, resource in template["Resources"].items():
            prop = NAME_PROPERTIES.get(resource["Type"])
            value = resource.get("Properties", {}).get(prop) if prop else None
            if value is not None:
                found[joined(value)] = f"{unit}/{logical_id}"
    return found


def test_cdk_json_declares_two_markets_and_each_environment_of_each_is_valid(cdk_context):
    assert markets(cdk_context) == ("co", "mx")
    for market in markets(cdk_context):
        for environment in names.ENVIRONMENTS:
            config = load_config(cdk_context, environment, market)

            assert config.market == market
            assert config.deployment == f"{market}-{environment}"
            assert config.resource_name("api") == f"credit-risk-{market}-{environment}-api"


def test_a_market_overrides_its_environments_field_by_field(cdk_context):
    prod = load_config(cdk_context, "prod")
    mx = load_config(cdk_context, "prod", "mx")
    mx_dev = load_config(cdk_context, "dev", "mx")

    # Set for every environment of the market...
    assert (mx.region, mx_dev.region) == ("us-east-2", "us-east-2")
    assert mx.api.throttle_rate_per_second == mx_dev.api.throttle_rate_per_second == 100
    # ...the rest of a nested object from the environment...
    assert mx.api.quota_requests == prod.api.quota_requests
    # ...and what the market sets for one environment, for that one only.
    assert mx.model_release.max_approval_rate_change == 0.02
    assert mx_dev.model_release == load_config(cdk_context, "dev").model_release
    assert mx.notification_email == "credit-risk-mx-oncall@example.com"
    assert mx.disaster_recovery is not None
    assert mx.disaster_recovery.standby_region == "us-west-2"
    assert mx.database == prod.database


def test_the_default_market_keeps_its_names(cdk_context, prod):
    config = load_config(cdk_context, "prod")

    assert config.market is None
    assert config.deployment == "prod"
    assert {stack.stack_name for stack in prod.stacks.all} == {
        names.stack_name("prod", stack.unit) for stack in prod.stacks.all
    }
    assert "credit-risk-prod-api" in physical_names(prod)


@pytest.mark.parametrize(
    ("market", "message"),
    [
        ("br", r"unknown market 'br': cdk.json declares co, mx"),
        ("MX", r"invalid market name 'MX': 2 to 8 lowercase letters"),
        ("mx-1", r"invalid market name"),
    ],
)
def test_an_undeclared_or_misnamed_market_is_refused(cdk_context, market, message):
    with pytest.raises(ConfigurationError, match=message):
        load_config(cdk_context, "prod", market)


def test_a_market_setting_is_checked_like_the_environment_s(cdk_context):
    broken = copy.deepcopy(cdk_context)
    broken["markets"]["mx"]["prod"]["alarms"] = {"api_p99_latency_ms": 0}
    broken["markets"]["mx"]["colour"] = "blue"

    with pytest.raises(ConfigurationError) as error:
        load_config(broken, "prod", "mx")

    message = str(error.value)
    assert message.startswith("invalid settings for mx-prod:")
    assert "alarms.api_p99_latency_ms" in message
    assert "colour: Extra inputs are not permitted" in message


def test_a_null_in_a_market_overrides_nothing_as_in_the_cdk_app(cdk_context):
    # The app reads the context through jsii, which drops nulls inside objects.
    nulled = copy.deepcopy(cdk_context)
    nulled["markets"]["co"]["staging"]["disaster_recovery"] = None

    assert (
        load_config(nulled, "staging", "co").disaster_recovery
        == load_config(cdk_context, "staging").disaster_recovery
    )


def test_every_stack_and_named_resource_of_a_market_carries_it(mx_prod):
    assert all(stack.stack_name.startswith("CreditRisk-mx-prod-") for stack in mx_prod.stacks.all)
    unnamed = [
        f"{where}: {name}"
        for name, where in physical_names(mx_prod).items()
        if "mx-prod" not in name
    ]
    assert unnamed == []


def test_two_markets_share_no_bucket_function_alarm_key_or_rule(prod, mx_prod):
    shared = set(physical_names(prod)) & set(physical_names(mx_prod))

    assert shared == set()
    assert len(physical_names(mx_prod)) > 40


def test_a_market_s_functions_record_and_alarm_on_their_own_deployment(mx_prod):
    functions = mx_prod.resources("Ml", "AWS::Lambda::Function")
    recorded = {
        f["Properties"]["Environment"]["Variables"][names.ENV_ENVIRONMENT]
        for f in functions.values()
    }

    assert recorded == {"mx-prod"}
    assert mx_prod.stacks.network.region == "us-east-2"


def test_cfn_lint_finds_no_errors_in_a_market_s_templates(mx_prod):
    templates = sorted(mx_prod.outdir.glob("*.template.json"))
    findings = cfn_lint(templates, mx_prod.stacks.network.region)

    assert [f for f in findings if f[0] not in TRIAGED_WARNINGS] == []


def test_a_market_name_that_would_make_bucket_names_too_long_is_refused(cdk_context):
    # S3 names are at most 63 characters; the market, environment, account and region
    # are all in them.
    long = copy.deepcopy(cdk_context)
    long["markets"]["abcdefgh"] = {
        "region": "ap-southeast-2",
        "availability_zones": ["ap-southeast-2a", "ap-southeast-2b"],
    }

    with pytest.raises(ConfigurationError, match=r"would run to 68 characters .* above S3's 63"):
        load_config(long, "staging", "abcdefgh")
