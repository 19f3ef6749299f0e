"""A deployment with a standby region, on this machine, for the failover drill.

Each region has what the stacks give it (the README's "Disaster recovery"), named by
``credit_risk.names``: versioned lake buckets, the work rules (enabled in the
primary, disabled in the standby), the client-key secret, and the DataLake, Api and Ml
stacks' outputs, in moto; its own PostgreSQL database as the feature store; its API,
the local gateway in front of the real inference handler, reading that region's
registry and store; and its feature-loader function, the real handler run
in-process (``InProcessLambda``: moto runs no function without Docker). Route 53
holds a failover record pair and the health check on the primary's probe alarm.

Where moto stops short of AWS, a hook stands in:

- S3 replication: moto does not replicate, ``replicate`` copies the primary's raw,
  curated and models objects to the standby's buckets, keys unchanged, as the
  replication rules do;
- Route 53: moto keeps a CLOUDWATCH_METRIC health check without its AlarmIdentifier;
  ``keep_alarm_identifiers`` makes it keep and describe it, as AWS does;
- a region that is down: its clients fail to connect (``DrillClients(down=True)``).
"""

from __future__ import annotations

import importlib.util
import io as _io
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from credit_risk import dr, names
from credit_risk.local_api import (
    LambdaContext,
    LocalGateway,
    champion_function,
    make_server,
    patched_environment,
)
from credit_risk.registry import Registry
from credit_risk.store import get_store
from tests.conftest import create_output_stack
from tests.integration.store.conftest import fresh_postgres_database
from tests.integration.store.data import snapshot_table

ENVIRONMENT = "prod"
DEPLOYMENT = names.deployment_name(ENVIRONMENT)
PRIMARY, STANDBY = "eu-west-1", "eu-central-1"
MODEL_NAME = names.PROJECT
CUSTOMER_ID = "1234567"  # the default of `credit-risk dr`, the synthetic data's first
RUN_ID = "20240601-drill"
# A snapshot the standby loads while it serves.
NEWER_RUN = "20240601-standby"
SNAPSHOT_CUSTOMERS = 300
API_KEY = "drill-client-key"
HASH_KEY = "drill-id-hash-key"
# As a deployment names them (tests/infra/test_disaster_recovery.py checks the templates).
WORK_RULES = names.WORK_RULES
# Not a work rule: a failover leaves it as it is.
OTHER_RULE = names.resource_name(DEPLOYMENT, "release", "abandoned")
PROBE_ALARM = names.resource_name(DEPLOYMENT, *names.PROBE_FAILURES_ALARM_PARTS)
LOADER_HANDLER = Path(__file__).resolve().parents[3] / "lambdas" / "feature_loader" / "handler.py"
LAKE_BUCKETS = dr.LAKE_BUCKETS


@dataclass(frozen=True)
class TrainedModel:
    version: str
    model_bytes: bytes
    metadata: dict[str, Any]


