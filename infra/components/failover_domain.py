"""The custom domain clients call, answered by whichever region is serving.

Each region of a deployment with a standby puts the configured name on its own API
stage (``RegionalDomain``, an edge of API Gateway with that region's certificate).
Route 53 holds two failover records for the name (``FailoverRecord``): the primary's,
guarded by a health check on the primary's synthetic-probe alarm, and the standby's,
which Route 53 answers with while that check is unhealthy. The probe calls the
API's own URL with the client key, health and a score, so "healthy" means what a
client means by it.

``credit-risk dr failover`` forces the switch by inverting the health check (the
primary may be up but serving wrong answers), and ``failback`` puts it back.
"""

from __future__ import annotations

from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_route53 as route53
from constructs import Construct

from infra.config import FailoverDomainConfig


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
    ``probe_alarm``, or SECONDARY (no check: it answers when the primary cannot)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        domain: FailoverDomainConfig,
        target: apigw.DomainName,
        set_identifier: str,
        region: str,
        probe_alarm: cw.IAlarm | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.health_check: route53.CfnHealthCheck | None = None
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
                health_check_tags=[
                    route53.CfnHealthCheck.HealthCheckTagProperty(
                        key="Name", value=f"{set_identifier} probe"
                    )
                ],
            )
        self.record = route53.CfnRecordSet(
            self,
            "Record",
            hosted_zone_id=domain.hosted_zone_id,
            name=f"{domain.name}.",
            type="A",
            set_identifier=set_identifier,
            failover="PRIMARY" if probe_alarm is not None else "SECONDARY",
            health_check_id=None
            if self.health_check is None
            else self.health_check.attr_health_check_id,
            alias_target=route53.CfnRecordSet.AliasTargetProperty(
                dns_name=target.domain_name_alias_domain_name,
                hosted_zone_id=target.domain_name_alias_hosted_zone_id,
                evaluate_target_health=False,
            ),
        )
