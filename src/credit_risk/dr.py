"""Regional disaster recovery: the active-snapshot pointer and the failover procedure.

A deployment with a standby region has, in both regions, the lake's buckets (S3
replication copies the primary's raw, curated and models buckets to the standby's,
keys unchanged), a feature store, the functions and the API; the standby's rules
that start work are deployed disabled. Two things let the standby serve what the
primary served:

- the active-snapshot pointer (``credit_risk.active_snapshot``): each load of the
  store by the pipeline records the snapshot the store now serves beside the curated
  data, so that it replicates with the snapshot it names;
- ``switch_region``, run by ``credit-risk dr failover`` and ``dr failback`` toward
  a target region: (on a failback, copy back what the standby wrote,) check the
  target's registry, load the pointer's snapshot into the target's store, check the
  target's API as a client would, move the traffic, then the work rules and the
  replication, (on a failback, merge into the primary's store the decisions the
  standby recorded,) and record what was done and how long it took.

Each step says in one line what it found or did, and each is safe to run again: a
second run says what was already so. Nothing depends on the region being left,
which may be down. The AWS side is a few clients per region (``RegionClients``),
which the procedure gets from a factory: a drill hands it other ones.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from credit_risk import bootstrap, decision_ids, io, names, probe
from credit_risk.active_snapshot import (
    ActiveSnapshot,
    active_snapshot_uri,
    no_pointer,
    parse_active_snapshot,
    relocate_snapshot_uri,
)
from credit_risk.errors import ConfigurationError, CreditRiskError, InvalidInputError
from credit_risk.registry import Registry

Say = Callable[[str], None]

FAILOVER, FAILBACK = "failover", "failback"
DIRECTIONS = (FAILOVER, FAILBACK)
# The role the target region must have: a failover goes to the standby, a failback
# comes back to the primary.
TARGET_ROLE = {FAILOVER: names.DR_STANDBY, FAILBACK: names.DR_PRIMARY}
# How long the target's API may take to answer healthy (its functions may be cold,
# its instances still hold no snapshot), and how often it is asked meanwhile.
DEFAULT_WAIT_SECONDS = 300.0
POLL_SECONDS = 5.0
# A synchronous invoke waits for the whole store load: up to the function's
# 15-minute limit, with a margin for the answer to come back.
LOADER_READ_TIMEOUT_SECONDS = 15 * 60 + 30
_NOT_FOUND = ("NoSuchKey", "404")
_NO_REPLICATION = ("ReplicationConfigurationNotFoundError",)
# A merge of decisions exports from this long before the last id the previous took.
MERGE_OVERLAP = timedelta(minutes=5)
# The buckets S3 replicates from a primary to its standby (infra/components/data_lake.py).
LAKE_BUCKETS = ("raw", "curated", "models")


class RecoveryError(CreditRiskError):
    """The target region cannot take the deployment over yet; the message says why."""


# --- the AWS side ---------------------------------------------------------------------


class RegionClients(bootstrap.AwsClients):
    """boto3 clients for one region, each created on first use."""

    @functools.cached_property
    def sts(self) -> Any:
        return self._session.client("sts")

    @functools.cached_property
    def lambda_(self) -> Any:
        from botocore.config import Config

        # One attempt: a retried invoke would start a second load of the same snapshot
        # while the first still runs; running the procedure again is the retry.
        config = Config(read_timeout=LOADER_READ_TIMEOUT_SECONDS, retries={"total_max_attempts": 1})
        return self._session.client("lambda", config=config)

    @functools.cached_property
    def events(self) -> Any:
        return self._session.client("events")

    @functools.cached_property
    def events_once(self) -> Any:
        return self._once("events")

    @functools.cached_property
    def s3_once(self) -> Any:
        return self._once("s3")

    def _once(self, service: str) -> Any:
        """For a region that may be down, and may not even refuse: one attempt of a
        few seconds, where botocore's defaults would wait minutes."""
        from botocore.config import Config

        config = Config(connect_timeout=3, read_timeout=5, retries={"total_max_attempts": 1})
        return self._session.client(service, config=config)

    @functools.cached_property
    def secretsmanager(self) -> Any:
        return self._session.client("secretsmanager")

    @functools.cached_property
    def route53(self) -> Any:
        return self._session.client("route53")