@dataclass
class Region:
    """One side of the deployment: its names, its store and its running API."""

    name: str
    role: str
    peer: str
    account: str
    database_url: str
    api_url: str = ""
    loader: InProcessLambda | None = None

    def bucket(self, kind: str) -> str:
        return names.lake_bucket_name(DEPLOYMENT, kind, self.account, self.name)

    @property
    def lake(self) -> str:
        return f"s3://{self.bucket('curated')}"

    @property
    def registry_uri(self) -> str:
        return f"s3://{self.bucket('models')}/{names.REGISTRY_PREFIX.rstrip('/')}"

    @property
    def rule_names(self) -> list[str]:
        return [names.schedule_rule_prefix(DEPLOYMENT) + rule for rule in WORK_RULES]

    def rule_states(self) -> dict[str, str]:
        rules = boto3.client("events", region_name=self.name).list_rules()["Rules"]
        return {rule["Name"]: rule["State"] for rule in rules}

    def replication(self) -> set[str]:
        """The states of the rules replicating the region's lake (none: no replication)."""
        s3 = boto3.client("s3", region_name=self.name)
        states = set()
        for kind in LAKE_BUCKETS:
            try:
                config = s3.get_bucket_replication(Bucket=self.bucket(kind))
            except s3.exceptions.ClientError:
                continue
            states |= {rule["Status"] for rule in config["ReplicationConfiguration"]["Rules"]}
        return states

    def work_rules(self) -> set[str]:
        """The states of the region's work rules."""
        states = self.rule_states()
        return {states[name] for name in self.rule_names}

    def read_json(self, key: str) -> dict[str, Any]:
        s3 = boto3.client("s3", region_name=self.name)
        return json.loads(s3.get_object(Bucket=self.bucket("curated"), Key=key)["Body"].read())

    def function_environment(self, local_dir: Path) -> dict[str, str]:
        """What the stacks set for this region's functions (and the Lambda runtime's
        region variables)."""
        return {
            "AWS_REGION": self.name,
            "AWS_DEFAULT_REGION": self.name,
            f"{names.ENV_PREFIX}LOCAL_DIR": str(local_dir),
            names.ENV_ENVIRONMENT: DEPLOYMENT,
            names.ENV_LAKE_URI: self.lake,
            names.ENV_REGISTRY_URI: self.registry_uri,
            names.ENV_MODEL_NAME: MODEL_NAME,
            names.ENV_DATABASE_URL: self.database_url,
            f"{names.ENV_PREFIX}ID_HASH_KEY": HASH_KEY,
            names.ENV_POWERTOOLS_SERVICE_NAME: names.SERVICE_FEATURE_LOADER,
        }


class InProcessLambda:
    """The Lambda client of one region as the failover uses it: ``invoke`` of the
    feature-loader function runs the real handler in-process, with the function's
    environment, and answers as Lambda does (``FunctionError`` on an exception)."""

    def __init__(self, region: Region, environment: dict[str, str]) -> None:
        self.function_name = f"CreditRisk-{DEPLOYMENT}-Ml-FunctionsFeatureLoader-{region.name}"
        self.region = region
        self.environment = environment
        self.invocations: list[dict[str, Any]] = []
        # Registered under its own name: Pydantic resolves the handler's postponed
        # annotations through it.
        self.module_name = f"feature_loader_{region.name.replace('-', '_')}"
        spec = importlib.util.spec_from_file_location(self.module_name, LOADER_HANDLER)
        assert spec is not None
        assert spec.loader is not None
        self.module = importlib.util.module_from_spec(spec)
        sys.modules[self.module_name] = self.module
        with patched_environment(environment):
            spec.loader.exec_module(self.module)

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> dict:  # noqa: N803 - boto3's names
        assert InvocationType == "RequestResponse"
        if FunctionName != self.function_name:
            error = {"Code": "ResourceNotFoundException", "Message": f"{FunctionName} not found"}
            raise ClientError({"Error": error}, "Invoke")
        event = json.loads(Payload)
        self.invocations.append(event)
        context = LambdaContext(function_name=FunctionName)
        with patched_environment(self.environment):
            try:
                result, error = self.module.lambda_handler(event, context), None
            except Exception as exc:
                result = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
                error = "Unhandled"
        answer = {"StatusCode": 200, "Payload": _io.BytesIO(json.dumps(result).encode())}
        return {**answer, "FunctionError": error} if error else answer

    def close(self) -> None:
        if self.module._store.cache_info().currsize:
            self.module._store().close()
        self.module._store.cache_clear()
        sys.modules.pop(self.module_name, None)


def _unreachable(request: Any, **_: Any) -> None:
    raise EndpointConnectionError(endpoint_url=request.url)


class DrillClients(dr.RegionClients):
    """moto's clients for one region, the feature loader in-process; none of them
    connects when the region is ``down``."""

    def __init__(self, region: Region, *, down: bool) -> None:
        super().__init__(region.name)
        if region.loader is not None:
            self.lambda_ = region.loader
        if down:
            # First: moto answers every request in a handler of the same event.
            self._session.events.register_first("before-send", _unreachable)


