from __future__ import annotations

from aws_cdk import CfnOutput
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from credit_risk import names
from infra.components.batch_scoring import batch_scoring_function
from infra.components.data_lake import DataLake
from infra.components.feature_database import FeatureDatabase
from infra.components.model_functions import ModelFunctions
from infra.components.scoring_log import ScoringLog
from infra.config import EnvironmentConfig
from infra.grants import allow_objects
from infra.nag import acknowledge
from infra.stacks.base import EnvironmentStack

# Monitoring settings the training function also reads (credit_risk.model.pipeline
# TrainingConfig.for_settings): each version's model-age evidence is judged
# against the age and AUC tolerance the monitor enforces.
TRAINING_MONITORING_SETTINGS = ("max_model_age_days", "auc_drop_tolerance")


class MlStack(EnvironmentStack):
    unit = "Ml"
    summary = "training, feature-loader, monitor and inference functions, scoring log"

    def __init__(
        self,
        scope: Construct,
        *,
        config: EnvironmentConfig,
        vpc: ec2.IVpc,
        lake: DataLake,
        database: FeatureDatabase,
        code_version: str,
    ) -> None:
        """``code_version``: the commit being deployed, recorded by every function
        (training writes it into model metadata)."""
        super().__init__(scope, config=config)
        proxy = database.proxy
        # No password anywhere: the URL names the proxy and the user, and the
        # functions sign an IAM token for each new connection.
        database_url = (
            f"postgresql://{names.DATABASE_USER}@{proxy.endpoint}:{names.DATABASE_PORT}"
            f"/{names.DATABASE_NAME}?sslmode=require"
        )
        common = {
            names.ENV_ENVIRONMENT: config.deployment,
            names.ENV_MODEL_NAME: names.PROJECT,
            names.ENV_REGISTRY_URI: lake.models.s3_url_for_object(
                names.REGISTRY_PREFIX.rstrip("/")
            ),
            names.ENV_POWERTOOLS_METRICS_NAMESPACE: names.metric_namespace(config.deployment),
            names.ENV_LOG_LEVEL: "INFO",
            names.ENV_CODE_VERSION: code_version,
        }
        store = {names.ENV_DATABASE_URL: database_url, names.ENV_DATABASE_IAM_AUTH: "true"}
        lake_root = {names.ENV_LAKE_URI: lake.curated.s3_url_for_object().rstrip("/")}
        self.id_hash_key = secretsmanager.Secret(
            self,
            "IdHashKey",
            description="Key of the keyed hash of customer ids in logs and the scoring log",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True
            ),
            removal_policy=self.removal_policy,
        )
        # Rotating it would cut every scoring-log line before the rotation off
        # from the labels and snapshots the monitor joins them with.
        acknowledge(
            self.id_hash_key,
            "AwsSolutions-SMG4",
            "The id-hash key must stay stable: hashes written under an old key could no "
            "longer be joined with outcomes and snapshots after a rotation.",
        )
        id_hash = {names.ENV_ID_HASH_SECRET_ID: self.id_hash_key.secret_arn}
        self.functions = ModelFunctions(
            self,
            "Functions",
            settings=config.functions,
            code_release=config.code_release,
            alarm_prefix=config.resource_name("inference", names.LIVE_ALIAS, "release") + "-",
            metric_namespace=names.metric_namespace(config.deployment),
            vpc=vpc,
            database_security_group=database.client_security_group,
            environment={
                "inference": {
                    **common,
                    **store,
                    **id_hash,
                    # No model pin here: a version CloudFormation publishes serves
                    # the registry's champion and follows its release record.
                    names.ENV_MODEL_FALLBACK_TO_CHAMPION: "true",
                    # How often live re-reads the champion and the release record; a
                    # release waits a little longer after each change
                    # (LiveRefreshSeconds of the canary-release machine).
                    names.ENV_MODEL_REFRESH_SECONDS: str(names.MODEL_REFRESH_SECONDS),
                    names.ENV_POWERTOOLS_SERVICE_NAME: names.SERVICE_INFERENCE,
                },
                "feature_loader": {
                    **common,
                    **store,
                    **lake_root,
                    # Each load deletes the recorded decisions older than this.
                    names.ENV_DECISION_RETENTION_DAYS: str(config.database.decision_retention_days),
                    names.ENV_POWERTOOLS_SERVICE_NAME: names.SERVICE_FEATURE_LOADER,
                },
                "training": {
                    **common,
                    **lake_root,
                    **config.monitoring.environment(only=TRAINING_MONITORING_SETTINGS),
                    names.ENV_POWERTOOLS_SERVICE_NAME: names.SERVICE_TRAINING,
                },
                "monitor": {
                    **common,
                    **store,
                    **lake_root,
                    **id_hash,
                    **config.monitoring.environment(),
                    names.ENV_POWERTOOLS_SERVICE_NAME: names.SERVICE_MONITOR,
                },
            },
            log_retention=self.log_retention,
            removal_policy=self.removal_policy,
        )
        functions = self.functions
        # The batch-scoring steps: the store through the proxy, the registry, and
        # the lake root under which each run writes batch-scores/<run_id>/.
        self.batch_scoring = batch_scoring_function(
            self,
            settings=config.batch_scoring,
            environment={
                **common,
                **store,
                **lake_root,
                names.ENV_POWERTOOLS_SERVICE_NAME: names.SERVICE_BATCH_SCORING,
            },
            vpc=vpc,
            database_security_group=database.client_security_group,
            log_retention=self.log_retention,
            removal_policy=self.removal_policy,
        )
        # Grants, all of them: each function gets what its step needs.
        env = config.deployment
        for function in (functions.inference, functions.feature_loader, functions.monitor):
            proxy.grant_connect(function, names.DATABASE_USER)
        for function in (functions.inference, functions.monitor):
            self.id_hash_key.grant_read(function)
        for function in (functions.feature_loader, functions.training):
            allow_objects(
                function,
                scope=function.role,
                environment=env,
                bucket="curated",
                prefix=names.CURATED_PREFIX,
            )
        # A failover invokes the loader by this output (credit_risk.dr).
        CfnOutput(self, names.OUTPUT_FEATURE_LOADER, value=functions.feature_loader.function_name)
        # The loader records the snapshot it made active (which a failover loads, and a
        # rollback points back to), and on failback exports (in the standby) and
        # imports (in the primary) the decisions the standby recorded.
        for prefix in (
            names.ACTIVE_SNAPSHOT_KEY,
            names.SNAPSHOT_POINTERS_PREFIX,
            names.DECISION_EXPORTS_PREFIX,
        ):
            allow_objects(
                functions.feature_loader,
                scope=functions.feature_loader.role,
                environment=env,
                bucket="curated",
                prefix=prefix,
                write=True,
            )
        for function in (functions.inference, functions.monitor):
            allow_objects(
                function,
                scope=function.role,
                environment=env,
                bucket="models",
                prefix=names.REGISTRY_PREFIX,
            )
        # The monitor reads the snapshots, the scoring log and the labels, and
        # writes its reports; it may ask for a retraining on the default bus.
        for prefix, write in (
            (names.CURATED_PREFIX, False),
            (names.SCORING_LOG_PREFIX, False),
            (names.LABELS_PREFIX, False),
            (names.MONITORING_PREFIX, True),
        ):
            allow_objects(
                functions.monitor,
                scope=functions.monitor.role,
                environment=env,
                bucket="curated",
                prefix=prefix,
                write=write,
            )
        functions.monitor.add_to_role_policy(
            iam.PolicyStatement(
                actions=["events:PutEvents"],
                resources=[
                    events.EventBus.from_event_bus_name(self, "Bus", "default").event_bus_arn
                ],
            )
        )
        self.scoring_log = ScoringLog(
            self,
            "ScoringLog",
            log_group=functions.inference.log_group,
            environment=env,
            stream_name=config.resource_name("scoring-log"),
        )
        allow_objects(
            functions.training,
            scope=functions.training.role,
            environment=env,
            bucket="models",
            prefix=names.REGISTRY_PREFIX,
            write=True,
        )
        batch = self.batch_scoring
        proxy.grant_connect(batch, names.DATABASE_USER)
        allow_objects(
            batch, scope=batch.role, environment=env, bucket="models", prefix=names.REGISTRY_PREFIX
        )
        allow_objects(
            batch,
            scope=batch.role,
            environment=env,
            bucket="curated",
            prefix=names.BATCH_SCORES_PREFIX,
            write=True,
        )
