"""Key properties of every stack, asserted on the dev synth."""

from __future__ import annotations

import json
import re

import pytest

from credit_risk import names

pytestmark = pytest.mark.infra


def _one(synth, unit, resource_type):
    (resource,) = synth.resources(unit, resource_type).values()
    return resource["Properties"]


def test_the_vpc_has_public_private_and_isolated_subnets_flow_logs_and_an_s3_endpoint(dev):
    subnets = dev.resources("Network", "AWS::EC2::Subnet")
    kinds = {
        s["Properties"]["Tags"][0]["Value"]
        for s in subnets.values()
        if s["Properties"]["Tags"][0]["Key"] == "aws-cdk:subnet-name"
    }

    assert kinds == {"public", "private", "isolated"}
    assert len(subnets) == 3 * 2  # three tiers in the two dev zones
    assert _one(dev, "Network", "AWS::EC2::FlowLog")["TrafficType"] == "ALL"
    endpoint = _one(dev, "Network", "AWS::EC2::VPCEndpoint")
    assert endpoint["VpcEndpointType"] == "Gateway"
    assert "s3" in json.dumps(endpoint["ServiceName"])


def test_every_bucket_is_private_encrypted_and_tls_only(dev):
    buckets = dev.resources("DataLake", "AWS::S3::Bucket")
    policies = dev.resources("DataLake", "AWS::S3::BucketPolicy")

    assert len(buckets) == 4  # raw, curated, models, access logs
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert all(props["PublicAccessBlockConfiguration"].values())
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert props["LifecycleConfiguration"]["Rules"]
    denies_plain_http = [
        p
        for p in policies.values()
        if any(
            s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            for s in p["Properties"]["PolicyDocument"]["Statement"]
        )
    ]
    assert len(denies_plain_http) == 4