@dataclass(frozen=True)
class RecoveryRequest:
    """What ``credit-risk dr failover|failback`` is asked to do."""

    environment: str
    direction: str
    target_region: str
    market: str | None = None
    customer_id: str = probe.DEFAULT_CUSTOMER_ID
    # Instead of the target's ApiUrl output: a custom domain, or a local drill.
    api_url: str | None = None
    wait_seconds: float = DEFAULT_WAIT_SECONDS
    model_name: str = names.PROJECT

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise InvalidInputError(f"direction {self.direction!r} is not one of {DIRECTIONS}")

    @property
    def deployment(self) -> str:
        return names.deployment_name(self.environment, self.market)

    @property
    def target_role(self) -> str:
        return TARGET_ROLE[self.direction]

    def deploy_command(self, *, source: bool = False) -> str:
        """The command that deploys the target region's stacks (the source's)."""
        return bootstrap.deploy_command(
            self.deployment, standby=(self.target_role == names.DR_STANDBY) != source
        )


@dataclass(frozen=True)
class Target:
    """The region a failover or failback goes to, from its stack outputs."""

    deployment: str
    region: str
    account: str
    role: str
    source_region: str
    curated_bucket: str
    models_bucket: str
    api_url: str
    api_key_secret_arn: str
    feature_loader: str

    @property
    def lake(self) -> str:
        return f"s3://{self.curated_bucket}"

    @property
    def registry_uri(self) -> str:
        return f"s3://{self.models_bucket}/{names.REGISTRY_PREFIX.rstrip('/')}"

    @property
    def primary_region(self) -> str:
        return self.region if self.role == names.DR_PRIMARY else self.source_region


@dataclass(frozen=True)
class RecoveryState:
    """What a failover or failback did, kept at ``<target lake>/dr/state.json``."""

    deployment: str
    direction: str
    active_region: str
    previous_region: str
    snapshot_id: str
    model_version: str
    api_url: str
    started_at: str
    finished_at: str
    recovery_seconds: float
    # Whether the region left has stopped: its work rules disabled and its lake's
    # replication suspended. False while it cannot be reached, and then the command
    # is to be run again once it can.
    source_stopped: bool = True
    # On a failback: how many of the decisions the standby recorded while it served
    # were new to the primary's store in this run; None when they could not be merged
    # (the command is then to be run again).
    decisions_merged: int | None = None

    @property
    def complete(self) -> bool:
        """Nothing is left for a second run to do."""
        return self.source_stopped and (
            self.direction != FAILBACK or self.decisions_merged is not None
        )

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()


# --- the procedure --------------------------------------------------------------------