@dataclass
class World:
    primary: Region
    standby: Region
    model: TrainedModel
    # The Route 53 health check on the primary's probe alarm, and the others: the
    # standby's alarm, the primary's stage and the guard over both of the primary's.
    probe_check: str
    other_checks: tuple[str, ...]
    down: set[str] = field(default_factory=set)
    printed: list[str] = field(default_factory=list)

    def region(self, name: str) -> Region:
        return {self.primary.name: self.primary, self.standby.name: self.standby}[name]

    def clients_for(self, name: str) -> DrillClients:
        return DrillClients(self.region(name), down=name in self.down)

    def switch(self, direction: str, to: Region) -> dr.RecoveryState:
        """``credit-risk dr <direction> --env prod --to <region>``, on this world."""
        request = dr.RecoveryRequest(
            environment=ENVIRONMENT,
            direction=direction,
            target_region=to.name,
            wait_seconds=20,
        )
        self.printed.clear()
        print(f"$ credit-risk dr {direction} --env {ENVIRONMENT} --to {to.name}")

        def say(line: str) -> None:
            print(line)  # shown with a failing test
            self.printed.append(line)

        return dr.switch_region(request, clients_for=self.clients_for, say=say)

    def health_checks(self) -> dict[str, dict[str, Any]]:
        checks = boto3.client("route53").list_health_checks()["HealthChecks"]
        return {check["Id"]: check["HealthCheckConfig"] for check in checks}


# --- building it -------------------------------------------------------------------------


def build_region(name: str, role: str, peer: str, database_url: str) -> Region:
    account = boto3.client("sts").get_caller_identity()["Account"]
    region = Region(name, role, peer, account, database_url)
    s3 = boto3.client("s3", region_name=name)
    for kind in LAKE_BUCKETS:
        bucket = region.bucket(kind)
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": name})
        # Replication needs versioning on both sides.
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        if role == names.DR_PRIMARY:
            # As the primary's DataLake stack configures it (moto keeps it, copies nothing).
            s3.put_bucket_replication(
                Bucket=bucket,
                ReplicationConfiguration={
                    "Role": f"arn:aws:iam::{account}:role/replication",
                    "Rules": [
                        {
                            "ID": "to-standby",
                            "Priority": 0,
                            "Filter": {"Prefix": ""},
                            "Status": "Enabled",
                            "DeleteMarkerReplication": {"Status": "Enabled"},
                            "Destination": {
                                "Bucket": "arn:aws:s3:::"
                                + names.lake_bucket_name(DEPLOYMENT, kind, account, peer)
                            },
                        }
                    ],
                },
            )
    events = boto3.client("events", region_name=name)
    state = "ENABLED" if role == names.DR_PRIMARY else "DISABLED"
    for rule in region.rule_names:
        events.put_rule(Name=rule, ScheduleExpression="rate(1 day)", State=state)
    events.put_rule(Name=OTHER_RULE, ScheduleExpression="rate(1 hour)", State="ENABLED")
    return region


def deploy_stacks(region: Region) -> None:
    """The DataLake and Api stacks' outputs (and the client-key secret they name)."""
    secret = boto3.client("secretsmanager", region_name=region.name).create_secret(
        Name=names.resource_name(DEPLOYMENT, "api-key"),
        SecretString=json.dumps({names.API_KEY_SECRET_FIELD: API_KEY}),
    )
    outputs = {
        "DataLake": {
            names.OUTPUT_RAW_BUCKET: region.bucket("raw"),
            names.OUTPUT_CURATED_BUCKET: region.bucket("curated"),
            names.OUTPUT_MODELS_BUCKET: region.bucket("models"),
            names.OUTPUT_DR_ROLE: region.role,
            names.OUTPUT_DR_PEER_REGION: region.peer,
        },
        "Api": {
            names.OUTPUT_API_URL: region.api_url,
            names.OUTPUT_API_KEY_SECRET_ARN: secret["ARN"],
        },
        "Ml": {names.OUTPUT_FEATURE_LOADER: region.loader.function_name},
    }
    cloudformation = boto3.client("cloudformation", region_name=region.name)
    for unit, values in outputs.items():
        create_output_stack(cloudformation, names.stack_name(DEPLOYMENT, unit), values)