def test_models_are_versioned_and_raw_data_is_announced_on_eventbridge(dev):
    buckets = dev.resources("DataLake", "AWS::S3::Bucket")
    models = next(b for k, b in buckets.items() if k.startswith("DataLakeModels"))
    notifications = _one(dev, "DataLake", "Custom::S3BucketNotifications")

    assert models["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert notifications["NotificationConfiguration"] == {"EventBridgeConfiguration": {}}
    assert "DataLakeRaw" in json.dumps(notifications["BucketName"])


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_what_cannot_be_rebuilt_keeps_its_old_versions_for_a_while(environment, request):
    # Raw extracts, the registry and the curated evidence: an overwrite or a delete
    # can be undone for the environment's noncurrent-version period, then it expires.
    synth = request.getfixturevalue(environment)
    days = 365 if environment == "prod" else 30
    buckets = synth.resources("DataLake", "AWS::S3::Bucket")
    for kind in ("Raw", "Models", "Curated"):
        (props,) = [b["Properties"] for k, b in buckets.items() if k.startswith(f"DataLake{kind}")]
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, kind
        rules = props["LifecycleConfiguration"]["Rules"]
        assert {r.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays") for r in rules} >= {
            days
        }, kind


def test_the_database_is_encrypted_isolated_iam_enabled_and_forces_tls(dev):
    instance = _one(dev, "FeatureStore", "AWS::RDS::DBInstance")
    subnet_group = _one(dev, "FeatureStore", "AWS::RDS::DBSubnetGroup")
    parameters = _one(dev, "FeatureStore", "AWS::RDS::DBParameterGroup")

    assert instance["Engine"] == "postgres"
    assert instance["EngineVersion"] == "17.9"
    assert instance["StorageEncrypted"] is True
    assert instance["EnableIAMDatabaseAuthentication"] is True
    assert instance["BackupRetentionPeriod"] == 1
    assert instance.get("PubliclyAccessible") in (None, False)
    assert "isolatedSubnet" in json.dumps(subnet_group["SubnetIds"])
    assert parameters["Parameters"]["rds.force_ssl"] == "1"


def test_clients_reach_the_database_through_an_iam_authenticated_tls_proxy(dev):
    proxy = _one(dev, "FeatureStore", "AWS::RDS::DBProxy")
    rotation = _one(dev, "FeatureStore", "AWS::SecretsManager::RotationSchedule")

    assert proxy["RequireTLS"] is True
    assert proxy["Auth"][0]["IAMAuth"] == "REQUIRED"
    assert rotation["RotationRules"]["ScheduleExpression"] == "rate(30 days)"


def test_the_secret_rotates_from_subnets_that_reach_the_secrets_manager_api(dev):
    (rotation,) = dev.resources("FeatureStore", "AWS::Serverless::Application").values()
    subnets = json.dumps(rotation["Properties"]["Parameters"]["vpcSubnetIds"])

    assert "privateSubnet" in subnets
    assert "isolatedSubnet" not in subnets


def test_the_glue_job_runs_5_1_with_the_wheel_encrypted_and_without_bookmarks(dev):
    # The feature job (the distributed training job beside it: test_training_engine.py).
    (job,) = [
        r["Properties"]
        for r in dev.resources("Features", "AWS::Glue::Job").values()
        if r["Properties"]["Name"] == "credit-risk-dev-features"
    ]
    (security,) = [
        r["Properties"]
        for r in dev.resources("Features", "AWS::Glue::SecurityConfiguration").values()
        if r["Properties"]["Name"] == "credit-risk-dev-features"
    ]
    arguments = job["DefaultArguments"]

    assert job["GlueVersion"] == "5.1"
    assert job["Command"]["Name"] == "glueetl"
    assert job["WorkerType"] == "G.1X"
    assert job["NumberOfWorkers"] == 2
    assert json.dumps(arguments["--extra-py-files"]).endswith('.whl"]]}')
    assert arguments["--job-bookmark-option"] == "job-bookmark-disable"
    assert arguments["--enable-metrics"] == ""
    assert arguments["--enable-continuous-cloudwatch-log"] == "true"
    assert f"--{names.GLUE_ARG_INPUT}" in arguments
    config = security["EncryptionConfiguration"]
    assert config["CloudWatchEncryption"]["CloudWatchEncryptionMode"] == "SSE-KMS"
    assert config["JobBookmarksEncryption"]["JobBookmarksEncryptionMode"] == "CSE-KMS"


def test_functions_are_traced_container_images_with_their_own_handlers(dev):
    functions = dev.resources("Ml", "AWS::Lambda::Function")
    by_handler = {
        f["Properties"]["ImageConfig"]["Command"][0]: f["Properties"] for f in functions.values()
    }

    assert set(by_handler) == {
        names.HANDLER_INFERENCE,
        names.HANDLER_FEATURE_LOADER,
        names.HANDLER_TRAINING,
        names.HANDLER_MONITOR,
        names.HANDLER_BATCH_SCORING,
    }
    for props in by_handler.values():
        assert props["PackageType"] == "Image"
        assert props["TracingConfig"] == {"Mode": "Active"}
    assert "VpcConfig" in by_handler[names.HANDLER_INFERENCE]
    assert "VpcConfig" in by_handler[names.HANDLER_FEATURE_LOADER]
    assert "VpcConfig" in by_handler[names.HANDLER_MONITOR]
    assert "VpcConfig" in by_handler[names.HANDLER_BATCH_SCORING]
    assert "VpcConfig" not in by_handler[names.HANDLER_TRAINING]


def test_inference_and_feature_loader_share_one_image(dev):
    functions = dev.resources("Ml", "AWS::Lambda::Function")
    images = {json.dumps(f["Properties"]["Code"]["ImageUri"]) for f in functions.values()}

    assert len(images) == 2  # the shared inference image and the training image


def test_the_database_url_carries_no_password_and_iam_auth_is_on(dev):
    functions = dev.resources("Ml", "AWS::Lambda::Function")
    inference = next(
        f["Properties"]
        for f in functions.values()
        if f["Properties"]["ImageConfig"]["Command"] == [names.HANDLER_INFERENCE]
    )
    variables = inference["Environment"]["Variables"]

    url = json.dumps(variables[names.ENV_DATABASE_URL])
    assert f"postgresql://{names.DATABASE_USER}@" in url
    assert "password" not in url.lower()
    assert variables[names.ENV_DATABASE_IAM_AUTH] == "true"
    assert variables[names.ENV_POWERTOOLS_SERVICE_NAME] == names.SERVICE_INFERENCE


def test_inference_serves_through_live_on_the_published_version(dev):
    aliases = dev.resources("Ml", "AWS::Lambda::Alias")
    versions = dev.resources("Ml", "AWS::Lambda::Version")
    by_name = {a["Properties"]["Name"]: a["Properties"] for a in aliases.values()}

    # A model release moves no alias: the live function follows the release record.
    # candidate stays (no traffic, no release moves it) while older environments
    # upgrade: their Api stack imports it until it is deployed again.
    assert set(by_name) == {names.LIVE_ALIAS, names.CANDIDATE_ALIAS}
    (version,) = versions
    for alias in by_name.values():
        assert alias["FunctionVersion"] == {"Fn::GetAtt": [version, "Version"]}


def test_the_exports_older_environments_import_are_kept_while_they_upgrade(dev):
    """CloudFormation refuses to delete an export another stack imports, and the
    exporting stack deploys first: the candidate alias (imported by the Api stack
    before model releases moved into the function) and the REST API id (imported by
    the Orchestration stack) stay exported for one release."""

    def exported(unit: str) -> list[str]:
        outputs = dev.template(unit).get("Outputs", {}).values()
        return [json.dumps(o["Value"]) for o in outputs if "Export" in o]

    (candidate,) = [
        logical_id
        for logical_id, alias in dev.resources("Ml", "AWS::Lambda::Alias").items()
        if alias["Properties"]["Name"] == names.CANDIDATE_ALIAS
    ]
    (api,) = dev.resources("Api", "AWS::ApiGateway::RestApi")
    assert json.dumps({"Ref": candidate}) in exported("Ml")
    assert json.dumps({"Ref": api}) in exported("Api")


def test_the_integration_selects_the_alias_through_the_stage_variable(dev):
    methods = dev.resources("Api", "AWS::ApiGateway::Method")
    stage = _one(dev, "Api", "AWS::ApiGateway::Stage")

    for method in methods.values():
        integration = method["Properties"]["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert ":${stageVariables.lambdaAlias}/invocations" in json.dumps(integration["Uri"])
        # Which methods need the key: tests/infra/test_api_reference.py.
    assert stage["StageName"] == names.API_STAGE_NAME
    assert stage["Variables"] == {names.STAGE_VARIABLE_LAMBDA_ALIAS: names.LIVE_ALIAS}
    assert stage["TracingEnabled"] is True
    assert "DestinationArn" in stage["AccessLogSetting"]


def test_api_gateway_may_invoke_the_live_alias_only(dev):
    permissions = dev.resources("Api", "AWS::Lambda::Permission")
    targets = json.dumps([p["Properties"]["FunctionName"] for p in permissions.values()])

    assert len(permissions) == 1
    assert "FunctionsLive" in targets


def test_requests_are_validated_and_usage_is_planned(dev):
    validator = _one(dev, "Api", "AWS::ApiGateway::RequestValidator")
    plan = _one(dev, "Api", "AWS::ApiGateway::UsagePlan")
    key = _one(dev, "Api", "AWS::ApiGateway::ApiKey")

    assert validator["ValidateRequestBody"] is True
    assert plan["Throttle"] == {"RateLimit": 20, "BurstLimit": 40}
    assert plan["Quota"] == {"Limit": 10000, "Period": "DAY"}
    assert "{{resolve:secretsmanager:" in json.dumps(key["Value"])


def test_gateway_errors_speak_the_api_error_shape(dev):
    responses = dev.resources("Api", "AWS::ApiGateway::GatewayResponse")
    by_type = {r["Properties"]["ResponseType"]: r["Properties"] for r in responses.values()}

    template = by_type["INVALID_API_KEY"]["ResponseTemplates"]["application/json"]
    assert '"error": "forbidden"' in template
    assert "$context.requestId" in template
    # Named as the local gateway names them (credit_risk.local_api): one behaviour.
    errors = {
        kind: re.search(r'"error": "(\w+)"', r["ResponseTemplates"]["application/json"])[1]
        for kind, r in by_type.items()
    }
    assert errors == {
        "BAD_REQUEST_BODY": names.GATEWAY_ERROR_INVALID_INPUT,
        "INVALID_API_KEY": names.GATEWAY_ERROR_FORBIDDEN,
        "MISSING_AUTHENTICATION_TOKEN": names.GATEWAY_ERROR_FORBIDDEN,
        "THROTTLED": names.GATEWAY_ERROR_THROTTLED,
        "QUOTA_EXCEEDED": names.GATEWAY_ERROR_THROTTLED,
        "REQUEST_TOO_LARGE": names.GATEWAY_ERROR_TOO_LARGE,
        "DEFAULT_4XX": names.GATEWAY_ERROR_BAD_REQUEST,
        "DEFAULT_5XX": names.GATEWAY_ERROR_UNAVAILABLE,
    }


def test_the_api_url_and_key_secret_are_stack_outputs(dev):
    outputs = dev.template("Api")["Outputs"]

    assert {"ApiUrl", "ApiKeySecretArn"} <= set(outputs)


def test_every_alarm_notifies_the_topic(dev):
    alarms = dev.resources("Monitoring", "AWS::CloudWatch::Alarm")

    assert alarms
    for alarm in alarms.values():
        actions = json.dumps(alarm["Properties"]["AlarmActions"])
        assert "NotificationsTopic" in actions


def test_alarms_cover_the_api_aliases_glue_database_and_model_staleness(dev):
    alarms = dev.resources("Monitoring", "AWS::CloudWatch::Alarm")
    alarm_names = {a["Properties"]["AlarmName"] for a in alarms.values()}

    assert {
        "credit-risk-dev-api-5xx",
        "credit-risk-dev-api-p99-latency",
        "credit-risk-dev-inference-live-errors",
        "credit-risk-dev-inference-live-throttles",
        "credit-risk-dev-features-failures",
        "credit-risk-dev-database-cpu",
        "credit-risk-dev-database-connections",
        "credit-risk-dev-database-free-storage",
        "credit-risk-dev-model-staleness",
    } <= alarm_names


def test_the_release_reads_one_candidate_alarm_by_its_prefix_on_candidate_errors(dev):
    prefix = names.candidate_alarm_prefix("dev")
    candidate = [
        a["Properties"]
        for unit in dev.templates
        for a in dev.resources(unit, "AWS::CloudWatch::Alarm").values()
        if str(a["Properties"].get("AlarmName", "")).startswith(prefix)
    ]

    (alarm,) = candidate
    assert alarm["AlarmName"] == f"{prefix}errors"
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        names.metric_namespace("dev"),
        names.METRIC_CANDIDATE_ERRORS,
    )
    # The dimension the inference handler publishes it with, and no other: an
    # alarm's dimensions must match the published set exactly.
    assert alarm["Dimensions"] == [{"Name": "service", "Value": names.SERVICE_INFERENCE}]
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 60, 1)
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"


