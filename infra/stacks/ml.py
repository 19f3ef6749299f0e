from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from credit_risk import names
from infra.components.data_lake import DataLake
from infra.components.feature_database import FeatureDatabase
from infra.components.model_functions import ModelFunctions
from infra.config import EnvironmentConfig
from infra.grants import allow_objects
from infra.stacks.base import EnvironmentStack


class MlStack(EnvironmentStack):
    unit = "Ml"
    summary = "training, feature-loader and inference functions"

    def __init__(
        self,
        scope: Construct,
        *,
        config: EnvironmentConfig,
        vpc: ec2.IVpc,
        lake: DataLake,
        database: FeatureDatabase,
    ) -> None:
        super().__init__(scope, config=config)
        proxy = database.proxy
        # No password anywhere: the URL names the proxy and the user, and the
        # functions sign an IAM token for each new connection.
        database_url = (
            f"postgresql://{names.DATABASE_USER}@{proxy.endpoint}:{names.DATABASE_PORT}"
            f"/{names.DATABASE_NAME}?sslmode=require"
        )
        common = {
            names.ENV_ENVIRONMENT: config.name,
            names.ENV_MODEL_NAME: names.PROJECT,
            names.ENV_REGISTRY_URI: lake.models.s3_url_for_object(
                names.REGISTRY_PREFIX.rstrip("/")
            ),
            names.ENV_POWERTOOLS_METRICS_NAMESPACE: names.METRIC_NAMESPACE,
            names.ENV_LOG_LEVEL: "INFO",
        }
        store = {names.ENV_DATABASE_URL: database_url, names.ENV_DATABASE_IAM_AUTH: "true"}
        lake_root = {names.ENV_LAKE_URI: lake.curated.s3_url_for_object().rstrip("/")}
        self.functions = ModelFunctions(
            self,
            "Functions",
            settings=config.functions,
            vpc=vpc,
            database_security_group=database.client_security_group,
            environment={
                "inference": {
                    **common,
                    **store,
                    names.ENV_POWERTOOLS_SERVICE_NAME: names.SERVICE_INFERENCE,
                },
                "feature_loader": {
                    **common,
                    **store,
                    **lake_root,
                    names.ENV_POWERTOOLS_SERVICE_NAME: names.SERVICE_FEATURE_LOADER,
                },
                "training": {
                    **common,
                    **lake_root,
                    names.ENV_POWERTOOLS_SERVICE_NAME: names.SERVICE_TRAINING,
                },
            },
            log_retention=self.log_retention,
            removal_policy=self.removal_policy,
        )
        functions = self.functions
        # Grants, all of them: each function gets what its step needs.
        env = config.name
        for function in (functions.inference, functions.feature_loader):
            proxy.grant_connect(function, names.DATABASE_USER)
        for function in (functions.feature_loader, functions.training):
            allow_objects(
                function,
                scope=function.role,
                environment=env,
                bucket="curated",
                prefix=names.CURATED_PREFIX,
            )
        allow_objects(
            functions.inference,
            scope=functions.inference.role,
            environment=env,
            bucket="models",
            prefix=names.REGISTRY_PREFIX,
        )
        allow_objects(
            functions.training,
            scope=functions.training.role,
            environment=env,
            bucket="models",
            prefix=names.REGISTRY_PREFIX,
            write=True,
        )
