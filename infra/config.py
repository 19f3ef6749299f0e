"""Typed settings of one environment, read from the ``cdk.json`` context.

Environments differ only in these parameters: every stack takes the same
``EnvironmentConfig`` and nothing else varies between dev, staging and prod.
A bad value fails the synth with the field's path, before any construct exists.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from credit_risk import probe, release_decision
from credit_risk.errors import InvalidInputError, validation_problems
from credit_risk.names import (
    BATCH_MAX_PARTITIONS,
    DR_PRIMARY,
    DR_STANDBY,
    ENV_PREFIX,
    ENVIRONMENTS,
    MARKET_PATTERN,
    METRIC_LAG_SECONDS,
    REGION_PATTERN,
    deployment_name,
    lake_bucket_name,
    resource_name,
)

MAX_BUCKET_NAME = 63

PositiveInt = Annotated[int, Field(gt=0)]
Region = Annotated[str, Field(pattern=REGION_PATTERN)]
Zones = Annotated[tuple[str, ...], Field(min_length=2, max_length=3)]
VpcCidr = Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+\.\d+/(1[6-9]|2[0-4])$")]
# Retention periods CloudWatch Logs accepts (a subset, the useful ones).
LogRetentionDays = Literal[7, 14, 30, 60, 90, 180, 365, 731, 1827, 3653]


class ConfigurationError(ValueError):
    """The CDK context does not describe a valid environment."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Model):
    instance_type: str = Field(pattern=r"^[a-z0-9]+\.[a-z0-9]+$", examples=["t4g.medium"])
    # Full version to create with; RDS then applies minor upgrades in the
    # maintenance window. A bare major is deprecated for new instances.
    engine_version: str = Field(pattern=r"^1[6-8]\.\d+$", examples=["17.9"])
    multi_az: bool
    deletion_protection: bool
    allocated_storage_gib: Annotated[int, Field(ge=20)]
    max_allocated_storage_gib: Annotated[int, Field(ge=20)]
    backup_retention_days: Annotated[int, Field(ge=1, le=35)]
    secret_rotation_days: Annotated[int, Field(ge=1, le=365)]
    # Days a recorded credit decision stays in the store for lookup (each feature
    # load deletes older ones); prod keeps 25 months, Regulation B's 1002.12(b).
    decision_retention_days: Annotated[int, Field(ge=1, le=3650)]

    @model_validator(mode="after")
    def _storage_can_grow(self) -> DatabaseConfig:
        if self.max_allocated_storage_gib < self.allocated_storage_gib:
            raise ValueError("max_allocated_storage_gib must be >= allocated_storage_gib")
        return self


class GlueConfig(_Model):
    worker_type: Literal["G.1X", "G.2X", "G.4X", "G.8X"]
    number_of_workers: Annotated[int, Field(ge=2)]
    timeout_minutes: PositiveInt


class TrainingEngineConfig(_Model):
    """Where training runs (credit_risk.model.engine): from ``distributed_from_rows``
    training rows on (the data-quality report's ``training_rows``), the Glue job
    with XGBoost's Spark estimator on ``glue`` workers; below it, the training
    Lambda. The threshold is the one the training state machine's Choice compares
    with, and the local runner's default (``names.DEFAULT_DISTRIBUTED_FROM_ROWS``)
    when nothing sets it. bench/scale.py measures where the Lambda stops."""

    distributed_from_rows: PositiveInt
    glue: GlueConfig


class FunctionConfig(_Model):
    memory_mb: Annotated[int, Field(ge=128, le=10240)]
    timeout_seconds: Annotated[int, Field(ge=1, le=900)]
    reserved_concurrency: PositiveInt | None = None
    provisioned_concurrency: PositiveInt | None = None


class FunctionsConfig(_Model):
    inference: FunctionConfig
    training: FunctionConfig
    feature_loader: FunctionConfig
    monitor: FunctionConfig


# How long a release stage must last for its gates to see it. The release alarms
# judge one-minute periods, and CloudWatch has a minute's metrics one to three
# minutes after the minute ends (names.METRIC_LAG_SECONDS):
# - a code release's canary is judged by CodeDeploy as its interval ends, with no
#   wait for the metrics: an interval shorter than a period plus the delay ends
#   before its alarms could have seen it;
# - a model release waits the delay after each stage before checking it, but a
#   canary step's evidence counts only the whole minutes after the step began
#   (credit_risk.release.evidence_start): a period plus that first partial minute,
#   which the same bound covers.
ALARM_PERIOD_MINUTES = 1
METRIC_LAG_MINUTES = math.ceil(METRIC_LAG_SECONDS / 60)
MIN_STEP_MINUTES = ALARM_PERIOD_MINUTES + METRIC_LAG_MINUTES

