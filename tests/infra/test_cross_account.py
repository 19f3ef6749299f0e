"""Environments in another account than the release pipeline's.

The pipeline's smoke test reads each environment's client-key secret. In another
account that needs a key of the secret's own (aws/secretsmanager cannot be
shared), a key policy and a secret resource policy naming the pipeline account,
and a kms:Decrypt in the smoke test's role. The pipeline app is synthesized once
for this module, cdk-nag on, with staging in an account of its own, prod in the
pipeline's (its account left to the default) and dev not smoke-tested.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from infra.stacks.pipeline import PIPELINE_STACK_NAME
from tests.infra.conftest import REPO_ROOT, TRIAGED_WARNINGS, cfn_lint

pytestmark = pytest.mark.infra

PIPELINE_ACCOUNT = "111111111111"
STAGING_ACCOUNT = "222222222222"


@pytest.fixture(scope="module")
def assembly(cdk_context, library_wheel, tmp_path_factory) -> dict[str, Any]:
    """Templates of the pipeline stack and of each environment's Api stack."""
    from aws_cdk import App

    from infra.app import build_pipeline
    from infra.environment import Sources
    from infra.nag import add_nag_checks

    context = copy.deepcopy(cdk_context)
    context["pipeline"]["account"] = PIPELINE_ACCOUNT
    context["staging"]["account"] = STAGING_ACCOUNT
    context["prod"]["account"] = None
    outdir = tmp_path_factory.mktemp("cdk-cross-account")
    with pytest.MonkeyPatch.context() as env:
        # Accounts left to the default must stay unknown at synth, as offline.
        env.delenv("CDK_DEFAULT_ACCOUNT", raising=False)
        app = App(context=context, outdir=str(outdir), analytics_reporting=True)
        pipeline = build_pipeline(app, Sources.of_repository(REPO_ROOT, wheel=library_wheel))
        add_nag_checks(app)
        app.synth()
    files = {"pipeline": outdir / f"{PIPELINE_STACK_NAME}.template.json"}
    for name, stage in pipeline.stages.items():
        files[name] = Path(stage.outdir) / stage.stacks.api.template_file
    return {
        "files": files,
        "templates": {name: json.loads(path.read_text()) for name, path in files.items()},
        "region": context["pipeline"]["region"],
    }


def _of_type(template: dict, resource_type: str) -> dict[str, dict]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == resource_type}


def _one(template: dict, resource_type: str) -> tuple[str, dict]:
    (item,) = _of_type(template, resource_type).items()
    return item


def _principal_accounts(statement: dict) -> str:
    return json.dumps(statement.get("Principal", {}))


