"""Recorded decisions in the store, against SQLite and the real PostgreSQL server alike:
written once, read back as written, purged after their retention, and a store
migrated before decisions existed takes its first decision without a manual step."""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import replace
from datetime import timedelta, timezone

import psycopg
import pytest

from credit_risk import decision_ids
from credit_risk.store import DecisionRow
from credit_risk.store.migrations import latest_version
from tests.integration.store.data import NOW
from tests.integration.store.data import decision_row as row


def test_a_decision_reads_back_as_it_was_written(store):
    written = row(reasons=[{"code": "MANY_PREVIOUS_LOANS", "value": 7}])
    store.record_decisions([written])
    # the text as written, not merely the same JSON
    assert store.decision_document(written.decision_id) == written.document
    assert store.decision_document(decision_ids.new_ids(1)[0]) is None


def test_writing_a_decision_again_changes_nothing(store):
    # A write retried after a lost connection may reach the database twice.
    first = row(customer="00000001")
    again = DecisionRow(first.decision_id, NOW, "00000002", "other", json.dumps({"no": 1}))
    store.record_decisions([first, row(customer="00000003")])
    store.record_decisions([again])
    assert json.loads(store.decision_document(first.decision_id))["customer_id"] == "00000001"


@pytest.mark.parametrize("batch", [1, 3], ids=["alone", "in a batch"])
def test_a_decision_is_recorded_whole_alone_or_in_a_batch(store, batch):
    # One decision and several take different statements in PostgreSQL: every column
    # must land where it belongs, the document to the byte.
    text = (
        '{"decision_id":"%s","note":"nul \\u0000, lone \\ud800, \u2028\u0085 and \U0001f600",'
        '"big":1e400,"same":1,"same":2}'
    )
    elsewhere = timezone(timedelta(hours=-5))
    rows = []
    for i in range(batch):
        made = row(NOW - timedelta(minutes=i), customer=f"{i:08d}")
        rows.append(
            replace(
                made,
                decided_at=made.decided_at.astimezone(elsewhere),
                synthetic=i == 0,
                document=text % made.decision_id,
            )
        )
    assert store.record_decisions(rows) == batch
    assert [store.decision_document(r.decision_id) for r in rows] == [r.document for r in rows]
    assert store.decisions_after(None, 10) == sorted(rows, key=lambda r: r.decision_id)
    # a retried write records nothing new
    assert store.record_decisions(rows) == 0


def test_a_batch_of_decisions_is_written_whole(store):
    rows = [row(customer=f"{i:08d}") for i in range(100)]
    store.record_decisions(rows)
    for written in rows:
        assert json.loads(store.decision_document(written.decision_id)) == json.loads(
            written.document
        )


def test_decisions_past_their_retention_are_purged(store, monkeypatch):
    # Small batches, so that the purge takes several.
    monkeypatch.setattr("credit_risk.store.base.DECISION_PURGE_BATCH", 3)
    old = [row(NOW - timedelta(days=40, minutes=i)) for i in range(7)]
    kept = [row(NOW - timedelta(days=29)), row(NOW)]
    store.record_decisions([*old, *kept])
    assert store.purge_decisions(timedelta(days=30), now=NOW) == len(old)
    assert [store.decision_document(r.decision_id) for r in old] == [None] * len(old)
    assert all(store.decision_document(r.decision_id) for r in kept)
    assert store.purge_decisions(timedelta(days=30), now=NOW) == 0


def test_a_store_without_decisions_migrates_on_its_first_decision(target):
    # Given a store at the schema before decisions (as a running environment is
    # when a release adds them): the table dropped and its migration unrecorded
    store = target.new_store()
    store.migrate()
    before = latest_version("postgres" if target.kind == "postgresql" else "sqlite") - 1
    _downgrade(target, store, before)
    assert store.decision_document(decision_ids.new_ids(1)[0]) is None
    assert store.purge_decisions(timedelta(days=1)) == 0
    # When the first decision is recorded
    written = row()
    store.record_decisions([written])
    # Then the store migrated itself and holds it
    assert store.health().schema_version == latest_version(
        "postgres" if target.kind == "postgresql" else "sqlite"
    )
    assert json.loads(store.decision_document(written.decision_id)) == json.loads(written.document)
    store.close()


