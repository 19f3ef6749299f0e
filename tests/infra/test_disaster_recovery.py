"""Disaster recovery from configuration: a standby region per deployment.

Prod's templates in its primary region and in its standby region
(``-c region=standby``), synthesized with cdk-nag on, and a variant of both with a
failover domain configured.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from credit_risk import names
from infra.config import ConfigurationError, load_config
from tests.infra.conftest import (
    REPO_ROOT,
    TRIAGED_WARNINGS,
    Synthesized,
    cfn_lint,
    joined,
    synthesize,
)

pytestmark = pytest.mark.infra

PRIMARY, STANDBY = "eu-west-1", "eu-central-1"
LAKE = ("raw", "curated", "models")
DOMAIN = {
    "name": "scores.lender.example",
    "hosted_zone_id": "Z0123456789ABCDEFGHIJ",
    "hosted_zone_name": "lender.example",
    "certificate_arns": {
        PRIMARY: "arn:aws:acm:eu-west-1:111111111111:certificate/1111-2222",
        STANDBY: "arn:aws:acm:eu-central-1:111111111111:certificate/3333-4444",
    },
}


def _with_domain(context: dict[str, Any]) -> dict[str, Any]:
    context = copy.deepcopy(context)
    context["prod"]["disaster_recovery"]["domain"] = DOMAIN
    return context


@pytest.fixture(scope="module")
def with_domain(cdk_context, library_wheel, tmp_path_factory) -> tuple[Synthesized, Synthesized]:
    """Prod's primary and standby with clients calling one failover domain."""
    return tuple(
        synthesize(
            "prod",
            context=_with_domain(cdk_context),
            wheel=library_wheel,
            step_functions=REPO_ROOT / "step_functions",
            outdir=tmp_path_factory.mktemp(f"cdk-prod-domain-{side}"),
            standby=side == "standby",
        )
        for side in ("primary", "standby")
    )


def _properties(synth: Synthesized, unit: str, resource_type: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in synth.resources(unit, resource_type).values()]


def _outputs(synth: Synthesized, unit: str) -> dict[str, Any]:
    return {k: v["Value"] for k, v in synth.template(unit).get("Outputs", {}).items()}


# --- Configuration ------------------------------------------------------------------


def test_the_standby_is_the_same_deployment_in_its_own_region(cdk_context):
    prod = load_config(cdk_context, "prod")
    standby = prod.standby()

    assert (standby.region, standby.role, standby.primary_region) == (STANDBY, "standby", PRIMARY)
    assert standby.availability_zones == prod.disaster_recovery.standby_availability_zones
    assert standby.vpc_cidr != prod.vpc_cidr
    assert (standby.deployment, standby.peer_region, prod.peer_region) == ("prod", PRIMARY, STANDBY)
    assert standby.model_release == prod.model_release
    assert standby.standby() is standby


def test_dev_has_no_standby_and_asking_for_one_says_so(cdk_context):
    with pytest.raises(ConfigurationError, match="dev has no standby region"):
        load_config(cdk_context, "dev").standby()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"standby_region": PRIMARY, "standby_availability_zones": ["eu-west-1a", "eu-west-1b"]},
            "standby_region must differ from region",
        ),
        (
            {"standby_availability_zones": ["eu-west-1a", "eu-west-1b"]},
            "not in region eu-central-1",
        ),
        ({"backup_every_hours": 5}, "backup_every_hours"),
        (
            {"backup_every_hours": 1, "backup_copy_retention_days": 7},
            "leaves 192 snapshots per region, above 50",
        ),
        ({"standby": "cold"}, "standby"),
        (
            {
                "domain": {
                    **DOMAIN,
                    "certificate_arns": {PRIMARY: DOMAIN["certificate_arns"][PRIMARY]},
                }
            },
            r"certificate_arns has none for \['eu-central-1'\]",
        ),
        (
            {"domain": {**DOMAIN, "name": "scores.other.example"}},
            "not in the hosted zone lender.example",
        ),
    ],
)
def test_disaster_recovery_settings_that_could_not_work_are_refused(cdk_context, change, message):
    broken = copy.deepcopy(cdk_context)
    broken["prod"]["disaster_recovery"].update(change)

    with pytest.raises(ConfigurationError, match=message):
        load_config(broken, "prod")