Fraction = Annotated[float, Field(gt=0, le=1)]


def _long_enough(field: str, minutes: int) -> None:
    if minutes < MIN_STEP_MINUTES:
        raise ValueError(
            f"{field} is {minutes}: a release stage must last at least {MIN_STEP_MINUTES} "
            f"minutes (alarm period {ALARM_PERIOD_MINUTES} + metric delay "
            f"{METRIC_LAG_MINUTES}), or its alarms cannot see it"
        )


class ModelReleaseConfig(_Model):
    """A model release (DESIGN.md "Releases"): shadow for ``shadow_minutes`` (the
    candidate scores every request beside the champion and answers no one), then
    canary steps of ``wait_minutes`` each (the customers whose keyed hash falls in
    the step's share get the candidate's answer), then promotion. After every stage
    the gates are judged on the release's counts since it began
    (``credit_risk.release_decision``); a stage with less evidence than
    ``shadow_min_requests`` customers scored by both models, or ``min_requests``
    customers answered by the candidate, rolls back."""

    shadow_minutes: PositiveInt
    shadow_min_requests: PositiveInt
    steps_percent: tuple[Annotated[float, Field(gt=0, lt=100)], ...] = Field(min_length=1)
    wait_minutes: PositiveInt
    min_requests: PositiveInt
    # The gates (release_decision.Gates).
    max_candidate_errors: Annotated[int, Field(ge=0)]
    # Candidate p99 scoring time over the champion's.
    max_latency_ratio: Annotated[float, Field(ge=1)]
    # On the same customers: candidate minus champion approval rate (either way),
    # and the share whose decision the candidate changes.
    max_approval_rate_change: Fraction
    max_swap_share: Fraction
    # PSI of the candidate's score distribution against the champion's.
    max_score_psi: Annotated[float, Field(gt=0)]

    @model_validator(mode="after")
    def _observable(self) -> ModelReleaseConfig:
        if list(self.steps_percent) != sorted(set(self.steps_percent)):
            raise ValueError("steps_percent must be strictly increasing")
        _long_enough("shadow_minutes", self.shadow_minutes)
        _long_enough("wait_minutes", self.wait_minutes)
        try:  # the decision function's own rules, so that synth refuses what it would
            release_decision.CanaryPolicy.from_settings(self.settings())
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None
        return self

    def settings(self) -> dict[str, Any]:
        """The settings as a release execution takes them (its ``canary`` input):
        waits in seconds, percentages as written in cdk.json."""
        return {
            "steps_percent": [_number(step) for step in self.steps_percent],
            "wait_seconds": self.wait_minutes * 60,
            "min_requests": self.min_requests,
            "shadow_seconds": self.shadow_minutes * 60,
            "shadow_min_requests": self.shadow_min_requests,
            "max_candidate_errors": self.max_candidate_errors,
            "max_latency_ratio": self.max_latency_ratio,
            "max_approval_rate_change": self.max_approval_rate_change,
            "max_swap_share": self.max_swap_share,
            "max_score_psi": self.max_score_psi,
        }


def _number(value: float) -> int | float:
    """10.0 -> 10: the percentages read as they are written in cdk.json."""
    return int(value) if float(value).is_integer() else value


class CodeReleaseConfig(_Model):
    """The code release: CodeDeploy sends ``canary_percent`` of the live alias's
    traffic to the new function version for ``canary_minutes``, then all of it."""

    canary_percent: Annotated[int, Field(gt=0, lt=100)]
    canary_minutes: PositiveInt

    @model_validator(mode="after")
    def _observable(self) -> CodeReleaseConfig:
        _long_enough("canary_minutes", self.canary_minutes)
        return self


class AlarmConfig(_Model):
    api_5xx_per_5_minutes: PositiveInt
    api_p99_latency_ms: PositiveInt
    lambda_errors_per_5_minutes: PositiveInt
    lambda_throttles_per_5_minutes: PositiveInt
    rds_cpu_percent: Annotated[int, Field(gt=0, le=100)]
    rds_connections: PositiveInt
    rds_free_storage_gib: PositiveInt
    model_staleness_days: PositiveInt


