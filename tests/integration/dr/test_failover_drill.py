"""The failover drill: a deployment whose primary region fails is moved to its standby
by `credit-risk dr failover`'s procedure, end to end, then back by `dr failback`.

The world (``world.py``) is moto for AWS, a real PostgreSQL database per region, each
region's API served by the real inference handler and each region's feature loader
run as the real handler. The primary's first pipeline run left a champion and a
loaded snapshot, whose pointer the loader recorded; the lake was replicated.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
import requests
from moto import mock_aws

from credit_risk import decision_ids, dr, names
from credit_risk.errors import ConfigurationError, InvalidInputError
from credit_risk.model.pipeline import run_training
from credit_risk.model.synthetic import training_features
from credit_risk.registry import MODEL_FILE, Registry
from credit_risk.settings import Settings
from credit_risk.store import StoreNotInitialized, create_store
from tests.conftest import use_fake_aws_credentials
from tests.integration.dr.world import (
    API_KEY,
    CUSTOMER_ID,
    MODEL_NAME,
    NEWER_RUN,
    OTHER_RULE,
    PRIMARY,
    RUN_ID,
    SNAPSHOT_CUSTOMERS,
    STANDBY,
    Region,
    TrainedModel,
    World,
    deployment,
    load,
    write_snapshot,
)

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """A small real model, trained once: what the primary's pipeline promoted."""
    root = tmp_path_factory.mktemp("training")
    table, _ = training_features(5_000, seed=3)
    (root / "features").mkdir()
    pq.write_table(table, root / "features" / "part-0.parquet")
    result = run_training(str(root / "features"), str(root / "registry"), MODEL_NAME)
    registry = Registry(str(root / "registry"), MODEL_NAME)
    return TrainedModel(
        result.version, registry.read_file(result.version, MODEL_FILE), result.metadata
    )


