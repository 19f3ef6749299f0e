"""Security checks on every synthesized template: cfn-lint, IAM, secrets.

cdk-nag itself needs no test of its own here: it runs inside every synth of
the session fixtures, and a synth with an unacknowledged finding raises.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.conftest import TRIAGED_WARNINGS, cfn_lint

pytestmark = pytest.mark.infra

# CDK adds these wildcard actions when a construct reads its code assets from the
# CDK bootstrap bucket (the Glue job's script and wheel); no data bucket is named.
ASSET_BUCKET_ACTIONS = {"s3:GetObject*", "s3:GetBucket*", "s3:List*"}


def test_cfn_lint_finds_no_errors(every_environment):
    templates = sorted(every_environment.outdir.glob("*.template.json"))
    findings = cfn_lint(templates, every_environment.stacks.network.region)

    assert len(templates) == len(every_environment.stacks.all)
    assert not [f for f in findings if f[0].startswith("E")], findings
    assert {f[0] for f in findings} <= TRIAGED_WARNINGS, findings


def test_cfn_lint_reports_an_invalid_template(tmp_path):
    # The check above is only worth something if the linter really runs.
    template = tmp_path / "broken.template.json"
    template.write_text(
        json.dumps({"Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"Nope": 1}}}})
    )

    assert [rule for rule, _, _ in cfn_lint([template], "eu-west-1")] == ["E3002"]


def _statements(synth):
    for unit, template in synth.templates.items():
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::Role"):
                documents = [resource["Properties"].get("PolicyDocument")] + [
                    p["PolicyDocument"] for p in resource["Properties"].get("Policies", [])
                ]
                for document in filter(None, documents):
                    for statement in document["Statement"]:
                        yield unit, logical_id, statement


def test_no_wildcard_actions_on_data_resources(every_environment):
    offenders = []
    for unit, logical_id, statement in _statements(every_environment):
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        wildcards = {a for a in actions if "*" in a}
        if not wildcards:
            continue
        on_assets = wildcards <= ASSET_BUCKET_ACTIONS and "cdk-hnb659fds-assets" in json.dumps(
            statement["Resource"]
        )
        if not on_assets:
            offenders.append((unit, logical_id, sorted(wildcards)))

    assert offenders == []


def test_no_secret_sits_in_a_function_environment(every_environment):
    functions = every_environment.resources("Ml", "AWS::Lambda::Function")
    suspicious = re.compile(r"password|secret|token|api_?key", re.IGNORECASE)
    # Where a secret lives (its id, a Ref to the secret) is fine to pass; a value is not.
    reference = re.compile(r"_SECRET_ID$")

    for function in functions.values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert not [
            name for name in variables if suspicious.search(name) and not reference.search(name)
        ]
        for name in filter(reference.search, variables):
            assert set(variables[name]) == {"Ref"}
        assert "secretsmanager" not in json.dumps(variables)


def test_secrets_are_generated_and_only_referenced(every_environment):
    checked = {
        "AWS::SecretsManager::Secret": 0,
        "AWS::RDS::DBInstance": 0,
        "AWS::ApiGateway::ApiKey": 0,
    }
    for template in every_environment.templates.values():
        for resource in template["Resources"].values():
            props, kind = resource.get("Properties", {}), resource["Type"]
            if kind == "AWS::SecretsManager::Secret":
                assert "SecretString" not in props
                assert "GenerateSecretString" in props
            elif kind == "AWS::RDS::DBInstance":
                assert "{{resolve:secretsmanager:" in json.dumps(props["MasterUserPassword"])
            elif kind == "AWS::ApiGateway::ApiKey":
                assert "{{resolve:secretsmanager:" in json.dumps(props["Value"])
            else:
                continue
            checked[kind] += 1

    assert all(checked.values()), checked


def test_an_unacknowledged_finding_fails_the_synth(tmp_path):
    from aws_cdk import App, Stack
    from aws_cdk import aws_sns as sns

    from infra.nag import add_nag_checks

    app = App(outdir=str(tmp_path))
    sns.Topic(Stack(app, "Scratch"), "Plain")  # no TLS enforcement, no encryption
    add_nag_checks(app)

    with pytest.raises(RuntimeError, match="AwsSolutions-SNS3"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for p in report["pluginReports"] for v in p["violations"]}
    assert "AwsSolutions-SNS3" in rules


def test_an_acknowledgement_without_a_real_reason_is_refused():
    from aws_cdk import App, Stack

    from infra.nag import acknowledge

    with pytest.raises(ValueError, match="specific reason"):
        acknowledge(Stack(App(), "Scratch"), "AwsSolutions-S1", "not needed")