def publish_champion(region: Region, model: TrainedModel) -> None:
    registry = Registry(region.registry_uri, MODEL_NAME)
    registry.publish(model.version, model.model_bytes, model.metadata)
    # A small training set may miss a gate check; serving does not depend on it.
    registry.promote(model.version, force=True)


def snapshot() -> pa.Table:
    """One row per customer as of 2024-06-01, the drill's customer first."""
    table = snapshot_table(SNAPSHOT_CUSTOMERS)
    ids = [CUSTOMER_ID, *table.column("customer_id").to_pylist()[1:]]
    return table.set_column(0, "customer_id", pa.array(ids, pa.string()))


def write_snapshot(region: Region, run_id: str = RUN_ID) -> str:
    """The feature job's serving snapshot of the run, in the region's curated bucket."""
    prefix = f"{names.CURATED_PREFIX}{run_id}/snapshot/"
    sink = _io.BytesIO()
    pq.write_table(snapshot(), sink)
    s3 = boto3.client("s3", region_name=region.name)
    s3.put_object(
        Bucket=region.bucket("curated"), Key=prefix + "part-00000.parquet", Body=sink.getvalue()
    )
    s3.put_object(Bucket=region.bucket("curated"), Key=prefix + "_SUCCESS", Body=b"")
    return f"s3://{region.bucket('curated')}/{prefix}"


def load(region: Region, snapshot_uri: str, run_id: str) -> None:
    """The region's feature loader loads the snapshot, as the pipeline's step does."""
    loaded = region.loader.invoke(
        FunctionName=region.loader.function_name,
        InvocationType="RequestResponse",
        Payload=json.dumps(
            {"snapshot_uri": snapshot_uri, "snapshot_id": run_id, "as_of": "2024-06-01"}
        ).encode(),
    )
    assert "FunctionError" not in loaded, loaded["Payload"].read()


def replicate(source: Region, destination: Region) -> int:
    """What the replication rules do: every object of the source's lake buckets copied
    to the destination's bucket of the same kind, same key. Returns the count."""
    s3 = boto3.client("s3", region_name=destination.name)
    copied = 0
    for kind in LAKE_BUCKETS:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=source.bucket(kind))
        for item in (item for page in pages for item in page.get("Contents", [])):
            s3.copy_object(
                Bucket=destination.bucket(kind),
                Key=item["Key"],
                CopySource={"Bucket": source.bucket(kind), "Key": item["Key"]},
            )
            copied += 1
    return copied


def route_traffic(primary: Region, standby: Region) -> tuple[str, tuple[str, ...]]:
    """The custom domain's failover records and the health checks that decide between
    them, as the failover domain builds them (infra/components/failover_domain.py): a
    calculated guard over the primary's probe alarm and an HTTPS check of its stage;
    and a health check of something else. Returns (the probe alarm's check, the
    others)."""
    route53 = boto3.client("route53")
    # The second: the same alarm name in the standby region is another alarm.
    probe_check, other_check = (
        route53.create_health_check(
            CallerReference=f"drill-alarm-{region.name}",
            HealthCheckConfig={
                "Type": "CLOUDWATCH_METRIC",
                "AlarmIdentifier": {"Region": region.name, "Name": PROBE_ALARM},
                "InsufficientDataHealthStatus": "LastKnownStatus",
            },
        )["HealthCheck"]["Id"]
        for region in (primary, standby)
    )
    reachable = route53.create_health_check(
        CallerReference="drill-reachable",
        HealthCheckConfig={
            "Type": "HTTPS",
            "FullyQualifiedDomainName": f"drill.execute-api.{primary.name}.amazonaws.com",
            "ResourcePath": f"/{names.API_STAGE_NAME}{names.ROUTE_OPENAPI}",
            "Port": 443,
            "EnableSNI": True,
        },
    )["HealthCheck"]["Id"]
    guard = route53.create_health_check(
        CallerReference="drill-guard",
        HealthCheckConfig={
            "Type": "CALCULATED",
            "ChildHealthChecks": [probe_check, reachable],
            "HealthThreshold": 2,
        },
    )["HealthCheck"]["Id"]
    zone = route53.create_hosted_zone(Name="lender.example.", CallerReference="drill-zone")
    changes = [
        {
            "Action": "CREATE",
            "ResourceRecordSet": {
                "Name": "api.lender.example.",
                "Type": "CNAME",
                "TTL": 60,
                "SetIdentifier": region.name,
                "Failover": failover,
                "ResourceRecords": [{"Value": f"{region.name}.api.lender.example"}],
                **({"HealthCheckId": guard} if failover == "PRIMARY" else {}),
            },
        }
        for region, failover in ((primary, "PRIMARY"), (standby, "SECONDARY"))
    ]
    route53.change_resource_record_sets(
        HostedZoneId=zone["HostedZone"]["Id"], ChangeBatch={"Changes": changes}
    )
    return probe_check, (other_check, reachable, guard)


