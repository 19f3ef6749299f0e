"""Identifiers shared by the infrastructure and the runtime code.

The CDK app sets these names (environment variables, aliases, stage variables,
metric names) and the Lambdas, the Glue job and the state machines read them, so
both sides import them from here. This module imports nothing: the CDK app may
import it, and so may a Lambda on its cold path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

PROJECT: Final = "credit-risk"
ENVIRONMENTS: Final = ("dev", "staging", "prod")

# --- Environment variables the Lambdas read ----------------------------------
# The prefix is ``credit_risk.settings.ENV_PREFIX``; each name below is a field
# of ``Settings`` so that a Lambda's settings come from its environment alone.
ENV_PREFIX: Final = "CREDIT_RISK_"
ENV_LAKE_URI: Final = f"{ENV_PREFIX}LAKE_URI"
ENV_REGISTRY_URI: Final = f"{ENV_PREFIX}REGISTRY_URI"
# A PostgreSQL URL *without* a password (RDS Proxy host, port, database, user):
# the Lambdas authenticate with a short-lived IAM token, never a stored secret.
ENV_DATABASE_URL: Final = f"{ENV_PREFIX}DATABASE_URL"
ENV_DATABASE_IAM_AUTH: Final = f"{ENV_PREFIX}DATABASE_IAM_AUTH"
ENV_MODEL_NAME: Final = f"{ENV_PREFIX}MODEL_NAME"
# Secrets Manager secret holding the key of the keyed hash under which customer
# ids appear in logs and the scoring log: one key per environment, shared by the
# inference function and the monitor (which joins labels and snapshots on it).
ENV_ID_HASH_SECRET_ID: Final = f"{ENV_PREFIX}ID_HASH_SECRET_ID"
# The model version a function is pinned to (local serving of one version, tests);
# the deployed function pins none.
ENV_MODEL_VERSION: Final = f"{ENV_PREFIX}MODEL_VERSION"
# Set in the template (every version CloudFormation publishes): without a pinned
# model version, serve the registry's champion and follow its release record, both
# re-read every ENV_MODEL_REFRESH_SECONDS. A code release therefore serves the model
# in service, and a model release reaches every instance within one refresh.
ENV_MODEL_FALLBACK_TO_CHAMPION: Final = f"{ENV_PREFIX}MODEL_FALLBACK_TO_CHAMPION"
ENV_MODEL_REFRESH_SECONDS: Final = f"{ENV_PREFIX}MODEL_REFRESH_SECONDS"
# Short enough that a rollback (the release record closed, or the previous champion
# back) reaches every instance within a minute, long enough to stay one small S3
# read per instance and interval.
MODEL_REFRESH_SECONDS: Final = 30
# Commit the deployed code was built from, recorded in model metadata.
ENV_CODE_VERSION: Final = f"{ENV_PREFIX}CODE_VERSION"
# Days a recorded credit decision is kept (credit_risk.serving.decisions); loads purge
# older ones.
ENV_DECISION_RETENTION_DAYS: Final = f"{ENV_PREFIX}DECISION_RETENTION_DAYS"
ENV_ENVIRONMENT: Final = f"{ENV_PREFIX}ENVIRONMENT"
# What the release function acts on: the inference function (whose live alias it
# probes) and the candidate alarms (by name prefix).
ENV_INFERENCE_FUNCTION_NAME: Final = f"{ENV_PREFIX}INFERENCE_FUNCTION_NAME"
ENV_CANDIDATE_ALARM_PREFIX: Final = f"{ENV_PREFIX}CANDIDATE_ALARM_PREFIX"
# The stack whose update is a code deploy of the inference function: a model
# release waits while it is being updated (releases and deploys never overlap).
ENV_DEPLOY_STACK_NAME: Final = f"{ENV_PREFIX}DEPLOY_STACK_NAME"
# The synthetic probe (credit_risk.probe): the API's public URL, the secret holding
# the client key, the customer it scores, the per-call timeout and where it keeps
# the last answer it got (compared with the next one).
ENV_PROBE_URL: Final = f"{ENV_PREFIX}PROBE_URL"
ENV_PROBE_API_KEY_SECRET_ID: Final = f"{ENV_PREFIX}PROBE_API_KEY_SECRET_ID"
ENV_PROBE_CUSTOMER_ID: Final = f"{ENV_PREFIX}PROBE_CUSTOMER_ID"
ENV_PROBE_TIMEOUT_SECONDS: Final = f"{ENV_PREFIX}PROBE_TIMEOUT_SECONDS"
ENV_PROBE_STATE_URI: Final = f"{ENV_PREFIX}PROBE_STATE_URI"

# Powertools reads these; the values below are what the alarms select on.
ENV_POWERTOOLS_SERVICE_NAME: Final = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_METRICS_NAMESPACE: Final = "POWERTOOLS_METRICS_NAMESPACE"
ENV_LOG_LEVEL: Final = "POWERTOOLS_LOG_LEVEL"

# --- Lambda aliases and the API stage that selects them ------------------------
LIVE_ALIAS: Final = "live"
CANDIDATE_ALIAS: Final = "candidate"
# API Gateway stage variable whose value is the alias the integration invokes
# (live). Model releases never touch it: the live function scores the candidate
# in-process. Only an operator's stage canary would override it.
STAGE_VARIABLE_LAMBDA_ALIAS: Final = "lambdaAlias"
API_STAGE_NAME: Final = "api"
API_KEY_HEADER: Final = "x-api-key"
API_KEY_SECRET_FIELD: Final = "api_key"  # noqa: S105 - a JSON field name, not a secret
# The ``error`` of what API Gateway answers itself (its gateway responses,
# infra/components/scoring_api.py), as the local gateway answers too.
GATEWAY_ERROR_INVALID_INPUT: Final = "invalid_input"
GATEWAY_ERROR_FORBIDDEN: Final = "forbidden"
GATEWAY_ERROR_THROTTLED: Final = "throttled"
GATEWAY_ERROR_TOO_LARGE: Final = "too_large"
GATEWAY_ERROR_BAD_REQUEST: Final = "bad_request"
GATEWAY_ERROR_UNAVAILABLE: Final = "unavailable"

# --- Routes of the scoring API (DESIGN.md "API") -------------------------------
API_VERSION_PREFIX: Final = "v1"
ROUTE_SCORE: Final = "/v1/scores"
ROUTE_SCORE_BATCH: Final = "/v1/scores/batch"
ROUTE_HEALTH: Final = "/v1/health"
# What was decided, by the decision_id every score carries (same key as scoring).
ROUTE_DECISION: Final = "/v1/decisions"
ROUTE_DECISION_PARAMETER: Final = "decision_id"
# Sent by our own synthetic callers (the probe, the release smoke test) with their
# name: their decisions are still recorded, marked synthetic, so that a customer's
# list shows the lender's decisions, not the probe's.
SYNTHETIC_HEADER: Final = "x-credit-risk-synthetic"
# The API reference: a page, its files under it, and the OpenAPI document. Read
# without an API key (a browser sends no header with a page load; none of it holds
# customer data); only GET reaches them.
ROUTE_DOCS: Final = "/v1/docs"
ROUTE_DOCS_ASSET_PARAMETER: Final = "asset"
ROUTE_OPENAPI: Final = "/v1/openapi.json"
PUBLIC_ROUTES: Final = (ROUTE_DOCS, ROUTE_OPENAPI)
MAX_BATCH_SIZE: Final = 100
# Probabilities are answered (and batch-scored, and counted) to this many decimals.
PROBABILITY_DECIMALS: Final = 6

# --- Metrics -----------------------------------------------------------------
METRIC_NAMESPACE: Final = "CreditRisk"


def metric_namespace(deployment: str) -> str:
    """``CreditRisk/<deployment>``: the namespace every custom metric of one deployment
    (``deployment_name``) is published and read under. Environments and markets share
    accounts and regions, and metric dimensions do not say who published: an alarm or a
    release gate must see its own deployment's metrics only."""
    return f"{METRIC_NAMESPACE}/{deployment}"