def test_a_failover_domain_needs_the_probe_its_health_check_watches(cdk_context):
    broken = _with_domain(cdk_context)
    broken["prod"]["probe"]["enabled"] = False

    with pytest.raises(ConfigurationError, match="a failover domain needs the probe"):
        load_config(broken, "prod")


# --- The lake and the registry --------------------------------------------------------


def test_the_replication_role_may_read_the_lake_and_write_only_its_replicas(prod):
    (policy,) = [
        p
        for p in _properties(prod, "DataLake", "AWS::IAM::Policy")
        if "ReplicationRole" in json.dumps(p["Roles"])
    ]
    granted = {
        action: [
            joined(resource)
            for resource in (
                statement["Resource"]
                if isinstance(statement["Resource"], list)
                else [statement["Resource"]]
            )
        ]
        for statement in policy["PolicyDocument"]["Statement"]
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    }

    replicas = {
        "arn:aws:s3:::" + names.lake_bucket_name("prod", kind, "{AWS::AccountId}", STANDBY) + "/*"
        for kind in LAKE
    }
    for action in ("s3:ReplicateObject", "s3:ReplicateDelete"):
        assert set(granted[action]) == replicas
    assert len(granted["s3:GetObjectVersionForReplication"]) == len(LAKE)
    assert "s3:PutObject" not in granted


def test_the_primary_replicates_raw_curated_and_models_to_the_standby_within_15_minutes(prod):
    buckets = _properties(prod, "DataLake", "AWS::S3::Bucket")
    replicated = {}
    for bucket in buckets:
        if "ReplicationConfiguration" not in bucket:
            continue
        (rule,) = bucket["ReplicationConfiguration"]["Rules"]
        assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
        assert rule["Status"] == "Enabled"
        assert rule["DeleteMarkerReplication"] == {"Status": "Enabled"}
        assert rule["Destination"]["ReplicationTime"]["Time"] == {"Minutes": 15}
        replicated[joined(bucket["BucketName"])] = joined(rule["Destination"]["Bucket"])

    assert replicated == {
        names.lake_bucket_name("prod", kind, "{AWS::AccountId}", "{AWS::Region}"): (
            "arn:aws:s3:::" + names.lake_bucket_name("prod", kind, "{AWS::AccountId}", STANDBY)
        )
        for kind in LAKE
    }
    # One role, S3's, for the three.
    roles = {
        json.dumps(b["ReplicationConfiguration"]["Role"])
        for b in buckets
        if "ReplicationConfiguration" in b
    }
    assert len(roles) == 1


def test_the_standby_holds_the_replicas_under_the_same_names_and_replicates_nothing(prod_standby):
    buckets = _properties(prod_standby, "DataLake", "AWS::S3::Bucket")
    named = {joined(b["BucketName"]) for b in buckets}

    assert prod_standby.stacks.data_lake.region == STANDBY
    assert {
        names.lake_bucket_name("prod", kind, "{AWS::AccountId}", "{AWS::Region}") for kind in LAKE
    } <= named
    assert all(
        b["VersioningConfiguration"] == {"Status": "Enabled"}
        for b in buckets
        if "access-logs" not in joined(b["BucketName"])
    )
    assert not any("ReplicationConfiguration" in b for b in buckets)


def test_each_region_says_its_role_and_its_peer_for_a_failover_to_read(prod, prod_standby):
    primary, standby = _outputs(prod, "DataLake"), _outputs(prod_standby, "DataLake")

    assert (primary[names.OUTPUT_DR_ROLE], primary[names.OUTPUT_DR_PEER_REGION]) == (
        "primary",
        STANDBY,
    )
    assert (standby[names.OUTPUT_DR_ROLE], standby[names.OUTPUT_DR_PEER_REGION]) == (
        "standby",
        PRIMARY,
    )
    for outputs in (primary, standby):
        assert {names.OUTPUT_CURATED_BUCKET, names.OUTPUT_MODELS_BUCKET} <= set(outputs)


# --- The store --------------------------------------------------------------------------


