from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Token
from constructs import Construct

from credit_risk import names
from infra.components.api_access import ApiKey, RateLimitedWebAcl
from infra.components.failover_domain import RegionalDomain
from infra.components.model_functions import ModelFunctions
from infra.components.scoring_api import ScoringApi
from infra.config import EnvironmentConfig
from infra.nag import acknowledge
from infra.stacks.base import EnvironmentStack


class ApiStack(EnvironmentStack):
    unit = "Api"
    summary = "REST API, API keys, usage plan, WAF"

    def __init__(
        self,
        scope: Construct,
        *,
        config: EnvironmentConfig,
        functions: ModelFunctions,
        reader_account: str | None = None,
    ) -> None:
        """``reader_account``: an account, besides this one, that reads the client
        key (the release pipeline's). Shared only when it is known to differ."""
        super().__init__(scope, config=config)
        # An account left to the default is not known at synth; in the pipeline it
        # is the pipeline's own, which needs no sharing.
        differs = not Token.is_unresolved(self.account) and self.account != reader_account
        self.shared_with_account = reader_account if reader_account and differs else None
        name = config.resource_name("api")
        self.scoring = ScoringApi(
            self,
            "ScoringApi",
            api_name=name,
            function=functions.inference,
            aliases=functions.aliases,
            settings=config.api,
            log_retention=self.log_retention,
            removal_policy=self.removal_policy,
        )
        dr = config.disaster_recovery
        domain = None if dr is None else dr.domain
        # One client key in both regions when clients call one domain (ApiKey).
        shared_key: dict[str, Any] = {}
        if dr is not None and domain is not None:
            secret_name = config.resource_name(names.CLIENT_KEY_SECRET_PART)
            shared_key = (
                {"replica_of": secret_name}
                if config.is_standby
                else {"secret_name": secret_name, "replica_regions": [dr.standby_region]}
            )
        self.api_key = ApiKey(
            self,
            "ClientKey",
            usage_plan=self.scoring.usage_plan,
            key_name=f"{name}-client",
            reader_account=self.shared_with_account,
            **shared_key,
        )
        self.domain: RegionalDomain | None = None
        if domain is not None:
            self.domain = RegionalDomain(
                self, "Domain", domain=domain, region=config.region, stage=self.scoring.stage
            )
        if config.api.waf_rate_limit:
            self.web_acl = RateLimitedWebAcl(
                self,
                "Firewall",
                stage_arn=self.scoring.stage.stage_arn,
                name=name,
                requests_per_5_minutes=config.api.waf_rate_limit,
            )
        else:
            acknowledge(
                self.scoring.stage,
                "AwsSolutions-APIG3",
                f"{config.deployment} is reachable by the team only (API key + usage plan "
                "throttling); the WAF is configured for the public environments.",
            )
        self._acknowledge()
        # The release smoke test and clients find the API and its key here.
        self.url_output = CfnOutput(self, names.OUTPUT_API_URL, value=self.scoring.api.url)
        # Imported by the probe's URL and the failover domain's health check (and by
        # the Orchestration stack of environments deployed before model releases
        # stopped patching the stage): kept whoever imports it, since the Api stack
        # deploys first and an export in use cannot be deleted.
        self.export_value(self.scoring.api.rest_api_id)
        # What the probe imports (the stage of its URL, the key's secret and the
        # secret's own key), exported even while nothing does: the probe turned off
        # (the first of the two deploys that add a domain, README) must not delete an
        # export the deployed Monitoring stack still imports.
        self.export_value(self.scoring.stage.stage_name)
        if self.api_key.secret.secret_full_arn:
            self.export_value(self.api_key.secret.secret_arn)
        if self.api_key.encryption_key is not None:
            self.export_value(self.api_key.encryption_key.key_arn)
        self.key_secret_output = CfnOutput(
            self, names.OUTPUT_API_KEY_SECRET_ARN, value=self.api_key.secret.secret_arn
        )

    def _acknowledge(self) -> None:
        api = self.scoring.api
        reason = (
            "Callers are lender back-office systems identified by API keys with usage "
            "plans (DESIGN.md); there are no end users to authenticate with Cognito/IAM."
        )
        acknowledge(api, "AwsSolutions-APIG4", reason)
        acknowledge(api, "AwsSolutions-COG4", reason)
        acknowledge(
            api.node.find_child("CloudWatchRole"),
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level logging role; AWS documents this managed policy "
            "as the way to grant it.",
        )
        acknowledge(
            self.api_key.secret,
            "AwsSolutions-SMG4",
            "An API key is rotated by issuing a second key to the client and retiring "
            "the first, not by a rotation function that would cut clients off.",
        )