def test_a_secret_in_another_account_is_encrypted_with_its_own_rotated_key(assembly):
    api = assembly["templates"]["staging"]
    key_id, key = _one(api, "AWS::KMS::Key")
    _, secret = _one(api, "AWS::SecretsManager::Secret")

    assert key["Properties"]["EnableKeyRotation"] is True
    assert secret["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    tags = {t["Key"]: t["Value"] for t in key["Properties"]["Tags"]}
    assert tags["credit-risk:purpose"] == "client-api-key"
    assert tags["environment"] == "staging"


def test_the_key_policy_lets_the_pipeline_account_decrypt_only_through_secrets_manager(
    assembly,
):
    api = assembly["templates"]["staging"]
    _, key = _one(api, "AWS::KMS::Key")
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    for_pipeline = [s for s in statements if PIPELINE_ACCOUNT in _principal_accounts(s)]

    assert len(for_pipeline) == 1
    assert for_pipeline[0]["Action"] == "kms:Decrypt"
    assert for_pipeline[0]["Condition"] == {
        "StringEquals": {"kms:ViaService": f"secretsmanager.{assembly['region']}.amazonaws.com"}
    }


def test_the_secret_policy_lets_the_pipeline_account_read_it_and_nothing_more(assembly):
    api = assembly["templates"]["staging"]
    secret_id, _ = _one(api, "AWS::SecretsManager::Secret")
    _, policy = _one(api, "AWS::SecretsManager::ResourcePolicy")
    (statement,) = policy["Properties"]["ResourcePolicy"]["Statement"]

    assert policy["Properties"]["SecretId"] == {"Ref": secret_id}
    assert PIPELINE_ACCOUNT in _principal_accounts(statement)
    assert STAGING_ACCOUNT not in _principal_accounts(statement)
    assert sorted(statement["Action"]) == [
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
    ]
    # The smoke test gets the full ARN, which a caller in another account needs.
    assert api["Outputs"]["ApiKeySecretArn"]["Value"] == {"Ref": secret_id}


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_an_environment_in_the_pipeline_account_keeps_the_default_key_and_no_policy(
    assembly, environment
):
    api = assembly["templates"][environment]
    _, secret = _one(api, "AWS::SecretsManager::Secret")

    assert not _of_type(api, "AWS::KMS::Key")
    assert not _of_type(api, "AWS::SecretsManager::ResourcePolicy")
    assert "KmsKeyId" not in secret["Properties"]


def _smoke_test_statements(pipeline: dict, environment: str) -> list[dict]:
    (codepipeline,) = _of_type(pipeline, "AWS::CodePipeline::Pipeline").values()
    (smoke,) = [
        action
        for stage in codepipeline["Properties"]["Stages"]
        for action in stage["Actions"]
        if action["Name"] == f"SmokeTest-{environment}"
    ]
    project = pipeline["Resources"][smoke["Configuration"]["ProjectName"]["Ref"]]
    role = project["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in _of_type(pipeline, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _decrypts_outside_the_pipeline(statement: dict) -> bool:
    # Every CodeBuild role also uses the pipeline's own artifact key (a GetAtt).
    resource = statement["Resource"]
    return "kms:Decrypt" in json.dumps(statement["Action"]) and isinstance(resource, str)


def test_the_smoke_test_may_decrypt_with_the_tagged_key_of_its_environment_only(assembly):
    region = assembly["region"]
    statements = _smoke_test_statements(assembly["templates"]["pipeline"], "staging")
    (secret_read,) = [s for s in statements if s["Action"] == "secretsmanager:GetSecretValue"]
    (decrypt,) = [s for s in statements if _decrypts_outside_the_pipeline(s)]

    assert secret_read["Resource"] == f"arn:aws:secretsmanager:{region}:{STAGING_ACCOUNT}:secret:*"
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Resource"] == f"arn:aws:kms:{region}:{STAGING_ACCOUNT}:key/*"
    assert decrypt["Condition"] == {
        "StringEquals": {
            "kms:ViaService": f"secretsmanager.{region}.amazonaws.com",
            "aws:ResourceTag/credit-risk:purpose": "client-api-key",
            "aws:ResourceTag/deployment": "staging",
        }
    }


def test_the_smoke_test_of_an_environment_in_the_pipeline_account_needs_no_kms_grant(assembly):
    statements = _smoke_test_statements(assembly["templates"]["pipeline"], "prod")
    (secret_read,) = [s for s in statements if s["Action"] == "secretsmanager:GetSecretValue"]

    assert PIPELINE_ACCOUNT in json.dumps(secret_read["Resource"])
    assert not [s for s in statements if _decrypts_outside_the_pipeline(s)]


def test_cfn_lint_finds_no_errors_in_the_cross_account_templates(assembly):
    files = [assembly["files"]["pipeline"], assembly["files"]["staging"]]
    findings = cfn_lint(files, assembly["region"])

    assert not [f for f in findings if f[0].startswith("E")], findings
    assert {f[0] for f in findings} <= TRIAGED_WARNINGS, findings


def _release_guard(pipeline: dict, environment: str) -> tuple[dict, list[dict]]:
    """The guard's CodeBuild project and its role's statements."""
    (codepipeline,) = _of_type(pipeline, "AWS::CodePipeline::Pipeline").values()
    (guard,) = [
        action
        for stage in codepipeline["Properties"]["Stages"]
        for action in stage["Actions"]
        if action["Name"] == f"ReleaseGuard-{environment}"
    ]
    project = pipeline["Resources"][guard["Configuration"]["ProjectName"]["Ref"]]["Properties"]
    role = project["ServiceRole"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in _of_type(pipeline, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    return project, statements


def test_the_release_guard_reads_another_account_through_its_lookup_role(assembly):
    region = assembly["region"]
    project, statements = _release_guard(assembly["templates"]["pipeline"], "staging")
    variables = {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]}
    reader = (
        f"arn:aws:iam::{STAGING_ACCOUNT}:role/cdk-hnb659fds-lookup-role-{STAGING_ACCOUNT}-{region}"
    )

    assert variables["READER_ROLE_ARN"] == reader
    assert variables["CANARY_RELEASE_ARN"] == (
        f"arn:aws:states:{region}:{STAGING_ACCOUNT}:stateMachine:credit-risk-staging-canary-release"
    )
    assert json.loads(project["Source"]["BuildSpec"])["phases"]["build"]["commands"] == [
        'python3 infra/release_guard.py --state-machine-arn "$CANARY_RELEASE_ARN" '
        '--api-stack "$API_STACK" --role-arn "$READER_ROLE_ARN"'
    ]
    assert [s for s in statements if s["Action"] == "sts:AssumeRole"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Resource": reader}
    ]


def test_the_release_guard_of_the_pipeline_account_lists_executions_itself(assembly):
    project, statements = _release_guard(assembly["templates"]["pipeline"], "prod")

    assert "--role-arn" not in project["Source"]["BuildSpec"]
    assert [s["Action"] for s in statements if "states:" in json.dumps(s["Action"])] == [
        "states:ListExecutions"
    ]
