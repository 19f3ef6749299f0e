"""The feature store contract, run against SQLite and the real PostgreSQL server alike."""

from __future__ import annotations

import concurrent.futures
import threading
from datetime import date

import pyarrow as pa
import pytest

from credit_risk import schemas
from credit_risk.errors import InvalidInputError
from credit_risk.store import (
    SnapshotExistsError,
    SnapshotNotFoundError,
    StoreNotInitialized,
)
from credit_risk.store.migrations import latest_version
from tests.integration.store.data import AS_OF, customer_id, decision_row, snapshot_table

DIALECTS = {"sqlite": "sqlite", "postgresql": "postgres"}
HOSTILE_IDS = [
    "' OR 1=1 --",
    "'; DROP TABLE customer_features; --",
    '"; DROP VIEW customer_features; --',
    "00000001' OR '1'='1",
    "00000001 ",
    "客户-00000001-🚀",
    "\x00",
    "00000001\x00",
    "\ud800",
    "%",
    "_",
    "x" * 10_240,
    "",
]


def all_ids(store, n: int) -> dict:
    return store.get_many([customer_id(i) for i in range(n)])


# --- reads -------------------------------------------------------------------


def test_get_returns_the_loaded_features_with_leading_zeros_and_nulls(store):
    # given
    store.load_snapshot(snapshot_table(50), "s1", AS_OF)
    # when
    full, sparse = store.get("00000008"), store.get("00000007")
    # then
    assert full.customer_id == "00000008"
    assert full.feature_values() == (28, 8, 1, 1002.0, 0)
    assert (full.as_of, full.snapshot_id) == (AS_OF, "s1")
    assert sparse.feature_values() == (None, None, 1, None, 1)
    assert len(full.feature_values()) == len(schemas.FEATURE_NAMES)


def test_customer_ids_lists_ids_of_the_active_snapshot_in_order(store):
    # given an empty store, then a loaded one
    empty = store.customer_ids(3)
    store.load_snapshot(snapshot_table(10), "s1", AS_OF)
    # when
    first = store.customer_ids(3)
    # then
    assert empty == []
    assert first == ["00000000", "00000001", "00000002"]
    assert all(store.get(cid) is not None for cid in first)


def test_unknown_ids_are_none_and_absent(store):
    # given
    store.load_snapshot(snapshot_table(10), "s1", AS_OF)
    # when
    missing = store.get("8")  # "00000008" without its leading zeros
    many = store.get_many(["00000001", "nobody", "00000002", "00000001"])
    # then
    assert missing is None
    assert sorted(many) == ["00000001", "00000002"]
    assert many["00000002"].customer_id == "00000002"
    assert store.get_many([]) == {}


def test_get_many_answers_a_whole_snapshot_in_one_call(store):
    # given
    store.load_snapshot(snapshot_table(3_000), "s1", AS_OF)
    # when
    found = all_ids(store, 3_000)
    # then
    assert len(found) == 3_000


def test_ids_must_be_text(store):
    with pytest.raises(InvalidInputError):
        store.get(8)
    with pytest.raises(InvalidInputError):
        store.get_many("00000001")


@pytest.mark.parametrize("hostile", HOSTILE_IDS, ids=lambda s: repr(s)[:20])
def test_hostile_ids_are_just_unknown_ids(store, hostile):
    # given
    store.load_snapshot(snapshot_table(20), "s1", AS_OF)
    # when
    one, many = store.get(hostile), store.get_many([hostile, "00000003"])
    # then
    assert one is None
    assert list(many) == ["00000003"]
    assert len(all_ids(store, 20)) == 20
    assert store.active_snapshot().snapshot_id == "s1"


def test_an_id_with_unusual_characters_round_trips(store):
    # given: ids with quotes, commas and non-ASCII text, all valid customer ids
    ids = ["O'Brien,01", 'say "hi"', "客户-001", "line\nbreak"]
    table = snapshot_table(len(ids)).set_column(0, "customer_id", pa.array(ids))
    store.load_snapshot(table, "s1", AS_OF)
    # when
    found = store.get_many(ids)
    # then
    assert sorted(found) == sorted(ids)
    assert store.get("O'Brien,01").customer_id == "O'Brien,01"


# --- schema --------------------------------------------------------------------