@pytest.mark.parametrize(("side", "peer"), [("prod", STANDBY), ("prod_standby", PRIMARY)])
def test_the_store_is_backed_up_every_4_hours_and_each_backup_copied_to_the_peer_s_vault(
    request, side, peer, cdk_context
):
    synth: Synthesized = request.getfixturevalue(side)
    dr = cdk_context["prod"]["disaster_recovery"]
    (plan,) = _properties(synth, "FeatureStore", "AWS::Backup::BackupPlan")
    (rule,) = plan["BackupPlan"]["BackupPlanRule"]
    (copy_action,) = rule["CopyActions"]
    (selection,) = _properties(synth, "FeatureStore", "AWS::Backup::BackupSelection")
    (vault,) = _properties(synth, "DataLake", "AWS::Backup::BackupVault")

    assert dr["backup_every_hours"] == 4
    assert rule["ScheduleExpression"] == "cron(0 */4 * * ? *)"
    # The local point only feeds the copy (the instance's own backups restore locally).
    assert rule["Lifecycle"] == {"DeleteAfterDays": 1}
    assert copy_action["Lifecycle"] == {"DeleteAfterDays": dr["backup_copy_retention_days"]}
    # The peer's vault has the name this region's vault has there.
    assert vault["BackupVaultName"] == "credit-risk-prod-backup"
    assert joined(copy_action["DestinationBackupVaultArn"]) == (
        f"arn:aws:backup:{peer}:{{AWS::AccountId}}:backup-vault:credit-risk-prod-backup"
    )
    (instance_id,) = synth.resources("FeatureStore", "AWS::RDS::DBInstance")
    assert instance_id in json.dumps(selection["BackupSelection"]["Resources"])


def test_dev_has_no_standby_no_replication_and_no_backup_plan(dev):
    assert not dev.resources("FeatureStore", "AWS::Backup::BackupPlan")
    assert not dev.resources("DataLake", "AWS::Backup::BackupVault")
    assert not any(
        "ReplicationConfiguration" in b for b in _properties(dev, "DataLake", "AWS::S3::Bucket")
    )
    assert names.OUTPUT_DR_ROLE not in _outputs(dev, "DataLake")


# --- What a failover acts on -------------------------------------------------------------


def _rules(synth: Synthesized) -> list[dict[str, Any]]:
    return [
        rule for unit in synth.templates for rule in _properties(synth, unit, "AWS::Events::Rule")
    ]


def _starts_work(rule: dict[str, Any]) -> bool:
    """A schedule, or a rule that starts a state machine."""
    return "ScheduleExpression" in rule or any(
        "StateMachine" in json.dumps(target.get("Arn")) for target in rule.get("Targets", [])
    )


@pytest.mark.parametrize(("side", "state"), [("prod", "ENABLED"), ("prod_standby", "DISABLED")])
def test_every_rule_that_starts_work_is_named_for_a_failover_and_off_in_a_standby(
    request, side, state
):
    synth: Synthesized = request.getfixturevalue(side)
    prefix = names.schedule_rule_prefix("prod")
    working = [rule for rule in _rules(synth) if _starts_work(rule)]
    named = [rule for rule in _rules(synth) if str(rule.get("Name", "")).startswith(prefix)]

    assert {rule.get("Name") for rule in working} <= {rule["Name"] for rule in named}
    # Prod has no warm-up rule (warmup_rate_minutes is null); every other one is there.
    assert {rule["Name"] for rule in named} == {
        prefix + what for what in names.WORK_RULES if what != "warm-up"
    }
    assert {rule.get("State") for rule in named} == {state}


@pytest.mark.parametrize("side", ["prod", "prod_standby"])
def test_a_failover_finds_the_loader_by_its_output_and_the_probe_alarm_by_name(request, side):
    synth: Synthesized = request.getfixturevalue(side)
    output = synth.template("Ml")["Outputs"][names.OUTPUT_FEATURE_LOADER]["Value"]
    loader = synth.template("Ml")["Resources"][output["Ref"]]["Properties"]
    alarms = {a["AlarmName"] for a in _properties(synth, "Monitoring", "AWS::CloudWatch::Alarm")}

    assert names.HANDLER_FEATURE_LOADER in json.dumps(loader["ImageConfig"])
    assert names.ENV_LAKE_URI in loader["Environment"]["Variables"]
    # No name of its own: naming a deployed function would replace it.
    assert "FunctionName" not in loader
    assert names.resource_name("prod", *names.PROBE_FAILURES_ALARM_PARTS) in alarms


