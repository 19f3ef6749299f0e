"""Take a freshly deployed AWS environment to its first score (``credit-risk env bootstrap``).

A deployed environment has no model and an empty feature store until one training
run has gone through. The bootstrap reads where everything is from the stack
outputs, uploads one delivery of raw loans by the contract the training trigger
watches (data files first, the empty ``_SUCCESS`` marker last: DESIGN.md, "Raw-data
trigger"), finds the training-pipeline execution the marker started and waits for
it to end. The first model of an empty environment is promoted without a canary,
so a successful run means the API scores.

Every function takes the AWS clients it uses; ``AwsClients`` creates them lazily
for one region.
"""

from __future__ import annotations

import functools
import json
import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from credit_risk import datagen, io, names, schemas
from credit_risk.errors import ConfigurationError, InvalidInputError

Say = Callable[[str], None]

# The EventBridge rule starts the run seconds after the marker lands; a minute
# without one means the trigger is broken, not slow.
FIND_TIMEOUT_SECONDS = 60.0
FIND_POLL_SECONDS = 2.0
# Executions started this long before the marker still count: the local clock and
# Step Functions' may disagree. The marker key tells the right one apart anyway.
CLOCK_SKEW = timedelta(minutes=5)
FINAL_STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
API_KEY_VARIABLE = "CREDIT_RISK_API_KEY"


@dataclass(frozen=True)
class DeployedEnvironment:
    """What the bootstrap needs of an environment, read from its stack outputs."""

    name: str
    region: str
    raw_bucket: str
    training_pipeline_arn: str
    api_url: str
    api_key_secret_arn: str


@dataclass(frozen=True)
class Delivery:
    """One delivery of raw loans: ``files`` go to ``prefix`` in this order, the
    marker after them."""

    bucket: str
    prefix: str
    files: tuple[Path, ...]

    @property
    def marker_key(self) -> str:
        return self.prefix + names.RAW_DELIVERY_MARKER

    def key_of(self, file: Path) -> str:
        return self.prefix + file.name

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key or self.prefix}"


@dataclass(frozen=True)
class RunOutcome:
    """How a training-pipeline execution ended; ``status`` is ``RUNNING`` when it
    was still running when the wait ran out."""

    execution_arn: str
    status: str
    seconds: float
    error: str | None = None
    cause: str | None = None
    output: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.execution_arn.rsplit(":", 1)[-1]

    @property
    def model_version(self) -> str | None:
        """The version the run trained and released (``$.model`` of its output)."""
        model = (self.output or {}).get("model")
        return model.get("model_version") if isinstance(model, dict) else None

    @property
    def released_a_model(self) -> bool:
        """A run can succeed without a model: skipped at admission, since the run
        waiting ahead of it reads the same deliveries."""
        return self.status == "SUCCEEDED" and self.model_version is not None


class AwsClients:
    """boto3 clients for one region, each created on first use."""

    def __init__(self, region: str | None = None) -> None:
        import boto3

        self._session = boto3.session.Session(region_name=region)
        if not self._session.region_name:
            raise ConfigurationError(
                "no AWS region: pass --region or set AWS_REGION (the environment's region "
                "in cdk.json)"
            )

    @property
    def region(self) -> str:
        return self._session.region_name

    @functools.cached_property
    def cloudformation(self) -> Any:
        return self._session.client("cloudformation")

    @functools.cached_property
    def s3(self) -> Any:
        return self._session.client("s3")

    @functools.cached_property
    def stepfunctions(self) -> Any:
        return self._session.client("stepfunctions")


# --- the environment ------------------------------------------------------------


def deploy_command(deployment: str, *, standby: bool = False) -> str:
    """The command that deploys ``deployment`` (``prod``, ``mx-prod``), or its standby."""
    options = " ".join(names.cdk_context_options(deployment, standby=standby))
    return f"npx cdk deploy {options} --all"


def read_stack_outputs(
    cloudformation: Any, stack: str, environment: str, *, deploy: str | None = None
) -> tuple[str, dict[str, str]]:
    """The status and outputs of ``stack``; a missing stack is a ConfigurationError
    naming the command that deploys it (``deploy``, default the environment's)."""
    region = cloudformation.meta.region_name
    try:
        found = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        # CloudFormation answers a missing stack with a ValidationError "does not exist".
        if exc.response["Error"]["Code"] != "ValidationError":
            raise
        found = []
    if not found:
        raise ConfigurationError(
            f"stack {stack} not found in {region}: deploy it first with "
            f"`{deploy or deploy_command(environment)}`"
        )
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found[0].get("Outputs", [])}
    return found[0].get("StackStatus", "UNKNOWN"), outputs


def read_environment(environment: str, cloudformation: Any) -> DeployedEnvironment:
    """The raw bucket, the training pipeline and the API of ``environment``, a
    deployment's name (``prod``, ``mx-prod``)."""
    region = cloudformation.meta.region_name
    wanted = {
        "DataLake": (names.OUTPUT_RAW_BUCKET,),
        "Orchestration": (names.OUTPUT_TRAINING_PIPELINE_ARN,),
        "Api": (names.OUTPUT_API_URL, names.OUTPUT_API_KEY_SECRET_ARN),
    }
    values: dict[str, str] = {}
    for unit, keys in wanted.items():
        stack = names.stack_name(environment, unit)
        status, outputs = read_stack_outputs(cloudformation, stack, environment)
        for key in keys:
            if not outputs.get(key):
                raise ConfigurationError(
                    f"stack {stack} ({status}) in {region} has no output {key}: deploy the "
                    f"current version with `{deploy_command(environment)}`"
                )
            values[key] = outputs[key]
    return DeployedEnvironment(
        name=environment,
        region=region,
        raw_bucket=values[names.OUTPUT_RAW_BUCKET],
        training_pipeline_arn=values[names.OUTPUT_TRAINING_PIPELINE_ARN],
        api_url=values[names.OUTPUT_API_URL],
        api_key_secret_arn=values[names.OUTPUT_API_KEY_SECRET_ARN],
    )


# --- the delivery ---------------------------------------------------------------


def generate_synthetic_loans(
    directory: Path, loans: int, *, seed: int = datagen.DEFAULT_SEED, on_chunk=None
) -> list[Path]:
    """Writes ``loans`` synthetic loans to ``directory``; returns the data file and
    its truth sidecar, which travels with it."""
    data = directory / "loans.parquet"
    config = datagen.GeneratorConfig(loans=loans, seed=seed)
    datagen.generate(str(data), config, fmt="parquet", on_chunk=on_chunk)
    return [data, Path(schemas.truth_path_for(str(data)))]


def check_local_raw_files(paths: Iterable[str]) -> list[Path]:
    """The given raw loan files, once each is a local CSV/Parquet file whose header
    or footer names the raw columns; anything else is an InvalidInputError."""
    # Imported here: the module loads PySpark, which only this check needs.
    try:
        from credit_risk.features.spark import check_raw_files, list_raw_files
    except ImportError:
        raise ConfigurationError(
            "checking raw files needs the spark extra: install the package with "
            "`pip install 'credit-risk[spark]'` (or run `make install`)"
        ) from None

    files = []
    for path in paths:
        if io.is_s3(path) or not Path(path).is_file():
            raise InvalidInputError(f"{path}: not a local file (--raw takes CSV/Parquet files)")
        list_raw_files(path)  # refuses other suffixes, and a truth sidecar
        files.append(Path(path))
    check_raw_files([str(file) for file in files])
    return files


def delivery_prefix(ingest_date: date) -> str:
    """``raw/loans/ingest_date=YYYY-MM-DD/``: the folder of one delivery."""
    return f"{names.RAW_LOANS_PREFIX}ingest_date={ingest_date.isoformat()}/"


def plan_delivery(bucket: str, ingest_date: date, files: Sequence[Path]) -> Delivery:
    """The delivery of ``files`` on ``ingest_date``; each lands under its own name."""
    seen: dict[str, Path] = {}
    for file in files:
        if file.name.startswith(("_", ".")):
            # The feature job skips such names as Spark side files (credit_risk.io).
            raise InvalidInputError(f"{file}: a name starting with _ or . is not read as data")
        if file.name in seen:
            raise InvalidInputError(
                f"{file} and {seen[file.name]} would land under the same name: rename one"
            )
        seen[file.name] = file
    return Delivery(bucket=bucket, prefix=delivery_prefix(ingest_date), files=tuple(files))


def refuse_existing_delivery(s3: Any, bucket: str, prefix: str) -> None:
    """A delivery folder is written once: an existing one, complete or not, is left alone."""
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    keys = [item["Key"] for item in listed.get("Contents", [])]
    if not keys:
        return
    folder = f"s3://{bucket}/{prefix}"
    if prefix + names.RAW_DELIVERY_MARKER in keys:
        why = f"is a delivery already (it has its {names.RAW_DELIVERY_MARKER} marker)"
    else:
        why = (
            f"already holds {len(keys)} file(s) without a {names.RAW_DELIVERY_MARKER} "
            "marker (a delivery being written?)"
        )
    raise InvalidInputError(
        f"{folder} {why} and a delivery is never overwritten: pass --ingest-date with a "
        "date that has no delivery yet"
    )