SERVICE_INFERENCE: Final = "inference"
SERVICE_TRAINING: Final = "training"
SERVICE_FEATURE_LOADER: Final = "feature-loader"
SERVICE_RELEASE: Final = "release"
# Published by the inference handler (dimension ``service``): age in days of the
# model it serves and of the feature snapshot it reads. The staleness alarm
# watches the first.
METRIC_MODEL_AGE_DAYS: Final = "ModelAgeDays"
METRIC_FEATURES_AGE_DAYS: Final = "FeaturesAgeDays"
SERVICE_MONITOR: Final = "monitor"
SERVICE_BATCH_SCORING: Final = "batch-scoring"
# 5xx answers of the inference handler, also published per alias (dimensions
# ``service`` and ``alias``): the code release (CodeDeploy) and the model
# release read alarms on them, since a handler that answers 500 never raises
# the function's Errors.
METRIC_SERVER_ERRORS: Final = "ServerErrors"
METRIC_DIMENSION_ALIAS: Final = "alias"
# A promoted champion the inference function could not load (dimension
# ``service``); it keeps serving the previous model, so only this metric shows it.
METRIC_MODEL_REFRESH_ERRORS: Final = "ModelRefreshErrors"
# Failures of a model release's candidate inside the inference function (dimension
# ``service``): it could not be loaded, or it failed to score, in shadow or in a
# canary step. The release's candidate alarm watches it.
METRIC_CANDIDATE_ERRORS: Final = "CandidateErrors"
# Customers whose stored features hold NaN or an infinity (dimension ``service``):
# their requests are refused with 422 unscorable_features, and an alarm calls for
# a repaired snapshot.
METRIC_UNSCORABLE_FEATURES: Final = "UnscorableFeatures"
# Published by the probe function on every run (dimension ``service=probe``): 1 when
# the API failed a check (else 0); 1 when the probe customer's answer changed with
# neither a new model version nor a new feature snapshot (else 0, absent when there
# was nothing to compare); the latency of each call in milliseconds.
SERVICE_PROBE: Final = "probe"
METRIC_PROBE_FAILURES: Final = "ProbeFailures"
METRIC_PROBE_ANSWER_CHANGED: Final = "ProbeAnswerChanged"
METRIC_PROBE_HEALTH_LATENCY: Final = "ProbeHealthLatency"
METRIC_PROBE_SCORE_LATENCY: Final = "ProbeScoreLatency"