@pytest.mark.parametrize("side", ["prod", "prod_standby"])
def test_the_loader_may_write_the_pointers_and_decision_exports_and_nothing_else(request, side):
    prod: Synthesized = request.getfixturevalue(side)
    output = prod.template("Ml")["Outputs"][names.OUTPUT_FEATURE_LOADER]["Value"]
    role = prod.template("Ml")["Resources"][output["Ref"]]["Properties"]["Role"]["Fn::GetAtt"][0]
    written = sorted(
        joined(resource)
        for policy in _properties(prod, "Ml", "AWS::IAM::Policy")
        if {"Ref": role} in policy["Roles"]
        for statement in policy["PolicyDocument"]["Statement"]
        if "s3:PutObject" in statement["Action"]
        for resource in (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
    )

    curated = names.lake_bucket_name("prod", "curated", "{AWS::AccountId}", "{AWS::Region}")
    # The pointer a failover loads and each snapshot's (a rollback's); the decisions a
    # failback moves from the standby's store to the primary's (one exports, one imports).
    assert written == [
        f"arn:{{AWS::Partition}}:s3:::{curated}/{names.DECISION_EXPORTS_PREFIX}*",
        f"arn:{{AWS::Partition}}:s3:::{curated}/{names.ACTIVE_SNAPSHOT_KEY}*",
        f"arn:{{AWS::Partition}}:s3:::{curated}/{names.SNAPSHOT_POINTERS_PREFIX}*",
    ]


def test_decision_exports_leave_the_lake_days_after_a_failback(prod, prod_standby):
    for synth in (prod, prod_standby):
        (curated,) = (
            bucket
            for bucket in _properties(synth, "DataLake", "AWS::S3::Bucket")
            if "curated" in json.dumps(bucket["BucketName"])
        )
        rules = curated["LifecycleConfiguration"]["Rules"]
        exports = [rule for rule in rules if rule.get("Prefix") == names.DECISION_EXPORTS_PREFIX]
        # In a versioned bucket an expiration leaves a noncurrent version: that goes
        # a day later (S3 honours the shortest of overlapping expirations).
        assert exports == [
            {
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                "ExpirationInDays": 7,  # personal data: a week at most
                "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                "Prefix": "dr/decisions/",
                "Status": "Enabled",
            }
        ]
        # and no rule of its own shortens the life of the merged-decisions watermark
        watermark = names.decision_watermark_key(STANDBY)
        # (rules without a prefix, the bucket-wide ones, are not the watermark's own)
        assert [rule for rule in rules if watermark.startswith(rule.get("Prefix") or "~")] == []


# --- One domain for clients ------------------------------------------------------------------


def test_the_domain_answers_from_the_primary_while_its_probe_is_healthy(with_domain):
    primary, standby = with_domain
    resources = primary.resources("Monitoring", "AWS::Route53::HealthCheck")
    checks = {
        check["Properties"]["HealthCheckConfig"]["Type"]: (logical_id, check["Properties"])
        for logical_id, check in resources.items()
    }
    assert len(checks) == len(resources) == 3  # one of each type
    (first,) = _properties(primary, "Monitoring", "AWS::Route53::RecordSet")
    (second,) = _properties(standby, "Monitoring", "AWS::Route53::RecordSet")
    health = checks["CLOUDWATCH_METRIC"][1]

    watched = health["HealthCheckConfig"]["AlarmIdentifier"]
    alarm = primary.template("Monitoring")["Resources"][watched["Name"]["Ref"]]

    assert health["HealthCheckConfig"]["Type"] == "CLOUDWATCH_METRIC"
    assert watched["Region"] == PRIMARY
    assert alarm["Properties"]["AlarmName"] == names.resource_name(
        "prod", *names.PROBE_FAILURES_ALARM_PARTS
    )
    assert health["HealthCheckConfig"]["InsufficientDataHealthStatus"] == "LastKnownStatus"
    assert (first["Failover"], second["Failover"]) == ("PRIMARY", "SECONDARY")
    assert "HealthCheckId" not in second
    assert not standby.resources("Monitoring", "AWS::Route53::HealthCheck")
    # The primary answers while both its probe passes and Route 53 reaches its API
    guard_id, guard = checks["CALCULATED"]
    assert first["HealthCheckId"] == {"Fn::GetAtt": [guard_id, "HealthCheckId"]}
    assert guard["HealthCheckConfig"]["HealthThreshold"] == 2
    assert guard["HealthCheckConfig"]["ChildHealthChecks"] == [
        {"Fn::GetAtt": [checks[kind][0], "HealthCheckId"]}
        for kind in ("CLOUDWATCH_METRIC", "HTTPS")
    ]
    for record in (first, second):
        assert (record["Name"], record["Type"]) == ("scores.lender.example.", "A")
        assert record["HostedZoneId"] == DOMAIN["hosted_zone_id"]
    assert first["SetIdentifier"] != second["SetIdentifier"]
    for synth, region in ((primary, PRIMARY), (standby, STANDBY)):
        (domain,) = _properties(synth, "Api", "AWS::ApiGateway::DomainName")
        assert domain["RegionalCertificateArn"] == DOMAIN["certificate_arns"][region]
        assert domain["SecurityPolicy"] == "TLS_1_2"
        assert synth.resources("Api", "AWS::ApiGateway::BasePathMapping")


def test_a_primary_region_gone_dark_fails_over_without_its_probe(with_domain):
    # Route 53 itself calls the primary's stage, from outside the region, on a route
    # that needs no key; the probe's alarm would have no data then.
    primary, _ = with_domain
    (reachable,) = (
        check["HealthCheckConfig"]
        for check in _properties(primary, "Monitoring", "AWS::Route53::HealthCheck")
        if check["HealthCheckConfig"]["Type"] == "HTTPS"
    )
    (stage,) = _properties(primary, "Api", "AWS::ApiGateway::Stage")
    (api_id,) = primary.resources("Api", "AWS::ApiGateway::RestApi")
    exported = {
        output["Export"]["Name"]
        for output in primary.template("Api")["Outputs"].values()
        if "Export" in output and output["Value"] == {"Ref": api_id}
    }
    openapi = [
        method
        for method in _properties(primary, "Api", "AWS::ApiGateway::Method")
        if method["HttpMethod"] == "GET"
        and "Ref" in method["ResourceId"]
        and primary.template("Api")["Resources"][method["ResourceId"]["Ref"]]["Properties"].get(
            "PathPart"
        )
        == names.ROUTE_OPENAPI.rsplit("/", 1)[1]
    ]

    host = reachable["FullyQualifiedDomainName"]["Fn::Join"][1]
    assert host[0] in [{"Fn::ImportValue": name} for name in exported]
    assert host[1:] == [f".execute-api.{PRIMARY}.", {"Ref": "AWS::URLSuffix"}]
    assert reachable["ResourcePath"] == f"/{stage['StageName']}{names.ROUTE_OPENAPI}"
    assert stage["StageName"] == names.API_STAGE_NAME
    assert (reachable["Port"], reachable["EnableSNI"]) == (443, True)
    assert reachable["RequestInterval"] * reachable["FailureThreshold"] <= 90
    # judged from three regions, none the primary's own
    assert len(reachable["Regions"]) == 3
    assert PRIMARY not in reachable["Regions"]
    assert [method.get("ApiKeyRequired", False) for method in openapi] == [False]


def test_clients_keep_their_key_in_the_standby(with_domain):
    primary, standby = with_domain
    (secret,) = _properties(primary, "Api", "AWS::SecretsManager::Secret")
    (standby_key,) = _properties(standby, "Api", "AWS::ApiGateway::ApiKey")

    assert secret["Name"] == "credit-risk-prod-client-key"
    assert secret["ReplicaRegions"] == [{"Region": STANDBY}]
    assert not standby.resources("Api", "AWS::SecretsManager::Secret")
    assert joined(standby_key["Value"]) == (
        "{{resolve:secretsmanager:credit-risk-prod-client-key:SecretString:api_key::}}"
    )
    # The standby's probe calls with that key, read by name.
    (probe,) = [
        f["Properties"]
        for f in standby.resources("Monitoring", "AWS::Lambda::Function").values()
        if names.HANDLER_PROBE in json.dumps(f["Properties"].get("ImageConfig"))
    ]
    policies = json.dumps(_properties(standby, "Monitoring", "AWS::IAM::Policy"))
    assert probe["Environment"]["Variables"][names.ENV_PROBE_API_KEY_SECRET_ID] == (
        "credit-risk-prod-client-key"
    )
    assert ":secret:credit-risk-prod-client-key-??????" in policies


def test_without_a_domain_the_client_key_keeps_its_generated_name(prod):
    (secret,) = _properties(prod, "Api", "AWS::SecretsManager::Secret")

    assert "Name" not in secret
    assert "ReplicaRegions" not in secret


@pytest.mark.parametrize("side", ["prod", "prod_standby"])
def test_only_the_probe_holds_the_client_key_s_export_so_a_domain_can_be_added_without_it(
    request, side
):
    # Adding a domain names the client key's secret, which replaces it: CloudFormation
    # refuses to change an export another stack imports, so the README's upgrade turns
    # the probe off for one deploy first. That works while the probe alone imports it.
    synth: Synthesized = request.getfixturevalue(side)
    api = synth.template("Api")
    (secret,) = synth.resources("Api", "AWS::SecretsManager::Secret")
    exports = {
        output["Export"]["Name"]
        for output in api["Outputs"].values()
        if "Export" in output and secret in json.dumps(output["Value"])
    }
    importers = {
        (unit, logical_id)
        for unit, template in synth.templates.items()
        for logical_id, resource in template["Resources"].items()
        if any(f'"Fn::ImportValue": "{export}"' in json.dumps(resource) for export in exports)
    }

    assert exports
    assert importers
    assert {unit for unit, _ in importers} == {"Monitoring"}
    assert all(logical_id.startswith("Probe") for _, logical_id in importers), importers


@pytest.mark.parametrize("standby", [False, True], ids=["primary", "standby"])
def test_turning_the_probe_off_keeps_every_export_it_imports(
    cdk_context, library_wheel, tmp_path, standby
):
    # The first of the two deploys that add a domain: the probe off, and every export
    # it imported still there for the Monitoring stack deployed before. In its own
    # account, read by the pipeline's: the client key then has a key of its own.
    exports, imported = {}, set()
    for probe in (True, False):
        context = copy.deepcopy(cdk_context)
        context["prod"]["account"] = "222222222222"
        context["prod"]["probe"]["enabled"] = probe
        synth = synthesize(
            "prod",
            context=context,
            wheel=library_wheel,
            step_functions=REPO_ROOT / "step_functions",
            outdir=tmp_path / f"probe-{probe}",
            standby=standby,
            reader_account="111111111111",
        )
        outputs = synth.template("Api")["Outputs"].values()
        exports[probe] = {o["Export"]["Name"]: o["Value"] for o in outputs if "Export" in o}
        if probe:
            imported = {
                name
                for unit, template in synth.templates.items()
                if unit != "Api"
                for name in exports[probe]
                if f'"Fn::ImportValue": "{name}"' in json.dumps(template)
            }
            secret_and_key = {
                logical_id
                for kind in ("AWS::SecretsManager::Secret", "AWS::KMS::Key")
                for logical_id in synth.resources("Api", kind)
            }

    # the probe imports the client key's secret and its key (each region's own here)
    imported_values = json.dumps([exports[True][name] for name in imported])
    assert len(secret_and_key) == 2
    assert all(f'"{logical_id}"' in imported_values for logical_id in secret_and_key)
    assert set(exports[True]) <= set(exports[False])


@pytest.mark.parametrize("side", ["prod_standby", "with_domain"])
def test_cfn_lint_finds_no_errors_in_the_disaster_recovery_templates(request, side):
    value = request.getfixturevalue(side)
    for synth in value if isinstance(value, tuple) else (value,):
        templates = sorted(synth.outdir.glob("*.template.json"))
        findings = cfn_lint(templates, synth.stacks.network.region)

        assert [f for f in findings if f[0] not in TRIAGED_WARNINGS] == []