def test_unscorable_stored_features_raise_an_alarm_on_the_published_metric(dev):
    alarms = dev.resources("Monitoring", "AWS::CloudWatch::Alarm").values()
    (alarm,) = [
        a["Properties"]
        for a in alarms
        if a["Properties"].get("MetricName") == names.METRIC_UNSCORABLE_FEATURES
    ]
    assert alarm["AlarmName"] == "credit-risk-dev-inference-unscorable-features"
    assert alarm["Namespace"] == names.metric_namespace("dev")
    # What the handler publishes (tests/integration/api/test_unscorable_features.py).
    assert alarm["Dimensions"] == [{"Name": "service", "Value": names.SERVICE_INFERENCE}]
    assert (alarm["Statistic"], alarm["Threshold"]) == ("Sum", 1)
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_the_p99_alarm_uses_the_configured_latency(dev):
    alarms = dev.resources("Monitoring", "AWS::CloudWatch::Alarm")
    latency = next(
        a["Properties"]
        for a in alarms.values()
        if a["Properties"]["AlarmName"] == "credit-risk-dev-api-p99-latency"
    )

    assert latency["ExtendedStatistic"] == "p99"
    assert latency["Threshold"] == 1000


def test_stack_names_carry_the_environment(every_environment):
    env = every_environment.environment

    assert all(
        stack.stack_name.startswith(f"CreditRisk-{env}-") for stack in every_environment.stacks.all
    )