class MonitoringConfig(_Model):
    """The model and data monitor: when it runs and what it tolerates.

    Each field but ``schedule`` reaches the monitor function as the environment
    variable ``CREDIT_RISK_<FIELD>`` (its ``Settings`` field of the same name).
    """

    schedule: str = Field(pattern=r"^(cron|rate)\(.+\)$")
    monitor_window_days: Annotated[int, Field(ge=1, le=90)]
    psi_warn: Annotated[float, Field(gt=0)]
    psi_alert: Annotated[float, Field(gt=0)]
    max_model_age_days: PositiveInt
    max_features_age_days: PositiveInt
    auc_drop_tolerance: Annotated[float, Field(gt=0, lt=1)]
    min_labelled: PositiveInt
    skew_sample_size: PositiveInt
    # Served decisions by group (credit_risk.monitoring.fairness).
    adverse_impact_floor: Annotated[float, Field(gt=0, le=1)]
    fairness_min_decisions: PositiveInt
    retrain_on_quality_drop: bool

    @model_validator(mode="after")
    def _alert_above_warn(self) -> MonitoringConfig:
        if self.psi_alert <= self.psi_warn:
            raise ValueError("psi_alert must be above psi_warn")
        return self

    def environment(self, only: tuple[str, ...] | None = None) -> dict[str, str]:
        """The monitor function's settings (or ``only`` those) as ``CREDIT_RISK_*``
        variables."""
        return {
            f"{ENV_PREFIX}{field.upper()}": str(value).lower()
            if isinstance(value, bool)
            else str(value)
            for field, value in self.model_dump(exclude={"schedule"}).items()
            if only is None or field in only
        }


class BatchScoringConfig(_Model):
    """Whole-portfolio batch scoring (credit_risk.batch_scoring): the snapshot is cut
    into ``partitions`` ranges of customer ids, each scored by one invocation of
    ``function`` (at most ``max_concurrency`` at a time, each holding one connection
    to the store), reading ``chunk_rows`` customers at a time. On demand, and on
    ``schedule`` when set (an EventBridge expression; None: on demand only)."""

    function: FunctionConfig
    partitions: Annotated[int, Field(ge=1, le=BATCH_MAX_PARTITIONS)]
    max_concurrency: Annotated[int, Field(ge=1, le=BATCH_MAX_PARTITIONS)]
    chunk_rows: Annotated[int, Field(ge=100, le=100_000)]
    schedule: str | None = Field(default=None, pattern=r"^(cron|rate)\(.+\)$")

    @model_validator(mode="after")
    def _fits(self) -> BatchScoringConfig:
        if self.max_concurrency > self.partitions:
            raise ValueError("max_concurrency cannot exceed partitions")
        # A range is one invocation: it must be able to run for minutes, and to hold
        # a page, the model and the score histogram (credit_risk.batch_summary).
        if self.function.timeout_seconds < 300 or self.function.memory_mb < 1024:
            raise ValueError("the batch-scoring function needs at least 300 s and 1024 MB")
        return self


class ApiConfig(_Model):
    throttle_rate_per_second: PositiveInt
    throttle_burst: PositiveInt
    quota_requests: PositiveInt
    quota_period: Literal["DAY", "WEEK", "MONTH"]
    # Requests per 5 minutes from one IP before WAF blocks it; None: no WAF.
    waf_rate_limit: Annotated[int, Field(ge=100)] | None = None


# What a probe run spends besides its two calls: a cold start of the image, the
# client key from Secrets Manager, the last answer from S3 and the new one to it.
PROBE_OVERHEAD_SECONDS = 20
# API Gateway ends an integration at 29 seconds: a slower call is a 504 anyway.
API_GATEWAY_TIMEOUT_SECONDS = 29


class ProbeConfig(_Model):
    """The synthetic probe (``credit_risk.probe``): every ``rate_minutes`` a function
    calls the API's health route and scores ``customer_id`` through the public URL
    with the client key, each call within ``timeout_seconds``. ``failures_to_alarm``
    failed probes in a row raise the failure alarm; an answer that changed with
    neither a new model version nor a new snapshot raises the answer-changed alarm.
    ``enabled: false`` deploys none of it."""

    enabled: bool
    rate_minutes: Annotated[int, Field(ge=1, le=60)]
    customer_id: str
    timeout_seconds: Annotated[int, Field(ge=1, le=API_GATEWAY_TIMEOUT_SECONDS)]
    failures_to_alarm: Annotated[int, Field(ge=1, le=10)]

    @model_validator(mode="after")
    def _runs_fit(self) -> ProbeConfig:
        try:  # the API's own rule for ids, so that synth refuses what it would
            probe.check_customer_id(self.customer_id)
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None
        if self.function_timeout_seconds >= self.rate_minutes * 60:
            raise ValueError(
                f"a probe may take {self.function_timeout_seconds} s (two calls of "
                f"timeout_seconds {self.timeout_seconds} + {PROBE_OVERHEAD_SECONDS} s), "
                f"longer than rate_minutes {self.rate_minutes}: runs would overlap"
            )
        return self

    @property
    def function_timeout_seconds(self) -> int:
        return 2 * self.timeout_seconds + PROBE_OVERHEAD_SECONDS


