"""The REST API in front of the inference aliases."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from credit_risk import names
from infra.config import ApiConfig

# API Gateway's own rejections speak the API's error shape (DESIGN.md "API").
_ERROR_TEMPLATE = (
    '{"error": "%s", "message": $context.error.messageString, "request_id": "$context.requestId"}'
)
_GATEWAY_ERRORS = {
    apigw.ResponseType.BAD_REQUEST_BODY: names.GATEWAY_ERROR_INVALID_INPUT,
    apigw.ResponseType.INVALID_API_KEY: names.GATEWAY_ERROR_FORBIDDEN,
    apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN: names.GATEWAY_ERROR_FORBIDDEN,
    apigw.ResponseType.THROTTLED: names.GATEWAY_ERROR_THROTTLED,
    apigw.ResponseType.QUOTA_EXCEEDED: names.GATEWAY_ERROR_THROTTLED,
    apigw.ResponseType.REQUEST_TOO_LARGE: names.GATEWAY_ERROR_TOO_LARGE,
    apigw.ResponseType.DEFAULT_4_XX: names.GATEWAY_ERROR_BAD_REQUEST,
    apigw.ResponseType.DEFAULT_5_XX: names.GATEWAY_ERROR_UNAVAILABLE,
}


class ScoringApi(Construct):
    """REST API whose integration invokes ``function:${stageVariables.lambdaAlias}``.

    The stage sets ``lambdaAlias=live``. Releases never change the stage: a code
    release moves the alias (CodeDeploy), a model release the registry's release
    record, which the live function follows. A stage canary overriding the
    variable would only be an operator's, and the release guard refuses a
    deployment while one is on. Every method needs an API key but the GETs of the
    API reference (``names.PUBLIC_ROUTES`` and the page's files): a browser sends no
    key with a page load, and none of it is a customer's. The key value is generated
    into Secrets Manager and the template only holds a reference to it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api_name: str,
        function: lambda_.IFunction,
        aliases: Sequence[lambda_.IAlias],
        settings: ApiConfig,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=removal_policy
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=api_name,
            description="Credit-risk scores: probability of default, decision, reasons",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            api_key_source_type=apigw.ApiKeySourceType.HEADER,
            default_method_options=apigw.MethodOptions(api_key_required=True),
            deploy_options=apigw.StageOptions(
                stage_name=names.API_STAGE_NAME,
                variables={names.STAGE_VARIABLE_LAMBDA_ALIAS: names.LIVE_ALIAS},
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # request bodies carry customer ids
                throttling_rate_limit=settings.throttle_rate_per_second,
                throttling_burst_limit=settings.throttle_burst,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
            ),
        )
        self.stage = self.api.deployment_stage
        alias_reference = "${stageVariables." + names.STAGE_VARIABLE_LAMBDA_ALIAS + "}"
        integration = apigw.Integration(
            type=apigw.IntegrationType.AWS_PROXY,
            integration_http_method="POST",
            uri=(
                f"arn:{Aws.PARTITION}:apigateway:{Aws.REGION}:lambda:path/2015-03-31/functions/"
                f"{function.function_arn}:{alias_reference}/invocations"
            ),
        )
        self._add_routes(integration)
        for response_type, error in _GATEWAY_ERRORS.items():
            self.api.add_gateway_response(
                f"{error}{response_type.response_type}",
                type=response_type,
                templates={"application/json": _ERROR_TEMPLATE % error},
            )
        # The permissions live here rather than on the aliases so that the
        # function's stack does not depend on the API's.
        self.invoke_permissions = [
            lambda_.CfnPermission(
                self,
                f"Invoke{alias.alias_name.capitalize()}",
                action="lambda:InvokeFunction",
                function_name=alias.function_arn,
                principal="apigateway.amazonaws.com",
                source_arn=self.api.arn_for_execute_api(stage=names.API_STAGE_NAME),
            )
            for alias in aliases
        ]
        self.usage_plan = self.api.add_usage_plan(
            "UsagePlan",
            name=f"{api_name}-clients",
            throttle=apigw.ThrottleSettings(
                rate_limit=settings.throttle_rate_per_second, burst_limit=settings.throttle_burst
            ),
            quota=apigw.QuotaSettings(
                limit=settings.quota_requests, period=apigw.Period[settings.quota_period]
            ),
            api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.stage)],
        )

    def _add_routes(self, integration: apigw.Integration) -> None:
        validator = self.api.add_request_validator(
            "BodyValidator", validate_request_body=True, validate_request_parameters=True
        )
        customer_id = apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, min_length=1)
        score_request = self.api.add_model(
            "ScoreRequest",
            content_type="application/json",
            schema=apigw.JsonSchema(
                schema=apigw.JsonSchemaVersion.DRAFT4,
                type=apigw.JsonSchemaType.OBJECT,
                required=["customer_id"],
                properties={"customer_id": customer_id},
            ),
        )
        # No maxItems here: an oversized batch must get the API's own 413, which
        # the function returns, not the gateway's generic 400.
        batch_request = self.api.add_model(
            "BatchScoreRequest",
            content_type="application/json",
            schema=apigw.JsonSchema(
                schema=apigw.JsonSchemaVersion.DRAFT4,
                type=apigw.JsonSchemaType.OBJECT,
                required=["customer_ids"],
                properties={
                    "customer_ids": apigw.JsonSchema(
                        type=apigw.JsonSchemaType.ARRAY, min_items=1, items=customer_id
                    )
                },
            ),
        )
        version = self.api.root.add_resource(names.API_VERSION_PREFIX)
        scores = version.add_resource("scores")
        self.score_method = scores.add_method(
            "POST",
            integration,
            request_validator=validator,
            request_models={"application/json": score_request},
        )
        self.batch_method = scores.add_resource("batch").add_method(
            "POST",
            integration,
            request_validator=validator,
            request_models={"application/json": batch_request},
        )
        self.health_method = version.add_resource("health").add_method(
            "GET", integration, request_validator=validator
        )
        # Decision lookup: the key and usage plan of scoring (the record holds a
        # customer's features); the function answers a malformed id with its 400.
        self.decision_method = (
            version.add_resource(names.ROUTE_DECISION.rsplit("/", 1)[1])
            .add_resource("{" + names.ROUTE_DECISION_PARAMETER + "}")
            .add_method("GET", integration, request_validator=validator)
        )
        # The reference, outside the usage plan: the stage's throttling and the WAF
        # still apply to it.
        docs = version.add_resource(names.ROUTE_DOCS.rsplit("/", 1)[1])
        asset = "{" + names.ROUTE_DOCS_ASSET_PARAMETER + "}"
        self.reference_methods = [
            docs.add_method("GET", integration, api_key_required=False),
            docs.add_resource(asset).add_method("GET", integration, api_key_required=False),
            version.add_resource(names.ROUTE_OPENAPI.rsplit("/", 1)[1]).add_method(
                "GET", integration, api_key_required=False
            ),
        ]