def test_an_unmigrated_store_says_so(target):
    # given
    store = target.new_store()
    # when / then
    with pytest.raises(StoreNotInitialized):
        store.get("00000001")
    health = store.health()
    assert not health.ok
    assert "migrate" in health.error
    store.close()


def test_migrations_are_idempotent_and_recorded(store):
    # given: the fixture migrated once, and a snapshot is loaded
    store.load_snapshot(snapshot_table(5), "s1", AS_OF)
    # when
    again = store.migrate()
    # then
    assert again == []
    assert store.health().schema_version == latest_version(DIALECTS[store.backend])
    assert store.get("00000001") is not None


def test_health_reports_the_active_snapshot(store):
    # given
    before = store.health()
    store.load_snapshot(snapshot_table(5), "s1", AS_OF)
    # when
    after = store.health()
    # then
    assert (before.ok, before.error) == (False, "no snapshot loaded")
    assert after.ok
    assert after.active_snapshot_id == "s1"
    assert after.latency_ms >= 0


# --- loads, swaps, rollback ----------------------------------------------------


def test_a_load_reports_what_it_did_and_becomes_active(store):
    # when
    first = store.load_snapshot(snapshot_table(100), "s1", AS_OF)
    second = store.load_snapshot(snapshot_table(80, version=2), "s2", AS_OF)
    # then
    assert (first.row_count, first.previous_snapshot_id) == (100, None)
    assert (second.row_count, second.previous_snapshot_id) == (80, "s1")
    assert second.load_seconds > 0
    assert second.swap_seconds > 0
    active = store.active_snapshot()
    assert (active.snapshot_id, active.row_count, active.as_of) == ("s2", 80, AS_OF)
    assert store.get("00000050").nb_previous_loans == 2
    assert store.get("00000090") is None  # not in the new snapshot
    assert [(s.snapshot_id, s.active) for s in store.snapshots()] == [("s2", True), ("s1", False)]


def test_rollback_brings_back_the_previous_snapshot(store):
    # given
    store.load_snapshot(snapshot_table(30), "s1", AS_OF)
    store.load_snapshot(snapshot_table(30, version=2), "s2", AS_OF)
    # when
    info = store.rollback("s1")
    # then
    assert (info.snapshot_id, info.active) == ("s1", True)
    assert store.get("00000001").nb_previous_loans == 1
    assert store.get("00000001").snapshot_id == "s1"
    with pytest.raises(SnapshotNotFoundError):
        store.rollback("never-loaded")


def test_only_the_configured_number_of_previous_snapshots_is_kept(target):
    # given
    store = target.new_store(retained_snapshots=2)
    store.migrate()
    # when
    results = [
        store.load_snapshot(snapshot_table(10, version=v), f"s{v}", AS_OF) for v in range(1, 5)
    ]
    # then
    assert results[-1].dropped_snapshot_ids == ("s1",)
    assert [s.snapshot_id for s in store.snapshots()] == ["s4", "s3", "s2"]
    assert len(target.snapshot_tables()) == 3
    with pytest.raises(SnapshotNotFoundError):
        store.rollback("s1")
    store.close()


def test_a_snapshot_id_is_never_reused(store):
    # given
    store.load_snapshot(snapshot_table(10), "s1", AS_OF)
    # when / then
    with pytest.raises(SnapshotExistsError):
        store.load_snapshot(snapshot_table(10, version=2), "s1", AS_OF)
    assert store.get("00000001").nb_previous_loans == 1


@pytest.mark.parametrize("snapshot_id", ["", "a b", "x;drop", "-leading", "é", "a" * 64, "s1\n"])
def test_snapshot_ids_are_validated(store, snapshot_id):
    with pytest.raises(InvalidInputError, match="snapshot id"):
        store.load_snapshot(snapshot_table(3), snapshot_id, AS_OF)


def _duplicated(table: pa.Table) -> pa.Table:
    return pa.concat_tables([table, table.slice(0, 1)])


def _average_of(values: list[float | None]) -> pa.Table:
    """A snapshot whose avg_amount_loans_previous column holds ``values``."""
    table = snapshot_table(len(values))
    column = "avg_amount_loans_previous"
    index = table.schema.get_field_index(column)
    return table.set_column(index, column, pa.array(values, pa.float64()))