class FailoverDomainConfig(_Model):
    """A custom domain clients call, answered by the primary region's API while the
    primary's probe is healthy and by the standby's otherwise (Route 53 failover
    records). Each region needs its own ACM certificate for the name."""

    name: str = Field(pattern=r"^([a-z0-9-]+\.)+[a-z]{2,}$", examples=["api.lender.example"])
    hosted_zone_id: str = Field(pattern=r"^Z[A-Z0-9]{4,32}$")
    hosted_zone_name: str = Field(pattern=r"^([a-z0-9-]+\.)+[a-z]{2,}$")
    # Region -> certificate ARN, for the primary and the standby region.
    certificate_arns: dict[Region, str]

    @model_validator(mode="after")
    def _name_in_zone(self) -> FailoverDomainConfig:
        if not self.name.endswith("." + self.hosted_zone_name):
            raise ValueError(f"{self.name} is not in the hosted zone {self.hosted_zone_name}")
        for region, arn in self.certificate_arns.items():
            if not re.fullmatch(rf"arn:aws[\w-]*:acm:{region}:\d{{12}}:certificate/[\w-]+", arn):
                raise ValueError(f"certificate for {region} is not an ACM ARN of {region}: {arn}")
        return self


# Snapshots one deployment's backups may hold in a region: half RDS's default quota
# of 100 manual snapshots per region, which AWS Backup's count against and which the
# staging deployment and other markets in the region share.
RDS_SNAPSHOT_BUDGET = 50


class DisasterRecoveryConfig(_Model):
    """A standby region for the deployment (README "Disaster recovery").

    The lake's raw and curated data and the registry replicate to the standby's
    buckets; the store is backed up every ``backup_every_hours`` and each backup
    copied to the standby's vault. The release pipeline releases the standby's lake
    and vault before the primary; ``standby: warm`` also deploys every other stack
    there after it, its rules that start work disabled until a failover;
    ``pilot_light`` deploys the rest only at failover (``cdk deploy -c region=standby``)."""

    standby_region: Region
    standby_availability_zones: Zones
    standby_vpc_cidr: VpcCidr
    standby: Literal["warm", "pilot_light"]
    backup_every_hours: Literal[1, 2, 3, 4, 6, 8, 12, 24]
    # Days a copied backup is kept in the peer's vault. Each copy is the whole store,
    # decisions of every age included: a week of them is history enough, and more
    # would crowd the region's quota of RDS snapshots.
    backup_copy_retention_days: Annotated[int, Field(ge=1, le=35)]
    domain: FailoverDomainConfig | None = None

    @property
    def recovery_points_per_region(self) -> int:
        """Copies arriving from the peer, plus this region's own of the last day."""
        per_day = 24 // self.backup_every_hours
        return per_day * (self.backup_copy_retention_days + 1)

    @model_validator(mode="after")
    def _zones_in_region(self) -> DisasterRecoveryConfig:
        _check_zones(self.standby_availability_zones, self.standby_region)
        if self.recovery_points_per_region > RDS_SNAPSHOT_BUDGET:
            raise ValueError(
                f"backing up every {self.backup_every_hours} h and keeping copies "
                f"{self.backup_copy_retention_days} days leaves "
                f"{self.recovery_points_per_region} snapshots per region, above "
                f"{RDS_SNAPSHOT_BUDGET} (half the default RDS quota of 100, which the "
                "region's other deployments share): back up less often or keep copies less"
            )
        return self


def _check_zones(zones: tuple[str, ...], region: str) -> None:
    strays = [zone for zone in zones if not zone.startswith(region)]
    if strays:
        raise ValueError(f"availability zones {strays} are not in region {region}")


