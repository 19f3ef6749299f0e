"""The model and data monitor in AWS: scoring log delivery, schedule, alarms,
dashboard, permissions, the retraining request (asserted on the synths)."""

from __future__ import annotations

import copy
import json

import pytest

from credit_risk import names
from credit_risk.schemas import FEATURE_NAMES
from infra.config import ConfigurationError, load_config
from infra.stacks.monitoring import MONITOR_ALARMS

pytestmark = pytest.mark.infra


def _function(synth, handler):
    return next(
        f["Properties"]
        for f in synth.resources("Ml", "AWS::Lambda::Function").values()
        if f["Properties"]["ImageConfig"]["Command"] == [handler]
    )


def _statements_of(synth, unit, role_fragment):
    return [
        statement
        for policy in synth.resources(unit, "AWS::IAM::Policy").values()
        if role_fragment in json.dumps(policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _as_list(value):
    return value if isinstance(value, list) else [value]


def test_score_lines_of_the_inference_log_group_reach_the_lake_by_day(dev):
    (subscription,) = dev.resources("Ml", "AWS::Logs::SubscriptionFilter").values()
    (stream,) = dev.resources("Ml", "AWS::KinesisFirehose::DeliveryStream").values()

    assert subscription["Properties"]["FilterPattern"] == names.SCORE_RECORD_FILTER
    assert "InferenceLogs" in json.dumps(subscription["Properties"]["LogGroupName"])
    assert "ScoringLogStream" in json.dumps(subscription["Properties"]["DestinationArn"])
    s3 = stream["Properties"]["ExtendedS3DestinationConfiguration"]
    assert s3["Prefix"] == f"{names.SCORING_LOG_PREFIX}date=!{{timestamp:yyyy-MM-dd}}/"
    assert s3["CompressionFormat"] == "GZIP"
    assert "curated" in json.dumps(s3["BucketARN"])
    processors = [p["Type"] for p in s3["ProcessingConfiguration"]["Processors"]]
    assert processors == ["Decompression", "CloudWatchLogProcessing", "AppendDelimiterToRecord"]


def test_inference_and_monitor_hash_customer_ids_with_the_same_secret(dev):
    inference = _function(dev, names.HANDLER_INFERENCE)["Environment"]["Variables"]
    monitor = _function(dev, names.HANDLER_MONITOR)["Environment"]["Variables"]
    (secret_id,) = dev.resources("Ml", "AWS::SecretsManager::Secret")

    assert inference[names.ENV_ID_HASH_SECRET_ID] == {"Ref": secret_id}
    assert monitor[names.ENV_ID_HASH_SECRET_ID] == {"Ref": secret_id}
    for role in ("InferenceRole", "MonitorRole"):
        reads = [
            s
            for s in _statements_of(dev, "Ml", role)
            if "secretsmanager:GetSecretValue" in _as_list(s["Action"])
        ]
        assert {"Ref": secret_id} in [r for s in reads for r in _as_list(s["Resource"])]


def test_the_monitor_gets_its_thresholds_from_the_environment_settings(prod, cdk_context):
    variables = _function(prod, names.HANDLER_MONITOR)["Environment"]["Variables"]
    settings = load_config(cdk_context, "prod").monitoring

    assert variables["CREDIT_RISK_PSI_ALERT"] == str(settings.psi_alert)
    assert variables["CREDIT_RISK_MAX_FEATURES_AGE_DAYS"] == str(settings.max_features_age_days)
    assert variables["CREDIT_RISK_RETRAIN_ON_QUALITY_DROP"] == "true"
    assert variables["CREDIT_RISK_ADVERSE_IMPACT_FLOOR"] == str(settings.adverse_impact_floor)
    assert variables["CREDIT_RISK_FAIRNESS_MIN_DECISIONS"] == str(settings.fairness_min_decisions)
    assert "CREDIT_RISK_SCHEDULE" not in variables
    assert variables[names.ENV_POWERTOOLS_SERVICE_NAME] == names.SERVICE_MONITOR


def test_training_judges_model_age_with_the_monitors_own_settings(prod, cdk_context):
    # Each version's card weighs its measured model-age curve against the age the
    # monitor enforces: the same values, from the same configuration.
    training = _function(prod, names.HANDLER_TRAINING)["Environment"]["Variables"]
    monitor = _function(prod, names.HANDLER_MONITOR)["Environment"]["Variables"]
    settings = load_config(cdk_context, "prod").monitoring

    for name in ("max_model_age_days", "auc_drop_tolerance"):
        variable = f"{names.ENV_PREFIX}{name.upper()}"
        assert training[variable] == monitor[variable] == str(getattr(settings, name))
    assert f"{names.ENV_PREFIX}PSI_ALERT" not in training


def test_the_monitor_reads_the_lake_writes_only_its_reports_and_may_ask_for_retraining(dev):
    statements = _statements_of(dev, "Ml", "MonitorRole")
    writable = [
        json.dumps(s["Resource"]) for s in statements if "s3:PutObject" in _as_list(s["Action"])
    ]
    readable = json.dumps(
        [s["Resource"] for s in statements if "s3:GetObject" in _as_list(s["Action"])]
    )

    assert len(writable) == 1
    assert f"/{names.MONITORING_PREFIX}*" in writable[0]
    for prefix in (names.SCORING_LOG_PREFIX, names.LABELS_PREFIX, names.CURATED_PREFIX):
        assert f"/{prefix}*" in readable
    put_events = [s for s in statements if "events:PutEvents" in _as_list(s["Action"])]
    assert "event-bus/default" in json.dumps(put_events)


def test_the_monitor_runs_on_its_configured_schedule(staging, cdk_context):
    rules = staging.resources("Monitoring", "AWS::Events::Rule")
    schedule = load_config(cdk_context, "staging").monitoring.schedule

    (rule,) = [r for r in rules.values() if r["Properties"].get("ScheduleExpression") == schedule]
    assert "FunctionsMonitor" in json.dumps(rule["Properties"]["Targets"])


def test_each_monitor_check_has_an_alarm_on_the_topic(dev):
    alarms = {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in dev.resources("Monitoring", "AWS::CloudWatch::Alarm").values()
    }

    for construct_id, metric, _ in MONITOR_ALARMS:
        alarm = alarms[f"credit-risk-dev-monitor-{construct_id.lower()}"]
        assert alarm["MetricName"] == metric
        assert alarm["Namespace"] == names.metric_namespace("dev")
        assert {"Name": "service", "Value": names.SERVICE_MONITOR} in alarm["Dimensions"]
        assert alarm["Threshold"] == 1
        assert "NotificationsTopic" in json.dumps(alarm["AlarmActions"])
    assert "credit-risk-dev-monitor-errors" in alarms


def test_the_dashboard_shows_psi_per_feature_skew_staleness_and_live_quality(dev):
    (dashboard,) = dev.resources("Monitoring", "AWS::CloudWatch::Dashboard").values()
    # The body is a Fn::Join of JSON text around tokens (alarm ARNs): its text parts.
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    body = "".join(part for part in parts if isinstance(part, str))

    for feature in (*FEATURE_NAMES, "score"):
        assert f'"feature","{feature}"' in body
    for metric in (
        names.METRIC_SKEW_MISMATCHES,
        names.METRIC_MODEL_AGE_DAYS,
        names.METRIC_FEATURES_AGE_DAYS,
        names.METRIC_LIVE_AUC,
    ):
        assert metric in body


def test_a_retraining_request_from_the_monitor_starts_the_training_pipeline(staging):
    rules = staging.resources("Orchestration", "AWS::Events::Rule")

    (rule,) = [
        r["Properties"]
        for r in rules.values()
        if r["Properties"].get("EventPattern", {}).get("source") == [names.MONITOR_EVENT_SOURCE]
    ]
    assert rule["EventPattern"]["detail-type"] == [names.RETRAINING_REQUESTED]
    target = rule["Targets"][0]
    assert "TrainingPipeline" in json.dumps(target["Arn"])
    assert '"trigger":"monitor"' in target["InputTransformer"]["InputTemplate"]


def test_an_alert_psi_not_above_the_warning_is_refused(cdk_context):
    broken = copy.deepcopy(cdk_context)
    broken["dev"]["monitoring"]["psi_alert"] = broken["dev"]["monitoring"]["psi_warn"]

    with pytest.raises(ConfigurationError, match="psi_alert"):
        load_config(broken, "dev")