def switch_region(
    request: RecoveryRequest,
    *,
    clients_for: Callable[[str], RegionClients] = RegionClients,
    say: Say = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RecoveryState:
    """Moves ``request.deployment`` to ``request.target_region``, step by step.

    Clients are served by the target before anything stops in the source: the work
    rules move last, and the source (which may be down) is asked once, briefly."""
    started_at, started = _now(), clock()
    here = clients_for(request.target_region)
    target = resolve_target(request, here, say)
    there = clients_for(target.source_region)
    if request.direction == FAILBACK:
        copy_back(target, there.s3, here.s3, say)
    model_version, candidate = check_registry(target, request.model_name, here.s3, say)
    pointer = locate_snapshot(target, here.s3, say)
    load_store(target, pointer, here.lambda_, request.deploy_command(), say)
    api_url = request.api_url or target.api_url
    verify_api(
        request,
        api_url,
        probe.read_api_key(target.api_key_secret_arn, client=here.secretsmanager),
        # A release left open answers the customers in its canary with the candidate.
        expected=({model_version} | ({candidate} if candidate else set()), pointer.snapshot_id),
        say=say,
        sleep=sleep,
        clock=clock,
    )
    switch_traffic(target, here.route53, api_url, say)
    set_replication(target, here.s3, target.region, enabled=True, say=say)
    source_stopped = move_rules(target, here.events, there.events_once, say) and (
        set_replication(target, there.s3_once, target.source_region, enabled=False, say=say)
    )
    merged = None
    if request.direction == FAILBACK:
        merged = merge_decisions(request, target, there, here, say)
    state = RecoveryState(
        deployment=target.deployment,
        direction=request.direction,
        active_region=target.region,
        previous_region=target.source_region,
        snapshot_id=pointer.snapshot_id,
        model_version=model_version,
        api_url=api_url,
        started_at=started_at,
        finished_at=_now(),
        recovery_seconds=round(clock() - started, 1),
        source_stopped=source_stopped,
        decisions_merged=merged,
    )
    here.s3.put_object(
        Bucket=target.curated_bucket,
        Key=names.DR_STATE_KEY,
        Body=state.to_json(),
        ContentType="application/json",
    )
    say(f"state: recorded at {io.join(target.lake, names.DR_STATE_KEY)}")
    say(
        f"recovery time: {state.recovery_seconds:.1f} s ({request.direction} of "
        f"{target.deployment} from {target.source_region} to {target.region})"
    )
    return state


def resolve_target(request: RecoveryRequest, clients: RegionClients, say: Say) -> Target:
    """a. The target's account and outputs; its role must suit the direction."""
    account = clients.sts.get_caller_identity()["Account"]
    lake = _stack_outputs(
        request,
        clients.cloudformation,
        "DataLake",
        (
            names.OUTPUT_DR_ROLE,
            names.OUTPUT_DR_PEER_REGION,
            names.OUTPUT_CURATED_BUCKET,
            names.OUTPUT_MODELS_BUCKET,
        ),
    )
    role, peer = lake[names.OUTPUT_DR_ROLE], lake[names.OUTPUT_DR_PEER_REGION]
    if role != request.target_role:
        other = FAILBACK if request.direction == FAILOVER else FAILOVER
        raise InvalidInputError(
            f"{request.target_region} is the {role} region of {request.deployment}: a "
            f"{request.direction} goes to its {request.target_role} region, {peer} "
            f"(`credit-risk dr {other} --to {request.target_region}` comes here)"
        )
    api = _stack_outputs(
        request,
        clients.cloudformation,
        "Api",
        (names.OUTPUT_API_URL, names.OUTPUT_API_KEY_SECRET_ARN),
    )
    target = Target(
        deployment=request.deployment,
        region=request.target_region,
        account=account,
        role=role,
        source_region=peer,
        curated_bucket=lake[names.OUTPUT_CURATED_BUCKET],
        models_bucket=lake[names.OUTPUT_MODELS_BUCKET],
        api_url=api[names.OUTPUT_API_URL],
        api_key_secret_arn=api[names.OUTPUT_API_KEY_SECRET_ARN],
        feature_loader=_stack_outputs(
            request, clients.cloudformation, "Ml", (names.OUTPUT_FEATURE_LOADER,)
        )[names.OUTPUT_FEATURE_LOADER],
    )
    say(
        f"target: {target.deployment} in {target.region} (account {account}), the {role} "
        f"region; {request.direction} from {peer}"
    )
    return target


def _stack_outputs(
    request: RecoveryRequest,
    cloudformation: Any,
    unit: str,
    keys: tuple[str, ...],
    *,
    region: str | None = None,
) -> dict[str, str]:
    """The outputs ``keys`` of the deployment's stack ``unit`` in the target region
    (or in ``region``, the source)."""
    stack = names.stack_name(request.deployment, unit)
    source = region is not None and region != request.target_region
    region = region if source else request.target_region
    deploy = request.deploy_command(source=source)
    status, outputs = bootstrap.read_stack_outputs(
        cloudformation, stack, request.environment, deploy=deploy
    )
    missing = [key for key in keys if not outputs.get(key)]
    if missing:
        # Only a deployment with a standby region has a role and a peer.
        why = (
            " (a deployment has them once disaster_recovery is set in cdk.json)"
            if names.OUTPUT_DR_ROLE in missing
            else ""
        )
        raise ConfigurationError(
            f"stack {stack} ({status}) in {region} has no output "
            f"{', '.join(missing)}{why}: deploy the current version with `{deploy}`"
        )
    return outputs


def check_registry(target: Target, model_name: str, s3: Any, say: Say) -> tuple[str, str | None]:
    """b. The replicated champion loads and matches its recorded sha256: its version,
    and the candidate of a release left open, if any."""
    registry = Registry(target.registry_uri, model_name, s3_client=s3)
    version = registry.champion_version()
    if version is None:
        raise RecoveryError(
            f"no champion of {model_name} in {target.registry_uri}: the registry has not "
            f"been replicated to {target.region} (check the models bucket's replication)"
        )
    try:
        registry.load(version)
    except CreditRiskError as exc:
        raise RecoveryError(f"the champion in {target.region} cannot serve: {exc}") from None
    say(f"registry: champion {version} in {target.registry_uri} loads and matches its sha256")
    release = registry.active_release()
    if release is not None:
        # Its canary answers some customers with the candidate, and the state machine
        # that would end it ran in the source region.
        say(
            f"registry: release {release.release_id} of {release.model_version} is open "
            f"({release.stage}, {release.candidate_percent:g}%) and nothing here drives it: "
            f"end it with `AWS_REGION={target.region} CREDIT_RISK_REGISTRY_URI="
            f"{target.registry_uri} credit-risk release rollback`"
        )
        return version, release.model_version
    return version, None


def locate_snapshot(target: Target, s3: Any, say: Say) -> ActiveSnapshot:
    """c. The snapshot the source served, found in the target's curated bucket."""
    uri = active_snapshot_uri(target.lake)
    data = _read(s3, target.curated_bucket, names.ACTIVE_SNAPSHOT_KEY)
    if data is None:
        raise no_pointer(uri)
    pointer = parse_active_snapshot(data, uri)
    here = relocate_snapshot_uri(pointer.snapshot_uri, target.curated_bucket)
    folder = io.split_s3(here)[1].rstrip("/") + "/"
    held = {
        item["Key"].removeprefix(folder) for item in _objects(s3, target.curated_bucket, folder)
    }
    missing = sorted(set(pointer.files) - held)
    if missing:
        raise RecoveryError(
            f"snapshot {pointer.snapshot_id} is not all at {here} ({len(missing)} of "
            f"{len(pointer.files)} files missing: {', '.join(missing[:3])}): S3 replication "
            "has not copied it yet; run this again once it has"
        )
    recorded = "" if here == pointer.snapshot_uri else f", recorded as {pointer.snapshot_uri}"
    say(
        f"snapshot: {pointer.snapshot_id} as of {pointer.as_of}, {pointer.row_count:,} "
        f"customers, loaded {pointer.loaded_at.isoformat()}; {len(pointer.files)} file(s) "
        f"at {here}{recorded}"
    )
    return pointer.model_copy(update={"snapshot_uri": here})


def load_store(
    target: Target, pointer: ActiveSnapshot, lambda_client: Any, deploy: str, say: Say
) -> dict[str, Any]:
    """d. The target's feature loader loads the snapshot (a no-op when already active)."""
    event = {
        "snapshot_uri": pointer.snapshot_uri,
        "snapshot_id": pointer.snapshot_id,
        "as_of": pointer.as_of.isoformat(),
    }
    answer = invoke_loader(target.feature_loader, target.region, event, lambda_client, deploy)
    if answer.get("already_active"):
        say(f"store: snapshot {pointer.snapshot_id} is already active in {target.region}")
    elif answer.get("row_count") != pointer.row_count:
        raise RecoveryError(
            f"the {target.region} store loaded {answer.get('row_count')} customers of snapshot "
            f"{pointer.snapshot_id}, which served {pointer.row_count}: its replica differs "
            "from what the source loaded"
        )
    else:
        say(
            f"store: loaded snapshot {pointer.snapshot_id} into the {target.region} store: "
            f"{answer.get('row_count', 0):,} customers in {answer.get('load_seconds', 0):.1f} s"
        )
    return answer


def invoke_loader(
    function: str, region: str, event: dict[str, Any], lambda_client: Any, deploy: str
) -> dict[str, Any]:
    """The answer of ``region``'s feature loader to ``event``; its error as a
    RecoveryError."""
    try:
        response = lambda_client.invoke(
            FunctionName=function,
            InvocationType="RequestResponse",
            Payload=json.dumps(event).encode(),
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        raise ConfigurationError(
            f"no function {function} in {region}: deploy it with `{deploy}`"
        ) from None
    raw = response["Payload"].read()
    try:
        answer = json.loads(raw or b"null")
    except ValueError:
        answer = {"errorMessage": raw.decode(errors="replace")[:500]}
    answer = answer if isinstance(answer, dict) else {}
    if response.get("FunctionError"):
        raise RecoveryError(
            f"the feature loader {function} in {region} failed: "
            f"{answer.get('errorType', 'error')}: {answer.get('errorMessage', 'no message')}"
        )
    return answer


def merge_decisions(
    request: RecoveryRequest, target: Target, there: RegionClients, here: RegionClients, say: Say
) -> int | None:
    """h. On a failback, once everything else is done: the decisions the standby
    recorded while it served, exported by its feature loader into its lake, copied to
    the primary's and imported by the primary's loader, which skips the ids it holds.
    Each merge records the last id it took (``names.decision_watermark_key``) and the
    next exports from a little before it. Returns how many were new here, or None
    when they could not be merged: the primary serves all the same, and the command
    is to be run again."""
    source = target.source_region
    try:
        merged, count, key = _merge_decisions(request, target, there, here)
    except (CreditRiskError, BotoCoreError, ClientError) as exc:
        say(
            f"decisions: those the {source} store recorded are not merged into "
            f"{target.region}'s yet ({exc}): run this again"
        )
        return None
    say(
        f"decisions: {count:,} recorded in {source} since the last merge, {merged:,} of them "
        f"new to {target.region}'s store (by way of {io.join(target.lake, key)}); run this "
        f"again once no client calls {source}, for the decisions made there since"
    )
    return merged


def _merge_decisions(
    request: RecoveryRequest, target: Target, there: RegionClients, here: RegionClients
) -> tuple[int, int, str]:
    source = target.source_region
    source_loader = _stack_outputs(
        request, there.cloudformation, "Ml", (names.OUTPUT_FEATURE_LOADER,), region=source
    )[names.OUTPUT_FEATURE_LOADER]
    watermark_key = names.decision_watermark_key(source)
    event: dict[str, Any] = {"action": "export_decisions", "region": source}
    if (last_id := _merged_through(here.s3, target.curated_bucket, watermark_key)) is not None:
        # From a little before: a decision committed just after the last export may
        # carry an id a few milliseconds older than the last one it held.
        since = decision_ids.id_time(last_id) - MERGE_OVERLAP
        event["after_id"] = decision_ids.first_id_at(since)
    exported = invoke_loader(
        source_loader, source, event, there.lambda_, request.deploy_command(source=True)
    )
    key = exported.get("key")
    if not isinstance(key, str) or not re.fullmatch(names.DECISION_EXPORT_KEY_PATTERN, key):
        raise RecoveryError(f"the feature loader {source_loader} in {source} answered {exported}")
    _sync(target, "curated", key, there.s3, here.s3)
    event = {"action": "import_decisions", "key": key}
    imported = invoke_loader(
        target.feature_loader, target.region, event, here.lambda_, request.deploy_command()
    )
    if imported.get("count") != exported.get("count"):
        raise RecoveryError(
            f"{target.region} imported {imported.get('count')} decisions of the "
            f"{exported.get('count')} {source} exported to {key}"
        )
    if exported.get("last_id"):
        mark = {"last_id": exported["last_id"], "key": key, "merged_at": _now()}
        here.s3.put_object(
            Bucket=target.curated_bucket, Key=watermark_key, Body=json.dumps(mark).encode()
        )
    return int(imported["recorded"]), int(imported["count"]), key


def _merged_through(s3: Any, bucket: str, key: str) -> str | None:
    """The last decision id a merge recorded at ``key``; None without one (or with a
    mark that cannot be read: everything is exported then, which is only slower)."""
    data = _read(s3, bucket, key)
    try:
        return None if data is None else decision_ids.normalized(json.loads(data)["last_id"])
    except (ValueError, KeyError, TypeError, InvalidInputError):
        return None


def move_rules(target: Target, events: Any, source_events: Any, say: Say) -> bool:
    """e. The work rules run in the target and stop in the source, if it answers
    (``source_events``: one short attempt, since a region that is down may not even
    refuse). Whether they stopped."""
    prefix = names.schedule_rule_prefix(target.deployment)
    changed, already = set_rules(events, prefix, enabled=True)
    if not changed and not already:
        say(f"rules: none named {prefix}* in {target.region}: nothing starts work there")
    else:
        say(f"rules: {_rule_summary(changed, already, 'enabled')} in {target.region}")
    try:
        changed, already = set_rules(source_events, prefix, enabled=False)
    except (BotoCoreError, ClientError) as exc:
        say(
            f"rules: {target.source_region} did not answer ({exc}); its work rules may still "
            "be enabled: run this again once it is back, which disables them"
        )
        return False
    say(f"rules: {_rule_summary(changed, already, 'disabled')} in {target.source_region}")
    return True


def set_replication(target: Target, s3: Any, region: str, *, enabled: bool, say: Say) -> bool:
    """The lake's replication out of ``region``: suspended where the deployment left
    (a primary that comes back must not write its champion or its pointer over the
    region now serving), resumed where it returns. Regions without replication (a
    standby) are left as they are. Whether it could be done."""
    state = "Enabled" if enabled else "Disabled"
    changed = []
    try:
        for kind in LAKE_BUCKETS:
            bucket = names.lake_bucket_name(target.deployment, kind, target.account, region)
            try:
                config = s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _NO_REPLICATION:
                    continue
                raise
            if all(rule.get("Status") == state for rule in config["Rules"]):
                continue
            rules = [{**rule, "Status": state} for rule in config["Rules"]]
            s3.put_bucket_replication(
                Bucket=bucket, ReplicationConfiguration={**config, "Rules": rules}
            )
            changed.append(kind)
    except (BotoCoreError, ClientError) as exc:
        say(
            f"replication: {region} did not answer ({exc}); its lake may still replicate: "
            "run this again once it is back"
        )
        return False
    if changed:
        verb = "resumed" if enabled else "suspended"
        say(f"replication: {verb} for {', '.join(changed)} in {region}")
    return True


def set_rules(events: Any, prefix: str, *, enabled: bool) -> tuple[list[str], list[str]]:
    """Enables (or disables) the rules named ``prefix…``: (changed, already so)."""
    pages = events.get_paginator("list_rules").paginate(NamePrefix=prefix)
    rules = sorted((r for page in pages for r in page["Rules"]), key=lambda r: r["Name"])
    changed, already = [], []
    for rule in rules:
        # ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS is enabled too.
        if rule.get("State", "").startswith("ENABLED") == enabled:
            already.append(rule["Name"])
            continue
        (events.enable_rule if enabled else events.disable_rule)(Name=rule["Name"])
        changed.append(rule["Name"])
    return changed, already


def _rule_summary(changed: list[str], already: list[str], state: str) -> str:
    done = f"{state} {len(changed)} ({', '.join(changed)})" if changed else f"{state} none"
    return f"{done}, {len(already)} already {state}"


def verify_api(
    request: RecoveryRequest,
    url: str,
    api_key: str,
    *,
    expected: tuple[set[str], str],
    say: Say,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> probe.ProbeResult:
    """f. Health and one score through the target's API, until both answer with one
    of the expected models and the snapshot (``expected``) or ``request.wait_seconds``
    pass."""
    probe.check_url(url)
    deadline = clock() + request.wait_seconds
    attempt = 0
    while True:
        attempt += 1
        result = probe.run_probe(url, api_key, request.customer_id, caller=request.direction)
        problem = _api_problem(result, *expected)
        if problem is None and (answer := result.answer) is not None:
            say(
                f"api: {url} healthy (attempt {attempt}): customer {answer.customer_id} "
                f"scored {answer.default_probability:.4f} {answer.decision} by model "
                f"{answer.model_version} on snapshot {answer.snapshot_id}"
            )
            return result
        if clock() >= deadline:
            raise RecoveryError(
                f"the API at {url} was not healthy within {request.wait_seconds:g} s "
                f"({attempt} attempts): {problem}"
            )
        say(f"api: not ready yet (attempt {attempt}): {problem}")
        sleep(max(min(POLL_SECONDS, deadline - clock()), 0.0))


def _api_problem(
    result: probe.ProbeResult, model_versions: set[str], snapshot_id: str
) -> str | None:
    if not result.ok or result.answer is None:
        return "; ".join(f"{check.name}: {check.detail}" for check in result.checks if not check.ok)
    answer = result.answer
    if answer.model_version not in model_versions:
        expected = " or ".join(sorted(model_versions))
        return f"it answers with model {answer.model_version}, not {expected}"
    if answer.snapshot_id != snapshot_id:
        return f"its store serves snapshot {answer.snapshot_id}, not {snapshot_id}"
    return None


def switch_traffic(target: Target, route53: Any, api_url: str, say: Say) -> list[str]:
    """g. The Route 53 health checks on the primary's probe alarm: inverted (the
    failover records answer with the standby) on a failover, upright on a failback.
    Returns the ids of the health checks found."""
    alarm = names.resource_name(target.deployment, *names.PROBE_FAILURES_ALARM_PARTS)
    watched = {"Region": target.primary_region, "Name": alarm}
    invert = target.role == names.DR_STANDBY
    try:
        pages = route53.get_paginator("list_health_checks").paginate()
        checks = [
            check
            for page in pages
            for check in page["HealthChecks"]
            if check["HealthCheckConfig"].get("Type") == "CLOUDWATCH_METRIC"
            and check["HealthCheckConfig"].get("AlarmIdentifier") == watched
        ]
        if not checks:
            say(
                f"traffic: no Route 53 health check watches {alarm} in {target.primary_region}: "
                f"point clients at {api_url}"
            )
            return []
        for check in checks:
            what = f"health check {check['Id']} on {alarm} ({target.primary_region})"
            if bool(check["HealthCheckConfig"].get("Inverted")) == invert:
                say(f"traffic: {what} already {'inverted' if invert else 'upright'}")
                continue
            route53.update_health_check(HealthCheckId=check["Id"], Inverted=invert)
            if invert:
                say(f"traffic: {what} inverted: Route 53 answers with {target.region}")
            else:
                say(
                    f"traffic: {what} upright again: Route 53 answers with {target.region} "
                    "while its probe passes and it reaches the API"
                )
    except (BotoCoreError, ClientError) as exc:
        raise RecoveryError(
            f"Route 53 could not be updated ({exc}): {target.region} serves at {api_url}; "
            "run this again, or point clients there"
        ) from None
    return [check["Id"] for check in checks]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- failback: what the standby wrote while it served ----------------------------------

# What a standby writes while it serves and its primary must have back: the
# deliveries it received (raw), the models it trained and released (the registry),
# and the snapshot it loaded last with its pointer. Replication runs one way only.
COPY_BACK = (("raw", ""), ("models", names.REGISTRY_PREFIX))


def copy_back(target: Target, source_s3: Any, target_s3: Any, say: Say) -> int:
    """Copies to the primary (``target``) what its standby wrote during the outage:
    every object of the standby's raw bucket and registry that the primary lacks or
    holds otherwise, and the standby's active snapshot with its pointer. Objects are
    compared by size and ETag; a second run copies nothing. The copied raw deliveries
    start no run: the primary's work rules are still disabled."""
    copied = 0
    for kind, prefix in COPY_BACK:
        copied += _sync(target, kind, prefix, source_s3, target_s3)
    source_curated = _peer_bucket(target, "curated")
    data = _read(source_s3, source_curated, names.ACTIVE_SNAPSHOT_KEY)
    if data is not None:
        pointer = parse_active_snapshot(data, f"s3://{source_curated}/{names.ACTIVE_SNAPSHOT_KEY}")
        folder = io.split_s3(pointer.snapshot_uri)[1].rstrip("/") + "/"
        copied += _sync(target, "curated", folder, source_s3, target_s3)
        here = pointer.model_copy(
            update={
                "snapshot_uri": relocate_snapshot_uri(pointer.snapshot_uri, target.curated_bucket)
            }
        )
        current = _read(target_s3, target.curated_bucket, names.ACTIVE_SNAPSHOT_KEY)
        # The same snapshot, whenever its load was last confirmed there.
        if current is None or _snapshot_of(parse_active_snapshot(current, "the pointer")) != (
            _snapshot_of(here)
        ):
            target_s3.put_object(
                Bucket=target.curated_bucket, Key=names.ACTIVE_SNAPSHOT_KEY, Body=here.to_json()
            )
            copied += 1
    say(
        f"copy back: {copied} object(s) copied from {target.source_region} (raw deliveries, "
        "the registry, the active snapshot and its pointer)"
        if copied
        else f"copy back: {target.region} already holds what {target.source_region} wrote"
    )
    return copied


def _snapshot_of(pointer: ActiveSnapshot) -> tuple[str, str]:
    return pointer.snapshot_id, pointer.snapshot_uri


def _peer_bucket(target: Target, kind: str) -> str:
    return names.lake_bucket_name(target.deployment, kind, target.account, target.source_region)


def _sync(target: Target, kind: str, prefix: str, source_s3: Any, target_s3: Any) -> int:
    """Copies ``prefix`` of the source's ``kind`` bucket to the target's, where missing
    or different; the number copied."""
    source = _peer_bucket(target, kind)
    destination = names.lake_bucket_name(target.deployment, kind, target.account, target.region)
    held = {item["Key"]: item for item in _objects(target_s3, destination, prefix)}
    copied = 0
    for item in _objects(source_s3, source, prefix):
        if _same(held.get(item["Key"]), item):
            continue
        # A managed copy: multipart above its threshold, as large extracts need.
        target_s3.copy(
            {"Bucket": source, "Key": item["Key"]}, destination, item["Key"], SourceClient=source_s3
        )
        copied += 1
    return copied


def _same(held: dict[str, Any] | None, item: dict[str, Any]) -> bool:
    """Same size, and same ETag unless either was written in parts (a multipart
    ETag is not the content's MD5: a managed copy changes it)."""
    if held is None or held["Size"] != item["Size"]:
        return False
    return "-" in held["ETag"] + item["ETag"] or held["ETag"] == item["ETag"]


def _read(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in _NOT_FOUND:
            raise
        return None


def _objects(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item for page in pages for item in page.get("Contents", [])]