@pytest.fixture
def world(
    postgres_url: str, model: TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    use_fake_aws_credentials(monkeypatch, PRIMARY)
    with mock_aws(), deployment(postgres_url, model, tmp_path, monkeypatch) as built:
        yield built


def served_snapshot(region: Region) -> tuple[str | None, str | None]:
    """The store's active snapshot, and the snapshot the drill's customer is read from
    (none while the standby's store has never been loaded, not even migrated)."""
    with create_store(Settings(database_url=region.database_url)) as store:
        try:
            active = store.active_snapshot()
            customer = store.get(CUSTOMER_ID)
        except StoreNotInitialized:
            return None, None
    return (
        active.snapshot_id if active else None,
        customer.snapshot_id if customer else None,
    )


def score(region: Region) -> dict:
    """A client's request to the region's API, as a lender's system makes it."""
    answer = requests.post(
        f"{region.api_url}{names.ROUTE_SCORE}",
        json={"customer_id": CUSTOMER_ID},
        headers={names.API_KEY_HEADER: API_KEY},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def lookup(region: Region, decision_id: str) -> requests.Response:
    return requests.get(
        f"{region.api_url}{names.ROUTE_DECISION}/{decision_id}",
        headers={names.API_KEY_HEADER: API_KEY},
        timeout=10,
    )


def recorded_decisions(region: Region) -> set[str]:
    with create_store(Settings(database_url=region.database_url)) as store:
        return {row.decision_id for row in store.decisions_after(None, 100_000)}


def line(printed: list[str], prefix: str) -> list[str]:
    return [text for text in printed if text.startswith(prefix)]


def test_a_failed_primary_fails_over_to_the_standby_and_back(world: World):
    primary, standby = world.primary, world.standby
    # Given the pointer the primary's load recorded, replicated: it names the primary's
    # bucket
    recorded = primary.read_json(names.ACTIVE_SNAPSHOT_KEY)
    assert standby.read_json(names.ACTIVE_SNAPSHOT_KEY) == recorded
    assert recorded["snapshot_uri"].startswith(f"s3://{primary.bucket('curated')}/")
    assert (recorded["snapshot_id"], recorded["row_count"]) == (RUN_ID, SNAPSHOT_CUSTOMERS)
    # and the primary region down, the standby serving nothing yet
    world.down.add(PRIMARY)
    assert served_snapshot(standby) == (None, None)
    assert standby.work_rules() == {"DISABLED"}

    # When the deployment fails over to the standby
    state = world.switch(dr.FAILOVER, standby)

    # Then the standby's store serves the snapshot the primary served
    assert served_snapshot(standby) == (RUN_ID, RUN_ID)
    (loaded,) = standby.loader.invocations
    assert loaded == {
        "snapshot_uri": f"s3://{standby.bucket('curated')}/{names.CURATED_PREFIX}{RUN_ID}/snapshot/",
        "snapshot_id": RUN_ID,
        "as_of": "2024-06-01",
    }
    # its work rules run; the primary's could not be stopped, which is said
    assert standby.work_rules() == {"ENABLED"}
    assert standby.rule_states()[OTHER_RULE] == "ENABLED"
    (unreachable,) = line(world.printed, f"rules: {PRIMARY} did not answer")
    assert "run this again once it is back" in unreachable
    # Route 53 answers with the standby: only the health check on the primary's probe
    # alarm is inverted (the guard over it then fails, whatever the stage answers)
    checks = world.health_checks()
    assert checks[world.probe_check]["Inverted"] is True
    assert [checks[other]["Inverted"] for other in world.other_checks] == [False] * 3
    # the standby's API scored the customer with the champion, on that snapshot
    (api,) = line(world.printed, "api: ")
    assert f"customer {CUSTOMER_ID} scored" in api
    assert f"model {world.model.version} on snapshot {RUN_ID}" in api
    # and what was done is recorded in the standby's lake, with the recovery time
    recorded = standby.read_json(names.DR_STATE_KEY)
    assert recorded == {
        "deployment": "prod",
        "direction": dr.FAILOVER,
        "active_region": STANDBY,
        "previous_region": PRIMARY,
        "snapshot_id": RUN_ID,
        "model_version": world.model.version,
        "api_url": standby.api_url,
        "started_at": state.started_at,
        "finished_at": state.finished_at,
        "recovery_seconds": state.recovery_seconds,
        "source_stopped": False,
        "decisions_merged": None,
    }
    assert 0 < state.recovery_seconds < 60
    assert world.printed[-1].startswith(f"recovery time: {state.recovery_seconds:.1f} s")
    # clients are served before anything stops in the primary, which is asked last
    steps = [text.split(":", 1)[0] for text in world.printed]
    assert steps == [
        "target",
        "registry",
        "snapshot",
        "store",
        "api",
        "traffic",
        "rules",
        "rules",
        "state",
        "recovery time",
    ]
    assert state.source_stopped is False

    # When it runs again, the primary still down
    world.switch(dr.FAILOVER, standby)

    # Then nothing changes, and it says what was already so
    assert line(world.printed, "store: ") == [
        f"store: snapshot {RUN_ID} is already active in {STANDBY}"
    ]
    assert line(world.printed, f"rules: enabled none, {len(names.WORK_RULES)} already enabled")
    assert line(world.printed, "traffic: ")[0].endswith("already inverted")
    assert len(standby.loader.invocations) == 2
    assert served_snapshot(standby) == (RUN_ID, RUN_ID)

    # When it runs once more with the primary back
    world.down.clear()
    world.switch(dr.FAILOVER, standby)

    # Then the primary's work rules are stopped, and its lake no longer replicates over
    # the standby's
    assert primary.work_rules() == {"DISABLED"}
    assert primary.replication() == {"Disabled"}
    assert line(world.printed, "replication: suspended for raw, curated, models in eu-west-1")
    assert primary.rule_states()[OTHER_RULE] == "ENABLED"
    assert line(world.printed, f"rules: disabled {len(names.WORK_RULES)} (")

    assert world.switch(dr.FAILOVER, standby).source_stopped is True

    # Given the standby, while it served, received a delivery and loaded a newer snapshot
    delivery = f"{names.RAW_LOANS_PREFIX}ingest_date=2024-06-02/{names.RAW_DELIVERY_MARKER}"
    boto3.client("s3", region_name=STANDBY).put_object(
        Bucket=standby.bucket("raw"), Key=delivery, Body=b""
    )
    load(standby, write_snapshot(standby, NEWER_RUN), NEWER_RUN)
    # and decided on a client's request, which the primary never saw
    decided = score(standby)
    assert lookup(primary, decided["decision_id"]).status_code == 404
    in_standby = recorded_decisions(standby)

    # When the deployment fails back to its primary
    state = world.switch(dr.FAILBACK, primary)

    # Then what the standby wrote is copied back first, and the primary serves the
    # standby's last snapshot
    (copied,) = line(world.printed, "copy back: ")
    assert "copied from eu-central-1" in copied
    assert primary.read_json(names.ACTIVE_SNAPSHOT_KEY)["snapshot_uri"] == (
        f"s3://{primary.bucket('curated')}/{names.CURATED_PREFIX}{NEWER_RUN}/snapshot/"
    )
    boto3.client("s3", region_name=PRIMARY).head_object(Bucket=primary.bucket("raw"), Key=delivery)
    assert served_snapshot(primary) == (NEWER_RUN, NEWER_RUN)
    # its rules run and the standby's stop, and Route 53 follows the primary's probe again
    assert primary.work_rules() == {"ENABLED"}
    assert standby.work_rules() == {"DISABLED"}
    assert primary.replication() == {"Enabled"}
    assert standby.replication() == set()
    assert world.health_checks()[world.probe_check]["Inverted"] is False
    recorded = primary.read_json(names.DR_STATE_KEY)
    assert (recorded["direction"], recorded["active_region"], recorded["previous_region"]) == (
        dr.FAILBACK,
        PRIMARY,
        STANDBY,
    )
    assert recorded["model_version"] == state.model_version == world.model.version
    # and every decision the standby recorded is answered by the primary as it was
    # answered, once traffic was back
    found = lookup(primary, decided["decision_id"])
    assert found.status_code == 200
    assert found.content == lookup(standby, decided["decision_id"]).content
    assert found.json()["snapshot_id"] == NEWER_RUN
    assert recorded_decisions(primary) >= in_standby
    assert recorded["decisions_merged"] == state.decisions_merged == len(in_standby)
    (merged,) = line(world.printed, "decisions: ")
    assert merged.startswith(
        f"decisions: {len(in_standby)} recorded in {STANDBY} since the last merge, "
        f"{len(in_standby)} of them new"
    )
    # last: nothing else waits on it
    steps = [text.split(":", 1)[0] for text in world.printed]
    assert steps[-3:] == ["decisions", "state", "recovery time"]
    assert state.complete

    # When it runs again, nothing is copied, loaded or recorded twice
    world.switch(dr.FAILBACK, primary)
    assert line(world.printed, "copy back: ") == [
        f"copy back: {PRIMARY} already holds what {STANDBY} wrote"
    ]
    assert line(world.printed, "store: ") == [
        f"store: snapshot {NEWER_RUN} is already active in {PRIMARY}"
    ]
    # (from a little before the last decision merged, which the first run recorded:
    # those are recorded already)
    (merged,) = line(world.printed, "decisions: ")
    assert "since the last merge, 0 of them new" in merged
    last_merged = max(in_standby)
    assert standby.loader.invocations[-1] == {
        "action": "export_decisions",
        "region": STANDBY,
        "after_id": decision_ids.first_id_at(decision_ids.id_time(last_merged) - dr.MERGE_OVERLAP),
    }


def test_a_snapshot_replicated_in_part_is_not_loaded(world: World):
    # Given the pointer names two files and replication has copied one of them
    s3 = boto3.client("s3", region_name=STANDBY)
    key = names.ACTIVE_SNAPSHOT_KEY
    pointer = world.standby.read_json(key)
    assert pointer["files"] == ["part-00000.parquet"]
    pointer["files"].append("part-00001.parquet")
    s3.put_object(Bucket=world.standby.bucket("curated"), Key=key, Body=json.dumps(pointer))
    world.down.add(PRIMARY)

    # When the deployment fails over
    with pytest.raises(
        dr.RecoveryError, match=r"is not all at .*\(1 of 2 files missing: part-00001.parquet\)"
    ):
        world.switch(dr.FAILOVER, world.standby)

    # Then nothing was loaded, and nothing moved
    assert world.standby.loader.invocations == []
    assert world.standby.work_rules() == {"DISABLED"}
    assert world.health_checks()[world.probe_check]["Inverted"] is False


def test_a_release_left_in_canary_does_not_fail_the_check_of_the_api(world: World):
    # Given the primary was releasing a new version, in a canary that answers everyone
    registry = Registry(world.standby.registry_uri, MODEL_NAME)
    candidate = f"{world.model.version}-next"
    registry.publish(candidate, world.model.model_bytes, world.model.metadata)
    release = registry.open_release("release-8", candidate, force=True)
    registry.move_release(release.release_id, "canary", 100)
    world.down.add(PRIMARY)

    # When the deployment fails over
    world.switch(dr.FAILOVER, world.standby)

    # Then the standby's answer by the candidate counts as healthy
    (api,) = line(world.printed, "api: ")
    assert f"by model {candidate} on snapshot {RUN_ID}" in api


def test_a_failover_to_the_primary_region_is_refused_before_anything_changes(world: World):
    # When a failover is asked toward the primary region
    with pytest.raises(InvalidInputError, match=f"{PRIMARY} is the primary region") as refused:
        world.switch(dr.FAILOVER, world.primary)

    # Then it says where a failover goes, and nothing was touched
    assert f"its standby region, {STANDBY}" in str(refused.value)
    assert world.standby.loader.invocations == []
    assert world.standby.work_rules() == {"DISABLED"}
    assert world.health_checks()[world.probe_check]["Inverted"] is False


def test_a_standby_without_the_replicated_pointer_stops_with_what_to_check(world: World):
    # Given replication has not copied the pointer yet
    boto3.client("s3", region_name=STANDBY).delete_object(
        Bucket=world.standby.bucket("curated"), Key=names.ACTIVE_SNAPSHOT_KEY
    )

    # When the deployment fails over
    with pytest.raises(ConfigurationError, match="no active-snapshot pointer at s3://") as stopped:
        world.switch(dr.FAILOVER, world.standby)

    # Then the store, the rules and the traffic are as they were
    assert "replication" in str(stopped.value)
    assert served_snapshot(world.standby) == (None, None)
    assert world.standby.work_rules() == {"DISABLED"}
    assert world.health_checks()[world.probe_check]["Inverted"] is False


def test_a_model_release_left_open_by_the_primary_is_named_with_how_to_end_it(world: World):
    # Given the primary was releasing a new version (in shadow) when it failed
    registry = Registry(world.standby.registry_uri, MODEL_NAME)
    candidate = f"{world.model.version}-next"
    registry.publish(candidate, world.model.model_bytes, world.model.metadata)
    registry.open_release("release-7", candidate, force=True)
    world.down.add(PRIMARY)

    # When the deployment fails over
    world.switch(dr.FAILOVER, world.standby)

    # Then the standby serves the champion, and the open release is pointed out
    (api,) = line(world.printed, "api: ")
    assert f"by model {world.model.version} on snapshot {RUN_ID}" in api
    (release,) = line(world.printed, "registry: release ")
    assert release.startswith(f"registry: release release-7 of {candidate} is open (shadow, 0%)")
    assert release.endswith(
        f"CREDIT_RISK_REGISTRY_URI={world.standby.registry_uri} credit-risk release rollback`"
    )


def test_a_store_load_that_fails_stops_the_failover_with_the_functions_error(world: World):
    # Given a replica of the snapshot that is not Parquet
    key = f"{names.CURATED_PREFIX}{RUN_ID}/snapshot/part-00000.parquet"
    boto3.client("s3", region_name=STANDBY).put_object(
        Bucket=world.standby.bucket("curated"), Key=key, Body=b"not parquet"
    )

    # When the deployment fails over
    with pytest.raises(dr.RecoveryError) as stopped:
        world.switch(dr.FAILOVER, world.standby)

    # Then the loader's error is told, and neither rules nor traffic moved
    assert str(stopped.value).startswith(
        f"the feature loader {world.standby.loader.function_name} in {STANDBY} failed: "
        f"InvalidInputError: cannot read the snapshot at s3://{world.standby.bucket('curated')}/"
    )
    assert world.standby.work_rules() == {"DISABLED"}
    assert world.health_checks()[world.probe_check]["Inverted"] is False


def test_a_failback_whose_decisions_cannot_be_merged_serves_and_says_to_run_it_again(
    world: World,
):
    primary, standby = world.primary, world.standby
    world.switch(dr.FAILOVER, standby)
    decided = score(standby)
    # Given the standby's store cannot be reached when its loader is asked for the decisions
    reachable = standby.loader.environment[names.ENV_DATABASE_URL]
    standby.loader.close()
    standby.loader.environment[names.ENV_DATABASE_URL] = "postgresql://nobody@127.0.0.1:9/none"

    # When the deployment fails back
    state = world.switch(dr.FAILBACK, primary)

    # Then the primary serves and runs the work, and the decisions are said to be left
    assert (primary.work_rules(), standby.work_rules()) == ({"ENABLED"}, {"DISABLED"})
    assert primary.replication() == {"Enabled"}
    (left,) = line(world.printed, "decisions: ")
    assert "StoreUnavailable" in left
    assert left.endswith("run this again")
    assert (state.decisions_merged, state.complete) == (None, False)
    assert primary.read_json(names.DR_STATE_KEY)["decisions_merged"] is None
    assert lookup(primary, decided["decision_id"]).status_code == 404

    # When it runs again once the store answers
    standby.loader.close()
    standby.loader.environment[names.ENV_DATABASE_URL] = reachable
    state = world.switch(dr.FAILBACK, primary)

    # Then the decision is answered by the primary, and nothing is left
    assert lookup(primary, decided["decision_id"]).status_code == 200
    assert state.decisions_merged == len(recorded_decisions(standby))
    assert state.complete