class EnvironmentConfig(_Model):
    name: Literal["dev", "staging", "prod"]
    # None: the default market, whose names carry no market.
    market: Annotated[str, Field(pattern=MARKET_PATTERN)] | None = None
    # Which side of its disaster recovery this synth builds: the configured
    # ``region`` (primary) or ``disaster_recovery.standby_region`` (standby).
    role: Literal["primary", "standby"] = DR_PRIMARY
    # A standby's primary region (set by ``standby()``, never in cdk.json).
    primary_region: Region | None = None
    # None: the account of the credentials running ``cdk deploy``.
    account: Annotated[str, Field(pattern=r"^\d{12}$")] | None = None
    region: Region
    # Pinned here so that synth never asks AWS which zones exist.
    availability_zones: Zones
    vpc_cidr: VpcCidr
    nat_gateways: Annotated[int, Field(ge=1, le=3)]
    retain_data: bool
    log_retention_days: LogRetentionDays
    database: DatabaseConfig
    glue: GlueConfig
    training: TrainingEngineConfig
    functions: FunctionsConfig
    model_release: ModelReleaseConfig
    code_release: CodeReleaseConfig
    alarms: AlarmConfig
    monitoring: MonitoringConfig
    batch_scoring: BatchScoringConfig
    api: ApiConfig
    retraining_schedule: str = Field(pattern=r"^(cron|rate)\(.+\)$")
    # Minutes between warm-up calls to the live alias; None: no warm-up rule.
    warmup_rate_minutes: PositiveInt | None = None
    probe: ProbeConfig
    notification_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    disaster_recovery: DisasterRecoveryConfig | None = None

    @model_validator(mode="after")
    def _fits_its_regions(self) -> EnvironmentConfig:
        _check_zones(self.availability_zones, self.region)
        if self.nat_gateways > len(self.availability_zones):
            raise ValueError("nat_gateways cannot exceed the number of availability zones")
        for region in (self.region, self.peer_region or self.region):
            longest = lake_bucket_name(self.deployment, "access-logs", "0" * 12, region)
            if len(longest) > MAX_BUCKET_NAME:
                raise ValueError(
                    f"bucket names of {self.deployment} in {region} would run to "
                    f"{len(longest)} characters ({longest}), above S3's {MAX_BUCKET_NAME}: "
                    "choose a shorter market name"
                )
        return self

    @model_validator(mode="after")
    def _recovery_is_coherent(self) -> EnvironmentConfig:
        dr = self.disaster_recovery
        if self.is_standby != (self.primary_region is not None) or (self.is_standby and dr is None):
            raise ValueError("a standby is made by standby(), from disaster_recovery settings")
        if dr is None:
            return self
        primary = self.primary_region or self.region
        if dr.standby_region == primary:
            raise ValueError("disaster_recovery.standby_region must differ from region")
        if dr.domain is not None:
            missing = {primary, dr.standby_region} - set(dr.domain.certificate_arns)
            if missing:
                raise ValueError(f"domain.certificate_arns has none for {sorted(missing)}")
            if not self.probe.enabled:
                raise ValueError(
                    "a failover domain needs the probe: its health check watches the probe's alarm"
                )
        return self

    @property
    def deployment(self) -> str:
        """``prod`` or ``<market>-prod``: the name every stack and resource carries."""
        return deployment_name(self.name, self.market)

    @property
    def peer_region(self) -> str | None:
        """The other region of the disaster-recovery pair, if there is one."""
        if self.disaster_recovery is None:
            return None
        return self.primary_region or self.disaster_recovery.standby_region

    @property
    def is_standby(self) -> bool:
        return self.role == DR_STANDBY

    def standby(self) -> EnvironmentConfig:
        """The same deployment on its standby region's side."""
        dr = self.disaster_recovery
        if dr is None:
            raise ConfigurationError(
                f"{self.deployment} has no standby region (disaster_recovery in cdk.json)"
            )
        if self.is_standby:
            return self
        fields = self.model_dump(exclude={"role", "region", "availability_zones", "vpc_cidr"})
        return EnvironmentConfig.model_validate(
            {
                **fields,
                "role": DR_STANDBY,
                "region": dr.standby_region,
                "availability_zones": dr.standby_availability_zones,
                "vpc_cidr": dr.standby_vpc_cidr,
                "primary_region": self.region,
            }
        )

    def resource_name(self, *parts: str) -> str:
        """``credit-risk-<deployment>-<parts>``: physical names that other code must know."""
        return resource_name(self.deployment, *parts)