# --- Scoring log and monitoring -----------------------------------------------
# Every score line carries ``"record_type": "score"``: the CloudWatch Logs
# subscription filter selects on it, and readers skip anything else.
SCORE_RECORD_TYPE: Final = "score"
SCORE_RECORD_FILTER: Final = '{ $.record_type = "score" }'
ENV_SCORING_LOG_URI: Final = f"{ENV_PREFIX}SCORING_LOG_URI"
# Published by the monitor (dimension ``service=monitor``; the PSI gauges also
# ``feature``, with ``score`` for the score distribution). The *Alerts metrics
# count checks in the alert state; each has an alarm at > 0.
METRIC_PSI: Final = "PSI"
METRIC_DRIFT_ALERTS: Final = "DriftAlerts"
METRIC_SKEW_MISMATCHES: Final = "SkewMismatches"
METRIC_INVARIANT_VIOLATIONS: Final = "InvariantViolations"
METRIC_STALENESS_ALERTS: Final = "StalenessAlerts"
METRIC_LIVE_AUC: Final = "LiveAUC"
METRIC_LIVE_QUALITY_ALERTS: Final = "LiveQualityAlerts"
METRIC_FAIRNESS_ALERTS: Final = "FairnessAlerts"
METRIC_SCORES_MONITORED: Final = "ScoresMonitored"
# When live quality drops beyond tolerance the monitor may ask for a retraining:
# an EventBridge event that a rule turns into a training-pipeline execution.
MONITOR_EVENT_SOURCE: Final = "credit-risk.monitor"
RETRAINING_REQUESTED: Final = "Retraining requested"

