"""The release pipeline: stage order, approval, smoke tests, source, synth step.

The pipeline app (all three environments as stages) is synthesized once, with
cdk-nag on: reaching the assertions means the pipeline stack is nag clean.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import ConfigurationError, load_pipeline_config
from infra.stacks.pipeline import PIPELINE_ASSEMBLY_DIR, PIPELINE_STACK_NAME, synth_step_spec
from tests.infra.conftest import TRIAGED_WARNINGS, cfn_lint

pytestmark = pytest.mark.infra

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILDSPEC = REPO_ROOT / "buildspec.yml"


@pytest.fixture(scope="session")
def pipeline_template_file(cdk_context, library_wheel, tmp_path_factory) -> Path:
    """The synthesized template of the pipeline stack."""
    from aws_cdk import App

    from infra.app import build_pipeline
    from infra.environment import Sources
    from infra.nag import add_nag_checks

    outdir = tmp_path_factory.mktemp("cdk-pipeline")
    # With the CDK metadata resource, as `cdk synth` writes it (cfn-lint reads
    # it to recognise CDK output).
    app = App(context=cdk_context, outdir=str(outdir), analytics_reporting=True)
    build_pipeline(app, Sources.of_repository(REPO_ROOT, wheel=library_wheel))
    add_nag_checks(app)
    app.synth()
    return outdir / f"{PIPELINE_STACK_NAME}.template.json"


@pytest.fixture(scope="session")
def pipeline_template(pipeline_template_file) -> dict[str, Any]:
    return json.loads(pipeline_template_file.read_text())


def _of_type(template: dict, resource_type: str) -> dict[str, dict]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == resource_type}


def _stages(template: dict) -> dict[str, list[dict]]:
    (pipeline,) = _of_type(template, "AWS::CodePipeline::Pipeline").values()
    return {stage["Name"]: stage["Actions"] for stage in pipeline["Properties"]["Stages"]}


def _project_of(template: dict, action: dict) -> dict:
    return template["Resources"][action["Configuration"]["ProjectName"]["Ref"]]


def _policy_statements_of(template: dict, role_logical_id: str) -> list[dict]:
    return [
        statement
        for policy in _of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_a_commit_goes_through_synth_self_update_assets_then_dev_staging_prod(pipeline_template):
    # Every market's dev, then staging, then prod; each standby's lake before its
    # primary, which replicates into it, and a warm standby's other stacks after it.
    assert list(_stages(pipeline_template)) == [
        "Source",
        "Build",
        "UpdatePipeline",
        "Assets",
        "Dev",
        "MxDev",
        "CoDev",
        "StagingStandbyLake",
        "Staging",
        "MxStagingStandbyLake",
        "MxStaging",
        "CoStagingStandbyLake",
        "CoStaging",
        "ProdStandbyLake",
        "Prod",
        "ProdStandby",
        "MxProdStandbyLake",
        "MxProd",
        "MxProdStandby",
        "CoProdStandbyLake",
        "CoProd",
        "CoProdStandby",
    ]


def _deployed_stacks(actions: list[dict]) -> dict[str, str]:
    """Stack name -> region of each stack a stage deploys."""
    return {
        a["Configuration"]["StackName"]: a.get("Region", "eu-west-1")
        for a in actions
        if a["ActionTypeId"]["Category"] == "Deploy"
        and a["Configuration"]["ActionMode"] == "CHANGE_SET_EXECUTE"
    }


@pytest.mark.parametrize(
    ("stage", "deployment", "region", "units"),
    [
        ("ProdStandbyLake", "prod", "eu-central-1", 1),
        ("ProdStandby", "prod", "eu-central-1", 8),  # warm: every stack
        ("StagingStandbyLake", "staging", "eu-central-1", 1),  # pilot light: the lake only
        ("MxProdStandby", "mx-prod", "us-west-2", 8),
    ],
)
def test_a_standby_stage_deploys_the_deployment_in_its_standby_region(
    pipeline_template, stage, deployment, region, units
):
    stacks = _deployed_stacks(_stages(pipeline_template)[stage])

    assert len(stacks) == units
    assert set(stacks.values()) == {region}
    assert f"CreditRisk-{deployment}-DataLake" in stacks


def test_each_market_is_deployed_in_its_own_region_with_its_own_stacks(pipeline_template):
    stages = _stages(pipeline_template)

    assert set(_deployed_stacks(stages["MxProd"]).values()) == {"us-east-2"}
    assert set(_deployed_stacks(stages["CoDev"]).values()) == {"sa-east-1"}
    assert all(name.startswith("CreditRisk-co-dev-") for name in _deployed_stacks(stages["CoDev"]))


def test_docker_images_and_files_are_published_before_any_deployment(pipeline_template):
    assets = {action["Name"] for action in _stages(pipeline_template)["Assets"]}

    assert assets == {"DockerAssets", "FileAssets"}


def test_the_source_is_the_configured_connection_and_a_push_starts_a_release(
    pipeline_template, cdk_context
):
    (source,) = _stages(pipeline_template)["Source"]
    settings = cdk_context["pipeline"]

    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"] == {
        "ConnectionArn": settings["connection_arn"],
        "FullRepositoryId": settings["repository"],
        "BranchName": settings["branch"],
        "DetectChanges": True,
    }


@pytest.mark.parametrize("market", ["", "Mx", "Co"])
def test_each_market_s_prod_waits_for_its_own_approval_before_its_first_deployment(
    pipeline_template, market
):
    stages = _stages(pipeline_template)
    # Its standby deploys first, so the approval opens that stage.
    first = stages[f"{market}ProdStandbyLake"]
    approvals = [a for a in first if a["ActionTypeId"]["Category"] == "Approval"]
    deployments = [a for a in first if a["ActionTypeId"]["Category"] == "Deploy"]

    assert len(approvals) == 1
    assert approvals[0]["Name"] == f"Approve-{(market.lower() + '-') if market else ''}prod"
    assert approvals[0]["RunOrder"] < min(a["RunOrder"] for a in deployments)
    for later in ("Prod", "ProdStandby"):
        assert all(a["ActionTypeId"]["Category"] != "Approval" for a in stages[market + later])
    for automatic in ("Dev", "Staging", "StagingStandbyLake"):
        assert all(
            a["ActionTypeId"]["Category"] != "Approval" for a in stages[f"{market}{automatic}"]
        )


@pytest.mark.parametrize("stage", ["Staging", "Prod", "MxStaging", "CoProd"])
def test_staging_and_prod_are_smoke_tested_after_every_stack_is_deployed(pipeline_template, stage):
    actions = _stages(pipeline_template)[stage]
    (smoke,) = [a for a in actions if a["Name"].startswith("SmokeTest-")]
    last_deploy = max(a["RunOrder"] for a in actions if a["ActionTypeId"]["Category"] == "Deploy")
    variables = {
        v["name"]: v["value"] for v in json.loads(smoke["Configuration"]["EnvironmentVariables"])
    }
    project = _project_of(pipeline_template, smoke)
    commands = json.dumps(project["Properties"]["Source"]["BuildSpec"])

    assert smoke["RunOrder"] > last_deploy
    # Stack outputs of CreditRisk-<env>-Api, resolved when the action runs.
    assert variables["API_URL"].endswith(".ApiUrl}")
    assert variables["API_KEY_SECRET_ARN"].endswith(".ApiKeySecretArn}")
    assert "python3 infra/smoke_test.py" in commands
    assert "SMOKE_CUSTOMER_ID" in json.dumps(project["Properties"]["Environment"])


@pytest.mark.parametrize(
    ("stage", "environment"),
    [("Dev", "dev"), ("Staging", "staging"), ("Prod", "prod"), ("MxProd", "mx-prod")],
)
def test_no_environment_is_deployed_while_a_model_release_runs_in_it(
    pipeline_template, stage, environment
):
    actions = _stages(pipeline_template)[stage]
    (guard,) = [a for a in actions if a["Name"].startswith("ReleaseGuard-")]
    deploys = [a for a in actions if a["ActionTypeId"]["Category"] == "Deploy"]
    approvals = [a for a in actions if a["ActionTypeId"]["Category"] == "Approval"]
    project = _project_of(pipeline_template, guard)["Properties"]
    variables = {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]}
    role = project["ServiceRole"]["Fn::GetAtt"][0]
    lists = [
        s
        for s in _policy_statements_of(pipeline_template, role)
        if s["Action"] == "states:ListExecutions"
    ]

    assert guard["RunOrder"] < min(a["RunOrder"] for a in deploys)
    # After an approval, which may wait for hours: right before the stacks.
    assert all(guard["RunOrder"] > a["RunOrder"] for a in approvals)
    assert json.loads(project["Source"]["BuildSpec"])["phases"]["build"]["commands"] == [
        'python3 infra/release_guard.py --state-machine-arn "$CANARY_RELEASE_ARN"'
        ' --api-stack "$API_STACK"'
    ]
    machine = json.dumps(variables["CANARY_RELEASE_ARN"])
    assert f":stateMachine:credit-risk-{environment}-canary-release" in machine
    assert len(lists) == 1
    assert json.dumps(lists[0]["Resource"]) == machine
    # ...nor while an operator's canary is on the stage: the Api stack's URL
    # output, then its stage, and nothing more.
    assert variables["API_STACK"] == f"CreditRisk-{environment}-Api"
    reads = {
        s["Action"]: json.dumps(s["Resource"])
        for s in _policy_statements_of(pipeline_template, role)
        if s["Action"] in ("cloudformation:DescribeStacks", "apigateway:GET")
    }
    assert f":stack/CreditRisk-{environment}-Api/*" in reads["cloudformation:DescribeStacks"]
    assert reads["apigateway:GET"].endswith('::/restapis/*/stages/api"')


def test_dev_has_no_smoke_test(pipeline_template):
    assert all(not a["Name"].startswith("SmokeTest-") for a in _stages(pipeline_template)["Dev"])


@pytest.mark.parametrize(("stage", "environment"), [("Staging", "staging"), ("Prod", "prod")])
def test_a_smoke_test_may_read_only_its_environments_client_key_secret(
    pipeline_template, stage, environment
):
    (smoke,) = [a for a in _stages(pipeline_template)[stage] if a["Name"].startswith("SmokeTest-")]
    role = _project_of(pipeline_template, smoke)["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    statements = _policy_statements_of(pipeline_template, role)
    secret_reads = [s for s in statements if "secretsmanager:GetSecretValue" in str(s["Action"])]

    assert len(secret_reads) == 1
    assert secret_reads[0]["Action"] == "secretsmanager:GetSecretValue"
    assert secret_reads[0]["Condition"] == {
        "StringEquals": {
            "secretsmanager:ResourceTag/credit-risk:purpose": "client-api-key",
            "secretsmanager:ResourceTag/deployment": environment,
        }
    }
    assert not any("secretsmanager:PutSecretValue" in str(s["Action"]) for s in statements)


def test_the_synth_step_runs_buildspec_yml_and_outputs_the_pipeline_assembly(pipeline_template):
    (synth,) = _stages(pipeline_template)["Build"]
    spec = yaml.safe_load(
        _project_of(pipeline_template, synth)["Properties"]["Source"]["BuildSpec"]
    )
    file_spec = yaml.safe_load(BUILDSPEC.read_text())

    assert spec["phases"]["build"]["commands"] == file_spec["phases"]["build"]["commands"]
    assert spec["phases"]["install"] == file_spec["phases"]["install"]
    assert spec["reports"] == file_spec["reports"]
    assert spec["cache"] == file_spec["cache"]
    assert spec["artifacts"]["base-directory"] == PIPELINE_ASSEMBLY_DIR


def test_cfn_lint_finds_no_errors_in_the_pipeline_template(pipeline_template_file, cdk_context):
    findings = cfn_lint([pipeline_template_file], cdk_context["pipeline"]["region"])

    assert not [f for f in findings if f[0].startswith("E")], findings
    assert {f[0] for f in findings} <= TRIAGED_WARNINGS, findings


def test_failures_and_pending_approvals_are_notified_on_an_encrypted_topic(pipeline_template):
    rules = _of_type(pipeline_template, "AWS::CodeStarNotifications::NotificationRule")
    events = {e for rule in rules.values() for e in rule["Properties"]["EventTypeIds"]}
    (topic,) = _of_type(pipeline_template, "AWS::SNS::Topic").values()

    assert "codepipeline-pipeline-pipeline-execution-failed" in events
    assert "codepipeline-pipeline-manual-approval-needed" in events
    assert "KmsMasterKeyId" in topic["Properties"]


# --- buildspec.yml and the pipeline settings (no synth) -----------------------


def test_buildspec_runs_the_readme_test_command_lint_and_every_synth():
    spec = yaml.safe_load(BUILDSPEC.read_text())
    build = spec["phases"]["build"]["commands"]
    readme = (REPO_ROOT / "README.md").read_text()

    assert "make test" in readme
    assert any(command.startswith("make test") for command in build)
    assert "make lint" in spec["phases"]["pre_build"]["commands"]
    assert "make synth" in build
    # ...and `make synth` writes the assembly the pipeline deploys from.
    synth_recipe = (REPO_ROOT / "Makefile").read_text().split("\nsynth:", 1)[1].split("\n\n")[0]
    assert f"-c release_pipeline=true -o {PIPELINE_ASSEMBLY_DIR}" in synth_recipe
    assert spec["reports"]["pytest"]["file-format"] == "JUNITXML"
    assert spec["artifacts"]["base-directory"] == "cdk.out"


def test_the_synth_step_takes_the_build_commands_and_leaves_the_artifacts_to_cdk():
    commands, partial = synth_step_spec(BUILDSPEC)

    assert commands[0] == "mkdir -p reports"
    assert "build" not in partial["phases"]
    assert "artifacts" not in partial
    assert partial["cache"]["paths"]


def test_a_buildspec_without_build_commands_is_refused(tmp_path):
    broken = tmp_path / "buildspec.yml"
    broken.write_text("version: 0.2\nphases:\n  install:\n    commands: [make install]\n")

    with pytest.raises(ConfigurationError, match="no build-phase commands"):
        synth_step_spec(broken)


def test_the_pipeline_settings_in_cdk_json_are_valid(cdk_context):
    config = load_pipeline_config(cdk_context)

    assert config.branch == "main"


def test_a_malformed_connection_arn_is_refused_with_the_field_named(cdk_context):
    broken = copy.deepcopy(cdk_context)
    broken["pipeline"]["connection_arn"] = "github.com/acme"

    with pytest.raises(ConfigurationError, match="connection_arn"):
        load_pipeline_config(broken)


def test_a_missing_pipeline_section_is_refused():
    with pytest.raises(ConfigurationError, match="pipeline"):
        load_pipeline_config({})


def test_the_locked_dependencies_are_audited_weekly_and_failures_notified(
    pipeline_template, cdk_context
):
    projects = _of_type(pipeline_template, "AWS::CodeBuild::Project")
    (audit_id,) = [k for k in projects if k.startswith("DependencyAuditProject")]
    audit = projects[audit_id]["Properties"]
    rules = _of_type(pipeline_template, "AWS::Events::Rule")
    notifications = _of_type(pipeline_template, "AWS::CodeStarNotifications::NotificationRule")

    spec = yaml.safe_load(audit["Source"]["BuildSpec"])
    assert spec["phases"]["build"]["commands"] == ["make audit"]
    assert audit["Source"]["Type"] == "S3"
    (schedule,) = [
        r["Properties"]
        for r in rules.values()
        if audit_id in json.dumps(r["Properties"].get("Targets", []))
    ]
    expected = cdk_context["pipeline"]["dependency_audit_schedule"]
    assert schedule["ScheduleExpression"] == expected
    on_failure = [
        n["Properties"]
        for n in notifications.values()
        if audit_id in json.dumps(n["Properties"]["Resource"])
    ]
    assert on_failure[0]["EventTypeIds"] == ["codebuild-project-build-state-failed"]


def test_make_audit_fails_on_vulnerabilities_and_lists_outdated_packages():
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = makefile.split("\naudit:", 1)[1].split("\n\n")[0]

    assert "pip-audit" in recipe
    assert "--strict" in recipe
    assert "--outdated" in recipe
    assert "npm audit" in recipe


def _s3_writes(statements: list[dict]) -> list[dict]:
    def actions(statement: dict) -> list[str]:
        action = statement["Action"]
        return [action] if isinstance(action, str) else action

    return [
        statement
        for statement in statements
        if any(a.startswith("s3:Put") or a.startswith("s3:Delete") for a in actions(statement))
    ]


def test_prod_publishes_its_openapi_document_once_its_smoke_test_passed(pipeline_template):
    stages = _stages(pipeline_template)
    # Only the release client developers get is published, after its smoke test
    for stage in ("Dev", "Staging"):
        assert not [a for a in stages[stage] if a["Name"].startswith("PublishOpenApi-")]
    (smoke,) = [a for a in stages["Prod"] if a["Name"].startswith("SmokeTest-")]
    (publish,) = [a for a in stages["Prod"] if a["Name"].startswith("PublishOpenApi-")]
    assert publish["RunOrder"] > smoke["RunOrder"]
    # from the released commit, with the script, into the docs bucket of the output
    action_env = {
        v["name"]: v["value"] for v in json.loads(publish["Configuration"]["EnvironmentVariables"])
    }
    assert action_env["COMMIT_ID"].startswith("#{Source@")
    assert action_env["COMMIT_ID"].endswith(".CommitId}")
    project = _project_of(pipeline_template, publish)
    spec = yaml.safe_load(project["Properties"]["Source"]["BuildSpec"])
    assert "python3 infra/publish_openapi.py" in spec["phases"]["build"]["commands"]
    (bucket_id,) = [
        logical_id
        for logical_id, bucket in _of_type(pipeline_template, "AWS::S3::Bucket").items()
        if bucket["Properties"].get("VersioningConfiguration") == {"Status": "Enabled"}
    ]
    project_env = {
        v["Name"]: v["Value"] for v in project["Properties"]["Environment"]["EnvironmentVariables"]
    }
    assert project_env["DOCS_BUCKET"] == {"Ref": bucket_id}
    assert pipeline_template["Outputs"]["ApiDocsBucketName"]["Value"] == {"Ref": bucket_id}
    # and it may write documents under openapi/ of that bucket, nothing else
    role = project["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    (write,) = _s3_writes(_policy_statements_of(pipeline_template, role))
    assert write["Action"] == "s3:PutObject"
    assert write["Resource"] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/openapi/*"]]
    }


def test_the_docs_bucket_is_private_encrypted_tls_only_logged_and_kept(pipeline_template):
    buckets = _of_type(pipeline_template, "AWS::S3::Bucket")
    (docs_id,) = [k for k, b in buckets.items() if "VersioningConfiguration" in b["Properties"]]
    docs = buckets[docs_id]
    props = docs["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
    assert props["LoggingConfiguration"]["DestinationBucketName"]["Ref"] in buckets
    assert docs["DeletionPolicy"] == "Retain"
    policies = [
        p["Properties"]
        for p in _of_type(pipeline_template, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": docs_id}
    ]
    (denies_plain_http,) = [
        s
        for p in policies
        for s in p["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert denies_plain_http["Action"] == "s3:*"
