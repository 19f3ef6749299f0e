"""What differs between dev, staging and prod, and nothing else."""

from __future__ import annotations

import pytest

from credit_risk import names
from credit_risk.settings import Settings

pytestmark = pytest.mark.infra


def _props(synth, unit, resource_type):
    return [r["Properties"] for r in synth.resources(unit, resource_type).values()]


def test_prod_database_is_multi_az_and_deletion_protected_dev_is_not(dev, prod):
    (prod_db,) = _props(prod, "FeatureStore", "AWS::RDS::DBInstance")
    (dev_db,) = _props(dev, "FeatureStore", "AWS::RDS::DBInstance")

    assert prod_db["MultiAZ"] is True
    assert prod_db["DeletionProtection"] is True
    assert prod_db["DBInstanceClass"] == "db.r7g.large"
    assert dev_db["MultiAZ"] is False
    assert dev_db["DeletionProtection"] is False


def test_prod_keeps_its_data_when_a_stack_goes_dev_does_not(dev, prod):
    prod_buckets = prod.resources("DataLake", "AWS::S3::Bucket").values()
    dev_buckets = dev.resources("DataLake", "AWS::S3::Bucket").values()

    assert {b["DeletionPolicy"] for b in prod_buckets} == {"Retain"}
    assert {b["DeletionPolicy"] for b in dev_buckets} == {"Delete"}
    assert prod.stacks.data_lake.termination_protection is True
    assert dev.stacks.data_lake.termination_protection is False


def test_only_prod_provisions_concurrency_on_the_live_alias(dev, staging, prod):
    def provisioned(synth):
        return {
            a["Name"]: a.get("ProvisionedConcurrencyConfig")
            for a in _props(synth, "Ml", "AWS::Lambda::Alias")
        }

    # (candidate, kept while older environments upgrade, takes no traffic)
    assert provisioned(prod) == {"live": {"ProvisionedConcurrentExecutions": 5}, "candidate": None}
    assert set(provisioned(dev).values()) == {None}
    assert set(provisioned(staging).values()) == {None}


def test_prod_spans_three_zones_and_two_nat_gateways(dev, prod):
    assert len(prod.resources("Network", "AWS::EC2::Subnet")) == 9
    assert len(prod.resources("Network", "AWS::EC2::NatGateway")) == 2
    assert len(dev.resources("Network", "AWS::EC2::NatGateway")) == 1


def test_waf_protects_staging_and_prod_with_the_configured_rate(dev, staging, prod):
    assert not dev.resources("Api", "AWS::WAFv2::WebACL")
    for synth in (staging, prod):
        (acl,) = _props(synth, "Api", "AWS::WAFv2::WebACL")
        rate = next(r for r in acl["Rules"] if r["Name"] == "rate-per-ip")
        assert rate["Statement"]["RateBasedStatement"]["Limit"] == 2000
        assert synth.resources("Api", "AWS::WAFv2::WebACLAssociation")


def test_usage_plans_follow_each_environment(dev, prod):
    (dev_plan,) = _props(dev, "Api", "AWS::ApiGateway::UsagePlan")
    (prod_plan,) = _props(prod, "Api", "AWS::ApiGateway::UsagePlan")

    assert dev_plan["Throttle"]["RateLimit"] == 20
    assert prod_plan["Throttle"]["RateLimit"] == 200
    assert prod_plan["Quota"]["Limit"] == 2_000_000


def test_glue_capacity_follows_each_environment(dev, prod):
    # The feature job; the distributed training job beside it has its own settings
    # (tests/infra/test_training_engine.py).
    (dev_job,) = [
        j for j in _props(dev, "Features", "AWS::Glue::Job") if j["Name"].endswith("-features")
    ]
    (prod_job,) = [
        j for j in _props(prod, "Features", "AWS::Glue::Job") if j["Name"].endswith("-features")
    ]

    assert (dev_job["WorkerType"], dev_job["NumberOfWorkers"]) == ("G.1X", 2)
    assert (prod_job["WorkerType"], prod_job["NumberOfWorkers"]) == ("G.2X", 10)


def test_each_load_purges_decisions_after_the_environment_s_retention(dev, staging, prod):
    def loader_retention(synth) -> int:
        (variables,) = [
            props["Environment"]["Variables"]
            for props in _props(synth, "Ml", "AWS::Lambda::Function")
            if props.get("Environment", {})
            .get("Variables", {})
            .get(names.ENV_POWERTOOLS_SERVICE_NAME)
            == names.SERVICE_FEATURE_LOADER
        ]
        # Read as the function reads it: a value its settings refuse fails here.
        return Settings(
            decision_retention_days=variables[names.ENV_DECISION_RETENTION_DAYS]
        ).decision_retention_days

    # Prod keeps decisions 25 months (Regulation B); the others far less.
    assert loader_retention(prod) >= 25 * 31
    assert loader_retention(dev) < loader_retention(staging) < loader_retention(prod)