@pytest.mark.parametrize(
    ("bad_table", "message"),
    [
        (_duplicated(snapshot_table(10)), "duplicate customer_id"),
        (snapshot_table(10).drop_columns(["age"]), "missing \\['age'\\]"),
        (snapshot_table(10).append_column("extra", pa.array(range(10))), "unexpected"),
        (snapshot_table(10, as_of=date(2024, 5, 1)), "not as of 2024-06-01"),
        (snapshot_table(0), "no rows"),
        (snapshot_table(3).set_column(0, "customer_id", pa.array(["1", None, "2"])), "no customer"),
        (snapshot_table(2).set_column(0, "customer_id", pa.array(["1", ""])), "empty"),
        (snapshot_table(2).set_column(0, "customer_id", pa.array(["1", "a\x00"])), "NUL"),
        (snapshot_table(1).set_column(0, "customer_id", pa.array(["9" * 300])), "longer"),
        (
            snapshot_table(2).set_column(1, "age", pa.array([1.5, 2.0])),
            "age",
        ),
        (_average_of([1.0, float("nan"), None]), "NaN or infinite values in avg_amount"),
        (_average_of([float("inf"), float("-inf")]), r"avg_amount_loans_previous \(2\)"),
    ],
    ids=[
        "dupes",
        "missing",
        "extra",
        "as_of",
        "empty",
        "null-id",
        "blank-id",
        "nul",
        "long",
        "type",
        "nan",
        "infinity",
    ],
)
def test_a_bad_snapshot_is_refused_and_changes_nothing(store, target, bad_table, message):
    # given
    store.load_snapshot(snapshot_table(10), "s1", AS_OF)
    # when
    with pytest.raises(InvalidInputError, match=message):
        store.load_snapshot(bad_table, "s2", AS_OF)
    # then
    assert store.active_snapshot().snapshot_id == "s1"
    assert [s.snapshot_id for s in store.snapshots()] == ["s1"]
    assert len(target.snapshot_tables()) == 1
    assert len(all_ids(store, 10)) == 10


def test_an_interrupted_load_leaves_the_active_snapshot_untouched(store, target):
    # given
    store.load_snapshot(snapshot_table(2_000), "s1", AS_OF)
    new = snapshot_table(5_000, version=2)

    def batches_then_failure():
        yield from new.to_batches(max_chunksize=1_000)[:3]
        raise ConnectionResetError("the snapshot's source went away mid-stream")

    # when
    with pytest.raises(ConnectionResetError):
        store.load_snapshot(batches_then_failure(), "s2", AS_OF)
    # then
    active = store.active_snapshot()
    assert (active.snapshot_id, active.row_count) == ("s1", 2_000)
    found = all_ids(store, 5_000)
    assert len(found) == 2_000
    assert {row.snapshot_id for row in found.values()} == {"s1"}
    assert [s.snapshot_id for s in store.snapshots()] == ["s1"]
    assert len(target.snapshot_tables()) == 1
    # and the store takes the next load normally
    assert store.load_snapshot(new, "s2", AS_OF).row_count == 5_000


def test_decisions_are_recorded_while_a_load_writes_its_rows(store, target):
    # given: a load part way through its rows, its source waiting for the decision
    store.load_snapshot(snapshot_table(10), "s1", AS_OF)
    new = snapshot_table(2_000, version=2).to_batches(max_chunksize=500)
    halfway, recorded = threading.Event(), threading.Event()
    waited_out = []

    def slow_source():
        yield from new[:2]
        halfway.set()
        if not recorded.wait(timeout=30):
            waited_out.append("the decision waited for the load")
        yield from new[2:]

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        loading = pool.submit(target.new_store().load_snapshot, slow_source(), "s2", AS_OF)
        if not halfway.wait(timeout=60):
            loading.result(timeout=0)  # the load's own error, if it failed
        # when: the API records a decision meanwhile
        decision = decision_row()
        try:
            assert store.record_decisions([decision]) == 1
        finally:
            recorded.set()
        # then: recorded while the load waited (it holds no lock the decision needs),
        # and the load goes on
        assert loading.result(timeout=60).row_count == 2_000
    assert not waited_out
    assert store.decision_document(decision.decision_id) == decision.document
    assert store.active_snapshot().snapshot_id == "s2"


def test_a_load_accepts_a_stream_of_record_batches(store):
    # given
    table = snapshot_table(2_500)
    # when
    result = store.load_snapshot(iter(table.to_batches(max_chunksize=1_000)), "s1", AS_OF)
    # then
    assert result.row_count == 2_500
    assert store.get(customer_id(2_499)).snapshot_id == "s1"