class PipelineConfig(_Model):
    """The release pipeline (``cdk.json`` ``context.pipeline``)."""

    # The account and region the pipeline lives in; None: those of the
    # credentials deploying it. Target accounts trust it through `cdk bootstrap`.
    account: Annotated[str, Field(pattern=r"^\d{12}$")] | None = None
    region: Region
    repository: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", examples=["acme/credit-risk"])
    branch: str = Field(min_length=1)
    connection_arn: str = Field(
        pattern=r"^arn:aws[\w-]*:(codestar-connections|codeconnections):[a-z0-9-]+:\d{12}:"
        r"connection/[\w-]+$"
    )
    # When the locked dependencies are audited (vulnerabilities, outdated).
    dependency_audit_schedule: str = Field(pattern=r"^(cron|rate)\(.+\)$")
    notification_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    # Markets of ``context.markets`` the pipeline releases, each environment of each
    # in its own stage, after the default market's.
    markets: tuple[Annotated[str, Field(pattern=MARKET_PATTERN)], ...] = ()


def load_pipeline_config(context: dict[str, Any] | Any) -> PipelineConfig:
    """Validate ``context.pipeline``, as ``load_config`` does for an environment."""
    raw = _context_entry(context, "pipeline")
    if not isinstance(raw, dict):
        raise ConfigurationError("cdk.json has no context entry 'pipeline' (an object)")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigurationError(
            f"invalid pipeline settings: {validation_problems(exc, whole='the entry', limit=None)}"
        ) from exc


def load_config(
    context: dict[str, Any] | Any, environment: str, market: str | None = None
) -> EnvironmentConfig:
    """Validate the ``environment`` entry of the CDK context, for ``market`` if given.

    ``context`` is the context mapping (``cdk.json`` ``context``) or anything with
    ``try_get_context`` (a construct node), so the app and the tests share this.
    A market's entry (``markets.<market>``) overrides the environment's settings:
    its top-level fields apply to every environment, and its ``dev``/``staging``/
    ``prod`` objects to that one only, each merged field by field.
    """
    if environment not in ENVIRONMENTS:
        raise ConfigurationError(
            f"unknown environment {environment!r}: use -c env=<{'|'.join(ENVIRONMENTS)}>"
        )
    raw = _context_entry(context, environment)
    if not isinstance(raw, dict):
        raise ConfigurationError(f"cdk.json has no context entry for environment {environment!r}")
    where = environment
    if market is not None:
        overrides = market_overrides(context, market)
        shared = {k: v for k, v in overrides.items() if k not in ENVIRONMENTS}
        raw = _merged(_merged(raw, shared), overrides.get(environment) or {})
        raw = {**raw, "market": market}
        where = deployment_name(environment, market)
    try:
        return EnvironmentConfig.model_validate({"name": environment, **raw})
    except ValidationError as exc:
        raise ConfigurationError(
            f"invalid settings for {where}: "
            f"{validation_problems(exc, whole='the entry', limit=None)}"
        ) from exc


def markets(context: dict[str, Any] | Any) -> tuple[str, ...]:
    """The markets ``cdk.json`` declares besides the default one, sorted."""
    declared = _context_entry(context, "markets") or {}
    if not isinstance(declared, dict):
        raise ConfigurationError("cdk.json context entry 'markets' must be an object")
    return tuple(sorted(declared))


def market_overrides(context: dict[str, Any] | Any, market: str) -> dict[str, Any]:
    """``markets.<market>`` of the context; an undeclared or misnamed market is refused."""
    if not re.fullmatch(MARKET_PATTERN, market):
        raise ConfigurationError(
            f"invalid market name {market!r}: 2 to 8 lowercase letters (it is part of "
            "every stack and resource name)"
        )
    declared = _context_entry(context, "markets") or {}
    overrides = declared.get(market) if isinstance(declared, dict) else None
    if not isinstance(overrides, dict):
        known = ", ".join(markets(context)) or "none"
        raise ConfigurationError(
            f"unknown market {market!r}: cdk.json declares {known} (context.markets)"
        )
    for environment in ENVIRONMENTS:
        if not isinstance(overrides.get(environment, {}), dict):
            raise ConfigurationError(f"markets.{market}.{environment} must be an object")
    return overrides


def _context_entry(context: dict[str, Any] | Any, key: str) -> Any:
    if isinstance(context, dict):
        return context.get(key)
    return context.try_get_context(key)


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on ``base``, objects merged key by key; anything else replaced.
    A null is no override: the CDK app never sees one (context passes through jsii,
    which drops nulls inside objects), so the tests' plain dicts must not either."""
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged
