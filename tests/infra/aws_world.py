"""An AWS environment in moto, built from the synthesized CloudFormation templates.

``AwsWorld`` reads the templates of one synthesized environment (tests/infra/conftest.py)
and gives every resource the release scenarios need a physical twin in moto: the
lake buckets, the secrets, the notification topic (read back through an SQS queue),
the Glue job, the REST API and its stage, the Lambda functions with their versions
and alias, the candidate alarms and both state machines. Property values go
through ``Resolver``, which evaluates the CloudFormation intrinsics the templates use
(Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select, Fn::Split, Fn::ImportValue and the
pseudo parameters) against those physical resources, and fails on anything else.
Nothing here names a logical id: functions are told apart by their handler
(``names.HANDLER_*``), buckets and machines by what the templates export or say.

Where moto stops short of AWS, a hook stands in, and only there:

- Lambda: an invocation runs our real handler in-process (``LambdaRuntime``), one
  fresh copy of its module per published version and environment, as a new
  execution environment would, and publishes the AWS/Lambda metrics the Lambda
  service would. What the handler prints goes where its log group sends it: the
  embedded-metric (EMF) documents become CloudWatch metrics (``put_metric_data`` of
  what ``release_metrics.parse_emf`` reads, as CloudWatch's EMF extraction does),
  and the lines the log group's subscription filter selects reach the scoring log
  in S3 as its Firehose stream delivers them, at once instead of within minutes
  (``LogDelivery``).
- CloudWatch alarms: moto keeps them but never evaluates them. Before each
  invocation of the release function, ``AlarmEvaluator`` evaluates the alarms of
  the templates that the release reads, from their definitions as deployed, on
  moto's metrics: the statistic over each period, the last ``EvaluationPeriods``
  periods (the current, unfinished minute the latest of them, as if CloudWatch had
  no ingestion delay), ``DatapointsToAlarm`` of them breaching the comparison with
  the threshold, missing data as ``TreatMissingData`` says.
- Glue: starting a run of the feature job runs the real job on a local copy of its
  S3 input, with local Spark, before the call returns (``FeatureJobRunner``).
- EventBridge: ``deliver`` matches an event against the templates' rules with moto's
  pattern matcher, starts the Step Functions targets and invokes the Lambda targets
  with their input transform (at once, where EventBridge invokes a function
  asynchronously). Step Functions' own events are built by ``status_change``.
- Step Functions: the definitions go through ``moto_runnable``
  (tests/integration/orchestration/conftest.py); the canary release that the
  training pipeline would start with ``startExecution.sync`` is started here from
  the recorded request (``start_recorded_release``).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import operator
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from credit_risk import names
from credit_risk.local_api import build_event
from credit_risk.registry import Registry
from credit_risk.release_metrics import parse_emf
from tests.integration.orchestration.conftest import (
    Execution,
    moto_runnable,
    read_notifications,
    read_sdk_bodies_as_text,
    substitute,
)
from tests.script_modules import load_glue_script, load_module

REPO_ROOT = Path(__file__).resolve().parents[2]
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
FINAL_STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
_NO_VALUE = object()


class UnresolvableError(AssertionError):
    """A template value the harness cannot turn into a physical value."""


# --- the templates and their physical twins ------------------------------------


@dataclass
class Physical:
    """What ``Ref`` and ``Fn::GetAtt`` return for one created resource."""

    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


class Resolver:
    """CloudFormation's evaluation of intrinsic functions, over ``physical``.

    ``physical`` is keyed by (unit, logical id) and filled as resources are created;
    a reference to anything not created yet, or an intrinsic not listed in the module
    doc, raises ``UnresolvableError`` naming the unit and the value.
    """

    def __init__(
        self,
        templates: Mapping[str, dict[str, Any]],
        stack_names: Mapping[str, str],
        *,
        region: str,
        account: str,
    ) -> None:
        self.templates = templates
        self.stack_names = stack_names
        self.region, self.account = region, account
        self.physical: dict[tuple[str, str], Physical] = {}
        # CDK's strong cross-stack references: Fn::ImportValue of an Export Name.
        self.exports = {
            output["Export"]["Name"]: (unit, output["Value"])
            for unit, template in templates.items()
            for output in template.get("Outputs", {}).values()
            if isinstance(output.get("Export", {}).get("Name"), str)
        }

    def add(self, unit: str, logical_id: str, physical: Physical) -> Physical:
        self.physical[(unit, logical_id)] = physical
        return physical

    def pseudo(self, unit: str, name: str) -> str:
        values = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_names[unit],
        }
        if name not in values:
            raise UnresolvableError(f"{unit}: pseudo parameter {name} is not supported")
        return values[name]

    def ref(self, unit: str, name: str) -> str:
        if name.startswith("AWS::"):
            return self.pseudo(unit, name)
        return self._physical(unit, name).ref

    def get_att(self, unit: str, logical_id: str, attribute: str) -> str:
        found = self._physical(unit, logical_id)
        if attribute not in found.attributes:
            raise UnresolvableError(
                f"{unit}: no attribute {attribute} of {logical_id} in the harness"
            )
        return found.attributes[attribute]

    def _physical(self, unit: str, logical_id: str) -> Physical:
        if (unit, logical_id) not in self.physical:
            kind = self.templates[unit]["Resources"].get(logical_id, {}).get("Type", "unknown")
            raise UnresolvableError(f"{unit}: {logical_id} ({kind}) has no physical twin in moto")
        return self.physical[(unit, logical_id)]

    def output(self, unit: str, name: str) -> str:
        outputs = self.templates[unit].get("Outputs", {})
        if name not in outputs:
            raise UnresolvableError(f"{unit} has no output {name} (outputs: {sorted(outputs)})")
        return self.resolve(unit, outputs[name]["Value"])

    def resolve(self, unit: str, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(unit, item) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref" and argument == "AWS::NoValue":
                return _NO_VALUE
            if key == "Ref":
                return self.ref(unit, argument)
            if key.startswith("Fn::") or key == "Condition":
                return self._function(unit, key, argument)
        resolved = {key: self.resolve(unit, item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def _function(self, unit: str, name: str, argument: Any) -> Any:
        if name == "Fn::GetAtt":
            logical_id, attribute = (
                argument.split(".", 1) if isinstance(argument, str) else argument
            )
            return self.get_att(unit, logical_id, self.resolve(unit, attribute))
        if name == "Fn::Join":
            delimiter, items = argument
            return delimiter.join(str(item) for item in self.resolve(unit, items))
        if name == "Fn::Select":
            index, items = self.resolve(unit, argument)
            return items[int(index)]
        if name == "Fn::Split":
            delimiter, text = self.resolve(unit, argument)
            return text.split(delimiter)
        if name == "Fn::Sub":
            return self._sub(unit, argument)
        if name == "Fn::ImportValue":
            export = self.resolve(unit, argument)
            if export not in self.exports:
                raise UnresolvableError(f"{unit}: no template exports {export!r}")
            source_unit, source_value = self.exports[export]
            return self.resolve(source_unit, source_value)
        raise UnresolvableError(f"{unit}: intrinsic {name} is not supported: {argument!r}")

    def _sub(self, unit: str, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        variables = {key: self.resolve(unit, item) for key, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.get_att(unit, logical_id, attribute)
            return self.ref(unit, name)

        return re.sub(r"\$\{([^}]+)\}", replace, text)


def generated_name(stack: str, logical_id: str, limit: int = 64) -> str:
    """A name in the manner of CloudFormation's for a resource the template leaves
    unnamed: stack name and logical id (without CloudFormation's random suffix)."""
    return f"{stack}-{logical_id}"[:limit]


# --- Lambda ------------------------------------------------------------------


@dataclass
class LambdaContext:
    """The attributes of the Lambda context that our handlers and Powertools read."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def handler_path(handler: str) -> tuple[Path, str]:
    """``lambdas.x.handler.lambda_handler`` -> (lambdas/x/handler.py, lambda_handler)."""
    module, _, function = handler.rpartition(".")
    path = REPO_ROOT.joinpath(*module.split(".")).with_suffix(".py")
    if not path.is_file():
        raise UnresolvableError(f"handler {handler}: {path} is not in the repository")
    return path, function


class LambdaRuntime:
    """Runs our handlers for moto's Lambda ``invoke``.

    One module copy per (function, version, environment): a published version never
    changes, and ``$LATEST`` gets a new copy when its configuration changes, as a new
    execution environment would. The handler sees only its function's environment
    (plus the process's AWS settings): ``os.environ`` is replaced for the duration of
    the call. That is process-wide: invocations come from Step Functions' executor
    threads and from the test thread, so one re-entrant lock runs them one at a time
    (a handler that invokes another function, as the release probe does, re-enters).
    """

    def __init__(self, base_environment: Mapping[str, str]) -> None:
        self.base_environment = dict(base_environment)
        self.modules: dict[tuple[str, str, str], Any] = {}
        self.lock = threading.RLock()
        self.invocations: list[tuple[str, str, str | None]] = []  # (function, version, error)
        # Per function name: what runs before an invocation, and what receives the
        # lines the handler printed (its log).
        self.before: dict[str, Callable[[], None]] = {}
        self.log_readers: dict[str, Callable[[list[str]], None]] = {}

    def install(self, monkeypatch: Any) -> None:
        from moto.awslambda_simple.models import LambdaSimpleBackend

        runtime = self

        def invoke(backend, function_name, qualifier, body, headers, response_headers):
            return runtime.invoke(backend, function_name, qualifier, body, response_headers)

        monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
        # Readers outside the lock (the test thread creating a boto3 client, whose
        # proxy lookup walks os.environ.items()) must not trip on a key an invocation
        # removes meanwhile.
        monkeypatch.setattr(os.environ, "__class__", _SnapshotEnviron)

        # moto 5.2 reads the invoke qualifier as ``qualifier``; botocore sends
        # ``Qualifier``, so every call through an alias would run $LATEST.
        from moto.awslambda.responses import LambdaResponse

        original = LambdaResponse.invoke

        def invoke_response(response):
            if "Qualifier" in response.querystring:
                response.querystring["qualifier"] = response.querystring["Qualifier"]
            return original(response)

        monkeypatch.setattr(LambdaResponse, "invoke", invoke_response)

    @contextmanager
    def environment(self, variables: Mapping[str, str]) -> Iterator[None]:
        """``os.environ`` as the function sees it, changed key by key rather than
        cleared and refilled: Step Functions executions evaluate in other threads,
        and a reader there must never catch the environment empty."""
        saved = dict(os.environ)
        _become(os.environ, {**self.base_environment, **variables})
        try:
            yield
        finally:
            _become(os.environ, saved)

    def invoke(
        self,
        backend: Any,
        function_name: str,
        qualifier: str | None,
        body: Any,
        response_headers: dict[str, str],
    ) -> bytes:
        # The qualifier may come in the name or ARN (``name:live``) or apart.
        short = function_name.split(":function:")[-1]
        name, _, in_name = short.partition(":")
        qualifier = in_name or qualifier
        fn = backend.get_function(name, qualifier)
        config = fn.get_configuration()
        variables = config.get("Environment", {}).get("Variables", {})
        version = str(fn.version)
        invoked_arn = config["FunctionArn"].split(":function:")[0] + ":function:" + name
        if qualifier:
            invoked_arn = f"{invoked_arn}:{qualifier}"
        event = json.loads(body) if body else {}
        with self.lock:
            if name in self.before:
                self.before[name]()
            key = (name, version, json.dumps(variables, sort_keys=True))
            with self.environment(variables):
                if key not in self.modules:
                    path, _ = handler_path(fn.handler)
                    digest = hashlib.sha1("/".join(key).encode()).hexdigest()[:10]
                    self.modules[key] = load_module(f"lambda_{name}_{digest}", path)
                _, function = handler_path(fn.handler)
                context = LambdaContext(
                    function_name=name,
                    function_version=version,
                    invoked_function_arn=invoked_arn,
                    memory_limit_in_mb=int(config.get("MemorySize", 128)),
                    log_group_name=f"/aws/lambda/{name}",
                )
                printed = io.StringIO()
                try:
                    # The handler's stdout is its log (a nested invocation has its own).
                    with contextlib.redirect_stdout(printed):
                        result = getattr(self.modules[key], function)(event, context)
                    error = None
                except Exception as exc:
                    # What Lambda answers for an unhandled error; Step Functions' Catch
                    # matches errorType (moto's lambda task reads it the same way).
                    error = type(exc).__name__
                    result = {
                        "errorMessage": str(exc),
                        "errorType": error,
                        "stackTrace": traceback.format_tb(exc.__traceback__),
                    }
                    response_headers["x-amz-function-error"] = "Unhandled"
            self.invocations.append((name, version, error))
            self._publish_metrics(name, qualifier, version, error)
            if name in self.log_readers:
                self.log_readers[name](printed.getvalue().splitlines())
        return json.dumps(result).encode()

    @staticmethod
    def _publish_metrics(name: str, qualifier: str | None, version: str, error: str | None):
        """AWS/Lambda Invocations (and Errors), with the dimension sets Lambda uses:
        per function, per qualifier (``Resource``) and, through an alias, per version."""
        dimension_sets = [[{"Name": "FunctionName", "Value": name}]]
        if qualifier and qualifier != "$LATEST":
            resource = {"Name": "Resource", "Value": f"{name}:{qualifier}"}
            dimension_sets.append([dimension_sets[0][0], resource])
            if not qualifier.isdigit():
                executed = {"Name": "ExecutedVersion", "Value": version}
                dimension_sets.append([dimension_sets[0][0], resource, executed])
        metrics = [("Invocations", 1.0), ("Errors", 1.0 if error else 0.0)]
        now = datetime.now(UTC)
        boto3.client("cloudwatch").put_metric_data(
            Namespace="AWS/Lambda",
            MetricData=[
                {
                    "MetricName": metric,
                    "Dimensions": dimensions,
                    "Value": value,
                    "Unit": "Count",
                    "Timestamp": now,
                }
                for metric, value in metrics
                for dimensions in dimension_sets
            ],
        )


class _SnapshotEnviron(os._Environ):
    """``os.environ`` whose ``items()`` is a copy taken in one step. The mapping's own
    walks the keys and then reads each one, and a key removed in between (by an
    invocation switching the environment in another thread) raises KeyError."""

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        data = list(self._data.items())  # one C call: no other thread runs within it
        return [(self.decodekey(key), self.decodevalue(value)) for key, value in data]


def _become(environ: Any, target: Mapping[str, str]) -> None:
    """Changes ``environ`` into ``target``, touching only the keys that differ."""
    for name in [name for name in environ if name not in target]:
        # Invocations of different functions overlap (clients call while a release
        # runs): another one's switch may have removed the key between the read and
        # the delete, which ``pop`` reports as a KeyError.
        with contextlib.suppress(KeyError):
            del environ[name]
    for name, value in target.items():
        if environ.get(name) != value:
            environ[name] = value


# --- CloudWatch Logs: what a function's log becomes ---------------------------------

# The subscription filter patterns the harness reads: ``{ $.<field> = "<value>" }``.
_FILTER = re.compile(r'^\{\s*\$\.(?P<field>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*"(?P<value>[^"]*)"\s*\}$')
# The one Firehose prefix expression the scoring log's stream uses.
_DELIVERY_DAY = "!{timestamp:yyyy-MM-dd}"


@dataclass(frozen=True)
class Subscription:
    """A log group's subscription filter and the S3 destination of its Firehose
    stream, from the templates."""

    field: str
    value: str
    bucket: str
    prefix: str
    extension: str
    gzipped: bool

    def selects(self, line: str) -> bool:
        try:
            record = json.loads(line)
        except ValueError:
            return False
        return isinstance(record, dict) and str(record.get(self.field)) == self.value


class LogDelivery:
    """What CloudWatch does with a function's log: EMF documents become metrics,
    and the lines a subscription filter selects are delivered to S3 by its stream."""

    def __init__(self, subscriptions: list[Subscription]) -> None:
        self.subscriptions = subscriptions
        self.delivered: list[str] = []  # the S3 URIs written

    def __call__(self, lines: list[str]) -> None:
        self.put_metrics(lines)
        for subscription in self.subscriptions:
            selected = [line for line in lines if subscription.selects(line)]
            if selected:
                self.deliver(subscription, selected)

    @staticmethod
    def put_metrics(lines: list[str]) -> None:
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for value in parse_emf(lines):
            if not value.values:
                continue
            by_namespace.setdefault(value.namespace, []).append(
                {
                    "MetricName": value.name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in value.dimensions.items()],
                    "Values": list(value.values),
                    "Unit": value.unit,
                    "Timestamp": datetime.fromtimestamp(value.timestamp_ms / 1000, UTC),
                }
            )
        cloudwatch = boto3.client("cloudwatch")
        for namespace, data in by_namespace.items():
            for first in range(0, len(data), 500):
                cloudwatch.put_metric_data(
                    Namespace=namespace, MetricData=data[first : first + 500]
                )

    def deliver(self, subscription: Subscription, lines: list[str]) -> None:
        body = "".join(f"{line}\n" for line in lines).encode()
        if subscription.gzipped:
            body = gzip.compress(body)
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        key = (
            subscription.prefix.replace(_DELIVERY_DAY, day)
            + f"delivery-{uuid.uuid4().hex}{subscription.extension}"
        )
        boto3.client("s3").put_object(Bucket=subscription.bucket, Key=key, Body=body)
        self.delivered.append(f"s3://{subscription.bucket}/{key}")


# --- CloudWatch alarms --------------------------------------------------------------

_COMPARISONS = {
    "GreaterThanOrEqualToThreshold": operator.ge,
    "GreaterThanThreshold": operator.gt,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
_STATISTICS = ("Sum", "Average", "Maximum", "Minimum", "SampleCount")


class AlarmEvaluator:
    """Evaluates metric alarms, given as their ``PutMetricAlarm`` definitions, on
    moto's metrics and sets their state (see the module doc)."""

    def __init__(self, alarms: list[dict[str, Any]]) -> None:
        for alarm in alarms:
            if alarm.get("Statistic") not in _STATISTICS or "Metrics" in alarm:
                raise UnresolvableError(
                    f"alarm {alarm['AlarmName']}: only {', '.join(_STATISTICS)} of one metric "
                    "are evaluated here"
                )
            if alarm["ComparisonOperator"] not in _COMPARISONS:
                raise UnresolvableError(
                    f"alarm {alarm['AlarmName']}: comparison {alarm['ComparisonOperator']}"
                )
        self.alarms = alarms
        self.history: list[tuple[str, str, list[float | None]]] = []  # (alarm, state, values)

    def __call__(self, now: datetime | None = None) -> None:
        cloudwatch = boto3.client("cloudwatch")
        # A second on: what was published this very second counts.
        end = (now or datetime.now(UTC)).replace(microsecond=0) + timedelta(seconds=1)
        for alarm in self.alarms:
            values = self.period_values(cloudwatch, alarm, end)
            state, reason = self.state(alarm, values)
            if state is None:
                continue
            self.history.append((alarm["AlarmName"], state, values))
            cloudwatch.set_alarm_state(
                AlarmName=alarm["AlarmName"], StateValue=state, StateReason=reason
            )

    @staticmethod
    def period_values(cloudwatch: Any, alarm: dict[str, Any], end: datetime) -> list[float | None]:
        """The statistic of each of the last ``EvaluationPeriods`` periods up to
        ``end``, oldest first; None where the period has no data."""
        period, count = int(alarm["Period"]), int(alarm["EvaluationPeriods"])
        start = end - timedelta(seconds=period * count)
        result = cloudwatch.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "alarm",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": alarm["Namespace"],
                            "MetricName": alarm["MetricName"],
                            "Dimensions": alarm.get("Dimensions", []),
                        },
                        "Period": period,
                        "Stat": alarm["Statistic"],
                        **({"Unit": alarm["Unit"]} if "Unit" in alarm else {}),
                    },
                }
            ],
            StartTime=start,
            EndTime=end,
        )["MetricDataResults"][0]
        found = {
            int((stamp - start).total_seconds()) // period: value
            for stamp, value in zip(result["Timestamps"], result["Values"], strict=True)
        }
        return [found.get(index) for index in range(count)]

    @staticmethod
    def state(alarm: dict[str, Any], values: list[float | None]) -> tuple[str | None, str]:
        """ALARM, OK, INSUFFICIENT_DATA, or None to keep the state (missing data
        treated as ``ignore``)."""
        compare = _COMPARISONS[alarm["ComparisonOperator"]]
        threshold = float(alarm["Threshold"])
        missing = alarm.get("TreatMissingData", "missing")
        needed = int(alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"]))
        present = [value for value in values if value is not None]
        breaching = sum(compare(value, threshold) for value in present)
        if missing == "breaching":
            breaching += len(values) - len(present)
        reason = f"{alarm['Statistic']} of the last periods {values} against {threshold:g}"
        if breaching >= needed:
            return "ALARM", reason
        if not present and missing == "missing":
            return "INSUFFICIENT_DATA", reason
        if not present and missing == "ignore":
            return None, reason
        return "OK", reason


# --- Glue ------------------------------------------------------------------------


class FeatureJobRunner:
    """Runs the feature job when moto starts a run of it, before the call returns.

    The arguments are the run's (job defaults overlaid with the run's, as Glue merges
    them), parsed by the Glue entrypoint itself. Spark reads and writes local paths
    only, so the S3 input is copied to a temporary folder and the outputs copied back
    to the run's S3 output; the report's paths are mapped back to the S3 locations
    they stand for, as the job on Glue writes them.
    """

    def __init__(self, job_name: str, spark_session: Callable[[], Any]) -> None:
        self.job_name = job_name
        self.spark_session = spark_session
        self.errors: list[str] = []
        self.runs: list[dict[str, Any]] = []

    def install(self, monkeypatch: Any) -> None:
        from moto.glue.models import GlueBackend

        original = GlueBackend.start_job_run
        runner = self

        def start_job_run(backend, name, arguments, *args, **kwargs):
            run_id = original(backend, name, arguments, *args, **kwargs)
            if name == runner.job_name:
                job_run = backend.get_job_run(name, run_id)
                job_run.status = runner.run(job_run.arguments)
            return run_id

        monkeypatch.setattr(GlueBackend, "start_job_run", start_job_run)

    def run(self, arguments: Mapping[str, str]) -> str:
        entrypoint = load_glue_script("feature_extraction.py", "feature_extraction_entrypoint")
        argv = ["feature_extraction.py"]
        for name, value in arguments.items():
            argv += [name, value]
        args = entrypoint.parse_arguments(argv)
        workdir = Path(tempfile.mkdtemp(prefix="glue-run-"))
        try:
            local_input = _download(args["input"], workdir / "input")
            local_output = workdir / "output"
            from credit_risk.features import run_feature_job

            report = run_feature_job(
                self.spark_session(),
                str(local_input),
                str(local_output),
                args["as_of"],
                args["run_id"],
            )
            mapping = {
                str(local_output): args["output"].rstrip("/"),
                str(local_input): args["input"],
            }
            _upload(local_output, args["output"].rstrip("/"), mapping)
            self.runs.append({"arguments": dict(arguments), "report": report})
            return "SUCCEEDED"
        except Exception as exc:  # the run fails; the state machine finds no report
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return "FAILED"
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _download(uri: str, folder: Path) -> Path:
    bucket, prefix = _split(uri)
    s3 = boto3.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            target = folder / item["Key"][len(prefix) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _upload(folder: Path, uri: str, mapping: Mapping[str, str]) -> None:
    bucket, prefix = _split(uri)
    s3 = boto3.client("s3")
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.endswith(".crc"):
            continue
        body = path.read_bytes()
        if path.suffix == ".json":
            text = body.decode()
            for local, remote in mapping.items():
                text = text.replace(local, remote)
            body = text.encode()
        key = f"{prefix}/{path.relative_to(folder).as_posix()}"
        s3.put_object(Bucket=bucket, Key=key, Body=body)


# --- EventBridge -----------------------------------------------------------------


def _json_path(event: Mapping[str, Any], path: str) -> Any:
    """EventBridge's InputPathsMap paths: ``$`` then dotted keys."""
    if path == "$":
        return event
    value: Any = event
    for part in path.removeprefix("$.").split("."):
        if not isinstance(value, dict) or part not in value:
            raise UnresolvableError(f"input path {path} is not in the event")
        value = value[part]
    return value


def transform_input(event: Mapping[str, Any], transformer: Mapping[str, Any], rule: str) -> str:
    """An InputTransformer applied as EventBridge applies it: each ``<name>`` of the
    template becomes the value at its path, JSON-encoded, except that a string
    inside a quoted template string goes in as is."""
    values = {
        name: _json_path(event, path) for name, path in transformer.get("InputPathsMap", {}).items()
    }
    values["aws.events.rule-name"] = rule
    values["aws.events.event.json"] = event
    template = transformer["InputTemplate"]
    out, in_string, i = [], False, 0
    while i < len(template):
        char = template[i]
        match = re.match(r"<([A-Za-z0-9_.\-]+)>", template[i:]) if char == "<" else None
        if match and match.group(1) in values:
            value = values[match.group(1)]
            out.append(value if in_string and isinstance(value, str) else json.dumps(value))
            i += match.end()
            continue
        if char == "\\" and in_string:
            out.append(template[i : i + 2])
            i += 2
            continue
        if char == '"':
            in_string = not in_string
        out.append(char)
        i += 1
    return "".join(out)


def s3_object_created(bucket: str, key: str, size: int, etag: str, region: str, account: str):
    """The EventBridge event S3 sends for a PutObject."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": account,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "etag": etag, "sequencer": uuid.uuid4().hex},
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": account,
            "source-ip-address": "192.0.2.1",
            "reason": "PutObject",
        },
    }


# --- the world -------------------------------------------------------------------


def _zip() -> bytes:
    # Code is never run from the package: the invoke hook runs the repository's handler.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "")
    return buffer.getvalue()


def _region_of(outdir: Path) -> str:
    manifest = json.loads((outdir / "manifest.json").read_text())
    regions = {
        artifact["environment"].rsplit("/", 1)[-1]
        for artifact in manifest["artifacts"].values()
        if artifact.get("type") == "aws:cloudformation:stack"
    }
    if len(regions) != 1 or "unknown-region" in regions:
        raise UnresolvableError(f"the stacks do not name one region: {regions}")
    return regions.pop()


@dataclass
class Function:
    unit: str
    logical_id: str
    name: str
    handler: str
    properties: dict[str, Any]


class AwsWorld:
    """The environment of ``synthesized`` in moto; build it with ``AwsWorld.build``
    inside ``mock_aws(config=MOTO_CONFIG)``."""

    def __init__(
        self,
        synthesized: Any,
        *,
        database_url: str,
        spark_session: Callable[[], Any],
        model_refresh_seconds: float | None = None,
    ):
        """``model_refresh_seconds``: the one timing of the deployed functions a test
        may shorten (how often serving functions re-read the champion); a release
        run against them waits as long (its ``live_refresh_seconds``)."""
        self.model_refresh_seconds = model_refresh_seconds
        self.synthesized = synthesized
        self.environment = synthesized.environment
        self.templates: dict[str, dict[str, Any]] = synthesized.templates
        self.region = _region_of(Path(synthesized.outdir))
        self.database_url = database_url
        self.spark_session = spark_session
        self.functions: dict[str, Function] = {}  # by handler
        self.machines: dict[str, str] = {}  # ARN -> original definition (JSON)
        self.topic_queue_url = ""
        self.runtime: LambdaRuntime | None = None
        # What the rules' Lambda targets were sent and answered (``deliver``).
        self.rule_invocations: list[dict[str, Any]] = []
        self.feature_job: FeatureJobRunner | None = None
        self.resolver: Resolver | None = None

    # ---- building --------------------------------------------------------------
    def resources(self, unit: str, kind: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.templates[unit]["Resources"].items()
            if resource["Type"] == kind
        }

    def all_resources(self, kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for unit in self.templates:
            for logical_id, resource in self.resources(unit, kind).items():
                yield unit, logical_id, resource

    def all_resources_by_id(self, kind: str) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
        for unit, logical_id, resource in self.all_resources(kind):
            yield (unit, logical_id), resource

    def build(self, monkeypatch: Any) -> AwsWorld:
        account = boto3.client("sts").get_caller_identity()["Account"]
        stack_names = {unit: names.stack_name(self.environment, unit) for unit in self.templates}
        self.resolver = Resolver(self.templates, stack_names, region=self.region, account=account)
        self.role_arn = boto3.client("iam").create_role(
            RoleName="moto-execution-role", AssumeRolePolicyDocument=json.dumps({"Statement": []})
        )["Role"]["Arn"]
        self._buckets()
        self._secrets()
        self._topics()
        self._glue_job()
        self._rest_api()
        self._functions()
        self._api_stage()
        self._versions_and_aliases()
        self._alarms()
        self._state_machines()
        self.runtime = LambdaRuntime(_base_environment(self.region))
        self.runtime.install(monkeypatch)
        inference = self.function(names.HANDLER_INFERENCE)
        self.log_delivery = LogDelivery(self._subscriptions(inference))
        self.runtime.log_readers[inference.name] = self.log_delivery
        self.alarm_evaluator = AlarmEvaluator(self.alarm_definitions)
        self.runtime.before[self.function(names.HANDLER_RELEASE).name] = self.alarm_evaluator
        self.feature_job.install(monkeypatch)
        read_sdk_bodies_as_text(monkeypatch)
        return self

    def _buckets(self) -> None:
        s3 = boto3.client("s3")
        for unit, logical_id, resource in self.all_resources("AWS::S3::Bucket"):
            if unit != "DataLake":
                continue
            props = resource.get("Properties", {})
            name = (
                self.resolver.resolve(unit, props.get("BucketName"))
                or generated_name(self.resolver.stack_names[unit], logical_id, 63).lower()
            )
            s3.create_bucket(
                Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.region}
            )
            arn = f"arn:aws:s3:::{name}"
            self.resolver.add(unit, logical_id, Physical(name, {"Arn": arn, "BucketName": name}))

    def _secrets(self) -> None:
        """Secrets the functions read (Ml): a random value, as GenerateSecretString
        makes one. The database secret is not among them (see ``overrides``)."""
        client = boto3.client("secretsmanager")
        for unit, logical_id, resource in self.all_resources("AWS::SecretsManager::Secret"):
            if unit != "Ml":
                continue
            props = resource.get("Properties", {})
            name = self.resolver.resolve(unit, props.get("Name")) or generated_name(
                self.resolver.stack_names[unit], logical_id
            )
            arn = client.create_secret(Name=name, SecretString=secrets.token_hex(32))["ARN"]
            self.resolver.add(unit, logical_id, Physical(arn, {"Id": arn}))

    def _topics(self) -> None:
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        queue = sqs.create_queue(QueueName="notifications-read-back")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.topic_queue_url = queue
        for unit, logical_id, resource in self.all_resources("AWS::SNS::Topic"):
            props = resource.get("Properties", {})
            name = self.resolver.resolve(unit, props.get("TopicName")) or generated_name(
                self.resolver.stack_names[unit], logical_id, 256
            )
            arn = sns.create_topic(Name=name)["TopicArn"]
            sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
            self.resolver.add(unit, logical_id, Physical(arn, {"TopicName": name}))

    def _glue_job(self) -> None:
        """Every Glue job of the templates (the feature job, the distributed training
        job); the feature job is the one the scenario runs."""
        features = []
        for unit, logical_id, resource in self.all_resources("AWS::Glue::Job"):
            props = resource["Properties"]
            name = self.resolver.resolve(unit, props.get("Name")) or generated_name(
                self.resolver.stack_names[unit], logical_id, 255
            )
            boto3.client("glue").create_job(
                Name=name,
                Role=self.role_arn,
                Command=self.resolver.resolve(unit, props["Command"]),
                DefaultArguments=self.resolver.resolve(unit, props.get("DefaultArguments", {})),
                ExecutionProperty=props.get("ExecutionProperty", {"MaxConcurrentRuns": 1}),
            )
            self.resolver.add(unit, logical_id, Physical(name))
            if name.endswith("-features"):
                features.append(name)
        if len(features) != 1:
            raise UnresolvableError(f"expected one feature job in the templates, found {features}")
        self.feature_job = FeatureJobRunner(features[0], self.spark_session)

    def _rest_api(self) -> None:
        client = boto3.client("apigateway")
        for unit, logical_id, resource in self.all_resources("AWS::ApiGateway::RestApi"):
            props = resource["Properties"]
            api = client.create_rest_api(name=self.resolver.resolve(unit, props["Name"]))
            self.resolver.add(
                unit, logical_id, Physical(api["id"], {"RootResourceId": api["rootResourceId"]})
            )

    def _api_stage(self) -> None:
        """The API's resources and methods (a deployment needs them), one deployment
        and the stage with the template's variables. Requests themselves go to the
        function through ``api`` below, as the stage's proxy integration sends them."""
        client = boto3.client("apigateway")
        pending = dict(self.all_resources_by_id("AWS::ApiGateway::Resource"))
        while pending:
            ready = {
                key: resource
                for key, resource in pending.items()
                if not isinstance(resource["Properties"]["ParentId"], dict)
                or "Ref" not in resource["Properties"]["ParentId"]
                or (key[0], resource["Properties"]["ParentId"]["Ref"]) in self.resolver.physical
            }
            if not ready:
                raise UnresolvableError(f"API resources with no parent: {sorted(pending)}")
            for (unit, logical_id), resource in ready.items():
                props = self.resolver.resolve(unit, resource["Properties"])
                created = client.create_resource(
                    restApiId=props["RestApiId"],
                    parentId=props["ParentId"],
                    pathPart=props["PathPart"],
                )
                self.resolver.add(unit, logical_id, Physical(created["id"]))
                del pending[(unit, logical_id)]
        for unit, _, resource in self.all_resources("AWS::ApiGateway::Method"):
            props = resource["Properties"]
            api, path = (
                self.resolver.resolve(unit, props[key]) for key in ("RestApiId", "ResourceId")
            )
            method = self.resolver.resolve(unit, props["HttpMethod"])
            client.put_method(
                restApiId=api,
                resourceId=path,
                httpMethod=method,
                authorizationType=props.get("AuthorizationType", "NONE"),
                apiKeyRequired=bool(props.get("ApiKeyRequired", False)),
            )
            integration = self.resolver.resolve(unit, props.get("Integration", {}))
            if integration:
                client.put_integration(
                    restApiId=api,
                    resourceId=path,
                    httpMethod=method,
                    type=integration["Type"],
                    integrationHttpMethod=integration.get("IntegrationHttpMethod", method),
                    uri=integration.get("Uri", ""),
                )
        for unit, logical_id, resource in self.all_resources("AWS::ApiGateway::Deployment"):
            rest_api = self.resolver.resolve(unit, resource["Properties"]["RestApiId"])
            deployment = client.create_deployment(restApiId=rest_api)["id"]
            self.resolver.add(unit, logical_id, Physical(deployment))
        for unit, logical_id, resource in self.all_resources("AWS::ApiGateway::Stage"):
            props = resource["Properties"]
            stage = self.resolver.resolve(unit, props["StageName"])
            self.rest_api_id = self.resolver.resolve(unit, props["RestApiId"])
            client.create_stage(
                restApiId=self.rest_api_id,
                stageName=stage,
                deploymentId=self.resolver.resolve(unit, props["DeploymentId"]),
                variables=self.resolver.resolve(unit, props.get("Variables", {})),
            )
            self.stage_name = stage
            self.resolver.add(unit, logical_id, Physical(stage))

    def _functions(self) -> None:
        """Every function of the Ml and Orchestration stacks, named as the template
        names it; environments are set once all exist (they refer to each other)."""
        lam = boto3.client("lambda")
        for unit in ("Ml", "Orchestration"):
            for logical_id, resource in self.resources(unit, "AWS::Lambda::Function").items():
                props = resource["Properties"]
                handler = (
                    props.get("Handler") or props.get("ImageConfig", {}).get("Command", [None])[0]
                )
                if not handler:
                    raise UnresolvableError(f"{unit}: {logical_id} names no handler")
                name = self.resolver.resolve(unit, props.get("FunctionName")) or generated_name(
                    self.resolver.stack_names[unit], logical_id
                )
                arn = lam.create_function(
                    FunctionName=name,
                    Runtime="python3.11",
                    Role=self.role_arn,
                    Handler=handler,
                    Code={"ZipFile": _zip()},
                    Timeout=int(props.get("Timeout", 3)),
                    MemorySize=int(props.get("MemorySize", 128)),
                )["FunctionArn"]
                self.resolver.add(unit, logical_id, Physical(name, {"Arn": arn}))
                self.functions[handler] = Function(unit, logical_id, name, handler, props)
        for function in self.functions.values():
            lam.update_function_configuration(
                FunctionName=function.name,
                Environment={"Variables": self.template_environment(function)},
            )

    def template_environment(self, function: Function) -> dict[str, str]:
        """The function's Environment.Variables as deployed, with ``overrides``."""
        variables = dict(function.properties.get("Environment", {}).get("Variables", {}))
        laptop = self.overrides(variables)
        resolved = {
            name: str(self.resolver.resolve(function.unit, value))
            for name, value in variables.items()
            if name not in laptop
        }
        return {**resolved, **laptop}

    def overrides(self, variables: Mapping[str, Any]) -> dict[str, str]:
        """What AWS gives that a laptop does not, for the variables the template sets.

        - the database: the template points at the RDS Proxy endpoint of the
          FeatureStore stack (a VPC-only host) and signs in with IAM tokens; here the
          test PostgreSQL server, with its own password-less local login.
        """
        laptop = {}
        if names.ENV_DATABASE_URL in variables:
            laptop[names.ENV_DATABASE_URL] = self.database_url
        if names.ENV_DATABASE_IAM_AUTH in variables:
            laptop[names.ENV_DATABASE_IAM_AUTH] = "false"
        if self.model_refresh_seconds is not None and names.ENV_MODEL_REFRESH_SECONDS in variables:
            laptop[names.ENV_MODEL_REFRESH_SECONDS] = str(self.model_refresh_seconds)
        return laptop

    def _versions_and_aliases(self) -> None:
        lam = boto3.client("lambda")
        for unit, logical_id, resource in self.all_resources("AWS::Lambda::Version"):
            function = self.resolver.resolve(unit, resource["Properties"]["FunctionName"])
            published = lam.publish_version(FunctionName=function)
            self.resolver.add(
                unit,
                logical_id,
                Physical(published["FunctionArn"], {"Version": published["Version"]}),
            )
        for unit, logical_id, resource in self.all_resources("AWS::Lambda::Alias"):
            props = resource["Properties"]
            alias = lam.create_alias(
                FunctionName=self.resolver.resolve(unit, props["FunctionName"]),
                Name=self.resolver.resolve(unit, props["Name"]),
                FunctionVersion=self.resolver.resolve(unit, props["FunctionVersion"]),
            )
            self.resolver.add(unit, logical_id, Physical(alias["AliasArn"]))

    def _alarms(self) -> None:
        """The candidate alarms (name prefix from the release function's environment),
        which the release reads, as deployed; ``AlarmEvaluator`` evaluates them.
        Actions are left out: the notifications read back are the state machines'."""
        release = self.function(names.HANDLER_RELEASE)
        self.candidate_prefix = self.lambda_environment(release.name)[
            names.ENV_CANDIDATE_ALARM_PREFIX
        ]
        cloudwatch = boto3.client("cloudwatch")
        keep = (
            "AlarmName",
            "AlarmDescription",
            "ComparisonOperator",
            "DatapointsToAlarm",
            "Dimensions",
            "EvaluationPeriods",
            "ExtendedStatistic",
            "MetricName",
            "Metrics",
            "Namespace",
            "Period",
            "Statistic",
            "Threshold",
            "TreatMissingData",
            "Unit",
        )
        self.candidate_alarms: list[str] = []
        self.alarm_definitions: list[dict[str, Any]] = []
        for unit in ("Ml", "Monitoring"):
            for resource in self.resources(unit, "AWS::CloudWatch::Alarm").values():
                props = resource["Properties"]
                name = self.resolver.resolve(unit, props.get("AlarmName", ""))
                if not name.startswith(self.candidate_prefix):
                    continue
                spec = {
                    key: self.resolver.resolve(unit, props[key]) for key in keep if key in props
                }
                for number in ("EvaluationPeriods", "DatapointsToAlarm", "Period"):
                    if number in spec:
                        spec[number] = int(spec[number])
                spec["Threshold"] = float(spec.get("Threshold", 0))
                cloudwatch.put_metric_alarm(**spec)
                self.candidate_alarms.append(name)
                self.alarm_definitions.append(spec)

    def _subscriptions(self, function: Function) -> list[Subscription]:
        """The subscription filters on ``function``'s log group, each with the S3
        destination of the Firehose stream it feeds."""
        found = []
        log_group = function.properties.get("LoggingConfig", {}).get("LogGroup")
        for unit, _, resource in self.all_resources("AWS::Logs::SubscriptionFilter"):
            props = resource["Properties"]
            if unit != function.unit or props["LogGroupName"] != log_group:
                continue
            pattern = _FILTER.match(props["FilterPattern"])
            destination = props["DestinationArn"].get("Fn::GetAtt", [None])[0]
            stream = self.templates[unit]["Resources"].get(destination, {})
            if pattern is None or stream.get("Type") != "AWS::KinesisFirehose::DeliveryStream":
                raise UnresolvableError(f"{unit}: a subscription the harness cannot deliver")
            destination = stream["Properties"]["ExtendedS3DestinationConfiguration"]
            s3 = {
                key: self.resolver.resolve(unit, destination[key])
                for key in ("BucketARN", "Prefix", "FileExtension", "CompressionFormat")
                if key in destination
            }
            found.append(
                Subscription(
                    field=pattern["field"],
                    value=pattern["value"],
                    bucket=s3["BucketARN"].removeprefix("arn:aws:s3:::"),
                    prefix=s3.get("Prefix", ""),
                    extension=s3.get("FileExtension", ""),
                    gzipped=s3.get("CompressionFormat") == "GZIP",
                )
            )
        if not found:
            raise UnresolvableError(f"no subscription filter on the log group of {function.name}")
        return found

    def _state_machines(self) -> None:
        sfn = boto3.client("stepfunctions")
        for unit, logical_id, resource in self.all_resources("AWS::StepFunctions::StateMachine"):
            props = resource["Properties"]
            text = self.resolver.resolve(unit, props["DefinitionString"])
            values = {
                key: str(value)
                for key, value in self.resolver.resolve(
                    unit, props.get("DefinitionSubstitutions", {})
                ).items()
            }
            definition = json.loads(substitute(text, values))
            name = self.resolver.resolve(unit, props.get("StateMachineName")) or generated_name(
                self.resolver.stack_names[unit], logical_id, 80
            )
            arn = sfn.create_state_machine(
                name=name, definition=json.dumps(moto_runnable(definition)), roleArn=self.role_arn
            )["stateMachineArn"]
            self.resolver.add(unit, logical_id, Physical(arn, {"Name": name}))
            self.machines[arn] = json.dumps(definition)

    # ---- reading the world -------------------------------------------------------
    def output(self, unit: str, name: str) -> str:
        """A stack output, resolved (e.g. ``names.OUTPUT_RAW_BUCKET`` of DataLake)."""
        return self.resolver.output(unit, name)

    def function(self, handler: str) -> Function:
        if handler not in self.functions:
            raise UnresolvableError(f"no function of the templates runs {handler}")
        return self.functions[handler]

    def lambda_environment(self, function: str, qualifier: str | None = None) -> dict[str, str]:
        config = boto3.client("lambda").get_function_configuration(
            FunctionName=function, **({"Qualifier": qualifier} if qualifier else {})
        )
        return config.get("Environment", {}).get("Variables", {})

    def alias_version(self, function: str, alias: str) -> str:
        return boto3.client("lambda").get_alias(FunctionName=function, Name=alias)[
            "FunctionVersion"
        ]

    def stage(self) -> dict[str, Any]:
        return boto3.client("apigateway").get_stage(
            restApiId=self.rest_api_id, stageName=self.stage_name
        )

    def registry(self) -> Registry:
        """The model registry, where the release function's environment says."""
        env = self.lambda_environment(self.function(names.HANDLER_RELEASE).name)
        return Registry(env[names.ENV_REGISTRY_URI], env[names.ENV_MODEL_NAME])

    def notifications(self) -> list[dict[str, str]]:
        """Subject and message of everything published to the topics since last read."""
        return read_notifications(self.topic_queue_url)

    # ---- acting on the world -----------------------------------------------------
    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        alias: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One request as the stage's proxy integration passes it: to the inference
        function, qualified by the stage variable that selects the alias (or by
        ``alias``)."""
        if alias is None:
            alias = self.stage()["variables"][names.STAGE_VARIABLE_LAMBDA_ALIAS]
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"content-type": "application/json"} if data else {}
        event = build_event(method=method, target=path, headers=headers, body=data, alias=alias)
        response = boto3.client("lambda").invoke(
            FunctionName=self.function(names.HANDLER_INFERENCE).name,
            Qualifier=alias,
            Payload=json.dumps(event).encode(),
        )
        payload = json.loads(response["Payload"].read())
        if response.get("FunctionError"):
            # API Gateway answers 502 when the integration's function fails.
            return 502, payload
        return payload["statusCode"], json.loads(payload["body"]) if payload.get("body") else {}

    def put_object(self, bucket: str, key: str, body: bytes) -> dict[str, Any]:
        """Writes an object; returns the EventBridge event S3 sends for it."""
        put = boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
        return s3_object_created(
            bucket, key, len(body), put["ETag"].strip('"'), self.region, self.resolver.account
        )

    def deliver(
        self, event: Mapping[str, Any], overlay: Mapping[str, Any] | None = None
    ) -> list[str]:
        """What EventBridge does with ``event``: every rule whose pattern matches it
        starts its Step Functions targets and invokes its Lambda targets (what they
        were sent and answered is kept in ``rule_invocations``). Returns the
        executions started.

        ``overlay``: keys set on top of the target's input (a JSON object), for what
        a test must change in a run that the rule cannot say."""
        from moto.events.models import EventPattern

        started = []
        sfn = boto3.client("stepfunctions")
        for unit, logical_id, resource in self.all_resources("AWS::Events::Rule"):
            props = resource["Properties"]
            if "EventPattern" not in props or props.get("State", "ENABLED") != "ENABLED":
                continue
            pattern = self.resolver.resolve(unit, props["EventPattern"])
            if not EventPattern.load(json.dumps(pattern)).matches_event(dict(event)):
                continue
            for target in props.get("Targets", []):
                arn = self.resolver.resolve(unit, target["Arn"])
                if ":states:" not in arn and ":lambda:" not in arn:
                    continue  # only Step Functions and Lambda targets act here
                if "Input" in target:
                    payload = self.resolver.resolve(unit, target["Input"])
                elif "InputPath" in target:
                    payload = json.dumps(_json_path(event, target["InputPath"]))
                elif "InputTransformer" in target:
                    transformer = self.resolver.resolve(unit, target["InputTransformer"])
                    payload = transform_input(event, transformer, logical_id)
                else:
                    payload = json.dumps(event)
                if overlay:
                    payload = json.dumps({**json.loads(payload), **overlay})
                if ":lambda:" in arn:
                    self.rule_invocations.append(self._invoke_from_rule(arn, payload))
                    continue
                # Step Functions names an execution started without a name with a
                # UUID; moto would name it "None".
                execution = sfn.start_execution(
                    stateMachineArn=arn, name=str(uuid.uuid4()), input=payload
                )
                started.append(execution["executionArn"])
        return started

    @staticmethod
    def _invoke_from_rule(arn: str, payload: str) -> dict[str, Any]:
        response = boto3.client("lambda").invoke(FunctionName=arn, Payload=payload.encode())
        return {
            "function": arn,
            "event": json.loads(payload),
            "error": response.get("FunctionError"),
            "result": json.loads(response["Payload"].read() or b"null"),
        }

    def status_change(self, execution_arn: str) -> dict[str, Any]:
        """The "Step Functions Execution Status Change" event Step Functions sends to
        EventBridge as ``execution_arn`` is now: its detail is what DescribeExecution
        says (dates in epoch milliseconds)."""
        described = boto3.client("stepfunctions").describe_execution(executionArn=execution_arn)

        def epoch_ms(moment: datetime | None) -> int | None:
            return int(moment.timestamp() * 1000) if moment else None

        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states",
            "account": self.resolver.account,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [execution_arn],
            "detail": {
                "executionArn": execution_arn,
                "stateMachineArn": described["stateMachineArn"],
                "name": described["name"],
                "status": described["status"],
                "startDate": epoch_ms(described.get("startDate")),
                "stopDate": epoch_ms(described.get("stopDate")),
                "input": described.get("input"),
                "output": described.get("output"),
                "error": described.get("error"),
                "cause": described.get("cause"),
            },
        }

    def machine(self, output: str) -> str:
        """A state machine ARN from an Orchestration output (names.OUTPUT_*)."""
        return self.output("Orchestration", output)

    def executions(self, machine_arn: str, status: str | None = None) -> list[dict[str, Any]]:
        return boto3.client("stepfunctions").list_executions(
            stateMachineArn=machine_arn, **({"statusFilter": status} if status else {})
        )["executions"]

    def read(self, execution_arn: str) -> Execution:
        sfn = boto3.client("stepfunctions")
        described = sfn.describe_execution(executionArn=execution_arn)
        events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        output = described.get("output")
        return Execution(
            arn=execution_arn,
            status=described["status"],
            output=json.loads(output) if output else None,
            error=described.get("error"),
            cause=described.get("cause"),
            events=events,
        )

    def wait(
        self,
        execution_arn: str,
        timeout: float = 120,
        until: Callable[[Execution], bool] | None = None,
    ) -> Execution:
        """The execution once it ends (or ``until`` holds), or as it is at ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            execution = self.read(execution_arn)
            done = until(execution) if until else execution.status in FINAL_STATUSES
            if done or time.monotonic() > deadline:
                return execution
            time.sleep(0.1)

    def recorded_release(self, execution: Execution) -> dict[str, Any]:
        """The ``startExecution`` request the training pipeline recorded in place of
        starting the canary release (see ``moto_runnable``)."""
        machine = execution.arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0]
        definition = json.loads(self.machines[machine])
        for name, state in definition["States"].items():
            if state.get("Resource", "").startswith("arn:aws:states:::states:startExecution"):
                for event in execution.events:
                    details = event.get("stateExitedEventDetails")
                    if details and details["name"] == name:
                        value = json.loads(details["output"])
                        for part in state["ResultPath"].removeprefix("$.").split("."):
                            value = value[part]
                        return value["request"]
        raise AssertionError(f"{execution.arn} never reached its startExecution state")

    def start_recorded_release(
        self, execution: Execution, canary: Mapping[str, Any] | None = None, **settings: Any
    ) -> str:
        """Starts the canary release as the training pipeline would have, with
        ``canary`` settings overlaid on the recorded ones (shorter waits) and the
        other ``settings`` of a release's input set."""
        request = self.recorded_release(execution)
        payload = {**request["Input"], **settings}
        if canary:
            payload["canary"] = {**payload.get("canary", {}), **canary}
        return boto3.client("stepfunctions").start_execution(
            stateMachineArn=request["StateMachineArn"],
            name=request.get("Name", str(uuid.uuid4())),
            input=json.dumps(payload),
        )["executionArn"]

    def deploy_code(self, code_version: str | None = None) -> str:
        """A code release as CloudFormation and CodeDeploy make it: ``$LATEST`` gets
        the template's configuration (so no model pin), a version is published and
        ``live`` moves to it. ``code_version`` stands for the new commit's id.
        Returns the new version."""
        function = self.function(names.HANDLER_INFERENCE)
        variables = self.template_environment(function)
        if code_version is not None:
            variables[names.ENV_CODE_VERSION] = code_version
        lam = boto3.client("lambda")
        lam.update_function_configuration(
            FunctionName=function.name, Environment={"Variables": variables}
        )
        version = lam.publish_version(FunctionName=function.name, Description="code release")
        lam.update_alias(
            FunctionName=function.name, Name=names.LIVE_ALIAS, FunctionVersion=version["Version"]
        )
        return version["Version"]


def _base_environment(region: str) -> dict[str, str]:
    """What every handler sees besides its own variables: the process's AWS settings
    (moto's fake credentials), none of the project's own variables."""
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith((names.ENV_PREFIX, "POWERTOOLS_"))
    }
    base.update({"AWS_REGION": region, "AWS_DEFAULT_REGION": region})
    return base