# --- Lambda handlers in the shared image (containers/inference/Dockerfile) -----
HANDLER_INFERENCE: Final = "lambdas.inference.handler.lambda_handler"
HANDLER_FEATURE_LOADER: Final = "lambdas.feature_loader.handler.lambda_handler"
HANDLER_TRAINING: Final = "lambdas.training.handler.lambda_handler"
HANDLER_RELEASE: Final = "lambdas.release.handler.lambda_handler"
HANDLER_MONITOR: Final = "lambdas.monitor.handler.lambda_handler"
HANDLER_PROBE: Final = "lambdas.probe.handler.lambda_handler"
HANDLER_BATCH_SCORING: Final = "lambdas.batch_scoring.handler.lambda_handler"

# --- Data lake layout (prefixes inside the buckets) --------------------------
RAW_LOANS_PREFIX: Final = "raw/loans/"
# A delivery of raw loans is a folder ``raw/loans/<delivery>/`` (by convention
# ``ingest_date=YYYY-MM-DD``) whose data files are written first and this empty
# marker last: only the marker starts the training pipeline, so one delivery is
# one execution whatever the number of files in it.
RAW_DELIVERY_MARKER: Final = "_SUCCESS"
RAW_DELIVERY_MARKER_PATTERN: Final = f"{RAW_LOANS_PREFIX}*/{RAW_DELIVERY_MARKER}"
# The ``trigger`` of a training run the raw-data rule starts (input field).
TRIGGER_NEW_RAW_DATA: Final = "new_raw_data"
CURATED_PREFIX: Final = "curated/"
# A feature run's per-customer audit columns (gender), ``curated/<run_id>/audit/``
# beside its ``snapshot/``: the monitor finds them from the snapshot id.
CURATED_AUDIT_FOLDER: Final = "audit"
REGISTRY_PREFIX: Final = "registry/"
# Scoring log: one JSON object per line, ``scoring-log/date=YYYY-MM-DD/<file>``
# (Firehose delivers the inference function's score lines there; locally the
# handler appends them itself).
SCORING_LOG_PREFIX: Final = "scoring-log/"
# Outcomes of scored loans, delivered weeks later by the lender's systems.
LABELS_PREFIX: Final = "labels/"
# The monitor's JSON reports, ``monitoring/date=YYYY-MM-DD/report.json``.
MONITORING_PREFIX: Final = "monitoring/"
# The probe function's last answer (one JSON object), which its next run compares with.
PROBE_STATE_PREFIX: Final = f"{MONITORING_PREFIX}probe/"
PROBE_STATE_KEY: Final = f"{PROBE_STATE_PREFIX}last-answer.json"
# Whole-portfolio batch scores, one folder per run: ``batch-scores/<run_id>/``
# (Parquet parts and summary.json), in the curated bucket in AWS.
BATCH_SCORES_PREFIX: Final = "batch-scores/"
# Ranges a batch-scoring run may be cut into: the Map state's items travel in the
# execution's history, and each range holds one store connection while it runs.
BATCH_MAX_PARTITIONS: Final = 256

# --- Glue job arguments (``--<name>``) of glue_jobs/feature_extraction.py -------
# The raw input (the job's default: the whole raw zone) and the run's own output
# folder (``<curated>/<run_id>``), which the training pipeline passes per run.
GLUE_ARG_INPUT: Final = "input"
GLUE_ARG_OUTPUT: Final = "output"
GLUE_ARG_AS_OF: Final = "as_of"
GLUE_ARG_RUN_ID: Final = "run_id"

