"""Who may call the scoring API, and how fast: API key and WAF."""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import SecretValue
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from credit_risk import names


class ApiKey(Construct):
    """A client API key whose value is generated into Secrets Manager.

    Clients and the release smoke test read the key from the secret; the
    template carries only a dynamic reference to it.

    ``reader_account``: another account that may read the secret (the release
    pipeline's, whose smoke test calls the API). The default aws/secretsmanager
    key cannot be shared across accounts, so the secret is then encrypted with a
    key of its own, and both the key policy and the secret's resource policy
    let that account decrypt and read it through Secrets Manager.

    A deployment whose clients call one domain in either region of its disaster
    recovery needs one key in both: the primary names its secret ``secret_name`` and
    Secrets Manager replicates it to ``replica_regions``; the standby's key takes its
    value from that replica (``replica_of``, the same name) and makes no secret.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        usage_plan: apigw.UsagePlan,
        key_name: str,
        reader_account: str | None = None,
        secret_name: str | None = None,
        replica_regions: Sequence[str] = (),
        replica_of: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.encryption_key: kms.Key | None = None
        self.secret: secretsmanager.ISecret
        if replica_of is not None:
            self.secret = secretsmanager.Secret.from_secret_name_v2(self, "Secret", replica_of)
            # By name: a dynamic reference takes a name or a complete ARN, and the
            # replica's ARN ends in a suffix drawn in the primary region.
            self._key(
                usage_plan,
                key_name,
                SecretValue.secrets_manager(replica_of, json_field=names.API_KEY_SECRET_FIELD),
            )
            return
        if reader_account is not None:
            self.encryption_key = kms.Key(
                self,
                "EncryptionKey",
                enable_key_rotation=True,
                description=f"Encrypts the value of the API key {key_name}",
            )
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            secret_name=secret_name,
            description=f"Value of the API key {key_name}",
            encryption_key=self.encryption_key,
            replica_regions=[secretsmanager.ReplicaRegion(region=r) for r in replica_regions],
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"key_name": key_name}),
                generate_string_key=names.API_KEY_SECRET_FIELD,
                exclude_punctuation=True,
                password_length=40,
            ),
        )
        self._key(
            usage_plan, key_name, self.secret.secret_value_from_json(names.API_KEY_SECRET_FIELD)
        )
        if reader_account is not None:
            # Resource policy (GetSecretValue, DescribeSecret) plus kms:Decrypt in
            # the key policy, limited to calls made through Secrets Manager.
            self.secret.grant_read(iam.AccountPrincipal(reader_account))

    def _key(self, usage_plan: apigw.UsagePlan, key_name: str, value: SecretValue) -> None:
        self.key = apigw.ApiKey(self, "Key", api_key_name=key_name, value=value.unsafe_unwrap())
        usage_plan.add_api_key(self.key)


class RateLimitedWebAcl(Construct):
    """A regional web ACL on an API stage: per-IP rate limit plus AWS managed rules."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage_arn: str,
        name: str,
        requests_per_5_minutes: int,
    ) -> None:
        super().__init__(scope, construct_id)

        def visibility(metric: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True,
                metric_name=f"{name}-{metric}",
                sampled_requests_enabled=True,
            )

        def managed(priority: int, rule_group: str) -> wafv2.CfnWebACL.RuleProperty:
            return wafv2.CfnWebACL.RuleProperty(
                name=rule_group,
                priority=priority,
                override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS", name=rule_group
                    )
                ),
                visibility_config=visibility(rule_group),
            )

        rate_rule = wafv2.CfnWebACL.RuleProperty(
            name="rate-per-ip",
            priority=0,
            action=wafv2.CfnWebACL.RuleActionProperty(block={}),
            statement=wafv2.CfnWebACL.StatementProperty(
                rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                    limit=requests_per_5_minutes, aggregate_key_type="IP"
                )
            ),
            visibility_config=visibility("rate-per-ip"),
        )
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=name,
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility("all"),
            rules=[
                rate_rule,
                managed(1, "AWSManagedRulesCommonRuleSet"),
                managed(2, "AWSManagedRulesKnownBadInputsRuleSet"),
            ],
        )
        self.association = wafv2.CfnWebACLAssociation(
            self, "Association", resource_arn=stage_arn, web_acl_arn=self.web_acl.attr_arn
        )