def keep_alarm_identifiers(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's Route 53 keeps a health check's AlarmIdentifier and describes it."""
    from moto.route53 import models, responses

    create = responses.Route53.create_health_check
    config = models.HealthCheck.health_check_config

    def create_keeping(self: Any) -> Any:
        result = create(self)
        requested = self._get_param("HealthCheckConfig")
        result.result["HealthCheck"].alarm_identifier = requested.get("AlarmIdentifier")
        return result

    def described(self: Any) -> dict[str, Any]:
        described = config.fget(self)
        if getattr(self, "alarm_identifier", None):
            described["AlarmIdentifier"] = self.alarm_identifier
        return described

    monkeypatch.setattr(responses.Route53, "create_health_check", create_keeping)
    monkeypatch.setattr(models.HealthCheck, "health_check_config", property(described))


@contextmanager
def serving_api(region: Region, local_dir: Path) -> Iterator[str]:
    """The region's API: the local gateway in front of the inference handler serving
    the region's champion from its store, with the client key; yields its URL."""
    environment = {
        **region.function_environment(local_dir),
        names.ENV_POWERTOOLS_SERVICE_NAME: names.SERVICE_INFERENCE,
    }
    function = champion_function(environment, refresh_seconds=0)
    server = make_server(LocalGateway(function, api_key=API_KEY), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        function.close()


@contextmanager
def deployment(
    postgres_url: str, model: TrainedModel, local_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    """Both regions deployed, the primary serving its first snapshot and champion, its
    lake replicated to the standby; inside moto (the caller's ``mock_aws``)."""
    keep_alarm_identifiers(monkeypatch)
    urls, drops = [], []
    for _ in (PRIMARY, STANDBY):
        url, drop = fresh_postgres_database(postgres_url)
        urls.append(url)
        drops.append(drop)
    primary = build_region(PRIMARY, names.DR_PRIMARY, STANDBY, urls[0])
    standby = build_region(STANDBY, names.DR_STANDBY, PRIMARY, urls[1])
    regions = (primary, standby)
    try:
        for region in regions:
            region.loader = InProcessLambda(region, region.function_environment(local_dir))
        # The primary's first pipeline run: a champion, then its snapshot loaded by its
        # feature-loader function, which records it as the active snapshot.
        publish_champion(primary, model)
        load(primary, write_snapshot(primary), RUN_ID)
        replicate(primary, standby)
        probe_check, other_checks = route_traffic(primary, standby)
        with (
            serving_api(primary, local_dir) as primary_url,
            serving_api(standby, local_dir) as standby_url,
        ):
            primary.api_url, standby.api_url = primary_url, standby_url
            for region in regions:
                deploy_stacks(region)
            yield World(primary, standby, model, probe_check, other_checks)
    finally:
        for region in regions:
            if region.loader is not None:
                region.loader.close()
        get_store.cache_clear()
        for drop in drops:
            drop()