# --- Training engines (credit_risk.model.engine) ---------------------------------
# Below ``distributed_from_rows`` training rows a run trains on one machine (the
# training Lambda, or this process locally); from it on, XGBoost's Spark estimator
# trains across a Glue job's workers (glue_jobs/model_training.py). One function
# decides (credit_risk.model.engine.choose_engine), the local runner calls it and
# the state machine's Choice compares the same report field with the same setting.
TRAINING_ENGINE_SINGLE: Final = "xgboost"
TRAINING_ENGINE_SPARK: Final = "xgboost-spark"
TRAINING_ENGINES: Final = (TRAINING_ENGINE_SINGLE, TRAINING_ENGINE_SPARK)
# The data-quality report's count of training rows, which the choice reads.
TRAINING_ROWS_FIELD: Final = "training_rows"
# The threshold when nothing configures one: the local runner's default, dev's
# cdk.json ``training.distributed_from_rows`` (a test keeps them equal); each
# environment sets its own there.
DEFAULT_DISTRIBUTED_FROM_ROWS: Final = 4_000_000
# The training Glue job (resource name ``credit-risk-<env>-training``), its script
# beside the feature job's, and where it writes the summary the state machine
# reads instead of a Lambda's return value: ``<curated>/<run_id>/<file>``.
TRAINING_JOB: Final = "training"
GLUE_TRAINING_SCRIPT: Final = "model_training.py"
TRAINING_RESULT_FILE: Final = "training_result.json"
# Its arguments (``--<name>``), the training Lambda's event fields by another road.
GLUE_ARG_FEATURES: Final = "features_uri"
GLUE_ARG_SNAPSHOT: Final = "snapshot_uri"
GLUE_ARG_REGISTRY: Final = "registry_uri"
GLUE_ARG_GATE: Final = "gate"
GLUE_ARG_RESULT: Final = "result_uri"
GLUE_ARG_WORKERS: Final = "workers"
GLUE_ARG_SETTINGS: Final = "settings"

# --- Training pipeline --------------------------------------------------------
# The steps of step_functions/training_pipeline.asl.json, in order; the local
# runner (credit_risk.pipeline) runs the same ones. Each step is a state of the
# same name in PascalCase (``quality_gate`` -> ``QualityGate``); a test fails
# when the definition and this tuple drift apart.
PIPELINE_STEPS: Final = (
    "features",
    "quality_gate",
    "load_features",
    "train",
    "model_gate",
    "release",
)
# A run id names the run's output folder, its feature-store snapshot (at most 63
# characters, a PostgreSQL identifier's limit) and the canary release's Step
# Functions execution (no ``:``), so it must suit all three.
RUN_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,62}$"
# Above this share of quarantined rows an extract is too broken to learn from or
# to serve: the quality gate stops the run before the store or the model change.
# The state machine gets it as its default ``max_quarantined_fraction``.
MAX_QUARANTINED_FRACTION: Final = 0.05
# Written last by the feature job under ``<curated>/<run_id>/``; the gate reads it.
QUALITY_REPORT_FILE: Final = "dq_report.json"
# Why a gate stopped a run, in the local runner and in the state machine alike
# (``{}`` slots, in order; Step Functions' States.Format fills them the same way).
# No quotes or backslashes: the text is inlined into an intrinsic function.
QUALITY_GATE_MESSAGE: Final = "quarantined fraction {} is above the limit {}; see {}"
MODEL_GATE_MESSAGE: Final = "candidate {} was not promoted ({}); checks not passed: {}"
# How often an execution that waits for its turn (a training run behind another,
# a release behind a code deploy) asks again: the definitions' default.
ADMISSION_WAIT_SECONDS: Final = 60
# How long a model release waits after each stage before it checks it. CloudWatch
# has a minute's embedded metrics one to three minutes after the minute ends, so a
# check made as the stage ends would judge it without its last minutes. The stage
# goes on while the release waits (its record does not move): the check counts
# that time too, as far as its metrics have arrived. The definitions' default; an
# execution's input may shorten it (the tests' moto has a metric at once).
METRIC_LAG_SECONDS: Final = 150
# The release function's action, sent by an EventBridge rule, that closes the
# release of a canary-release execution which ended (stopped, timed out or failed)
# without closing it.
ACTION_CLOSE_ABANDONED_RELEASE: Final = "close_abandoned_release"

