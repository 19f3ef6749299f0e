"""State machines from the ASL files of step_functions/: substitutions,
permissions, the release function and the triggers."""

from __future__ import annotations

import json

import pytest
from aws_cdk import App, RemovalPolicy, Stack
from aws_cdk import aws_logs as logs

from credit_risk import names
from infra.components.asl_state_machine import AslStateMachine
from infra.stacks.orchestration import BATCH_SCORING, CANARY_RELEASE, TRAINING_PIPELINE
from tests.infra.aws_world import transform_input
from tests.infra.conftest import REPO_ROOT

pytestmark = pytest.mark.infra


def _machines(synth):
    return synth.resources("Orchestration", "AWS::StepFunctions::StateMachine")


def _policy_statements(synth, role_fragment):
    policies = synth.resources("Orchestration", "AWS::IAM::Policy")
    return [
        statement
        for policy in policies.values()
        if role_fragment in json.dumps(policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_a_placeholder_without_a_value_fails_the_synth(tmp_path):
    definition = tmp_path / "broken.asl.json"
    definition.write_text(
        '{"StartAt": "A", "States": {"A": {"Type": "Pass", '
        '"Result": "${NoSuchThing}", "End": true}}}'
    )
    stack = Stack(App(), "Scratch")

    with pytest.raises(ValueError, match="NoSuchThing"):
        AslStateMachine(
            stack,
            "Machine",
            definition=definition,
            substitutions={},
            state_machine_name="scratch",
            log_retention=logs.RetentionDays.ONE_WEEK,
            removal_policy=RemovalPolicy.DESTROY,
        )


def test_both_state_machines_are_inlined_with_their_substitutions(staging):
    machines = {
        m["Properties"]["StateMachineName"]: m["Properties"] for m in _machines(staging).values()
    }

    pipeline = machines["credit-risk-staging-training-pipeline"]
    canary = machines["credit-risk-staging-canary-release"]
    # Inlined (not an S3 asset), placeholders left for CloudFormation to fill.
    assert isinstance(pipeline["DefinitionString"], str)
    assert '"JobName": "${FeatureJobName}"' in pipeline["DefinitionString"]
    assert set(pipeline["DefinitionSubstitutions"]) >= {
        "FeatureJobName",
        "FeatureLoaderFunctionArn",
        "TrainingFunctionArn",
        "CanaryReleaseStateMachineArn",
        "NotificationTopicArn",
    }
    assert "ReleaseFunctionArn" in canary["DefinitionSubstitutions"]
    assert canary["DefinitionSubstitutions"]["LiveAlias"] == names.LIVE_ALIAS
    assert canary["DefinitionSubstitutions"]["CanaryStepsPercent"] == "[10, 50]"
    assert pipeline["DefinitionSubstitutions"]["MaxQuarantinedFraction"] == json.dumps(
        names.MAX_QUARANTINED_FRACTION
    )


def test_the_model_release_settings_of_cdk_json_are_the_release_defaults(
    every_environment, cdk_context
):
    settings = cdk_context[every_environment.environment]["model_release"]
    (canary,) = [
        m["Properties"]
        for m in _machines(every_environment).values()
        if m["Properties"]["StateMachineName"].endswith("-canary-release")
    ]
    definition = json.loads(canary["DefinitionString"])
    defaults = definition["States"]["Defaults"]["Parameters"]["canary"]

    # Each setting's default is its substitution, parsed as JSON by the definition...
    values = {
        key.removesuffix(".$"): json.loads(
            canary["DefinitionSubstitutions"][
                value.removeprefix("States.StringToJson('${").removesuffix("}')")
            ]
        )
        for key, value in defaults.items()
    }
    # ...which is cdk.json's value, the waits in seconds.
    assert values == {
        "steps_percent": settings["steps_percent"],
        "wait_seconds": settings["wait_minutes"] * 60,
        "min_requests": settings["min_requests"],
        "shadow_seconds": settings["shadow_minutes"] * 60,
        "shadow_min_requests": settings["shadow_min_requests"],
        "max_candidate_errors": settings["max_candidate_errors"],
        "max_latency_ratio": settings["max_latency_ratio"],
        "max_approval_rate_change": settings["max_approval_rate_change"],
        "max_swap_share": settings["max_swap_share"],
        "max_score_psi": settings["max_score_psi"],
    }
    # A stage, a promotion and a rollback wait a refresh of every live instance.
    refresh = canary["DefinitionSubstitutions"]["LiveRefreshSeconds"]
    assert json.loads(refresh) == names.MODEL_REFRESH_SECONDS + 5 <= 60


def test_state_machines_trace_and_log_everything(staging):
    for machine in _machines(staging).values():
        props = machine["Properties"]
        assert props["TracingConfiguration"] == {"Enabled": True}
        assert props["LoggingConfiguration"]["Level"] == "ALL"


def test_the_pipeline_may_run_the_glue_job_and_invoke_its_three_functions_only(staging):
    statements = _policy_statements(staging, "TrainingPipeline")
    actions = {action for s in statements for action in _as_list(s["Action"])}

    assert {
        "glue:StartJobRun",
        "glue:GetJobRun",
        "lambda:InvokeFunction",
        "states:StartExecution",
        "sns:Publish",
    } <= actions
    invoke = next(s for s in statements if s["Action"] == "lambda:InvokeFunction")
    # feature loader, training, and the release function's admission check
    assert len(invoke["Resource"]) == 3


def test_the_canary_machine_may_only_invoke_the_release_function_and_notify(staging):
    statements = _policy_statements(staging, "CanaryRelease")
    actions = {action for s in statements for action in _as_list(s["Action"])}

    assert "lambda:UpdateAlias" not in actions
    invoke = next(s for s in statements if s["Action"] == "lambda:InvokeFunction")
    assert "Release" in json.dumps(invoke["Resource"])
    assert not json.dumps(invoke["Resource"]).endswith(':*"]}')


def test_the_release_function_changes_no_function_alias_or_stage(staging):
    statements = _policy_statements(staging, "ReleaseRole")
    actions = {action for s in statements for action in _as_list(s["Action"])}

    assert (
        not {
            "lambda:UpdateAlias",
            "lambda:PublishVersion",
            "lambda:UpdateFunctionConfiguration",
        }
        & actions
    )
    assert not [action for action in actions if action.startswith("apigateway:")]
    # It only warms live up, which re-reads the registry and says what it serves.
    (invoke,) = [s for s in statements if s["Action"] == "lambda:InvokeFunction"]
    assert invoke["Resource"]["Fn::Join"][1][-1] == f":{names.LIVE_ALIAS}"
    assert {"cloudwatch:DescribeAlarms", "cloudwatch:GetMetricData"} <= actions


def test_the_release_function_writes_the_registry_and_reads_the_scoring_log(staging):
    statements = _policy_statements(staging, "ReleaseRole")

    def objects(action: str) -> str:
        return json.dumps([s["Resource"] for s in statements if action in _as_list(s["Action"])])

    # release.json, champion.json and the reports beside the versions
    assert "credit-risk-staging-models-" in objects("s3:PutObject")
    assert f"/{names.REGISTRY_PREFIX}*" in objects("s3:PutObject")
    assert "credit-risk-staging-curated-" not in objects("s3:PutObject")
    # the release's served and shadow scores, for the report
    assert f"/{names.SCORING_LOG_PREFIX}*" in objects("s3:GetObject")


def test_the_release_function_knows_what_it_releases(staging):
    functions = staging.resources("Orchestration", "AWS::Lambda::Function")
    (release,) = [
        f
        for f in functions.values()
        if names.HANDLER_RELEASE in json.dumps(f["Properties"].get("ImageConfig", {}))
    ]
    variables = release["Properties"]["Environment"]["Variables"]

    assert variables[names.ENV_CANDIDATE_ALARM_PREFIX] == names.candidate_alarm_prefix("staging")
    assert "ExportsOutputRefFunctionsInference" in json.dumps(
        variables[names.ENV_INFERENCE_FUNCTION_NAME]
    )
    assert "/registry" in json.dumps(variables[names.ENV_REGISTRY_URI])
    # The lake root the scoring log is delivered under: the curated bucket.
    assert "DataLakeCurated" in json.dumps(variables[names.ENV_LAKE_URI])
    assert variables[names.ENV_DEPLOY_STACK_NAME] == "CreditRisk-staging-Ml"
    # Nothing of the API: a model release never touches the stage.
    assert not [name for name in variables if "API" in name.removeprefix(names.ENV_PREFIX)]


def test_schedule_and_new_raw_data_start_the_pipeline_with_the_configured_defaults(staging):
    rules = staging.resources("Orchestration", "AWS::Events::Rule")
    scheduled = [r for r in rules.values() if "ScheduleExpression" in r["Properties"]]
    pattern_rules = [
        r["Properties"]["EventPattern"] for r in rules.values() if "EventPattern" in r["Properties"]
    ]

    schedule = next(
        r for r in scheduled if r["Properties"]["ScheduleExpression"].startswith("cron")
    )
    assert schedule["Properties"]["ScheduleExpression"] == "cron(0 3 1 * ? *)"
    schedule_input = schedule["Properties"]["Targets"][0]["InputTransformer"]["InputTemplate"]
    assert '"steps_percent":[10,50]' in schedule_input
    assert '"wait_seconds":300' in schedule_input
    assert '"shadow_seconds":600' in schedule_input
    assert '"max_score_psi":0.1' in schedule_input
    raw = next(p for p in pattern_rules if p["source"] == ["aws.s3"])
    assert raw["detail"]["object"]["key"] == [{"wildcard": names.RAW_DELIVERY_MARKER_PATTERN}]
    failures = next(p for p in pattern_rules if p["source"] == ["aws.states"])
    assert set(failures["detail"]["status"]) == {"FAILED", "TIMED_OUT", "ABORTED"}


def _logical_id(synth, resource_type: str, matches) -> str:
    (found,) = [
        logical_id
        for logical_id, resource in synth.resources("Orchestration", resource_type).items()
        if matches(resource["Properties"])
    ]
    return found


def test_a_release_run_that_ends_without_closing_its_release_has_it_closed(staging):
    machine = _logical_id(
        staging,
        "AWS::StepFunctions::StateMachine",
        lambda props: props["StateMachineName"].endswith("-canary-release"),
    )
    function = _logical_id(
        staging,
        "AWS::Lambda::Function",
        lambda props: names.HANDLER_RELEASE in json.dumps(props.get("ImageConfig", {})),
    )
    rules = staging.resources("Orchestration", "AWS::Events::Rule").values()
    (rule,) = [
        r["Properties"]
        for r in rules
        if r["Properties"].get("EventPattern", {}).get("detail", {}).get("stateMachineArn")
        == [{"Ref": machine}]
        and {"Fn::GetAtt": [function, "Arn"]} in [t["Arn"] for t in r["Properties"]["Targets"]]
    ]

    # Every way an execution of the canary machine ends without its own close...
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
    # ...asks the release function to close that execution's release, by its name.
    (target,) = rule["Targets"]
    event = {"detail": {"name": "release-7", "status": "TIMED_OUT"}}
    sent = json.loads(transform_input(event, target["InputTransformer"], "rule"))
    assert sent == {
        "action": names.ACTION_CLOSE_ABANDONED_RELEASE,
        "execution_name": "release-7",
        "status": "TIMED_OUT",
    }
    # EventBridge may invoke the function for this rule only.
    permissions = staging.resources("Orchestration", "AWS::Lambda::Permission").values()
    assert [
        p["Properties"]["SourceArn"]
        for p in permissions
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [function, "Arn"]}
        and p["Properties"]["Principal"] == "events.amazonaws.com"
    ] == [
        {
            "Fn::GetAtt": [
                _logical_id(staging, "AWS::Events::Rule", lambda props: props is rule),
                "Arn",
            ]
        }
    ]


def test_the_release_waits_for_the_metrics_the_names_module_says(staging):
    (canary,) = [
        m["Properties"]
        for m in _machines(staging).values()
        if m["Properties"]["StateMachineName"].endswith("-canary-release")
    ]

    assert json.loads(canary["DefinitionSubstitutions"]["MetricLagSeconds"]) == (
        names.METRIC_LAG_SECONDS
    )


def test_staging_warms_the_live_alias_with_a_health_request(staging):
    rules = staging.resources("Orchestration", "AWS::Events::Rule")
    warm_up = next(
        r for r in rules.values() if r["Properties"].get("ScheduleExpression") == "rate(5 minutes)"
    )

    target = warm_up["Properties"]["Targets"][0]
    event = json.loads(target["Input"])
    assert event["path"] == names.ROUTE_HEALTH
    assert event["httpMethod"] == "GET"
    assert "FunctionsLive" in json.dumps(target["Arn"])


def test_every_definition_of_the_repository_is_deployed(dev):
    present = {
        key
        for key in (TRAINING_PIPELINE, CANARY_RELEASE, BATCH_SCORING)
        if (REPO_ROOT / "step_functions" / f"{key}.asl.json").is_file()
    }

    assert present == {TRAINING_PIPELINE, CANARY_RELEASE, BATCH_SCORING}
    assert set(dev.stacks.orchestration.state_machines) == present
    assert len(_machines(dev)) == len(present)
    assert dev.resources("Orchestration", "AWS::SNS::Topic")


def _as_list(value):
    return value if isinstance(value, list) else [value]
