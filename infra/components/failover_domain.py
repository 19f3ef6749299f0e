"""The custom domain clients call, answered by whichever region is serving.

Each region of a deployment with a standby puts the configured name on its own API
stage (``RegionalDomain``, an edge of API Gateway with that region's certificate).
Route 53 holds two failover records for the name (``FailoverRecord``): the primary's,
guarded by a health check, and the standby's, which Route 53 answers with while that
check is unhealthy. The check is healthy while two others are:

- the primary's synthetic-probe alarm: the probe calls the API's own URL with the
  client key, health and a score, so "healthy" means what a client means by it;
- Route 53's own HTTPS requests, from outside the region, to the stage's API
  reference (no key needed): the probe runs in the region it judges, and a region
  gone dark leaves its alarm without data, which changes nothing.

``credit-risk dr failover`` forces the switch by inverting the check on the alarm
(the primary may be up but serving wrong answers), and ``failback`` puts it back.
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_route53 as route53
from constructs import Construct

from credit_risk import names
from infra.config import FailoverDomainConfig

# Route 53's HTTPS checks of a primary's API: every 30 s from each checker; three
# failures in a row (90 s) make a checker judge it unhealthy, and the check is
# unhealthy once more than 82 % of checkers do.
REACHABLE_INTERVAL_SECONDS = 30
REACHABLE_FAILURES = 3
# Where the checkers are (Route 53's regions for them): three, never the primary's
# own, which keeps the requests few (they reach the inference function) and judges
# a region from outside it.
CHECKER_REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1", "us-west-2")
CHECKERS = 3


class RegionalDomain(Construct):
    """``domain.name`` on ``stage``, with the certificate of ``region``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        domain: FailoverDomainConfig,
        region: str,
        stage: apigw.Stage,
    ) -> None:
        super().__init__(scope, construct_id)
        certificate = acm.Certificate.from_certificate_arn(
            self, "Certificate", domain.certificate_arns[region]
        )
        self.domain_name = apigw.DomainName(
            self,
            "DomainName",
            domain_name=domain.name,
            certificate=certificate,
            endpoint_type=apigw.EndpointType.REGIONAL,
            security_policy=apigw.SecurityPolicy.TLS_1_2,
        )
        # The whole stage at the root: clients call <domain>/v1/scores.
        self.domain_name.add_base_path_mapping(stage.rest_api, stage=stage)


class FailoverRecord(Construct):
    """This region's A record for ``domain.name``: PRIMARY with a health check on
    ``probe_alarm`` and on ``api``'s stage answering from outside the region, or
    SECONDARY (no check: it answers when the primary cannot)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        domain: FailoverDomainConfig,
        target: apigw.DomainName,
        api: apigw.IRestApi,
        set_identifier: str,
        region: str,
        probe_alarm: cw.IAlarm | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.health_check: route53.CfnHealthCheck | None = None
        self.reachable: route53.CfnHealthCheck | None = None
        self.guard: route53.CfnHealthCheck | None = None
        if probe_alarm is not None:
            self.health_check = route53.CfnHealthCheck(
                self,
                "HealthCheck",
                health_check_config=route53.CfnHealthCheck.HealthCheckConfigProperty(
                    type="CLOUDWATCH_METRIC",
                    alarm_identifier=route53.CfnHealthCheck.AlarmIdentifierProperty(
                        name=probe_alarm.alarm_name, region=region
                    ),
                    # The alarm has no data before the first probes of a new
                    # deployment, and whenever the region's CloudWatch cannot be
                    # read: keep the last verdict rather than flap. A region that is
                    # down fails its probes first.
                    insufficient_data_health_status="LastKnownStatus",
                ),
                health_check_tags=_named(f"{set_identifier} probe"),
            )
            # The stage's own endpoint: the custom name resolves to this record.
            self.reachable = route53.CfnHealthCheck(
                self,
                "Reachable",
                health_check_config=route53.CfnHealthCheck.HealthCheckConfigProperty(
                    type="HTTPS",
                    fully_qualified_domain_name=(
                        f"{api.rest_api_id}.execute-api.{region}.{Aws.URL_SUFFIX}"
                    ),
                    resource_path=f"/{names.API_STAGE_NAME}{names.ROUTE_OPENAPI}",
                    port=443,
                    enable_sni=True,
                    request_interval=REACHABLE_INTERVAL_SECONDS,
                    failure_threshold=REACHABLE_FAILURES,
                    regions=[other for other in CHECKER_REGIONS if other != region][:CHECKERS],
                ),
                health_check_tags=_named(f"{set_identifier} reachable"),
            )
            self.guard = route53.CfnHealthCheck(
                self,
                "Guard",
                health_check_config=route53.CfnHealthCheck.HealthCheckConfigProperty(
                    type="CALCULATED",
                    child_health_checks=[
                        self.health_check.attr_health_check_id,
                        self.reachable.attr_health_check_id,
                    ],
                    health_threshold=2,
                ),
                health_check_tags=_named(f"{set_identifier} serves"),
            )
        self.record = route53.CfnRecordSet(
            self,
            "Record",
            hosted_zone_id=domain.hosted_zone_id,
            name=f"{domain.name}.",
            type="A",
            set_identifier=set_identifier,
            failover="PRIMARY" if probe_alarm is not None else "SECONDARY",
            health_check_id=None if self.guard is None else self.guard.attr_health_check_id,
            alias_target=route53.CfnRecordSet.AliasTargetProperty(
                dns_name=target.domain_name_alias_domain_name,
                hosted_zone_id=target.domain_name_alias_hosted_zone_id,
                evaluate_target_health=False,
            ),
        )


def _named(name: str) -> list[route53.CfnHealthCheck.HealthCheckTagProperty]:
    return [route53.CfnHealthCheck.HealthCheckTagProperty(key="Name", value=name)]