# --- Stack outputs read by the bootstrap and the smoke test ---------------------
# ``CreditRisk-<env>-<unit>`` stacks; the outputs are named here once.
OUTPUT_RAW_BUCKET: Final = "RawBucketName"
OUTPUT_TRAINING_PIPELINE_ARN: Final = "TrainingPipelineArn"
OUTPUT_CANARY_RELEASE_ARN: Final = "CanaryReleaseArn"
OUTPUT_BATCH_SCORING_ARN: Final = "BatchScoringArn"
OUTPUT_API_URL: Final = "ApiUrl"
OUTPUT_API_KEY_SECRET_ARN: Final = "ApiKeySecretArn"  # noqa: S105 - an output name


def stack_name(environment: str, unit: str) -> str:
    """``CreditRisk-<env>-<unit>``, the name of one stack of an environment."""
    return f"CreditRisk-{environment}-{unit}"


# --- Feature store ---------------------------------------------------------
DATABASE_NAME: Final = "credit_risk"
DATABASE_USER: Final = "credit_risk_admin"
DATABASE_PORT: Final = 5432


def resource_name(environment: str, *parts: str) -> str:
    """Physical name of a resource of ``environment``: ``credit-risk-dev-<parts>``.

    Used where a name must be known on both sides without a lookup, such as the
    candidate alarms the canary release reads by prefix.
    """
    return "-".join((PROJECT, environment, *parts))


def candidate_alarm_prefix(environment: str) -> str:
    """Name prefix shared by the alarms on a model release's candidate (its failures
    inside the inference function), which the release reads between stages."""
    return resource_name(environment, "inference", CANDIDATE_ALIAS) + "-"


# A market's name is part of every stack and resource name of its deployments; an
# AWS region as cdk.json and the commands spell it.
MARKET_PATTERN: Final = r"^[a-z]{2,8}$"
REGION_PATTERN: Final = r"^[a-z]{2}(-[a-z]+)+-\d$"


def deployment_name(environment: str, market: str | None = None) -> str:
    """What names one deployment: the environment (``prod``) for the default market,
    ``<market>-<environment>`` (``mx-prod``) for another, so that no two markets share
    a stack, bucket, alarm, metric dimension or key, and the default market keeps the
    names it always had."""
    return environment if market is None else f"{market}-{environment}"


def lake_bucket_name(deployment: str, bucket: str, account: str, region: str) -> str:
    """``credit-risk-<deployment>-<bucket>-<account>-<region>``: the lake's buckets
    (raw, curated, models, access-logs) are globally unique and known in advance."""
    return f"{resource_name(deployment, bucket)}-{account}-{region}"


# --- Disaster recovery (credit_risk.dr; README "Disaster recovery") -------------
# A deployment with a standby region runs in one of two roles; the standby holds
# replicas of the lake and the registry, its own empty-until-failover store, and
# every rule that starts work disabled.
DR_PRIMARY: Final = "primary"
DR_STANDBY: Final = "standby"
# The snapshot the store serves, written beside the lake's curated data by each
# load (``<lake>/<key>``) and replicated with it: a failover loads the same one.
ACTIVE_SNAPSHOT_KEY: Final = "serving/active-snapshot.json"
# And each load's own pointer, ``<prefix><snapshot id>.json``: a rollback of the store
# points the lake back at the snapshot it re-activates.
SNAPSHOT_POINTERS_PREFIX: Final = "serving/snapshots/"
# What the last failover or failback did, in the curated bucket of the region it
# went to (``<lake>/<key>``).
DR_STATE_KEY: Final = "dr/state.json"
# The decisions a standby recorded while it served, exported by its feature loader
# (``credit_risk.decision_transfer``) for the primary's to import on failback:
# ``<lake>/<prefix><region>/<time>/``. The lake keeps an export a few days: by then
# it is imported, and it holds personal data.
DECISION_EXPORTS_PREFIX: Final = "dr/decisions/"
DECISION_EXPORT_DAYS: Final = 7
DECISION_EXPORT_KEY_PATTERN: Final = (
    f"^{DECISION_EXPORTS_PREFIX}{REGION_PATTERN.strip('^$')}/\\d{{8}}T\\d{{6}}Z/$"
)