def first_customer_id(file: Path) -> str | None:
    """The first customer id in a raw loan file (CSV or Parquet), for the sample
    request; None when the file does not give one cleanly (the feature job
    quarantines what does not parse: the hint is a nicety, not a check)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    try:
        if file.name.endswith(".parquet"):
            batches = pq.ParquetFile(file).iter_batches(batch_size=1000, columns=["id"])
        else:
            batches = pa_csv.open_csv(
                file,
                convert_options=pa_csv.ConvertOptions(
                    include_columns=["id"], column_types={"id": pa.string()}
                ),
            )
        for batch in batches:
            for value in batch.column(0).to_pylist():
                if value not in (None, ""):
                    return str(value)
    except (pa.ArrowException, ValueError):
        return None
    return None


def upload_delivery(s3: Any, delivery: Delivery, say: Say) -> datetime:
    """Uploads the data files, then the marker; returns when the marker was written."""
    for file in delivery.files:
        say(f"uploading {file.name} to {delivery.uri(delivery.key_of(file))}")
        s3.upload_file(str(file), delivery.bucket, delivery.key_of(file))
    written_at = datetime.now(UTC)
    s3.put_object(Bucket=delivery.bucket, Key=delivery.marker_key, Body=b"")
    say(f"delivery complete: {delivery.uri(delivery.marker_key)}")
    return written_at


# --- the training run -------------------------------------------------------------


def rule_input(environment: str, marker_key: str, requested_at: datetime) -> dict[str, Any]:
    """What the raw-data rule sends the training pipeline for a marker (the pipeline
    fills in its configured defaults for anything else)."""
    return {
        "environment": environment,
        "trigger": names.TRIGGER_NEW_RAW_DATA,
        "requested_at": requested_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "object_key": marker_key,
    }


def find_execution(
    stepfunctions: Any,
    state_machine_arn: str,
    marker_key: str,
    *,
    since: datetime,
    timeout_seconds: float = FIND_TIMEOUT_SECONDS,
    poll_seconds: float = FIND_POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str | None:
    """The ARN of the execution started for ``marker_key``, waiting up to
    ``timeout_seconds`` for it to appear; None when none did."""
    deadline = clock() + timeout_seconds
    while True:
        found = _execution_for(stepfunctions, state_machine_arn, marker_key, since - CLOCK_SKEW)
        if found or clock() >= deadline:
            return found
        sleep(poll_seconds)


def _execution_for(
    stepfunctions: Any, state_machine_arn: str, marker_key: str, since: datetime
) -> str | None:
    pages = stepfunctions.get_paginator("list_executions").paginate(
        stateMachineArn=state_machine_arn
    )
    for page in pages:
        executions = page["executions"]
        for execution in executions:
            if execution["startDate"] < since:
                continue
            described = stepfunctions.describe_execution(executionArn=execution["executionArn"])
            try:
                started_for = json.loads(described.get("input") or "{}").get("object_key")
            except (ValueError, AttributeError):
                continue
            # Compared decoded: an S3 event may carry the key URL-encoded ("=" as %3D).
            if started_for is not None and unquote_plus(started_for) == unquote_plus(marker_key):
                return execution["executionArn"]
        # Newest first: once a page reaches back before the upload, the rest is older.
        if any(execution["startDate"] < since for execution in executions):
            return None
    return None


def current_step(stepfunctions: Any, execution_arn: str) -> str | None:
    """The state the execution entered last."""
    events = stepfunctions.get_execution_history(
        executionArn=execution_arn, reverseOrder=True, maxResults=50
    )["events"]
    entered = [e for e in events if "stateEnteredEventDetails" in e]
    if not entered:
        return None
    return max(entered, key=lambda e: e["id"])["stateEnteredEventDetails"]["name"]


def wait_for_execution(
    stepfunctions: Any,
    execution_arn: str,
    *,
    timeout_seconds: float,
    poll_seconds: float,
    say: Say,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RunOutcome:
    """Polls the execution until it ends or ``timeout_seconds`` pass, saying each
    change of status or step."""
    started = clock()
    last: tuple[str, str | None] | None = None
    while True:
        described = stepfunctions.describe_execution(executionArn=execution_arn)
        status = described["status"]
        step = current_step(stepfunctions, execution_arn) if status not in FINAL_STATUSES else None
        if (status, step) != last:
            say(status + (f" (step {step})" if step else ""))
            last = (status, step)
        elapsed = clock() - started
        if status in FINAL_STATUSES or elapsed >= timeout_seconds:
            output = described.get("output")
            return RunOutcome(
                execution_arn=execution_arn,
                status=status if status in FINAL_STATUSES else "RUNNING",
                seconds=elapsed,
                error=described.get("error"),
                cause=described.get("cause"),
                output=json.loads(output) if output else None,
            )
        sleep(min(poll_seconds, max(timeout_seconds - elapsed, 0.0)))


# --- what to run next -------------------------------------------------------------


def manual_start_command(environment: DeployedEnvironment, marker_key: str, at: datetime) -> str:
    payload = json.dumps(rule_input(environment.name, marker_key, at))
    return (
        f"aws stepfunctions start-execution --region {environment.region} "
        f"--state-machine-arn {environment.training_pipeline_arn} --input {shlex.quote(payload)}"
    )


def no_execution_message(environment: DeployedEnvironment, delivery: Delivery, at: datetime) -> str:
    return (
        f"no training-pipeline run started for {delivery.uri(delivery.marker_key)} within "
        f"{FIND_TIMEOUT_SECONDS:.0f} s: the raw bucket's EventBridge notifications or the "
        "raw-data rule did not start one (check `aws s3api "
        f"get-bucket-notification-configuration --bucket {environment.raw_bucket}` shows "
        "EventBridgeConfiguration, and that the rule is enabled). Start the run by hand:\n"
        f"  {manual_start_command(environment, delivery.marker_key, at)}"
    )


def api_key_command(environment: DeployedEnvironment) -> str:
    """A shell line that puts the client API key into ``$CREDIT_RISK_API_KEY``."""
    extract = f'import json,sys; print(json.load(sys.stdin)["{names.API_KEY_SECRET_FIELD}"])'
    return (
        f'export {API_KEY_VARIABLE}="$(aws secretsmanager get-secret-value '
        f"--region {environment.region} --secret-id {environment.api_key_secret_arn} "
        f'--query SecretString --output text | python3 -c {shlex.quote(extract)})"'
    )


def score_command(environment: DeployedEnvironment, customer_id: str) -> str:
    url = environment.api_url.rstrip("/") + names.ROUTE_SCORE
    body = json.dumps({"customer_id": customer_id})
    return (
        f"curl -sS -X POST {shlex.quote(url)} "
        f'-H "{names.API_KEY_HEADER}: ${API_KEY_VARIABLE}" '
        f"-H 'content-type: application/json' -d {shlex.quote(body)}"
    )


def describe_outcome(
    environment: DeployedEnvironment, outcome: RunOutcome, customer_id: str | None
) -> list[str]:
    """What to tell the user once the run ended (or the wait ran out)."""
    minutes = outcome.seconds / 60
    if outcome.status == "RUNNING":
        return [
            f"training run {outcome.name} is still running after {minutes:.1f} min; it goes "
            "on without this command. Follow it with:",
            f"  aws stepfunctions describe-execution --region {environment.region} "
            f"--execution-arn {outcome.execution_arn}",
        ]
    if outcome.status != "SUCCEEDED":
        return [
            f"training run {outcome.name} {outcome.status} after {minutes:.1f} min: "
            f"{outcome.error or 'no error name'}: {outcome.cause or 'no cause given'}",
            f"  details: aws stepfunctions get-execution-history --region {environment.region} "
            f"--execution-arn {outcome.execution_arn}",
        ]
    if not outcome.released_a_model:
        admitted = (outcome.output or {}).get("admitted")
        reason = admitted.get("reason") if isinstance(admitted, dict) else None
        return [
            f"training run {outcome.name} succeeded without releasing a model: "
            f"{reason or 'its output names none'}. The run ahead of it reads this delivery; "
            "follow it with:",
            f"  aws stepfunctions list-executions --region {environment.region} "
            f"--state-machine-arn {environment.training_pipeline_arn} --status-filter RUNNING",
        ]
    return [
        f"training run {outcome.name} succeeded in {minutes:.1f} min: "
        f"model {outcome.model_version} is in service",
        *score_hints(environment, customer_id),
    ]


def score_hints(environment: DeployedEnvironment, customer_id: str | None) -> list[str]:
    """How to read the API key (never printed itself) and score a customer."""
    lines = [
        f"Read the client API key into ${API_KEY_VARIABLE} (it is not printed here):",
        f"  {api_key_command(environment)}",
    ]
    if customer_id:
        lines += [f"Score customer {customer_id}:", f"  {score_command(environment, customer_id)}"]
    return lines