def _downgrade(target, store, version: int) -> None:
    statements = (
        "DROP TABLE decisions",
        f"DELETE FROM schema_migrations WHERE version > {version}",
    )
    if target.kind == "postgresql":
        with psycopg.connect(store.config.url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)
    else:
        with sqlite3.connect(store.path) as conn:
            for statement in statements:
                conn.execute(statement)
        conn.close()


def test_ids_are_uuid_version_7_in_time_order():
    millis = int(NOW.timestamp()) * 1000
    earlier, later = (decision_ids.new_ids(1, ms * 1_000_000)[0] for ms in (millis, millis + 1))
    assert earlier < later
    parsed = uuid.UUID(earlier)
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert str(parsed) == earlier
    assert decision_ids.id_time(earlier) == NOW
    assert decision_ids.id_time(earlier.upper()) == NOW
    assert (
        decision_ids.first_id_at(NOW)
        <= earlier
        < decision_ids.first_id_at(NOW + timedelta(milliseconds=1))
    )
    ids = decision_ids.new_ids(1000)
    assert len(set(ids)) == 1000


@pytest.mark.parametrize("retention", [timedelta(0), timedelta(days=-1)])
def test_a_retention_must_be_positive(store, retention):
    from credit_risk.errors import InvalidInputError

    with pytest.raises(InvalidInputError):
        store.purge_decisions(retention)


def test_a_customer_s_decisions_are_listed_newest_first(store):
    theirs = [row(NOW - timedelta(days=days), customer="00000007") for days in (3, 1, 2)]
    store.record_decisions([*theirs, row(customer="00000008")])
    listed = [
        json.loads(document)["decision_id"]
        for document in store.customer_decision_documents("00000007", limit=10)
    ]
    assert listed == [theirs[1].decision_id, theirs[2].decision_id, theirs[0].decision_id]
    assert len(store.customer_decision_documents("00000007", limit=2)) == 2
    assert store.customer_decision_documents("nobody", limit=10) == []
    assert store.customer_decision_documents("x" * 10_000, limit=10) == []


def test_synthetic_decisions_are_listed_only_when_asked_for(store):
    lender, probe = row(customer="00000009"), row(NOW + timedelta(seconds=1), customer="00000009")
    store.record_decisions([lender, replace(probe, synthetic=True)])
    listed = store.customer_decision_documents("00000009", limit=10)
    everything = store.customer_decision_documents("00000009", limit=10, include_synthetic=True)
    assert [json.loads(d)["decision_id"] for d in listed] == [lender.decision_id]
    assert [json.loads(d)["decision_id"] for d in everything] == [
        probe.decision_id,
        lender.decision_id,
    ]


def test_an_id_followed_by_a_new_line_is_no_id():
    from credit_risk.errors import InvalidInputError

    (made,) = decision_ids.new_ids(1)
    with pytest.raises(InvalidInputError):
        decision_ids.normalized(made + "\n")


def test_writing_says_how_many_decisions_were_new(store):
    first = [row(customer=f"{i:08d}") for i in range(3)]
    assert store.record_decisions(first) == 3
    # a retried write, with one decision more
    assert store.record_decisions([*first, row(customer="00000004")]) == 1
    assert store.record_decisions([]) == 0


def test_decisions_are_read_in_id_order_a_page_at_a_time(store):
    # Given decisions made at different times, written out of order, one synthetic
    rows = [row(NOW - timedelta(hours=hours), customer=f"{hours:08d}") for hours in (5, 1, 3, 2, 4)]
    rows[2] = replace(rows[2], synthetic=True)
    store.record_decisions(rows)

    # When they are read from the start, two at a time
    pages, after = [], None
    while page := store.decisions_after(after, 2):
        pages.append(page)
        after = page[-1].decision_id

    # Then they come oldest first, each as it was written, its document to the byte
    assert [len(page) for page in pages] == [2, 2, 1]
    read = [decision for page in pages for decision in page]
    assert read == sorted(rows, key=lambda decision: decision.decision_id)
    assert [decision.decided_at for decision in read] == sorted(r.decided_at for r in rows)


def test_a_store_that_never_recorded_a_decision_has_none_to_read(target):
    assert target.new_store().decisions_after(None, 10) == []