def decision_export_key(region: str, moment: datetime) -> str:
    """The folder (a key prefix in the curated bucket) of one export from ``region``."""
    return f"{DECISION_EXPORTS_PREFIX}{region}/{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}/"


def decision_watermark_key(region: str) -> str:
    """Where a primary's lake records the last decision merged from ``region``'s store
    (outside the exports, which expire)."""
    return f"dr/decision-watermarks/{region}.json"


# Every EventBridge rule that starts work (schedules, the raw-data trigger, the
# probe, warm-up) is named ``<schedule_rule_prefix>…``: a standby deploys them
# disabled, and a failover enables them there and disables them where it left.
SCHEDULE_RULE_PART: Final = "work"
# What follows the prefix, one per rule that starts work.
WORK_RULES: Final = (
    "retraining",
    "new-raw-data",
    "retraining-requested",
    "batch-scoring",
    "warm-up",
    "monitor",
    "probe",
)
# The probe's failure alarm, which a Route 53 failover health check watches.
PROBE_FAILURES_ALARM_PARTS: Final = ("probe", "failures")
# Stack outputs of a deployment's lake and functions, read by a failover.
OUTPUT_CURATED_BUCKET: Final = "CuratedBucketName"
# The feature loader a failover invokes (an output: a name set on a deployed function
# would replace it, and its name is exported to the stacks that use it).
OUTPUT_FEATURE_LOADER: Final = "FeatureLoaderFunctionName"
OUTPUT_MODELS_BUCKET: Final = "ModelsBucketName"
OUTPUT_DR_ROLE: Final = "DrRole"
OUTPUT_DR_PEER_REGION: Final = "DrPeerRegion"
# The client key's secret when clients call one domain in both regions
# (``resource_name(deployment, part)``, replicated to the standby).
CLIENT_KEY_SECRET_PART: Final = "client-key"  # noqa: S105 - a name part
# Each region's AWS Backup vault (``resource_name(deployment, part)``): the store's
# backups land in their own region's and are copied to the peer's.
BACKUP_VAULT_PART: Final = "backup"


def schedule_rule_prefix(deployment: str) -> str:
    """``credit-risk-<deployment>-work-``: the names of the rules that start work."""
    return resource_name(deployment, SCHEDULE_RULE_PART) + "-"


def split_deployment(deployment: str) -> tuple[str, str | None]:
    """``(environment, market)`` of a deployment name, ``deployment_name`` undone."""
    market, _, environment = deployment.rpartition("-")
    if environment not in ENVIRONMENTS:
        raise ValueError(f"not a deployment: {deployment!r} ([<market>-]<environment>)")
    return environment, market or None


def deployment_options(deployment: str) -> str:
    """``--env prod --market mx`` for ``mx-prod``: how the commands name a deployment."""
    environment, market = split_deployment(deployment)
    return f"--env {environment}" + (f" --market {market}" if market else "")


def cdk_context_options(deployment: str, *, standby: bool = False) -> list[str]:
    """``-c env=prod -c market=mx [-c region=standby]``: how ``cdk`` names a deployment
    (``infra/app.py``), or its standby side."""
    environment, market = split_deployment(deployment)
    options = ["-c", f"env={environment}"]
    if market:
        options += ["-c", f"market={market}"]
    if standby:
        options += ["-c", f"region={DR_STANDBY}"]
    return options
